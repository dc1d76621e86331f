"""The SQL query functions on a real PostgreSQL calling a real ``vecplug serve`` (tiny model, float32, API key).

The table holds 1,000 held texts embedded by the Python API; the SQL
functions must agree with it, use the index, and cost one request per
query, which the server's own counters (GET /metrics) show.
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
import urllib.request

import numpy as np
import pytest

psycopg = pytest.importorskip("psycopg")
pytest.importorskip("fastapi")

import vecplug  # noqa: E402
import vecplug_pgvector  # noqa: E402
from pg_docs import assert_same_neighbours, brute_force, create_docs_table, held_texts  # noqa: E402
from vecplug.testing import running_server  # noqa: E402

API_KEY = "pg-test-key-0123456789"
TOP_K = "SELECT id, embedding <=> vecplug.embed_query(%s) AS distance FROM docs " \
        "ORDER BY embedding <=> vecplug.embed_query(%s) LIMIT 10"


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with running_server(tiny_model_dir, "--dtype", "float32", env={**os.environ, "VECPLUG_API_KEY": API_KEY}) as served:
        yield served


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return vecplug.load_model(str(tiny_model_dir), dtype="float32")


@pytest.fixture(scope="module")
def db(pg_cluster, server, model):
    """Database ``query_docs``: vecplug installed against the server, table ``docs`` of 1,000 texts.

    Yields (dbname, install report, vectors).
    """
    name = pg_cluster.create_database("query_docs")
    with pg_cluster.connect(name) as conn:
        report = vecplug_pgvector.install(conn, server.url, api_key=API_KEY, connect_timeout=3, read_timeout=120)
        vectors = create_docs_table(conn, model, held_texts(1000))
        conn.execute("GRANT SELECT ON docs TO reader")
    yield name, report, vectors
    pg_cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(pg_cluster, db):
    """Change vecplug.settings for one test (as the owner); the old values come back afterwards."""
    with pg_cluster.connect(db[0]) as conn:
        saved = dict(conn.execute("SELECT name, value FROM vecplug.settings").fetchall())

        def change(**values):
            for key, value in values.items():
                conn.execute("UPDATE vecplug.settings SET value = %s WHERE name = %s", [value, key])

        yield change
        change(**saved)


def counters(server) -> dict[str, float]:
    """The server's request and text counters, from its Prometheus /metrics."""
    request = urllib.request.Request(server.url + "/metrics", headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    found = {"texts": float(re.search(r"^vecplug_texts_total (\S+)$", text, flags=re.M).group(1))}
    for route in ("/v1/embeddings", "/v1/models"):
        match = re.search(rf'^vecplug_requests_total\{{route="{re.escape(route)}",status="200"\}} (\S+)$', text,
                          flags=re.M)
        found[route] = float(match.group(1)) if match else 0.0
    return found


def vector(value) -> np.ndarray:
    return np.array(value.strip("[]").split(","), dtype=np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_install_recorded_the_served_model(db, model):
    _, report, _ = db
    assert report.query_functions == "installed" and report.notes == []
    assert report.server.fingerprint == model.spec.fingerprint and report.server.dimensions == 64


def test_embed_document_and_query_match_the_python_api(pg_cluster, db, model):
    texts = held_texts(1000)[:20]
    with pg_cluster.connect(db[0]) as conn:
        documents = [vector(conn.execute("SELECT vecplug.embed_document(%s)::text", [t]).fetchone()[0]) for t in texts]
        batch = conn.execute("SELECT vecplug.embed_documents(%s)::text[]", [texts]).fetchone()[0]
        queries = [vector(conn.execute("SELECT vecplug.embed_query(%s)::text", [t]).fetchone()[0]) for t in texts[:5]]
    expected_documents = model.embed_documents(texts)
    expected_queries = model.embed_queries(texts[:5])
    for index, text in enumerate(texts):
        assert cosine(documents[index], expected_documents[index]) >= 0.9999, text
        assert cosine(vector(batch[index]), documents[index]) >= 0.9999
    for index in range(5):
        assert cosine(queries[index], expected_queries[index]) >= 0.9999
        assert cosine(queries[index], expected_documents[index]) < 0.9999  # the query prompt, not the document one


def test_null_empty_and_one_megabyte_texts(pg_cluster, db, model):
    huge = ("ModernBERT reads long documents. " * 40000)[:1_000_000]
    with pg_cluster.connect(db[0]) as conn:
        assert conn.execute("SELECT vecplug.embed_document(NULL), vecplug.embed_query(NULL)").fetchone() == (None,
                                                                                                            None)
        empty, long = conn.execute("SELECT vecplug.embed_document(''), vecplug.embed_document(%s)",
                                   [huge]).fetchone()
        mixed = conn.execute("SELECT vecplug.embed_documents(ARRAY['a', NULL, ''])::text[]").fetchone()[0]
    expected = model.embed_documents(["", huge])
    assert cosine(vector(str(empty)), expected[0]) >= 0.9999
    assert cosine(vector(str(long)), expected[1]) >= 0.9999  # cut at the model's max tokens, like the Python API
    assert mixed[1] is None and cosine(vector(mixed[2]), expected[0]) >= 0.9999


@pytest.mark.parametrize("query", ["how do I read a file line by line?", "class inheritance and super()"])
def test_the_index_scan_embeds_once_and_finds_the_brute_force_rows(pg_cluster, db, server, model, query):
    name, _, vectors = db
    with pg_cluster.connect(name) as conn:
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + TOP_K, [query, query]))
        assert "Index Scan using docs_embedding_idx on docs" in plan, plan
        assert "Order By: (embedding <=> vecplug.embed_query(" in plan, plan
        before = counters(server)
        rows = conn.execute(TOP_K, [query, query]).fetchall()
        after = counters(server)
    assert after["/v1/embeddings"] - before["/v1/embeddings"] == 1
    assert after["texts"] - before["texts"] == 1  # one text embedded for a query over 1,000 rows
    assert_same_neighbours(rows, brute_force(vectors, model.embed_queries([query])[0], 10))


