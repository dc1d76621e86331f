"""Vectorizers in SQL on a real PostgreSQL: what create_vectorizer builds, what the triggers queue, bad input.

The worker is not run here (test_pg_worker.py runs it); these tests look at
the column, index, triggers, queue and records the SQL leaves behind.
"""
from __future__ import annotations

import dataclasses

import pytest

psycopg = pytest.importorskip("psycopg")

import vecplug  # noqa: E402
import vecplug_pgvector  # noqa: E402
from pg_vectorizer_helpers import install, queue_rows, status  # noqa: E402
from psycopg import sql  # noqa: E402


@pytest.fixture
def db(pg_cluster, fresh_db, vz_server):
    """A fresh database with vecplug installed against the tiny model's server (its model recorded)."""
    install(pg_cluster.dsn(fresh_db), vz_server.url)
    return fresh_db


def keys(conn, vectorizer_id=None) -> list[list[str]]:
    return [row[1] for row in queue_rows(conn, vectorizer_id)]


def column_type(conn, table: str, column: str) -> str | None:
    row = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass "
                       "AND attname = %s AND NOT attisdropped", [table, column]).fetchone()
    return row[0] if row else None


def test_create_vectorizer_builds_column_index_triggers_and_records_the_model(pg_cluster, db, tiny_model_dir):
    model = vecplug.load_model(str(tiny_model_dir), dtype="float32")
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id bigint PRIMARY KEY, body text, lang text)")
        conn.execute("INSERT INTO docs VALUES (1, 'one', 'en'), (2, NULL, 'en'), (3, '', 'fr')")
        vectorizer_id = conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')").fetchone()[0]
        assert column_type(conn, "docs", "embedding") == "vector(64)"
        index = conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'docs' AND indexname <> 'docs_pkey'")
        assert "USING hnsw (embedding vector_cosine_ops)" in index.fetchone()[0]
        triggers = {row[0] for row in conn.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'docs'::regclass")}
        assert triggers == {f"vecplug_{vectorizer_id}_{event}"
                            for event in ("stale", "insert", "update", "delete", "truncate")}
        recorded = conn.execute("SELECT model, model_fingerprint, dimensions, mode FROM vecplug.vectorizers").fetchone()
        assert recorded == (model.spec.name, model.spec.fingerprint, 64, "async")
        column_model = conn.execute("SELECT model FROM vecplug.embedding_columns").fetchone()[0]
        vecplug.check_same_space(column_model, model, where="docs.embedding")  # search() will accept the model
        assert keys(conn) == [["1"], ["3"]]  # existing rows with text, the empty one too; NULL text: nothing to embed
        row = status(conn)["public.docs.embedding"]
        assert (row["pending"], row["failed"], row["embedded"], row["mode"]) == (2, 0, 0, "async")


def test_the_triggers_queue_what_needs_a_vector_and_nothing_else(pg_cluster, db):
    with pg_cluster.connect(db) as conn, pg_cluster.connect(db) as listener:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text, lang text)")
        vectorizer_id = conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')").fetchone()[0]
        listener.execute("LISTEN vecplug_queue")
        conn.execute("INSERT INTO docs SELECT g, 'text ' || g, 'en' FROM generate_series(1, 5) g")
        notes = list(listener.notifies(timeout=5, stop_after=1))
        assert [note.payload for note in notes] == [str(vectorizer_id)]
        assert keys(conn) == [[str(i)] for i in range(1, 6)]
        conn.execute("DELETE FROM vecplug.queue")
        conn.execute("DELETE FROM vecplug.queued_statements")
        conn.execute("UPDATE docs SET embedding = array_fill(0.5, ARRAY[64])::vector")  # as a worker would

        conn.execute("UPDATE docs SET lang = 'fr'")  # not the text: nothing
        conn.execute("UPDATE docs SET body = body WHERE id = 1")  # the same text: nothing
        assert keys(conn) == []
        conn.execute("UPDATE docs SET body = 'changed' WHERE id IN (1, 2)")  # stale vectors go at once
        conn.execute("UPDATE docs SET body = 'given', embedding = array_fill(0.25, ARRAY[64])::vector WHERE id = 3")
        conn.execute("UPDATE docs SET body = NULL WHERE id = 4")  # no text: no vector, not queued
        conn.execute("INSERT INTO docs VALUES (5, 'upserted', 'en') ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body")
        rows = dict(conn.execute("SELECT id, embedding IS NULL FROM docs"))
        assert rows == {1: True, 2: True, 3: False, 4: True, 5: True}
        assert sorted(keys(conn)) == [["1"], ["2"], ["5"]]

        conn.execute("INSERT INTO docs VALUES (6, 'six', 'en'), (7, 'seven', 'en')")
        conn.execute("DELETE FROM docs WHERE id IN (1, 6)")  # their queued work goes with them
        assert sorted(keys(conn)) == [["2"], ["5"], ["7"]]
        conn.execute("INSERT INTO vecplug.failed (vectorizer_id, source, pk, queued_at, attempts, error) "
                     "VALUES (%s, 'docs'::regclass, '{2}', now(), 5, 'x')", [vectorizer_id])
        conn.execute("TRUNCATE docs")
        assert keys(conn) == [] and conn.execute("SELECT count(*) FROM vecplug.failed").fetchone()[0] == 0


