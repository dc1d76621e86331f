"""Chunked vectorizers in sync mode on a real PostgreSQL: the writing statement cuts and embeds through the
server's ``POST /embed_chunks`` (a real ``vecplug serve``), so the chunks are there at COMMIT (issue 21).

The reference is the Python API with the same tiny model in float32: ``model.embed_chunks`` of each
row's text (spans, chunk texts, vectors).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

psycopg = pytest.importorskip("psycopg")

import vecplug  # noqa: E402
import vecplug_pgvector  # noqa: E402
from pg_vectorizer_helpers import install, one_torch_thread, queue_rows, server_metric, status  # noqa: E402
from test_chunked_vectorizer import LONG, MULTIBYTE, NEWLINES, assert_chunks_as, chunks_of  # noqa: E402

_names = itertools.count()


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    with one_torch_thread():
        yield vecplug.load_model(str(tiny_model_dir), dtype="float32")


@pytest.fixture
def db(pg_cluster, fresh_db, vz_server):
    install(pg_cluster.dsn(fresh_db), vz_server.url)
    return fresh_db


def expected_chunks(model, texts: list[str], **options):
    with one_torch_thread():
        return model.embed_chunks(texts, **options)


def test_a_sync_insert_has_its_chunks_at_commit_and_a_shorter_text_leaves_none_behind(pg_cluster, db, model, vz_server):
    texts = {1: LONG[:9000], 2: MULTIBYTE, 3: NEWLINES, 4: "a short one"}
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id bigint PRIMARY KEY, title text, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', mode => 'sync', chunk_tokens => 64)")
        requests_before = server_metric(vz_server.url, "vecplug_requests_total", 'route="/embed_chunks"')
        conn.execute("INSERT INTO docs (id, body) SELECT * FROM unnest(%s::bigint[], %s::text[])",
                     [list(texts), list(texts.values())])
        assert server_metric(vz_server.url, "vecplug_requests_total", 'route="/embed_chunks"') == requests_before + 1
        assert queue_rows(conn) == []  # nothing for a worker
        found = chunks_of(conn)
        expected = dict(zip(texts, expected_chunks(model, list(texts.values()), chunk_tokens=64)))
        for key, text in texts.items():
            assert_chunks_as(found.get(key, []), text, expected[key])
        assert len(found[1]) > 3 and 3 not in found  # newlines only: no chunk
        row = status(conn)["public.docs_chunks.embedding"]
        assert (row["mode"], row["pending"], row["embedded"], row["failed"]) == ("sync", 0, 4, 0)

        conn.execute("UPDATE docs SET body = 'now much shorter' WHERE id = 1")
        conn.execute("UPDATE docs SET body = NULL WHERE id = 2")  # its chunks go
        before = server_metric(vz_server.url, "vecplug_requests_total", 'route="/embed_chunks"')
        conn.execute("UPDATE docs SET title = 'unrelated'")  # costs nothing
        assert server_metric(vz_server.url, "vecplug_requests_total", 'route="/embed_chunks"') == before
        found = chunks_of(conn)
        assert [(index, start, end, chunk) for index, start, end, chunk, _ in found[1]] == [
            (0, 0, 16, "now much shorter")]
        assert 2 not in found and set(found) == {1, 4}
        assert queue_rows(conn) == []


def test_a_rolled_back_sync_write_leaves_no_chunk(pg_cluster, db):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', mode => 'sync', chunk_tokens => 16)")
    with psycopg.connect(pg_cluster.dsn(db)) as conn:  # one transaction
        conn.execute("INSERT INTO docs VALUES (1, 'inside a transaction')")
        assert conn.execute("SELECT count(*) FROM docs_chunks").fetchone()[0] == 1  # seen by the writer at once
        conn.rollback()
    with pg_cluster.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM docs_chunks").fetchone()[0] == 0


def test_sync_with_a_format_embeds_the_filled_passages_and_stores_the_bare_chunks(pg_cluster, db, model):
    body = "Lyon lies where the Rhône meets the Saône. " * 12
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, title text, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', mode => 'sync', chunk_tokens => 24, "
                     "format => E'title: {title}\\n\\n{chunk}')")
        conn.execute("INSERT INTO docs VALUES (1, 'Lyon', %s)", [body])
        conn.execute("UPDATE docs SET title = 'Lugdunum' WHERE id = 1")  # a column the template names: again
        found = chunks_of(conn)[1]
    with one_torch_thread():
        spans = model.embed_chunks([body], chunk_tokens=24)[0].spans
        want = model.embed_documents([f"title: Lugdunum\n\n{body[start:end]}" for start, end in spans])
    assert [(start, end) for _, start, end, _, _ in found] == [tuple(span) for span in spans]
    assert [chunk for *_, chunk, _ in found] == [body[start:end] for start, end in spans]
    np.testing.assert_allclose(np.stack([vector for *_, vector in found]), want, atol=1e-5)


def test_sync_late_chunking(pg_cluster, db, model):
    texts = {1: LONG[:5000], 2: MULTIBYTE}
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', mode => 'sync', chunk_tokens => 64, "
                     "late_chunking => true)")
        conn.execute("INSERT INTO docs SELECT * FROM unnest(%s::int[], %s::text[])", [list(texts), list(texts.values())])
        found = chunks_of(conn)
    expected = dict(zip(texts, expected_chunks(model, list(texts.values()), chunk_tokens=64, late=True)))
    for key, text in texts.items():
        assert_chunks_as(found[key], text, expected[key])


def test_composite_keys_a_key_change_and_a_partitioned_source(pg_cluster, db, model):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (tenant text, at timestamptz, body text, PRIMARY KEY (tenant, at))")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', mode => 'sync', chunk_tokens => 16)")
        conn.execute("SET TimeZone = 'America/Denver'; SET DateStyle = 'SQL, DMY'")  # keys never depend on these
        conn.execute("INSERT INTO docs VALUES ('a b', '2024-03-01 10:00+01', 'first tenant''s text'), "
                     "('ü', '2024-03-01 10:00+01', 'second')")
        conn.execute("UPDATE docs SET tenant = 'c', body = 'moved and changed' WHERE tenant = 'a b'")
        assert conn.execute("SELECT tenant, chunk FROM docs_chunks ORDER BY tenant").fetchall() == [
            ("c", "moved and changed"), ("ü", "second")]

        conn.execute("CREATE TABLE parts (id int, region text, body text, PRIMARY KEY (id, region)) "
                     "PARTITION BY LIST (region)")
        conn.execute("CREATE TABLE parts_eu PARTITION OF parts FOR VALUES IN ('eu')")
        conn.execute("SELECT vecplug.create_vectorizer('parts', 'body', mode => 'sync', chunk_tokens => 16)")
        conn.execute("CREATE TABLE parts_us PARTITION OF parts FOR VALUES IN ('us')")  # attached later
        conn.execute("INSERT INTO parts VALUES (1, 'eu', 'through the parent'), (2, 'us', 'two')")
        conn.execute("INSERT INTO parts_us VALUES (3, 'us', 'straight into a partition')")
        conn.execute("UPDATE parts SET body = 'changed' WHERE id = 2")
        assert conn.execute("SELECT id, chunk FROM parts_chunks ORDER BY id").fetchall() == [
            (1, "through the parent"), (2, "changed"), (3, "straight into a partition")]
        assert queue_rows(conn) == []


def test_server_down_queues_the_rows_or_fails_the_statement_as_on_error_says(pg_cluster, db, model):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE live (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('live', 'body', mode => 'sync', chunk_tokens => 16)")
        conn.execute("CREATE TABLE strict (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('strict', 'body', mode => 'sync', chunk_tokens => 16, "
                     "on_error => 'raise')")
        conn.execute("INSERT INTO live VALUES (1, 'embedded while the server ran')")
        server_url = conn.execute("SELECT value FROM vecplug.settings WHERE name = 'server_url'").fetchone()[0]
        conn.execute("UPDATE vecplug.settings SET value = 'http://127.0.0.1:9' WHERE name = 'server_url'")  # down

        notices = []
        conn.add_notice_handler(lambda notice: notices.append(notice.message_primary))
        conn.execute("INSERT INTO live VALUES (2, 'written while the server is down'), (3, 'this one too')")
        conn.execute("UPDATE live SET body = 'changed while down' WHERE id = 1")  # the write goes through
        assert len([note for note in notices if "could not embed rows of public.live_chunks.embedding" in note]) == 2
        assert sorted(key for _, key, _ in queue_rows(conn)) == [["1"], ["2"], ["3"]]
        assert conn.execute("SELECT id, chunk FROM live_chunks").fetchall() == [  # the old chunks, as in async mode
            (1, "embedded while the server ran")]
        assert "could not connect to the embedding server" in status(conn)["public.live_chunks.embedding"]["last_error"]
        with pytest.raises(psycopg.Error, match="could not connect to the embedding server at http://127.0.0.1:9"):
            conn.execute("INSERT INTO strict VALUES (1, 'must fail')")
        assert conn.execute("SELECT count(*) FROM strict").fetchone()[0] == 0

        conn.execute("UPDATE vecplug.settings SET value = %s WHERE name = 'server_url'", [server_url])
    with one_torch_thread():
        report = vecplug_pgvector.Worker(pg_cluster.dsn(db), model=model, show_progress=False).run(once=True)
    assert report.embedded == 3, str(report)
    with pg_cluster.connect(db) as conn:
        assert conn.execute("SELECT id, chunk FROM live_chunks ORDER BY id").fetchall() == [
            (1, "changed while down"), (2, "written while the server is down"), (3, "this one too")]
        assert queue_rows(conn) == []


def test_a_server_of_another_model_is_refused_not_written(pg_cluster, db):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', mode => 'sync', chunk_tokens => 16, "
                     "on_error => 'raise')")
        conn.execute("UPDATE vecplug.vectorizers SET model_fingerprint = 'another-model'")  # as if the server changed
        with pytest.raises(psycopg.Error, match="not this vectorizer's"):
            conn.execute("INSERT INTO docs VALUES (1, 'text')")
        assert conn.execute("SELECT count(*) FROM docs_chunks").fetchone()[0] == 0


TRAP = """
    CREATE TABLE m.ran_as (who name, was_super boolean);
    GRANT INSERT ON m.ran_as TO PUBLIC;
    CREATE FUNCTION m.escalate_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO m.ran_as SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user;
        IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            EXECUTE format('ALTER ROLE %I SUPERUSER', '{role}');
        END IF;
        RETURN coalesce(NEW, OLD);
    END $$;