def test_an_exact_scan_also_costs_one_request(pg_cluster, db, server, model):
    """Without the index, the distance is computed per row; the per-process cache still asks the server once."""
    name, _, vectors = db
    query = "formatted string literals"
    with pg_cluster.connect(name) as conn:
        conn.execute("SET enable_indexscan = off")
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + TOP_K, [query, query]))
        assert "Seq Scan on docs" in plan, plan
        before = counters(server)
        rows = conn.execute(TOP_K, [query, query]).fetchall()
        after = counters(server)
    assert after["/v1/embeddings"] - before["/v1/embeddings"] == 1 and after["texts"] - before["texts"] == 1
    assert_same_neighbours(rows, brute_force(vectors, model.embed_queries([query])[0], 10))


def test_parallel_workers_can_run_the_functions(pg_cluster, db, server):
    """PARALLEL SAFE is true: a parallel worker (its own process, its own cache) embeds the same vector."""
    with pg_cluster.connect(db[0]) as conn:
        serial = conn.execute("SELECT vecplug.embed_query('parallel text')::text").fetchone()[0]
        conn.execute("SET force_parallel_mode = on")
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN SELECT vecplug.embed_query('parallel text')"))
        assert "Single Copy: true" in plan, plan
        before = counters(server)
        in_worker = conn.execute("SELECT vecplug.embed_query('parallel text')::text").fetchone()[0]
        after = counters(server)
    assert in_worker == serial
    assert after["/v1/embeddings"] - before["/v1/embeddings"] == 1  # the worker asked; the leader had it cached


def test_a_non_owner_role_can_embed(pg_cluster, db):
    with pg_cluster.connect(db[0]) as owner:
        expected = owner.execute("SELECT vecplug.embed_query('who may embed?')::text").fetchone()[0]
    with pg_cluster.connect(db[0], user="reader") as conn:
        assert conn.execute("SELECT vecplug.embed_query('who may embed?')::text").fetchone()[0] == expected
        assert len(conn.execute(TOP_K, ["who may embed?"] * 2).fetchall()) == 10
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE vecplug.settings SET value = 'http://127.0.0.1:1' WHERE name = 'server_url'")


def test_the_model_argument(pg_cluster, db, server, model):
    served = model.name
    with pg_cluster.connect(db[0]) as conn:
        named = conn.execute("SELECT vecplug.embed_query('x', model => %s)::text", [served]).fetchone()[0]
        assert named == conn.execute("SELECT vecplug.embed_query('x')::text").fetchone()[0]
        assert conn.execute("SELECT vector_dims(vecplug.embed_query('x', dimensions => 64))").fetchone()[0] == 64
        with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
            conn.execute("SELECT vecplug.embed_query('x', model => 'nomic-ai/modernbert-embed-large')")
        assert "does not serve model 'nomic-ai/modernbert-embed-large'" in str(refused.value)
        assert f"It serves: {served}" in str(refused.value)
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="cannot give 128 dimensions"):
            conn.execute("SELECT vecplug.embed_query('x', dimensions => 128)")
        # a checkpoint vecplug does not know may be cut (its spec says any_dimensions), as in Python
        assert model.spec.any_dimensions
        assert conn.execute("SELECT vector_dims(vecplug.embed_query('x', dimensions => 32))").fetchone()[0] == 32