def test_rows_with_a_vector_are_kept_and_enqueue_existing_can_be_off(pg_cluster, db):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text, embedding vector(64))")
        conn.execute("INSERT INTO docs VALUES (1, 'has one', array_fill(0.5, ARRAY[64])::vector), (2, 'has none', NULL)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")  # the existing column is used
        assert keys(conn) == [["2"]]
        conn.execute("CREATE TABLE later (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO later VALUES (1, 'old')")
        later = conn.execute("SELECT vecplug.create_vectorizer('later', 'body', enqueue_existing => false)").fetchone()[0]
        assert keys(conn, later) == []
        conn.execute("INSERT INTO later VALUES (2, 'new')")
        assert keys(conn, later) == [["2"]]


def test_any_primary_key_composite_too(pg_cluster, db):
    with pg_cluster.connect(db) as conn:
        conn.execute('CREATE TABLE notes (tenant text, "When" timestamptz, n numeric, body text, '
                     'PRIMARY KEY (tenant, "When", n))')
        conn.execute("""INSERT INTO notes VALUES ('a b', '2024-01-02 03:04:05.678+00', 1.50, 'x'),
                        ('it''s', '2024-01-02 03:04:05+00', -2, 'y')""")
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute("SELECT vecplug.create_vectorizer('notes', 'body')")
        queued = keys(conn)
        assert queued == [["a b", "2024-01-02 03:04:05.678+00", "1.50"], ["it's", "2024-01-02 03:04:05+00", "-2"]]
        # each key reads back as its own type: the worker finds the rows with exactly these values
        found = conn.execute("""SELECT count(*) FROM vecplug.queue q JOIN notes t ON t.tenant = q.pk[1]
                                AND t."When" = q.pk[2]::timestamptz AND t.n = q.pk[3]::numeric""").fetchone()[0]
        assert found == 2


def test_a_partitioned_table(pg_cluster, db):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE parts (id int, region text, body text, PRIMARY KEY (id, region)) "
                     "PARTITION BY LIST (region)")
        conn.execute("CREATE TABLE parts_eu PARTITION OF parts FOR VALUES IN ('eu')")
        conn.execute("CREATE TABLE parts_us PARTITION OF parts FOR VALUES IN ('us')")
        conn.execute("SELECT vecplug.create_vectorizer('parts', 'body')")
        conn.execute("INSERT INTO parts VALUES (1, 'eu', 'a'), (2, 'us', 'b')")
        assert keys(conn) == [["1", "eu"], ["2", "us"]]
        conn.execute("DELETE FROM vecplug.queue")
        conn.execute("UPDATE parts SET embedding = array_fill(0.5, ARRAY[64])::vector")
        conn.execute("UPDATE parts SET body = 'c' WHERE id = 1")  # the row trigger fires on the partition
        assert dict(conn.execute("SELECT id, embedding IS NULL FROM parts")) == {1: True, 2: False}
        assert keys(conn) == [["1", "eu"]]
        conn.execute("DELETE FROM parts WHERE id = 1")
        assert keys(conn) == []


