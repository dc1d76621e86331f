"""PostgreSQL with a second, hostile role: no vecplug code runs a table owner's code with rights it lacks (issue 19).

Role ``mallory`` (no superuser, no grants on vecplug) owns schema ``m``
and tables with vectorizers, and attaches code that tries to make itself a
superuser whenever it runs as one: a trigger, a cast on its key type, a
domain check on the vector column, a check constraint. Each test then does
what vecplug users do (insert, update, run the worker, create a vectorizer
over existing rows) and asserts mallory is still no superuser, and that a
non-superuser owner still gets its vectors in both modes.

The trap is one plpgsql function: it tries ``ALTER ROLE <mallory>
SUPERUSER`` only when it runs as a superuser (so a test that fails shows
the escalation itself), and records in ``m.ran_as`` whom it ran as.
"""
from __future__ import annotations

import itertools

import pytest

psycopg = pytest.importorskip("psycopg")

import vecplug_pgvector  # noqa: E402
from pg_vectorizer_helpers import install, status, vectors  # noqa: E402

_names = itertools.count()

TRAP = """
    CREATE TABLE m.ran_as (who name, was_super boolean, at timestamptz DEFAULT clock_timestamp());
    GRANT INSERT ON m.ran_as TO PUBLIC;
    CREATE FUNCTION m.escalate() RETURNS boolean LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO m.ran_as (who, was_super) SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user;
        IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            EXECUTE format('ALTER ROLE %I SUPERUSER', '{role}');
        END IF;
        RETURN true;
    END $$;
    CREATE FUNCTION m.escalate_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM m.escalate(); RETURN coalesce(NEW, OLD); END $$;
"""


@pytest.fixture
def hostile(pg_cluster, fresh_db, vz_server):
    """(dsn as superuser, dsn as mallory, mallory's name): vecplug installed by the superuser, schema m owned by
    mallory with the trap functions."""
    role = f"mallory_{next(_names)}_{fresh_db[-20:]}"
    pg_cluster.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
    dsn = pg_cluster.dsn(fresh_db)
    install(dsn, vz_server.url)
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute(f'CREATE SCHEMA m AUTHORIZATION "{role}"')
    with pg_cluster.connect(fresh_db, user=role) as conn:
        conn.execute(TRAP.replace("{role}", role))
    try:
        yield dsn, pg_cluster.dsn(fresh_db, user=role), role
    finally:
        drop_database_and_roles(pg_cluster, fresh_db, role)


def drop_database_and_roles(pg_cluster, dbname: str, *roles: str) -> None:
    """Roles own objects in the test's database: it goes first (the fresh_db fixture then finds it gone)."""
    with pg_cluster.connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        for role in roles:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def dsn(pg_cluster, fresh_db, vz_server) -> str:
    """A fresh database with vecplug installed by the superuser, pointing at the test server."""
    dsn = pg_cluster.dsn(fresh_db)
    install(dsn, vz_server.url)
    return dsn


def is_superuser(dsn: str, role: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role]).fetchone()[0]


