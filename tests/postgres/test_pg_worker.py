"""Embed on insert, end to end on a real PostgreSQL with a real ``vecplug serve``: vectors, sync mode, updates, errors.

The reference is the Python API: ``model.embed_documents`` of each row's
text, with the same tiny model in float32. The server's own counters
(``GET /metrics``) say how many texts were really embedded.
"""
from __future__ import annotations


import numpy as np
import pytest

psycopg = pytest.importorskip("psycopg")

import vecplug  # noqa: E402
import vecplug_pgvector  # noqa: E402
from pg_docs import assert_same_neighbours, brute_force, held_texts  # noqa: E402
from pg_vectorizer_helpers import (  # noqa: E402
    assert_embedded_as,
    install,
    one_torch_thread,
    queue_rows,
    server_metric,
    status,
    vectors,
)

HUGE = ("All work and no play makes Jack a dull boy. " * 25000)[:1_000_000]


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """The Python API's model: the vectors every row must end with."""
    with one_torch_thread():
        yield vecplug.load_model(str(tiny_model_dir), dtype="float32")


def expected(reference, texts: dict) -> dict:
    with one_torch_thread():
        return dict(zip(texts, reference.embed_documents(list(texts.values()))))


@pytest.fixture(scope="module")
def corpus(pg_cluster, vz_server):
    """Database ``worker_corpus``: table docs (1,000 held texts + NULL, empty and 1 MB texts), created in SQL
    with an async vectorizer and drained by one worker run; yields (dbname, texts by id, report, texts embedded)."""
    name = pg_cluster.create_database("worker_corpus")
    dsn = pg_cluster.dsn(name)
    install(dsn, vz_server.url)
    texts = dict(enumerate(held_texts(1000)))
    texts.update({1001: "", 1002: HUGE})
    with pg_cluster.connect(name) as conn:
        conn.execute("CREATE TABLE docs (id integer PRIMARY KEY, body text, lang text NOT NULL DEFAULT 'en')")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        conn.execute("INSERT INTO docs (id, body) SELECT id, body FROM unnest(%s::int[], %s::text[]) AS t (id, body)",
                     [[*texts, 1000], [*texts.values(), None]])
    before = server_metric(vz_server.url)
    report = vecplug_pgvector.Worker(dsn, server_url=vz_server.url).run(once=True)
    yield name, texts, report, server_metric(vz_server.url) - before
    pg_cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_insert_then_worker_gives_every_row_the_python_apis_vector(pg_cluster, corpus, reference):
    name, texts, report, embedded_by_server = corpus
    assert report.exit_code == 0 and report.embedded == 1002, report
    assert embedded_by_server == 1002  # each row once
    with pg_cluster.connect(name) as conn:
        found = vectors(conn)
        assert found[1000] is None  # NULL text: no vector, and nothing left queued for it
        assert_embedded_as(found, expected(reference, texts))
        assert queue_rows(conn) == []
        row = status(conn)["public.docs.embedding"]
        assert (row["pending"], row["failed"], row["embedded"], row["last_error"]) == (0, 0, 1002, None)
        assert row["truncated"] == 1  # the 1 MB text, cut to the model's max tokens


def test_the_sql_query_on_the_vectorized_table_matches_brute_force(pg_cluster, corpus, reference):
    name, texts, _, _ = corpus
    query = "how do I read a file line by line?"
    with pg_cluster.connect(name) as conn:
        rows = conn.execute("SELECT id, embedding <=> vecplug.embed_query(%s) FROM docs "
                            "ORDER BY embedding <=> vecplug.embed_query(%s) LIMIT 10", [query, query]).fetchall()
        found = vectors(conn)
    ids = [key for key in sorted(found) if found[key] is not None]
    with one_torch_thread():
        query_vector = reference.embed_queries([query])[0]
    top = brute_force(np.stack([found[key] for key in ids]), query_vector, 10)
    assert_same_neighbours([(row[0], row[1]) for row in rows], [(ids[i], distance) for i, distance in top])