@pytest.mark.parametrize("setup, call, message", [
    ("CREATE TABLE t (id int, body text)", "('t', 'body')", "table public.t has no primary key"),
    ("CREATE TABLE t (id int PRIMARY KEY, body text)", "('t', 'Body')", 'has no column "Body"'),
    ("CREATE TABLE t (id int PRIMARY KEY, body int)", "('t', 'body')", "column body of table public.t is integer, not text"),
    ("CREATE VIEW t AS SELECT 1 AS id, 'x'::text AS body", "('t', 'body')", "public.t is not a table"),
    ("CREATE TABLE t (id int PRIMARY KEY, body text, embedding text)", "('t', 'body')",
     "column embedding of table public.t is text, which cannot hold this model's vectors \\(vector\\(64\\)\\)"),
    ("CREATE TABLE t (id int PRIMARY KEY, body text, embedding vector(32))", "('t', 'body')",
     "is public.vector\\(32\\), which cannot hold"),
    ("CREATE TABLE t (id int PRIMARY KEY, body text)", "('t', 'body', dimensions => 128)", "gives 64 dimensions"),
    ("CREATE TABLE t (id int PRIMARY KEY, body text)", "('t', 'body', dimensions => 0)", "must be a positive number"),
    ("CREATE TABLE t (id int PRIMARY KEY, body text)", "('t', 'body', 'body')", "is the text column"),
    ("CREATE TABLE t (id int PRIMARY KEY, body text)", "('t', 'body', 'id')", "part of the primary key"),
    ("CREATE TABLE t (id int PRIMARY KEY, body text)", "('t', 'body', mode => 'fast')", "mode must be 'async' or 'sync'"),
    ("CREATE TABLE t (id int PRIMARY KEY, body text)", "('t', 'body', storage => 'float')", "storage must be"),
    ("CREATE TABLE t (id int PRIMARY KEY, body text)", "('t', 'body', index => 'ivf')", "index must be"),
    ("CREATE TABLE t (id int PRIMARY KEY, body text)", "('t', 'body', on_error => 'ignore')", "on_error must be"),
    ("CREATE TABLE t (id int PRIMARY KEY, body text)", "('t', 'body', model => 'other', dimensions => 3000)",
     "HNSW index takes at most 2000 dimensions of vector, not 3000"),
    ("CREATE TABLE t (id int PRIMARY KEY, body text); SELECT vecplug.create_vectorizer('t', 'body')",
     "('t', 'body')", "table public.t already has a vectorizer into column embedding"),
])
def test_bad_input_is_refused_and_changes_nothing(pg_cluster, db, setup, call, message):
    with pg_cluster.connect(db) as conn:
        conn.execute(setup)
        before = (conn.execute("SELECT count(*) FROM vecplug.vectorizers").fetchone()[0],
                  conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass").fetchone()[0])
        with pytest.raises(psycopg.Error, match=message):
            conn.execute(f"SELECT vecplug.create_vectorizer{call}")
        after = (conn.execute("SELECT count(*) FROM vecplug.vectorizers").fetchone()[0],
                 conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass").fetchone()[0])
        assert after == before


def test_dimensions_must_be_given_without_a_recorded_model(pg_cluster, fresh_db):
    install(pg_cluster.dsn(fresh_db), None)
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        with pytest.raises(psycopg.Error, match=r"the size of the vectors is not known: pass dimensions => N"):
            conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', dimensions => 48, storage => 'halfvec')")
        assert column_type(conn, "docs", "embedding") == "halfvec(48)"
        assert conn.execute("SELECT model, model_fingerprint FROM vecplug.vectorizers").fetchone() == (None, None)
        assert conn.execute("SELECT count(*) FROM vecplug.embedding_columns").fetchone()[0] == 0  # a worker pins it


def test_matryoshka_dimensions_record_the_cut_vectors_fingerprint(pg_cluster, db, tiny_model_dir):
    cut = vecplug.load_model(str(tiny_model_dir), dtype="float32", dimensions=32)
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', dimensions => 32)")
        assert column_type(conn, "docs", "embedding") == "vector(32)"
        fingerprint = conn.execute("SELECT model_fingerprint FROM vecplug.vectorizers").fetchone()[0]
        assert fingerprint == cut.spec.fingerprint  # SQL's sha256 matches ModelSpec.truncated
        vecplug.check_same_space(conn.execute("SELECT model FROM vecplug.embedding_columns").fetchone()[0], cut,
                                 where="docs.embedding")


def test_a_model_without_matryoshka_training_is_not_cut_by_a_vectorizer(pg_cluster, db):
    """What install records for such a model (its full size alone) makes create_vectorizer refuse a cut."""
    from vecplug_pgvector.installer import recorded_sizes

    spec = vecplug.ModelSpec(name="m", dimensions=64, max_tokens=128)
    assert recorded_sizes(spec) == "64"
    assert recorded_sizes(dataclasses.replace(spec, any_dimensions=True)) is None
    assert recorded_sizes(dataclasses.replace(spec, matryoshka_dims=(32, 16))) == "32,16"
    with pg_cluster.connect(db) as conn:
        conn.execute("UPDATE vecplug.settings SET value = '64' WHERE name = 'matryoshka_dims'")
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        with pytest.raises(psycopg.Error, match=r"gives 64 dimensions and was not trained to have them cut"):
            conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', dimensions => 32)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        assert column_type(conn, "docs", "embedding") == "vector(64)"


HOSTILE_SCHEMA = 'Mixed "Schema"'
HOSTILE_TABLE = 'Odd "Table"; DROP TABLE docs; --'
HOSTILE_TEXT = "My Text's"
HOSTILE_VECTOR = 'Vec "tor"'


def create_hostile_table(conn) -> int:
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(HOSTILE_SCHEMA)))
    conn.execute(sql.SQL("CREATE TABLE {} ({} text, {} text, PRIMARY KEY ({}))").format(
        sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE), sql.Identifier("Key; --"), sql.Identifier(HOSTILE_TEXT),
        sql.Identifier("Key; --")))
    table = sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE).as_string(conn)
    return conn.execute("SELECT vecplug.create_vectorizer(%s::regclass, %s, %s)",
                        [table, HOSTILE_TEXT, HOSTILE_VECTOR]).fetchone()[0]