"""


@pytest.fixture
def roles(pg_cluster, fresh_db, vz_server):
    """(superuser dsn, mallory's dsn, mallory, writer's dsn, writer): vecplug installed by the superuser,
    schema m of mallory's with a trap that makes mallory a superuser whenever it runs as one."""
    suffix = f"{next(_names)}_{fresh_db[-12:]}"
    mallory, writer = f"mallory_s{suffix}", f"writer_s{suffix}"
    for role in (mallory, writer):
        pg_cluster.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
    dsn = pg_cluster.dsn(fresh_db)
    install(dsn, vz_server.url)
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute(f'CREATE SCHEMA m AUTHORIZATION "{mallory}"')
        conn.execute(f'GRANT USAGE ON SCHEMA m TO "{writer}"')
    with pg_cluster.connect(fresh_db, user=mallory) as conn:
        conn.execute(TRAP.replace("{role}", mallory))
    try:
        yield dsn, pg_cluster.dsn(fresh_db, user=mallory), mallory, pg_cluster.dsn(fresh_db, user=writer), writer
    finally:
        with pg_cluster.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{fresh_db}" WITH (FORCE)')
            for role in (mallory, writer):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_the_destination_is_written_with_the_writers_rights_never_vecplugs(roles):
    dsn, mallory_dsn, mallory, writer_dsn, writer = roles
    with psycopg.connect(mallory_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE m.docs (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('m.docs', 'body', mode => 'sync', chunk_tokens => 16)")
        conn.execute("CREATE TRIGGER trap BEFORE INSERT OR DELETE ON m.docs_chunks FOR EACH ROW "
                     "EXECUTE FUNCTION m.escalate_trigger()")
        conn.execute(f'GRANT SELECT, INSERT, UPDATE ON m.docs TO "{writer}"')  # the source, not its chunks
        conn.execute("INSERT INTO m.docs VALUES (1, 'by mallory')")
        conn.execute("UPDATE m.docs SET body = 'by mallory, changed' WHERE id = 1")
    with psycopg.connect(writer_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="docs_chunks"):
            conn.execute("INSERT INTO m.docs VALUES (2, 'by the writer')")
    with psycopg.connect(mallory_dsn, autocommit=True) as conn:
        conn.execute(f'GRANT SELECT, INSERT, DELETE ON m.docs_chunks TO "{writer}"')
    with psycopg.connect(writer_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO m.docs VALUES (2, 'by the writer')")
        conn.execute("UPDATE m.docs SET body = 'by the writer, changed' WHERE id = 2")
        # the privileged half only asks the server: it writes no table, and no one can hand it a table
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM vecplug._embed_chunks_remote(ARRAY['x'], 16, 0, false, 64, NULL, "
                         "'{\"server_url\": \"http://127.0.0.1:9\"}')")
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT id, chunk FROM m.docs_chunks ORDER BY id").fetchall() == [
            (1, "by mallory, changed"), (2, "by the writer, changed")]
        ran_as = conn.execute("SELECT DISTINCT who::text, was_super FROM m.ran_as ORDER BY 1").fetchall()
        assert ran_as == sorted([(mallory, False), (writer, False)])
        assert not conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [mallory]).fetchone()[0]


# -- re-embedding a chunked vectorizer: a shadow destination table, swapped in at the end --------------------------
@pytest.fixture(scope="module")
def model_b(tmp_path_factory):
    from vecplug.testing import write_model

    directory = write_model(tmp_path_factory.mktemp("models") / "tiny-b", shape="tiny", seed=3)
    with one_torch_thread():
        yield vecplug.load_model(str(directory), dtype="float32", dimensions=32)


def drain(pg_cluster, db, model):
    with one_torch_thread():
        return vecplug_pgvector.Worker(pg_cluster.dsn(db), model=model, show_progress=False).run(once=True)


def test_reembed_rechunks_every_row_into_a_shadow_table_and_swaps_it_in(pg_cluster, db, model, model_b):
    texts = {1: LONG[:3000], 2: MULTIBYTE, 3: "short", 4: NEWLINES}
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO docs SELECT * FROM unnest(%s::int[], %s::text[])", [list(texts), list(texts.values())])
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', chunk_tokens => 48)")
    assert drain(pg_cluster, db, model).embedded == 4
    with pg_cluster.connect(db) as conn:  # begun from SQL: queries and writers go on meanwhile
        shadow = conn.execute("SELECT vecplug.begin_reembed('docs', 'embedding', %s, %s, 32)",
                              [model_b.spec.name, model_b.spec.fingerprint]).fetchone()[0]
        assert shadow == "docs_chunks_vecplug_next"
        assert status(conn)["public.docs_chunks.embedding"]["state"] == "re-embedding"
        conn.execute("UPDATE docs SET body = 'changed during the re-embedding' WHERE id = 3")
        conn.execute("DELETE FROM docs WHERE id = 2")
        assert drain(pg_cluster, db, model).embedded == 1  # the old model's worker keeps the old table current
        old = chunks_of(conn)
        assert old[3][0][3] == "changed during the re-embedding" and len(old[1][0][4]) == 64
    texts[3] = "changed during the re-embedding"
    del texts[2]
    with one_torch_thread():
        report = vecplug_pgvector.reembed(pg_cluster.dsn(db), "docs", model_b, dimensions=32, show_progress=False)
    assert report.queued == 0 and report.embedded == 3, str(report)  # resumed what SQL began
    expected = dict(zip(texts, expected_chunks(model_b, list(texts.values()), chunk_tokens=48)))
    with pg_cluster.connect(db) as conn:
        found = chunks_of(conn)
        for key, text in texts.items():
            assert_chunks_as(found.get(key, []), text, expected[key])
        assert set(found) == {1, 3}
        row = status(conn)["public.docs_chunks.embedding"]
        assert (row["model"], row["dimensions"], row["state"], row["pending"]) == (model_b.spec.name, 32, "ok", 0)
        assert conn.execute("SELECT to_regclass('docs_chunks_vecplug_next')").fetchone()[0] is None
        assert conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                            "'docs_chunks'::regclass AND attname = 'embedding'").fetchone()[0] == "vector(32)"
        assert "vecplug_text_md5" not in [name for (name,) in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'docs_chunks'::regclass AND NOT attisdropped")]
        assert conn.execute("SELECT count(*) FROM docs_chunks WHERE chunk_index < 0").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'docs_chunks' "
                            "AND indexdef LIKE '%hnsw%'").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM docs_chunks_view").fetchone()[0] == sum(map(len, found.values()))
        conn.execute("INSERT INTO docs VALUES (5, 'after the swap')")  # the triggers serve the new table
        conn.execute("DELETE FROM docs WHERE id = 1")
        assert [key for _, key, _ in queue_rows(conn)] == [["5"]]
    assert drain(pg_cluster, db, model_b).embedded == 1
    with pg_cluster.connect(db) as conn:
        assert set(chunks_of(conn)) == {3, 5}


def test_cancel_reembed_of_a_chunked_vectorizer_drops_the_shadow_table(pg_cluster, db, model_b):
    with pg_cluster.connect(db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', chunk_tokens => 16)")
        conn.execute("SELECT vecplug.begin_reembed('docs', 'embedding', 'b', 'f', 32)")
        assert conn.execute("SELECT to_regclass('docs_chunks_vecplug_next')").fetchone()[0] is not None
        conn.execute("SELECT vecplug.cancel_reembed('docs', 'embedding')")
        assert conn.execute("SELECT to_regclass('docs_chunks_vecplug_next')").fetchone()[0] is None
        assert status(conn)["public.docs_chunks.embedding"]["state"] == "ok"
        conn.execute("SELECT vecplug.begin_reembed('docs', 'embedding', 'b', 'f', 32)")
        conn.execute("SELECT vecplug.drop_vectorizer('docs')")  # the shadow table goes with it
        assert conn.execute("SELECT to_regclass('docs_chunks_vecplug_next')").fetchone()[0] is None