def test_server_down_is_a_clear_error_not_a_hang(pg_cluster, db, settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    settings(server_url=closed)
    with pg_cluster.connect(db[0]) as conn:
        started = time.monotonic()
        with pytest.raises(psycopg.errors.ExternalRoutineException) as failed:
            conn.execute("SELECT vecplug.embed_query('anyone there?')")
    assert time.monotonic() - started < 5
    message = str(failed.value)
    assert f"could not connect to the embedding server at {closed}" in message
    assert "vecplug serve" in failed.value.diag.message_hint


@contextlib.contextmanager
def silent_server():
    """Accepts connections and never answers: a hung embedding server."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


def test_a_hung_server_times_out(pg_cluster, db, settings):
    with silent_server() as url:
        settings(server_url=url, read_timeout="1")
        with pg_cluster.connect(db[0]) as conn:
            started = time.monotonic()
            with pytest.raises(psycopg.errors.ExternalRoutineException,
                               match=rf"could not get an answer from the embedding server at {url} within 1 s"):
                conn.execute("SELECT vecplug.embed_query('hello?')")
            assert time.monotonic() - started < 10


def test_a_wrong_api_key(pg_cluster, db, settings):
    settings(api_key="WRONG-KEY-4321")
    with pg_cluster.connect(db[0]) as conn:
        with pytest.raises(psycopg.errors.ExternalRoutineException) as failed:
            conn.execute("SELECT vecplug.embed_query('let me in')")
    assert "answered GET /v1/models with HTTP 401" in str(failed.value)
    assert "API key" in failed.value.diag.message_hint
    assert "WRONG-KEY-4321" not in str(failed.value) + (failed.value.diag.message_hint or "")


def test_a_column_of_other_dimensions_is_pgvectors_clear_error(pg_cluster, db):
    with pg_cluster.connect(db[0]) as conn:
        conn.execute("CREATE TEMP TABLE small (embedding vector(3))")
        conn.execute("INSERT INTO small VALUES ('[1,2,3]')")
        with pytest.raises(psycopg.errors.DataException, match="different vector dimensions 3 and 64"):
            conn.execute("SELECT embedding <=> vecplug.embed_query('x') FROM small")


def test_bad_settings_are_named(pg_cluster, db, settings):
    settings(read_timeout="soon")
    with pg_cluster.connect(db[0]) as conn:
        with pytest.raises(psycopg.errors.ExternalRoutineException, match="the read_timeout setting 'soon'"):
            conn.execute("SELECT vecplug.embed_query('x')")
    settings(read_timeout="60", server_url=None)
    with pg_cluster.connect(db[0]) as conn:
        with pytest.raises(psycopg.errors.ExternalRoutineException, match="no embedding server is configured"):
            conn.execute("SELECT vecplug.embed_query('x')")


def test_a_server_with_another_model_is_refused(pg_cluster, db, settings, tiny_model_no_prompts_dir):
    with running_server(tiny_model_no_prompts_dir, "--dtype", "float32",
                        env={**os.environ, "VECPLUG_API_KEY": API_KEY}) as other:
        settings(server_url=other.url)
        with pg_cluster.connect(db[0]) as conn:
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="not the model vecplug was installed with"):
                conn.execute("SELECT vecplug.embed_query('x')")
            other_name = str(tiny_model_no_prompts_dir)
            chosen = conn.execute("SELECT vector_dims(vecplug.embed_query('x', model => %s))", [other_name])
            assert chosen.fetchone()[0] == 64  # naming the model is the caller's explicit choice


def test_search_through_the_server(pg_cluster, db, server, model):
    name, _, vectors = db
    with pg_cluster.connect(name) as conn:
        remote = vecplug_pgvector.search(conn, "docs", "iterators", k=5, server_url=server.url, api_key=API_KEY)
        local = vecplug_pgvector.search(conn, "docs", "iterators", k=5, model=model)
        with pytest.raises(vecplug.ModelMismatchError, match="not 'lightonai/modernbert-embed-large'"):
            vecplug_pgvector.search(conn, "docs", "x", server_url=server.url, api_key=API_KEY,
                                    model="lightonai/modernbert-embed-large")
        with pytest.raises(vecplug.ServerError, match="answered GET /v1/models with 401"):
            vecplug_pgvector.search(conn, "docs", "x", server_url=server.url, api_key="WRONG")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(vecplug.ServerUnavailableError, match=f"the vecplug server at {closed} did not answer"):
            vecplug_pgvector.search(conn, "docs", "x", server_url=closed)
        assert time.monotonic() - started < 15
    assert [row["id"] for row in remote] == [row["id"] for row in local]
    assert_same_neighbours([(row["id"], row["distance"]) for row in remote],
                           brute_force(vectors, model.embed_queries(["iterators"])[0], 5))