def test_names_that_need_quoting_and_try_injection(pg_cluster, db):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY)")
        vectorizer_id = create_hostile_table(conn)
        table = sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE)
        conn.execute(sql.SQL("INSERT INTO {} VALUES ('a''; DROP TABLE docs; --', 'x'), ('b', NULL)").format(table))
        conn.execute(sql.SQL("UPDATE {} SET {} = 'y' WHERE {} = 'b'").format(
            table, sql.Identifier(HOSTILE_TEXT), sql.Identifier("Key; --")))
        assert keys(conn, vectorizer_id) == [["a'; DROP TABLE docs; --"], ["b"]]
        name = '"Mixed ""Schema"""."Odd ""Table""; DROP TABLE docs; --"."Vec ""tor"""'
        assert name in status(conn)
        assert conn.execute("SELECT to_regclass('docs') IS NOT NULL").fetchone()[0]


def test_renaming_the_table_and_its_columns_keeps_the_vectorizer_working(pg_cluster, db):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        vectorizer_id = conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')").fetchone()[0]
        conn.execute("ALTER TABLE docs RENAME TO articles")
        conn.execute("ALTER TABLE articles RENAME COLUMN body TO content")
        conn.execute("ALTER TABLE articles RENAME COLUMN embedding TO vec")
        conn.execute("ALTER TABLE articles RENAME COLUMN id TO article_id")
        conn.execute("INSERT INTO articles VALUES (1, 'one')")
        conn.execute("UPDATE articles SET vec = array_fill(0.5, ARRAY[64])::vector")
        conn.execute("UPDATE articles SET content = 'uno'")
        assert conn.execute("SELECT vec IS NULL FROM articles").fetchone()[0]
        assert keys(conn, vectorizer_id) == [["1"], ["1"]]
        assert "public.articles.vec" in status(conn)


