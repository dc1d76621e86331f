"""Changing a vectorizer's model without downtime: ``vecplug pg reembed`` on a real PostgreSQL with two servers.

Model A (the tiny model, 64 dims) fills the column; model B (other weights,
cut to 32 dims) replaces it: every row ends with B's vector of its current
text, queries read A's vectors until the swap, and afterwards only B's
workers may write.
"""
from __future__ import annotations

import subprocess

import pytest

psycopg = pytest.importorskip("psycopg")

import vecplug  # noqa: E402
import vecplug_pgvector  # noqa: E402
from pg_docs import held_texts  # noqa: E402
from pg_vectorizer_helpers import (  # noqa: E402
    VECPLUG_CLI,
    assert_embedded_as,
    embedding_server,
    install,
    one_torch_thread,
    queue_rows,
    run_worker_once,
    server_env,
    status,
    vectors,
)


@pytest.fixture(scope="module")
def model_b_dir(tmp_path_factory):
    from vecplug.testing import write_model

    return write_model(tmp_path_factory.mktemp("models") / "tiny-b", shape="tiny", seed=3)


@pytest.fixture(scope="module")
def server_b(model_b_dir):
    with embedding_server(model_b_dir) as server:
        yield server


@pytest.fixture(scope="module")
def model_b(model_b_dir):
    with one_torch_thread():
        yield vecplug.load_model(str(model_b_dir), dtype="float32", dimensions=32)


@pytest.fixture
def docs(pg_cluster, fresh_db, vz_server):
    """150 rows embedded by model A through the worker; yields (dsn, texts by id)."""
    dsn = pg_cluster.dsn(fresh_db)
    install(dsn, vz_server.url)
    texts = dict(enumerate(held_texts(150)))
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute("CREATE TABLE docs (id integer PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
        conn.execute("INSERT INTO docs SELECT * FROM unnest(%s::int[], %s::text[])", [list(texts), list(texts.values())])
    assert vecplug_pgvector.Worker(dsn, server_url=vz_server.url).run(once=True).embedded == 150
    return dsn, texts


def embedded_with(model, texts: dict) -> dict:
    with one_torch_thread():
        return dict(zip(texts, model.embed_documents(list(texts.values()))))


class MeanwhileElsewhere:
    """During the re-embedding's second batch: read the live column, and change a text already re-embedded."""

    def __init__(self, dsn):
        self.dsn = dsn
        self.batches = 0
        self.live_vectors = None

    @vecplug.hookimpl
    def vecplug_before_ingest(self, records, target):
        self.batches += 1
        if self.batches == 2:
            with psycopg.connect(self.dsn, autocommit=True) as other:
                self.live_vectors = vectors(other)
                other.execute("UPDATE docs SET body = 'changed during the re-embedding' WHERE id = 0")
        return None


def test_reembed_swaps_in_the_new_models_vectors_while_queries_keep_the_old_ones(
        pg_cluster, docs, vz_server, server_b, model_b, register_plugin):
    dsn, texts = docs
    with psycopg.connect(dsn, autocommit=True) as conn:
        before = vectors(conn)
        conn.execute("INSERT INTO docs VALUES (500, 'inserted before the re-embedding')")  # queued for A's worker
        plugin = register_plugin(MeanwhileElsewhere(dsn))
        report = vecplug_pgvector.reembed(dsn, "public.docs.embedding", server_url=server_b.url, dimensions=32,
                                          batch_size=40)
        assert report.dimensions == 32 and report.queued == 0 and report.embedded >= 151
        assert plugin.live_vectors is not None
        assert all(plugin.live_vectors[key] is not None and (plugin.live_vectors[key] == before[key]).all()
                   for key in texts if key != 0)  # queries read model A's vectors while B's were being made

        texts.update({0: "changed during the re-embedding", 500: "inserted before the re-embedding"})
        assert_embedded_as(vectors(conn), embedded_with(model_b, texts))
        columns = conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                               "WHERE attrelid = 'docs'::regclass AND attnum > 0 AND NOT attisdropped").fetchall()
        assert columns == [("id", "integer"), ("body", "text"), ("embedding", "vector(32)")]
        index = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'docs' "
                             "AND indexname <> 'docs_pkey'").fetchall()
        assert index == [("docs_embedding_idx",
                          "CREATE INDEX docs_embedding_idx ON public.docs USING hnsw (embedding vector_cosine_ops)")]
        assert conn.execute("SELECT model_fingerprint, dimensions, next_model FROM vecplug.vectorizers").fetchone() \
            == (model_b.spec.fingerprint, 32, None)
        assert queue_rows(conn) == []
        assert status(conn)["public.docs.embedding"]["model"] == report.model
        rows = vecplug_pgvector.search(conn, "docs", "string formatting", k=3, model=model_b)  # the record agrees
        assert len(rows) == 3

        refused = run_worker_once(dsn, "--server-url", vz_server.url)  # model A may not write any more
        assert refused.returncode == 1 and "refused" in refused.stderr
        conn.execute("INSERT INTO docs VALUES (600, 'after the swap')")
        accepted = run_worker_once(dsn, "--server-url", server_b.url)
        assert accepted.returncode == 0, accepted.stderr[-2000:]
        assert_embedded_as(vectors(conn), embedded_with(model_b, {600: "after the swap"}))