def test_sync_mode_gives_the_same_vectors_in_the_statement(pg_cluster, corpus, vz_server, reference):
    """Sync mode embeds each row into the row being written (one request per row with text: no second UPDATE
    fires the table's own UPDATE triggers, issue 19), with the same vectors as the worker."""
    name, texts, _, _ = corpus
    with pg_cluster.connect(name) as conn:
        conn.execute("CREATE TABLE sync_docs (id integer PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('sync_docs', 'body', mode => 'sync')")
        requests = server_metric(vz_server.url, "vecplug_requests_total", 'route="/v1/embeddings"')
        conn.execute("INSERT INTO sync_docs SELECT id, body FROM docs")
        statements = server_metric(vz_server.url, "vecplug_requests_total", 'route="/v1/embeddings"') - requests
        assert statements == 1002  # one per row with text (the NULL row sends nothing)
        async_vectors, sync_vectors = vectors(conn), vectors(conn, "sync_docs")
        assert queue_rows(conn) == []
        assert_embedded_as(sync_vectors, {key: value for key, value in async_vectors.items() if value is not None})
        assert sync_vectors[1000] is None
        conn.execute("UPDATE sync_docs SET body = body || ' (edited)' WHERE id < 3")
        edited = {row[0]: row[1] for row in conn.execute("SELECT id, body FROM sync_docs WHERE id < 3")}
        assert_embedded_as(vectors(conn, "sync_docs"), expected(reference, edited))
        assert status(conn)["public.sync_docs.embedding"]["embedded"] == 1002 + 3


def test_updates_re_embed_only_changed_texts_and_deletes_leave_nothing(pg_cluster, fresh_db, vz_server, reference):
    dsn = pg_cluster.dsn(fresh_db)
    install(dsn, vz_server.url)
    texts = dict(enumerate(held_texts(100)))
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute("CREATE TABLE docs (id integer PRIMARY KEY, body text, lang text NOT NULL DEFAULT 'en')")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        conn.execute("INSERT INTO docs (id, body) SELECT * FROM unnest(%s::int[], %s::text[])",
                     [list(texts), list(texts.values())])
        assert vecplug_pgvector.Worker(dsn, server_url=vz_server.url).run(once=True).embedded == 100
        before = server_metric(vz_server.url)
        conn.execute("UPDATE docs SET lang = 'fr'")
        assert queue_rows(conn) == []
        assert vecplug_pgvector.Worker(dsn, server_url=vz_server.url).run(once=True).embedded == 0
        assert server_metric(vz_server.url) == before  # no text changed: nothing embedded
        conn.execute("UPDATE docs SET body = body || ' (edited)' WHERE id < 10")
        assert all(vectors(conn)[key] is None for key in range(10))  # stale vectors are gone at once
        report = vecplug_pgvector.Worker(dsn, server_url=vz_server.url).run(once=True)
        assert report.embedded == 10 and server_metric(vz_server.url) == before + 10
        texts.update({key: texts[key] + " (edited)" for key in range(10)})
        assert_embedded_as(vectors(conn), expected(reference, texts))
        conn.execute("INSERT INTO vecplug.failed (vectorizer_id, source, pk, queued_at, attempts, error) "
                     "SELECT id, source, '{3}', now(), 5, 'earlier' FROM vecplug.vectorizers")
        conn.execute("UPDATE docs SET body = 'late change' WHERE id IN (3, 4)")
        conn.execute("DELETE FROM docs WHERE id IN (3, 5)")
        assert [row[1] for row in queue_rows(conn)] == [["4"]]  # 3's queued work went with it
        assert conn.execute("SELECT count(*) FROM vecplug.failed").fetchone()[0] == 0
        assert vecplug_pgvector.Worker(dsn, server_url=vz_server.url).run(once=True).embedded == 1
        assert queue_rows(conn) == []