def test_who_may_create_vectorizers_and_write_to_their_tables(pg_cluster, db):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("GRANT CREATE ON SCHEMA public TO app")
    with pg_cluster.connect(db, user="reader") as reader:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="role reader may not create a vectorizer"):
            reader.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
    with pg_cluster.connect(db, user="app") as app:
        app.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        app.execute("SELECT vecplug.create_vectorizer('notes', 'body')")  # app owns notes
        app.execute("GRANT INSERT, UPDATE ON notes TO reader")
    with pg_cluster.connect(db, user="reader") as reader:
        reader.execute("INSERT INTO notes VALUES (1, 'from a role with INSERT only')")
        assert status(reader) == {}  # it may not read notes, so it does not see its vectorizer
        for statement in ("SELECT * FROM vecplug.queue", "SELECT * FROM vecplug.vectorizers",
                          "SELECT vecplug.drop_vectorizer('notes')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute(statement)
        reader.execute("CREATE TEMP TABLE mine (id int PRIMARY KEY, body text)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function"):
            reader.execute("CREATE TRIGGER sneak AFTER INSERT ON mine REFERENCING NEW TABLE AS vecplug_new "
                           "FOR EACH STATEMENT EXECUTE FUNCTION vecplug._queue_changed('1')")
    with pg_cluster.connect(db) as conn:
        assert keys(conn) == [["1"]]


def test_drop_vectorizer_keeps_the_vectors_unless_asked(pg_cluster, db):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO docs VALUES (1, 'one'), (2, 'two')")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        notices = []
        conn.add_notice_handler(lambda notice: notices.append(notice.message_primary))
        assert conn.execute("SELECT vecplug.drop_vectorizer('docs')").fetchone()[0] == 2
        assert any("2 queued rows of public.docs.embedding were still waiting" in notice for notice in notices)
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'docs'::regclass").fetchone()[0] == 0
        assert keys(conn) == [] and column_type(conn, "docs", "embedding") == "vector(64)"
        assert conn.execute("SELECT count(*) FROM vecplug.embedding_columns").fetchone()[0] == 1
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")  # again, on the kept column
        conn.execute("SELECT vecplug.drop_vectorizer('docs', drop_column => true)")
        assert column_type(conn, "docs", "embedding") is None
        assert conn.execute("SELECT count(*) FROM vecplug.embedding_columns").fetchone()[0] == 0
        with pytest.raises(psycopg.Error, match="table public.docs has no vectorizer into column embedding"):
            conn.execute("SELECT vecplug.drop_vectorizer('docs')")


def test_uninstall_refuses_while_vectorizers_exist_and_cascade_keeps_the_vectors(pg_cluster, db):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        with pytest.raises(vecplug_pgvector.InstallError,
                           match=r"1 vectorizer on table public.docs .*vecplug.drop_vectorizer\('public.docs'"):
            vecplug_pgvector.uninstall(conn)
        vecplug_pgvector.uninstall(conn, cascade=True)
        assert conn.execute("SELECT to_regnamespace('vecplug')").fetchone()[0] is None
        assert column_type(conn, "docs", "embedding") == "vector(64)"
        conn.execute("INSERT INTO docs VALUES (1, 'after')")  # no trigger left behind


def test_a_dropped_table_leaves_nothing_behind(pg_cluster, db):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO docs VALUES (1, 'one')")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        conn.execute("DROP TABLE docs")
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")  # the old one is forgotten first
        assert list(status(conn)) == ["public.docs.embedding"]
        assert keys(conn) == []


def test_managed_postgres_has_async_vectorizers_only(pg_cluster, managed_db, vz_server):
    with pg_cluster.connect(managed_db, user="app") as conn:
        vecplug_pgvector.install(conn, vz_server.url)
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="sync mode needs vecplug's query functions"):
            conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', mode => 'sync')")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        conn.execute("INSERT INTO docs VALUES (1, 'managed')")
        assert keys(conn) == [["1"]]


