"""Chunked vectorizers with a second, hostile, non-superuser role: no way up through the destination table.

Role ``mallory`` owns schema ``m``. Its trap (``m.escalate``) tries to make
mallory a superuser whenever it runs as one, and records whom it ran as.
A chunked vectorizer adds a table of mallory's (the destination) that the
worker writes, so mallory attaches the trap there; the checks are those of
single vectors (test_pg_roles.py): code of a table's owner never runs with
rights its owner lacks.
"""
from __future__ import annotations

import itertools

import pytest

psycopg = pytest.importorskip("psycopg")

import vecplug  # noqa: E402
import vecplug_pgvector  # noqa: E402
from pg_vectorizer_helpers import install, one_torch_thread, queue_rows  # noqa: E402

_names = itertools.count()

TRAP = """
    CREATE TABLE m.ran_as (who name, was_super boolean);
    GRANT INSERT ON m.ran_as TO PUBLIC;
    CREATE FUNCTION m.escalate_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO m.ran_as SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user;
        IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            EXECUTE format('ALTER ROLE %I SUPERUSER', '{role}');
        END IF;
        RETURN NEW;
    END $$;
"""


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    with one_torch_thread():
        yield vecplug.load_model(str(tiny_model_dir), dtype="float32")


@pytest.fixture
def hostile(pg_cluster, fresh_db, vz_server):
    """(superuser dsn, mallory's dsn, mallory's name), vecplug installed, schema m of mallory's with the trap."""
    role = f"mallory_c{next(_names)}_{fresh_db[-16:]}"
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
        with pg_cluster.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{fresh_db}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def is_superuser(dsn: str, role: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role]).fetchone()[0]


def test_a_trap_on_the_destination_never_runs_as_a_superuser(hostile, model):
    dsn, mallory_dsn, role = hostile
    with psycopg.connect(mallory_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE m.docs (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO m.docs VALUES (1, 'one'), (2, 'two')")
        vectorizer_id = conn.execute("SELECT vecplug.create_vectorizer('m.docs', 'body', chunk_tokens => 16)").fetchone()[0]
        assert conn.execute("SELECT relowner::regrole::text FROM pg_class WHERE oid = 'm.docs_chunks'::regclass"
                            ).fetchone()[0] == role
        conn.execute("CREATE TRIGGER trap BEFORE INSERT OR DELETE ON m.docs_chunks FOR EACH ROW "
                     "EXECUTE FUNCTION m.escalate_trigger()")
    with one_torch_thread():
        report = vecplug_pgvector.Worker(dsn, model=model, show_progress=False).run(once=True)  # as the superuser
    assert report.embedded == 0 and report.refused, str(report)  # it would run mallory's trigger as a superuser
    with psycopg.connect(dsn, autocommit=True) as conn:
        refusal = conn.execute("SELECT vecplug.worker_refusal(%s)", [vectorizer_id]).fetchone()[0]
        assert "superuser" in refusal
        assert conn.execute("SELECT count(*) FROM m.ran_as WHERE was_super").fetchone()[0] == 0
    with one_torch_thread():
        report = vecplug_pgvector.Worker(mallory_dsn, model=model, show_progress=False).run(once=True)
    assert report.embedded == 2, str(report)  # mallory's own worker serves mallory's table
    assert not is_superuser(dsn, role)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM m.docs_chunks").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM m.ran_as WHERE was_super").fetchone()[0] == 0


def test_mallory_cannot_chunk_or_drop_or_write_into_tables_of_others(hostile):
    dsn, mallory_dsn, role = hostile
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.docs (id int PRIMARY KEY, body text)")
        conn.execute(f'GRANT SELECT, INSERT ON public.docs TO "{role}"')
        conn.execute("SELECT vecplug.create_vectorizer('public.docs', 'body', chunk_tokens => 16)")
        # a table of the superuser's, shaped like a destination for mallory's table
        conn.execute("CREATE TABLE public.loot (id int, chunk_index int, chunk_start int, chunk_end int, chunk text, "
                     "PRIMARY KEY (id, chunk_index))")
        conn.execute(f'GRANT ALL ON public.loot TO "{role}"')
    with psycopg.connect(mallory_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not create a vectorizer"):
            conn.execute("SELECT vecplug.create_vectorizer('public.docs', 'body', chunk_tokens => 16, "
                         "destination => 'm.mine')")
        assert conn.execute("SELECT to_regclass('m.mine')").fetchone()[0] is None
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT vecplug.drop_vectorizer('public.docs', drop_column => true)")
        conn.execute("CREATE TABLE m.docs (id int PRIMARY KEY, body text)")
        with pytest.raises(psycopg.Error, match="belongs to role"):  # the chunks of mallory's rows into loot
            conn.execute("SELECT vecplug.create_vectorizer('m.docs', 'body', chunk_tokens => 16, "
                         "destination => 'public.loot')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # a new table where mallory may not create one
            conn.execute("SELECT vecplug.create_vectorizer('m.docs', 'body', chunk_tokens => 16, "
                         "destination => 'public.made')")
        # a writer of the source queues its rows, and reads no chunk it has no right to
        conn.execute("INSERT INTO public.docs VALUES (1, 'from mallory')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM public.docs_chunks")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM public.docs_chunks_view")
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert [key for _, key, _ in queue_rows(conn)] == [["1"]]
        assert conn.execute("SELECT count(*) FROM vecplug.vectorizers").fetchone()[0] == 1
        assert conn.execute("SELECT to_regclass('public.made')").fetchone()[0] is None
    assert not is_superuser(dsn, role)