class ChangeTextMidway:
    """A vecplug_before_ingest plugin that, while the worker holds row 1's old text, updates it from elsewhere."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.done = False

    @vecplug.hookimpl
    def vecplug_before_ingest(self, records, target):
        assert target == vecplug.Target("postgres", "public.docs")
        if not self.done and any(record.id == ("1",) for record in records):
            self.done = True
            with psycopg.connect(self.dsn, autocommit=True) as other:
                other.execute("UPDATE docs SET body = 'the new text' WHERE id = 1")
        return None


def test_a_text_updated_while_the_worker_embeds_its_old_version_ends_with_the_new_vector(
        pg_cluster, fresh_db, vz_server, reference, register_plugin):
    dsn = pg_cluster.dsn(fresh_db)
    install(dsn, vz_server.url)
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute("CREATE TABLE docs (id integer PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        conn.execute("INSERT INTO docs VALUES (1, 'the old text'), (2, 'another text')")
        plugin = register_plugin(ChangeTextMidway(dsn))
        report = vecplug_pgvector.Worker(dsn, server_url=vz_server.url).run(once=True)
        assert plugin.done and report.exit_code == 0
        assert report.skipped == 1  # the old text's vector was not written over the new text
        assert_embedded_as(vectors(conn), expected(reference, {1: "the new text", 2: "another text"}))
        assert queue_rows(conn) == []


class Poison:
    """Fails every batch holding a text that starts with POISON, as a broken plugin or input would."""

    @vecplug.hookimpl
    def vecplug_before_ingest(self, records, target):
        bad = [record.id for record in records if record.text.startswith("POISON")]
        if bad:
            raise ValueError(f"poisoned rows {bad}")
        return [vecplug.Record(record.id, record.text.upper(), record.metadata) for record in records]


def test_a_poisoned_row_ends_in_the_failed_table_and_the_others_go_through(
        pg_cluster, fresh_db, vz_server, reference, register_plugin):
    dsn = pg_cluster.dsn(fresh_db)
    install(dsn, vz_server.url)
    texts = dict(enumerate(held_texts(200)))
    texts[77] = "POISON " + texts[77]
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute("CREATE TABLE docs (id integer PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        conn.execute("INSERT INTO docs SELECT * FROM unnest(%s::int[], %s::text[])", [list(texts), list(texts.values())])
        register_plugin(Poison())
        report = vecplug_pgvector.Worker(dsn, server_url=vz_server.url, max_attempts=3, retry_delay=0).run(once=True)
        assert (report.embedded, report.errors, report.failed, report.exit_code) == (199, 3, 1, 1)
        failed = conn.execute("SELECT pk, attempts, error FROM vecplug.failed").fetchall()
        assert failed == [(["77"], 3, "ValueError: poisoned rows [('77',)]")]
        assert queue_rows(conn) == []
        found = vectors(conn)
        assert found[77] is None
        # what a plugin returns is what is embedded (here: upper case)
        assert_embedded_as(found, expected(reference, {key: text.upper() for key, text in texts.items() if key != 77}))
        row = status(conn)["public.docs.embedding"]
        assert (row["failed"], row["embedded"]) == (1, 199) and "poisoned rows" in row["last_error"]
        conn.execute("UPDATE docs SET body = 'cured' WHERE id = 77")  # a new text is queued again ...
        assert vecplug_pgvector.Worker(dsn, server_url=vz_server.url).run(once=True).exit_code == 0
        assert conn.execute("SELECT count(*) FROM vecplug.failed").fetchone()[0] == 0  # ... and no failure any more
        assert_embedded_as(vectors(conn), expected(reference, {77: "CURED"}))
        conn.execute("UPDATE docs SET body = 'POISON again' WHERE id = 78")
        vecplug_pgvector.Worker(dsn, server_url=vz_server.url, max_attempts=1).run(once=True)
        assert conn.execute("SELECT vecplug.retry_failed('docs')").fetchone()[0] == 1
        assert [row[1] for row in queue_rows(conn)] == [["78"]]


def test_a_worker_with_another_model_refuses_to_write(pg_cluster, fresh_db, vz_server, tiny_model_dir,
                                                      tiny_model_no_prompts_dir, reference):
    dsn = pg_cluster.dsn(fresh_db)
    install(dsn, vz_server.url)
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute("CREATE TABLE docs (id integer PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        conn.execute("INSERT INTO docs VALUES (1, 'one'), (2, 'two')")
        with one_torch_thread():
            other = vecplug.load_model(str(tiny_model_no_prompts_dir), dtype="float32")
            refused = vecplug_pgvector.Worker(dsn, other).run(once=True)
        assert refused.exit_code == 1 and refused.embedded == 0
        assert "fingerprint" in refused.refused["public.docs.embedding"]
        assert len(queue_rows(conn)) == 2 and all(value is None for value in vectors(conn).values())
        assert status(conn)["public.docs.embedding"]["last_error"].startswith("worker refused:")
        with one_torch_thread():  # the same weights in this process: accepted
            local = vecplug_pgvector.Worker(dsn, str(tiny_model_dir), dtype="float32").run(once=True)
        assert local.exit_code == 0 and local.embedded == 2
        assert_embedded_as(vectors(conn), expected(reference, {1: "one", 2: "two"}))


def test_the_first_worker_pins_the_model_of_a_vectorizer_created_without_one(pg_cluster, fresh_db, vz_server,
                                                                             tiny_model_no_prompts_dir):
    dsn = pg_cluster.dsn(fresh_db)
    install(dsn, None)  # no server recorded: create_vectorizer cannot know the model
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute("CREATE TABLE docs (id integer PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', dimensions => 32)")
        conn.execute("INSERT INTO docs VALUES (1, 'one')")
        assert vecplug_pgvector.Worker(dsn, server_url=vz_server.url).run(once=True).embedded == 1
        fingerprint = conn.execute("SELECT model_fingerprint FROM vecplug.vectorizers").fetchone()[0]
        from vecplug.client import RemoteModel

        assert fingerprint == RemoteModel(vz_server.url).with_dimensions(32).spec.fingerprint
        conn.execute("INSERT INTO docs VALUES (2, 'two')")
        with one_torch_thread():
            other = vecplug.load_model(str(tiny_model_no_prompts_dir), dtype="float32")
            assert vecplug_pgvector.Worker(dsn, other).run(once=True).refused  # pinned: another model is refused


def test_managed_postgres_install_async_vectorizer_worker_and_search(pg_cluster, managed_db, vz_server, reference):
    """No plpython3u: the core installs, the triggers queue, the worker embeds, search() queries from Python."""
    dsn = pg_cluster.dsn(managed_db, user="app")
    texts = dict(enumerate(held_texts(300)))
    with pg_cluster.connect(managed_db, user="app") as conn:
        report = vecplug_pgvector.install(conn, vz_server.url)
        assert report.query_functions == "not installed"
        conn.execute("CREATE TABLE docs (id integer PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        conn.execute("INSERT INTO docs SELECT * FROM unnest(%s::int[], %s::text[])", [list(texts), list(texts.values())])
        assert vecplug_pgvector.Worker(dsn, server_url=vz_server.url).run(once=True).embedded == 300
        found = vectors(conn)
        assert_embedded_as(found, expected(reference, texts))
        query = "keyword arguments with default values"
        rows = vecplug_pgvector.search(conn, "docs", query, k=5, server_url=vz_server.url)
    with one_torch_thread():
        query_vector = reference.embed_queries([query])[0]
    assert_same_neighbours([(row["id"], row["distance"]) for row in rows],
                           brute_force(np.stack([found[key] for key in range(300)]), query_vector, 5))