def test_the_worker_and_sync_mode_on_names_that_need_quoting(pg_cluster, db, vz_server, tiny_model_dir):
    import numpy as np

    from pg_vectorizer_helpers import assert_embedded_as, one_torch_thread

    sync_table = sql.Identifier(HOSTILE_SCHEMA, "Sync " + HOSTILE_TABLE)
    insert = "INSERT INTO {} VALUES ('a''; DROP TABLE docs; --', 'first'), ('b', 'second')"
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY)")
        create_hostile_table(conn)
        conn.execute(sql.SQL(insert).format(sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE)))
        report = vecplug_pgvector.Worker(pg_cluster.dsn(db), server_url=vz_server.url).run(once=True)
        assert report.exit_code == 0 and report.embedded == 2
        conn.execute(sql.SQL("CREATE TABLE {} ({} text PRIMARY KEY, {} text)").format(
            sync_table, sql.Identifier("Key; --"), sql.Identifier(HOSTILE_TEXT)))
        conn.execute("SELECT vecplug.create_vectorizer(%s::regclass, %s, %s, mode => 'sync')",
                     [sync_table.as_string(conn), HOSTILE_TEXT, HOSTILE_VECTOR])
        conn.execute(sql.SQL(insert).format(sync_table))  # embedded inside the INSERT
        found = {}
        for name in (HOSTILE_TABLE, "Sync " + HOSTILE_TABLE):
            rows = conn.execute(sql.SQL("SELECT {}, {}::real[] FROM {}").format(
                sql.Identifier("Key; --"), sql.Identifier(HOSTILE_VECTOR),
                sql.Identifier(HOSTILE_SCHEMA, name))).fetchall()
            found[name] = {key: None if vector is None else np.asarray(vector, dtype=np.float32)
                           for key, vector in rows}
        assert conn.execute("SELECT to_regclass('docs') IS NOT NULL").fetchone()[0]
    with one_torch_thread():
        model = vecplug.load_model(str(tiny_model_dir), dtype="float32")
        expected = dict(zip(["a'; DROP TABLE docs; --", "b"], model.embed_documents(["first", "second"])))
    assert_embedded_as(found[HOSTILE_TABLE], expected)
    assert_embedded_as(found["Sync " + HOSTILE_TABLE], expected)


def test_folding_the_activity_log_keeps_the_sums_and_the_last_error(pg_cluster, db):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        vectorizer_id = conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')").fetchone()[0]
        conn.execute("""INSERT INTO vecplug.activity (vectorizer_id, embedded, truncated, error, at) VALUES
                        (%(v)s, 5, 1, NULL, now() - interval '10 minutes'),
                        (%(v)s, 7, 0, 'an old error', now() - interval '9 minutes'),
                        (%(v)s, 3, 2, NULL, now() - interval '8 minutes'),
                        (%(v)s, 1, 0, NULL, now())""", {"v": vectorizer_id})
        before = status(conn)["public.docs.embedding"]
        conn.execute("SELECT vecplug.fold_activity()")
        conn.execute("SELECT vecplug.fold_activity()")  # folding folded rows changes nothing
        after = status(conn)["public.docs.embedding"]
        assert (after["embedded"], after["truncated"]) == (before["embedded"], before["truncated"]) == (16, 3)
        assert (after["last_error"], after["last_error_at"]) == ("an old error", before["last_error_at"])
        assert conn.execute("SELECT count(*) FROM vecplug.activity").fetchone()[0] == 3  # sums, last error, recent