def test_reembed_from_the_command_line_resumes_what_sql_began(pg_cluster, docs, server_b, model_b):
    dsn, texts = docs
    with psycopg.connect(dsn, autocommit=True) as conn:
        shadow = conn.execute("SELECT vecplug.begin_reembed('docs', 'embedding', %s, %s, 32)",
                              [model_b.spec.name, model_b.spec.fingerprint]).fetchone()[0]
        assert shadow == "embedding_vecplug_next"
        conn.execute("UPDATE docs SET body = 'edited' WHERE id = 7")
        assert conn.execute("SELECT embedding IS NULL, embedding_vecplug_next IS NULL FROM docs WHERE id = 7"
                            ).fetchone() == (True, True)
        with pytest.raises(psycopg.Error, match="rows of public.docs have no vector in embedding_vecplug_next yet"):
            conn.execute("SELECT vecplug.finish_reembed('docs', 'embedding')")
        with pytest.raises(psycopg.Error, match="already being re-embedded"):
            conn.execute("SELECT vecplug.begin_reembed('docs', 'embedding', 'other', 'f', 16)")
    result = subprocess.run([*VECPLUG_CLI, "pg", "reembed", "--dsn", dsn, "--vectorizer", "docs",
                             "--server-url", server_b.url, "--dimensions", "32"],
                            capture_output=True, text=True, timeout=300, env=server_env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert "public.docs.embedding now uses" in result.stdout and "32 dimensions" in result.stdout
    texts[7] = "edited"
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert_embedded_as(vectors(conn), embedded_with(model_b, texts))


def test_cancel_reembed_and_bad_requests(pg_cluster, docs, server_b, model_b):
    dsn, _ = docs
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT vecplug.begin_reembed('docs', 'embedding', %s, %s, 32)",
                     [model_b.spec.name, model_b.spec.fingerprint])
        conn.execute("SELECT vecplug.cancel_reembed('docs', 'embedding')")
        names = [row[0] for row in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'docs'::regclass "
                                                "AND attnum > 0 AND NOT attisdropped")]
        assert names == ["id", "body", "embedding"]
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'docs'::regclass").fetchone()[0] == 5
    both = subprocess.run([*VECPLUG_CLI, "pg", "reembed", "--dsn", dsn, "--vectorizer", "docs"],
                          capture_output=True, text=True, timeout=60, env=server_env())
    assert both.returncode == 2 and "--model NAME or --server-url URL" in both.stderr
    unknown = subprocess.run([*VECPLUG_CLI, "pg", "reembed", "--dsn", dsn, "--vectorizer", "nope", "--server-url",
                              server_b.url], capture_output=True, text=True, timeout=60, env=server_env())
    assert unknown.returncode == 1 and "no vectorizer 'nope'" in unknown.stderr