def ran_as(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT who, was_super FROM m.ran_as ORDER BY at").fetchall()


def assert_never_super(dsn: str, role: str) -> None:
    assert not is_superuser(dsn, role), f"{role} became a superuser"
    escalated = [row for row in ran_as(dsn) if row[1]]
    assert not escalated, f"{role}'s code ran as a superuser: {escalated}"


def run_worker(dsn: str, url: str, **options):
    return vecplug_pgvector.Worker(dsn, server_url=url, poll_interval=0.2, retry_delay=0, **options).run(once=True)


# -- defect 1: the table's own triggers ---------------------------------------------------------------------------
def test_sync_mode_runs_no_owner_trigger_as_vecplug(hostile):
    """Sync mode embeds in the row being written: mallory's UPDATE trigger never fires for an INSERT, and the
    embedding runs with mallory's rights. (Before: a write-back UPDATE as vecplug's owner made her superuser.)"""
    admin, own, role = hostile
    with psycopg.connect(own, autocommit=True) as conn:
        conn.execute("CREATE TABLE m.t (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('m.t', 'body', mode => 'sync')")
        conn.execute("CREATE TRIGGER a_trap BEFORE INSERT OR UPDATE ON m.t FOR EACH ROW EXECUTE FUNCTION m.escalate_trigger()")
        conn.execute("INSERT INTO m.t VALUES (1, 'hello'), (2, 'world')")
        conn.execute("UPDATE m.t SET body = 'hello again' WHERE id = 1")
        rows = conn.execute("SELECT id, embedding IS NOT NULL FROM m.t ORDER BY id").fetchall()
    assert rows == [(1, True), (2, True)], "a non-superuser owner gets vectors in sync mode"
    assert_never_super(admin, role)
    assert {who for who, _ in ran_as(admin)} == {role}


def test_worker_as_superuser_refuses_a_table_of_a_lesser_owner(hostile, vz_server):
    """The worker connected as a superuser leaves mallory's table alone and says why in vecplug.status; a worker
    connected as mallory embeds it, and her trigger runs as herself."""
    admin, own, role = hostile
    with psycopg.connect(own, autocommit=True) as conn:
        conn.execute("CREATE TABLE m.t (id int PRIMARY KEY, body text)")
        vectorizer_id = conn.execute("SELECT vecplug.create_vectorizer('m.t', 'body')").fetchone()[0]
        conn.execute("CREATE TRIGGER a_trap BEFORE UPDATE ON m.t FOR EACH ROW EXECUTE FUNCTION m.escalate_trigger()")
        conn.execute("INSERT INTO m.t VALUES (1, 'hello'), (2, 'world')")
    report = run_worker(admin, vz_server.url)
    assert report.embedded == 0 and report.exit_code == 1
    (why,) = report.refused.values()
    assert "superuser" in why and role in why, why
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute("SELECT pending, last_error FROM vecplug.status WHERE id = %s", [vectorizer_id]).fetchone()
    assert row[0] == 2 and "worker refused" in row[1] and role in row[1], row
    assert_never_super(admin, role)

    report = run_worker(own, vz_server.url)
    assert report.embedded == 2 and report.exit_code == 0, str(report)
    with psycopg.connect(own, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM m.t WHERE embedding IS NOT NULL").fetchone()[0] == 2
    assert_never_super(admin, role)
    assert {who for who, _ in ran_as(admin)} == {role}


def test_a_least_privilege_worker_role(hostile, pg_cluster, fresh_db, vz_server):
    """A worker role with no rights of its own, which the owner is a member of, serves the table once granted
    exactly what it needs; before the grants its refusal names them."""
    admin, own, role = hostile
    worker_role = f"w_{role}"
    pg_cluster.execute(f'CREATE ROLE "{worker_role}" LOGIN; GRANT "{worker_role}" TO "{role}"')
    try:
        with psycopg.connect(own, autocommit=True) as conn:
            conn.execute("CREATE TABLE m.t (id int PRIMARY KEY, body text)")
            conn.execute("SELECT vecplug.create_vectorizer('m.t', 'body')")
            conn.execute("INSERT INTO m.t VALUES (1, 'hello')")
            conn.execute(f'GRANT USAGE ON SCHEMA m TO "{worker_role}"')
        worker_dsn = pg_cluster.dsn(fresh_db, user=worker_role)
        with psycopg.connect(own, autocommit=True) as conn:
            conn.execute(f'GRANT SELECT (id, body) ON m.t TO "{worker_role}"')
        report = run_worker(worker_dsn, vz_server.url)
        (why,) = report.refused.values()
        assert "GRANT UPDATE (embedding) ON m.t" in why, why
        with psycopg.connect(own, autocommit=True) as conn:
            conn.execute(f'GRANT UPDATE (embedding) ON m.t TO "{worker_role}"')
        report = run_worker(worker_dsn, vz_server.url)
        assert report.embedded == 1 and report.exit_code == 0, str(report)
    finally:
        drop_database_and_roles(pg_cluster, fresh_db, worker_role)


def test_worker_role_with_rights_the_owner_lacks_is_refused(hostile, pg_cluster, fresh_db, vz_server):
    """A non-superuser worker role that holds more than the owner (the owner is not its member) is refused too."""
    admin, own, role = hostile
    other = f"o_{role}"
    pg_cluster.execute(f'CREATE ROLE "{other}" LOGIN')
    try:
        with psycopg.connect(own, autocommit=True) as conn:
            conn.execute("CREATE TABLE m.t (id int PRIMARY KEY, body text)")
            conn.execute("SELECT vecplug.create_vectorizer('m.t', 'body')")
            conn.execute(f'GRANT USAGE ON SCHEMA m TO "{other}"; GRANT SELECT, UPDATE ON m.t TO "{other}"')
            refusal = conn.execute("SELECT vecplug.worker_refusal(1, %s)", [other]).fetchone()[0]
        assert "holds rights" in refusal and role in refusal, refusal
        report = run_worker(pg_cluster.dsn(fresh_db, user=other), vz_server.url)
        assert report.refused and report.embedded == 0
    finally:
        drop_database_and_roles(pg_cluster, fresh_db, other)


# -- defect 2: user code evaluated by vecplug's functions ------------------------------------------------------------
def test_a_cast_on_the_key_type_runs_as_the_writer(hostile, vz_server):
    """A composite key type with mallory's own cast to text: queueing (on insert, for existing rows at
    create_vectorizer, on delete) evaluates it with mallory's rights, and her worker embeds the rows."""
    admin, own, role = hostile
    with psycopg.connect(own, autocommit=True) as conn:
        conn.execute("CREATE TYPE m.k AS (a int)")
        conn.execute("CREATE FUNCTION m.k_text(m.k) RETURNS text LANGUAGE plpgsql AS "
                     "$$ BEGIN PERFORM m.escalate(); RETURN ($1).a::text; END $$")
        conn.execute("CREATE CAST (m.k AS text) WITH FUNCTION m.k_text(m.k)")
        conn.execute("CREATE TABLE m.t (id m.k PRIMARY KEY, body text)")
        conn.execute("INSERT INTO m.t VALUES (ROW(1), 'there before the vectorizer')")
        conn.execute("SELECT vecplug.create_vectorizer('m.t', 'body')")
        conn.execute("INSERT INTO m.t VALUES (ROW(2), 'hello')")
        conn.execute("DELETE FROM m.t WHERE id = ROW(2)::m.k")
        conn.execute("INSERT INTO m.t VALUES (ROW(3), 'world')")
    assert ran_as(admin), "the cast was used"
    assert_never_super(admin, role)


def test_a_domain_on_the_vector_column_and_a_check_run_as_the_writer(hostile, vz_server):
    """Clearing a stale vector writes the vector column: a domain CHECK there (and a CHECK constraint of the
    table) runs as the writer, and the superuser worker will not write the table at all."""
    admin, own, role = hostile
    with psycopg.connect(own, autocommit=True) as conn:
        conn.execute("CREATE TABLE m.t (id int PRIMARY KEY, body text CHECK (m.escalate()))")
        conn.execute("SELECT vecplug.create_vectorizer('m.t', 'body', index => 'none')")
        conn.execute("CREATE DOMAIN m.checked_vector AS public.vector CHECK (m.escalate())")
        conn.execute("DROP TRIGGER vecplug_1_stale ON m.t")  # her table: she may, to change the column's type
        conn.execute("ALTER TABLE m.t ALTER COLUMN embedding TYPE m.checked_vector")
        conn.execute("INSERT INTO m.t VALUES (1, 'hello')")
    report = run_worker(admin, vz_server.url)
    assert report.refused and report.embedded == 0
    with psycopg.connect(own, autocommit=True) as conn:
        conn.execute("UPDATE m.t SET body = 'changed'")
    assert run_worker(own, vz_server.url).embedded == 1
    assert_never_super(admin, role)


# -- a hostile role against vecplug's own objects -------------------------------------------------------------------
def test_a_hostile_role_cannot_touch_another_tables_work(hostile, pg_cluster, fresh_db, vz_server):
    """Mallory cannot claim, finish, fail, forge, delete or drop the queued work of a superuser's table, nor
    attach its trigger functions to her own table, nor put her words in its status."""
    admin, own, role = hostile
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.docs (id int PRIMARY KEY, body text)")
        victim = conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')").fetchone()[0]
        conn.execute("INSERT INTO docs VALUES (1, 'secret')")
        docs_oid = conn.execute("SELECT 'docs'::regclass::oid").fetchone()[0]
    with psycopg.connect(own, autocommit=True) as conn:
        for statement, arguments in [
            ("SELECT * FROM vecplug.claim_batch(%s, 10)", [victim]),
            ("SELECT vecplug.finish_batch(%s, ARRAY[1]::bigint[], 0, 0, NULL, '[]')", [victim]),
            ("SELECT vecplug.record_row_failure(%s, ARRAY[1]::bigint[], 'x', 1, 0, 0)", [victim]),
            ("SELECT vecplug.pin_model(%s, 'x', 'y', '{}')", [victim]),
            ("SELECT vecplug.drop_vectorizer(%s)", [victim]),
            ("SELECT vecplug.retry_failed('public.docs')", []),
            ("INSERT INTO vecplug.queue (vectorizer_id, source, pk) VALUES (%s, %s, ARRAY['1'])", [victim, docs_oid]),
            ("INSERT INTO vecplug.queued_statements (vectorizer_id, source, keys) VALUES (%s, %s, ARRAY[['1']])",
             [victim, docs_oid]),
            ("SELECT * FROM vecplug.settings", []),
            ("UPDATE vecplug.vectorizers SET model = 'x'", []),
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement, arguments)
        assert conn.execute("DELETE FROM vecplug.queue").rowcount == 0
        assert conn.execute("DELETE FROM vecplug.queued_statements").rowcount == 0
        assert conn.execute("SELECT count(*) FROM vecplug.queue").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM vecplug.queued_statements").fetchone()[0] == 0
        conn.execute("SELECT vecplug.record_refusal(%s, 'all is fine, ignore the queue')", [victim])
        conn.execute("CREATE TABLE m.mine (id int PRIMARY KEY, body text)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function"):
            conn.execute(f"CREATE TRIGGER steal AFTER INSERT ON m.mine REFERENCING NEW TABLE AS vecplug_new "
                         f"FOR EACH STATEMENT EXECUTE FUNCTION vecplug._queue_changed('{victim}')")
    with psycopg.connect(admin, autocommit=True) as conn:
        assert conn.execute("SELECT pending FROM vecplug.status WHERE id = %s", [victim]).fetchone()[0] == 1
        last_error = conn.execute("SELECT last_error FROM vecplug.status WHERE id = %s", [victim]).fetchone()[0]
    assert last_error is None or "all is fine" not in last_error, last_error


# -- defect 3: keys and session settings ---------------------------------------------------------------------------
@pytest.mark.parametrize("key_type, setting, keys", [
    ("date", "SET DateStyle = 'SQL, DMY'", ["2024-01-02", "2024-01-25"]),
    ("timestamptz", "SET TimeZone = 'Asia/Kolkata'", ["2024-01-02 10:00:00+00", "2024-06-30 23:59:59.5+00"]),
    ("interval", "SET IntervalStyle = 'sql_standard'", ["1 day 02:03:04", "-3 mons 4 days"]),
    ("double precision", "SET extra_float_digits = -15", ["0.1", "3.141592653589793"]),
    ("bytea", "SET bytea_output = 'escape'", ["\\x00ff10", "\\x6869"]),
])
def test_keys_do_not_depend_on_the_writers_settings(dsn, vz_server, key_type, setting, keys):
    """Rows written under odd session settings are queued with keys the worker reads back: every row gets its
    vector, none is counted as gone."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE t (id {key_type} PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('t', 'body')")
        with conn.transaction():
            conn.execute(setting)
            for index, key in enumerate(keys):
                conn.execute(f"INSERT INTO t VALUES (%s::text::{key_type}, %s)", [key, f"text {index}"])
    report = run_worker(dsn, vz_server.url)
    assert report.embedded == len(keys) and report.skipped == 0 and report.exit_code == 0, str(report)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM t WHERE embedding IS NULL").fetchone()[0] == 0
        assert conn.execute("SELECT pending, failed FROM vecplug.status").fetchone() == (0, 0)


def test_a_key_that_cannot_be_read_fails_alone(dsn, vz_server):
    """A queue row whose key is not its type's text (written by an older version, by hand) is that row's failure:
    the others of its batch and of other vectorizers are embedded, and the worker keeps going."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id date PRIMARY KEY, body text)")
        conn.execute("CREATE TABLE u (id int PRIMARY KEY, body text)")
        first = conn.execute("SELECT vecplug.create_vectorizer('t', 'body')").fetchone()[0]
        conn.execute("SELECT vecplug.create_vectorizer('u', 'body')")
        conn.execute("INSERT INTO t VALUES ('2024-01-02', 'a'), ('2024-03-04', 'b')")
        conn.execute("INSERT INTO u VALUES (1, 'c')")
        conn.execute("INSERT INTO vecplug.queue (vectorizer_id, source, pk) VALUES "
                     "(%s, 't'::regclass, ARRAY['25/01/2024']), (%s, 't'::regclass, ARRAY['2024-1-9'])",
                     [first, first])
    report = run_worker(dsn, vz_server.url, max_attempts=1)
    assert report.embedded == 3 and report.failed == 2, str(report)
    with psycopg.connect(dsn, autocommit=True) as conn:
        errors = [row[0] for row in conn.execute("SELECT error FROM vecplug.failed ORDER BY id")]
        assert conn.execute("SELECT failed, pending FROM vecplug.status WHERE id = %s", [first]).fetchone() == (2, 0)
    assert any("cannot be read as date" in error for error in errors), errors
    assert any("does not read back as itself" in error for error in errors), errors


# -- defect 4: partitions ------------------------------------------------------------------------------------------
def test_partitions_every_route_is_embedded(dsn, vz_server):
    """Rows written through the parent, through a partition, into a sub-partition and into a partition
    attached after create_vectorizer all get vectors; an UPDATE through a partition is re-embedded."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE p (id int, region text, body text, PRIMARY KEY (id, region)) PARTITION BY LIST (region)")
        conn.execute("CREATE TABLE p_eu PARTITION OF p FOR VALUES IN ('eu')")
        conn.execute("CREATE TABLE p_us PARTITION OF p FOR VALUES IN ('us', 'ca') PARTITION BY LIST (region)")
        conn.execute("CREATE TABLE p_us_ca PARTITION OF p_us FOR VALUES IN ('ca')")
        conn.execute("CREATE TABLE p_us_us PARTITION OF p_us FOR VALUES IN ('us')")
        conn.execute("INSERT INTO p VALUES (0, 'eu', 'before the vectorizer')")
        conn.execute("SELECT vecplug.create_vectorizer('p', 'body')")
        conn.execute("INSERT INTO p VALUES (1, 'eu', 'through the parent'), (2, 'ca', 'into a sub-partition')")
        conn.execute("INSERT INTO p_eu VALUES (3, 'eu', 'naming the partition')")
        conn.execute("INSERT INTO p_us_us VALUES (4, 'us', 'naming the sub-partition')")
        conn.execute("CREATE TABLE p_asia (LIKE p INCLUDING ALL)")
        conn.execute("ALTER TABLE p ATTACH PARTITION p_asia FOR VALUES IN ('asia')")
        conn.execute("INSERT INTO p_asia (id, region, body) VALUES (5, 'asia', 'attached later')")
        conn.execute("INSERT INTO p (id, region, body) VALUES (6, 'asia', 'attached later, through the parent')")
    assert run_worker(dsn, vz_server.url).embedded == 7
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM p WHERE embedding IS NULL").fetchone()[0] == 0
        conn.execute("UPDATE p_eu SET body = 'changed through the partition' WHERE id = 3")
        assert conn.execute("SELECT embedding IS NULL FROM p WHERE id = 3").fetchone()[0]
        assert conn.execute("SELECT pending FROM vecplug.status").fetchone()[0] == 1
    assert run_worker(dsn, vz_server.url).embedded == 1
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM p WHERE embedding IS NULL").fetchone()[0] == 0


# -- defect 5: dropped columns and tables ---------------------------------------------------------------------------
@pytest.mark.parametrize("dropped", ["body", "embedding"])
def test_a_dropped_column_leaves_a_working_table_and_a_clear_status(dsn, vz_server, dropped):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, body text, note text)")
        vectorizer_id = conn.execute("SELECT vecplug.create_vectorizer('t', 'body')").fetchone()[0]
        conn.execute("INSERT INTO t VALUES (1, 'hello', 'x')")
        conn.execute(f"ALTER TABLE t DROP COLUMN {dropped} CASCADE")
        conn.execute("INSERT INTO t (id, note) VALUES (2, 'y')")
        conn.execute("UPDATE t SET note = 'z'")
        state = conn.execute("SELECT state, vectorizer FROM vecplug.status WHERE id = %s", [vectorizer_id]).fetchone()
        assert state[0].startswith("broken: its") and "column was dropped" in state[0], state
        assert state[1] is not None
        assert conn.execute("SELECT vecplug.drop_vectorizer('t')").fetchone()[0] >= 0
        assert conn.execute("SELECT count(*) FROM vecplug.status").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'vecplug%'").fetchone()[0] == 0


def test_a_dropped_table_shows_in_words_and_drops_by_id(dsn, vz_server):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE dropme (id int PRIMARY KEY, body text)")
        vectorizer_id = conn.execute("SELECT vecplug.create_vectorizer('dropme', 'body')").fetchone()[0]
        conn.execute("INSERT INTO dropme VALUES (1, 'hello')")
        conn.execute("DROP TABLE dropme")
        name, state = conn.execute("SELECT vectorizer, state FROM vecplug.status").fetchone()
        assert name == "public.dropme (table dropped)" and "its table was dropped" in state, (name, state)
        assert conn.execute("SELECT vecplug.drop_vectorizer(%s)", [vectorizer_id]).fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM vecplug.status").fetchone()[0] == 0


# -- defect 7: generated columns; defect 9: no user UPDATE trigger on INSERT ---------------------------------------
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_a_generated_text_column(dsn, vz_server, mode):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, title text, body text, "
                     "doc text GENERATED ALWAYS AS (title || E'\\n\\n' || body) STORED)")
        conn.execute("SELECT vecplug.create_vectorizer('t', 'doc', mode => %s)", [mode])
        conn.execute("INSERT INTO t (id, title, body) VALUES (1, 'Cats', 'sleep a lot')")
    if mode == "async":
        assert run_worker(dsn, vz_server.url).embedded == 1
    with psycopg.connect(dsn, autocommit=True) as conn:
        before = vectors(conn, "t")[1]
        conn.execute("UPDATE t SET title = 'Dogs'")
        if mode == "async":
            assert conn.execute("SELECT embedding IS NULL FROM t").fetchone()[0], "a changed text clears the vector"
    if mode == "async":
        assert run_worker(dsn, vz_server.url).embedded == 1
    with psycopg.connect(dsn, autocommit=True) as conn:
        after = vectors(conn, "t")[1]
        conn.execute("UPDATE t SET id = id")  # no text change: the vector stays
        assert (vectors(conn, "t")[1] == after).all()
    assert after is not None and before is not None and not (after == before).all()


def test_sync_insert_fires_no_user_update_trigger(dsn, vz_server):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, body text, version int NOT NULL DEFAULT 0)")
        conn.execute("CREATE TABLE audit (id int, op text)")
        conn.execute("CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN INSERT INTO audit VALUES (NEW.id, TG_OP); NEW.version := NEW.version + 1; RETURN NEW; END $$")
        conn.execute("CREATE TRIGGER audit BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION audit()")
        conn.execute("SELECT vecplug.create_vectorizer('t', 'body', mode => 'sync')")
        conn.execute("INSERT INTO t (id, body) VALUES (1, 'a'), (2, 'b')")
        assert conn.execute("SELECT count(*) FROM audit").fetchone()[0] == 0
        assert conn.execute("SELECT count(*), max(version) FROM t WHERE embedding IS NOT NULL").fetchone() == (2, 0)
        conn.execute("UPDATE t SET body = 'c' WHERE id = 1")
        assert conn.execute("SELECT count(*) FROM audit").fetchone()[0] == 1
        assert conn.execute("SELECT version, embedding IS NOT NULL FROM t WHERE id = 1").fetchone() == (1, True)


def test_status_is_readable_by_a_role_with_column_grants(hostile):
    admin, own, role = hostile
    with psycopg.connect(own, autocommit=True) as conn:
        conn.execute("CREATE TABLE m.t (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('m.t', 'body')")
        conn.execute("INSERT INTO m.t VALUES (1, 'x')")
        assert status(conn)["m.t.embedding"]["pending"] == 1


def test_row_level_security_that_could_hide_rows_is_a_refusal(hostile, vz_server):
    """A row hidden from the worker must not pass for a deleted one: with FORCE ROW LEVEL SECURITY even the
    owner's worker is refused, and says why."""
    admin, own, role = hostile
    with psycopg.connect(own, autocommit=True) as conn:
        conn.execute("CREATE TABLE m.t (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('m.t', 'body')")
        conn.execute("ALTER TABLE m.t ENABLE ROW LEVEL SECURITY")
        conn.execute("ALTER TABLE m.t FORCE ROW LEVEL SECURITY")
        conn.execute("CREATE POLICY odd ON m.t USING (id % 2 = 1)")
        conn.execute("INSERT INTO m.t VALUES (1, 'visible')")
    report = run_worker(own, vz_server.url)
    (why,) = report.refused.values()
    assert "row-level security" in why and report.embedded == 0
    with psycopg.connect(admin, autocommit=True) as conn:
        assert conn.execute("SELECT pending FROM vecplug.status").fetchone()[0] == 1
    assert_never_super(admin, role)


def test_an_outage_in_a_once_run_reports_what_is_left(dsn):
    """`--once` with the server unreachable ends with the outage and every queued row counted as left."""
    from pg_rig import free_port

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('t', 'body')")
        conn.execute("INSERT INTO t SELECT g, 'text ' || g FROM generate_series(1, 7) g")
    report = run_worker(dsn, f"http://127.0.0.1:{free_port()}")
    assert report.outage and report.left == 7 and report.exit_code == 1, str(report)
    assert "7 rows left queued" in str(report)


def test_status_in_words_for_a_person(dsn, vz_server):
    """`vecplug pg status` names a broken vectorizer and what to do, and never prints None for a name."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('t', 'body')")
        conn.execute("ALTER TABLE t DROP COLUMN embedding CASCADE")
    from vecplug_pgvector.status import format_table, status as read_status

    text = format_table(read_status(dsn))
    assert "None" not in text and "public.t (embedding column dropped)" in text
    assert "broken: its embedding column was dropped; remove it with SELECT vecplug.drop_vectorizer(1)" in text


def test_doctor_says_which_vectorizers_a_worker_of_this_role_serves(hostile):
    from vecplug_pgvector.doctor import doctor_checks

    admin, own, role = hostile
    with psycopg.connect(own, autocommit=True) as conn:
        conn.execute("CREATE TABLE m.t (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('m.t', 'body')")
    as_admin = {entry["name"]: entry for entry in doctor_checks(admin, None, None)}
    assert as_admin["worker role"]["status"] == "warn"
    assert "serves 0 of 1" in as_admin["worker role"]["detail"] and "superuser" in as_admin["worker role"]["detail"]
    as_owner = {entry["name"]: entry for entry in doctor_checks(own, None, None)}
    assert as_owner["worker role"]["status"] == "ok", as_owner["worker role"]
    assert "may not read vecplug.settings" in as_owner["recorded model"]["detail"]


def test_the_psql_uninstall_names_vectorizers_not_their_triggers(dsn, pg_cluster):
    import subprocess

    from vecplug_pgvector import sqlfiles

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('t', 'body')")
    psql = subprocess.run([str(pg_cluster.bin_dir / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-1", dsn, "-f",
                           str(sqlfiles.sql_dir() / "uninstall.sql")], capture_output=True, text=True, timeout=60)
    assert psql.returncode != 0
    assert "vectorizer 1 (public.t.embedding): SELECT vecplug.drop_vectorizer(1)" in psql.stderr, psql.stderr
    assert "trigger vecplug_" not in psql.stderr
