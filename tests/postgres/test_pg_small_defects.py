"""Issue 19's smaller PostgreSQL defects, each against a real PostgreSQL and a real ``vecplug serve``.

- defect 6: ``vecplug.embed_documents`` of more texts (or bytes) than one
  request may carry is split under the server's limits, in order, NULLs kept,
  the per-session cache still working; an error without a hint shows none
  (not "HINT: None").
- defect 8: ``vecplug pg worker --server-url URL`` (and ``reembed``) use the
  API key ``vecplug pg install`` stored when none is given; a server outage
  mid-batch is logged as the server being unavailable, its message once.
- defect 10: the README's EXPLAIN claim, install.sql's advice for the API key,
  ``uninstall`` naming vectorizers rather than their triggers, and the MiniLM
  plugin counting truncated texts.
"""
from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

psycopg = pytest.importorskip("psycopg")

import vecplug  # noqa: E402
import vecplug_pgvector  # noqa: E402
from pg_docs import held_texts  # noqa: E402
from pg_vectorizer_helpers import (  # noqa: E402
    VECPLUG_CLI,
    WorkerProcess,
    assert_embedded_as,
    install,
    one_torch_thread,
    queue_rows,
    server_env,
    server_metric,
    status,
    vectors,
    wait_for,
)

API_KEY = "small-defects-key-0123456789"
EMBEDDINGS_OK = 'route="/v1/embeddings",status="200"'


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """The Python API's model: the vectors the SQL functions must return."""
    with one_torch_thread():
        yield vecplug.load_model(str(tiny_model_dir), dtype="float32")


def cosines(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))


def requests_answered(url: str, having: str = EMBEDDINGS_OK) -> float:
    return server_metric(url, "vecplug_requests_total", having)


# -- defect 6: embed_documents above one request's limits --------------------------------------------------------------

def test_embed_documents_of_3000_rows_splits_requests_keeps_order_nulls_and_the_cache(
        pg_cluster, fresh_db, vz_server, reference):
    """The README's one-statement form, 3,000 rows: 413 before; now requests of at most 256 texts."""
    install(pg_cluster.dsn(fresh_db), vz_server.url)
    texts = held_texts(1500) + [f"Again, in other words: {text}" for text in held_texts(1500)]  # 3,000 distinct
    with pg_cluster.connect(fresh_db) as conn:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        conn.execute("CREATE TABLE docs (id integer PRIMARY KEY, body text)")
        conn.execute("INSERT INTO docs SELECT * FROM unnest(%s::int[], %s::text[])",
                      [list(range(3000)), texts])
        conn.execute("INSERT INTO docs VALUES (3000, NULL), (3001, %s)", [texts[7]])  # a NULL and a repeat
        before, refused_before = requests_answered(vz_server.url), requests_answered(vz_server.url, "413")
        got = conn.execute("SELECT vecplug.embed_documents(array_agg(body ORDER BY id)) FROM docs").fetchone()[0]
        assert len(got) == 3002 and got[3000] is None
        requests = requests_answered(vz_server.url) - before
        assert requests == -(-3000 // 256), requests  # 12: the repeat is sent once, NULL never
        assert requests_answered(vz_server.url, "413") == refused_before
        got = np.stack([vector.to_numpy() for vector in got[:3000]] + [got[3001].to_numpy()])
        with one_torch_thread():
            want = reference.embed_documents(texts + [texts[7]])
        assert cosines(got, want).min() > 0.9999, cosines(got, want).min()
        # one by one, as embed_document sees them: the same vectors, in the same order
        for index in (0, 255, 256, 1999, 2999):
            alone = conn.execute("SELECT vecplug.embed_document(%s)", [texts[index]]).fetchone()[0]
            assert cosines(alone.to_numpy()[None], got[index][None])[0] > 0.9999
        # the session cache kept the last texts asked for: asking again costs no request
        before = requests_answered(vz_server.url)
        conn.execute("SELECT vecplug.embed_documents(%s::text[])", [texts[-200:]])
        assert requests_answered(vz_server.url) == before


def test_embed_documents_splits_by_bytes_too(pg_cluster, fresh_db, vz_server, reference):
    """Twelve 1.2 MB texts (non-ASCII: two bytes a character) are over 8 MiB together: several requests, no 413."""
    install(pg_cluster.dsn(fresh_db), vz_server.url)
    texts = [f"{index} " + ("é" * 97 + f" mot{index} ") * 6000 for index in range(12)]
    assert sum(len(text.encode()) for text in texts) > 8 * 1024 * 1024
    with pg_cluster.connect(fresh_db) as conn:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        before, refused_before = requests_answered(vz_server.url), requests_answered(vz_server.url, "413")
        got = conn.execute("SELECT vecplug.embed_documents(%s::text[])", [texts]).fetchone()[0]
    assert requests_answered(vz_server.url, "413") == refused_before
    assert requests_answered(vz_server.url) - before >= 3  # at most ~4 MiB each
    with one_torch_thread():
        want = reference.embed_documents(texts)
    assert cosines(np.stack([vector.to_numpy() for vector in got]), want).min() > 0.9999


def test_a_failed_request_without_a_hint_prints_no_hint(pg_cluster, fresh_db, vz_server):
    """HTTP 404 has no advice to give: no HINT at all, never the word None. A 413 says what the limits are."""
    install(pg_cluster.dsn(fresh_db), vz_server.url)
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute("UPDATE vecplug.settings SET value = %s WHERE name = 'server_url'", [vz_server.url + "/nope"])
    with pg_cluster.connect(fresh_db) as conn:
        with pytest.raises(psycopg.errors.ExternalRoutineException) as failed:
            conn.execute("SELECT vecplug.embed_query('where is it?')")
    assert "answered GET /v1/models with HTTP 404" in str(failed.value)
    assert failed.value.diag.message_hint is None
    psql = subprocess.run([str(pg_cluster.bin_dir / "psql"), "-X", pg_cluster.dsn(fresh_db), "-c",
                           "SELECT vecplug.embed_query('where is it?')"], capture_output=True, text=True, timeout=60)
    assert "HTTP 404" in psql.stderr and "None" not in psql.stderr, psql.stderr
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute("UPDATE vecplug.settings SET value = %s WHERE name = 'server_url'", [vz_server.url])
    with pg_cluster.connect(fresh_db) as conn:
        with pytest.raises(psycopg.errors.ExternalRoutineException) as too_big:
            conn.execute("SELECT vecplug.embed_document(%s)", ["x" * (9 * 1024 * 1024)])
    assert "HTTP 413" in str(too_big.value)
    assert "max-request-bytes" in too_big.value.diag.message_hint


# -- defect 8: the worker's API key, and what it calls an outage -------------------------------------------------------

@pytest.fixture(scope="module")
def keyed_server(tiny_model_dir):
    """``vecplug serve`` of the tiny model that wants ``API_KEY`` (read from $VECPLUG_API_KEY, as documented)."""
    from vecplug.testing import running_server

    with running_server(tiny_model_dir, "--dtype", "float32", env=server_env(VECPLUG_API_KEY=API_KEY)) as server:
        yield server


def make_docs(conn, count: int, offset: int = 0) -> dict:
    texts = dict(zip(range(offset, offset + count), held_texts(offset + count)[offset:]))
    conn.execute("CREATE TABLE IF NOT EXISTS docs (id integer PRIMARY KEY, body text)")
    if not conn.execute("SELECT count(*) FROM vecplug.vectorizers").fetchone()[0]:
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body')")
    conn.execute("INSERT INTO docs SELECT * FROM unnest(%s::int[], %s::text[])", [list(texts), list(texts.values())])
    return texts


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*VECPLUG_CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env=env or server_env())


def test_worker_with_server_url_uses_the_api_key_install_stored(pg_cluster, fresh_db, keyed_server, reference):
    dsn = pg_cluster.dsn(fresh_db)
    vecplug_pgvector.install(dsn, keyed_server.url, api_key=API_KEY)
    with pg_cluster.connect(fresh_db) as conn:
        texts = make_docs(conn, 20)
    done = run_cli("pg", "worker", "--dsn", dsn, "--once", "--server-url", keyed_server.url)  # the README's form
    assert done.returncode == 0 and "embedded 20 rows" in done.stderr, done.stderr[-3000:]
    with pg_cluster.connect(fresh_db) as conn:
        with one_torch_thread():
            assert_embedded_as(vectors(conn), dict(zip(texts, reference.embed_documents(list(texts.values())))))
        make_docs(conn, 5, offset=20)
    # a key that is given still wins over the stored one: a wrong one is refused, and named as the key's fault
    wrong = run_cli("pg", "worker", "--dsn", dsn, "--once", "--server-url", keyed_server.url,
                    env=server_env(VECPLUG_API_KEY="WRONG-KEY"))
    assert wrong.returncode == 1 and "401" in wrong.stderr, wrong.stderr[-3000:]
    assert "WRONG-KEY" not in wrong.stderr and API_KEY not in wrong.stderr
    with pg_cluster.connect(fresh_db) as conn:
        assert len(queue_rows(conn)) == 5


def test_reembed_with_server_url_uses_the_api_key_install_stored(pg_cluster, fresh_db, keyed_server):
    dsn = pg_cluster.dsn(fresh_db)
    vecplug_pgvector.install(dsn, keyed_server.url, api_key=API_KEY)
    with pg_cluster.connect(fresh_db) as conn:
        make_docs(conn, 10)
    assert run_cli("pg", "worker", "--dsn", dsn, "--once").returncode == 0
    done = run_cli("pg", "reembed", "--dsn", dsn, "--vectorizer", "public.docs.embedding", "--server-url",
                   keyed_server.url, "--dimensions", "32", "--quiet")
    assert done.returncode == 0 and "embedded 10 rows" in done.stdout, done.stderr[-3000:]
    with pg_cluster.connect(fresh_db) as conn:
        assert conn.execute("SELECT dimensions FROM vecplug.vectorizers").fetchone()[0] == 32


SLOW_LAUNCHER = textwrap.dedent("""
    import os, sys, time
    import vecplug

    class Slow:
        '''Holds each batch for $VZ_SLEEP seconds, so the server can go down in the middle of one.'''
        @vecplug.hookimpl
        def vecplug_before_ingest(self, records, target):
            time.sleep(float(os.environ["VZ_SLEEP"]))

    vecplug.load_plugins()
    vecplug.pm.register(Slow(), name="slow")
    from vecplug.cli import main
    sys.argv[0] = "vecplug"
    main()
""")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_server_outage_mid_batch_is_logged_as_the_server_once(pg_cluster, fresh_db, tiny_model_dir, tmp_path,
                                                                 monkeypatch):
    """The server goes down in the middle of a batch, on a database that ends sessions idle in a transaction.

    The batch waits for the server inside its transaction (RemoteModel retries
    for 5 s), so PostgreSQL ends the session after 3 s: the connection is gone
    too, but because of the server. That was logged as "database unavailable
    (lost the database connection: lost the database connection: <the server's
    error>)"; it is the server's outage, said once, and the worker reconnects.
    """
    from vecplug.testing import running_server

    script = tmp_path / "slow_worker.py"
    script.write_text(SLOW_LAUNCHER)
    monkeypatch.setenv("VZ_SLEEP", "0.3")
    monkeypatch.setenv("VECPLUG_API_KEY", API_KEY)  # the worker's key, given: this test is about the outage only
    dsn = pg_cluster.dsn(fresh_db)
    port = str(free_port())
    env = server_env(VECPLUG_API_KEY=API_KEY)
    with running_server(tiny_model_dir, "--dtype", "float32", "--port", port, env=env) as server:
        url = server.url
        vecplug_pgvector.install(dsn, url, api_key=API_KEY)
        with pg_cluster.connect(fresh_db) as conn:
            make_docs(conn, 300)
            conn.execute(f'ALTER DATABASE "{fresh_db}" SET idle_in_transaction_session_timeout = \'3s\'')
        worker = WorkerProcess(dsn, "--server-url", url, "--batch-size", "10", "--poll-interval", "0.5",
                               launcher=[sys.executable, str(script)], log_dir=tmp_path)
        try:
            wait_for(lambda: worker.events("batch"), 120, "a first batch")
            server.stop()
            outages = wait_for(lambda: worker.events("outage"), 60, "the worker to notice the outage")
            with running_server(tiny_model_dir, "--dtype", "float32", "--port", port, env=env):
                with pg_cluster.connect(fresh_db) as conn:
                    wait_for(lambda: conn.execute("SELECT count(embedding) FROM docs").fetchone()[0] == 300, 180,
                             "the worker to catch up")
                    assert queue_rows(conn) == []
        finally:
            assert worker.stop() == 0, worker.log_text()
    assert [event["kind"] for event in outages] == ["server"], outages
    error = outages[0]["error"]
    assert "database" not in error and url in error, error
    message = outages[0]["message"]
    assert message.startswith("server unavailable (") and message.count(error) == 1, message
    assert [event["kind"] for event in worker.events("recovered")] == ["server"]
    assert not worker.events("outage")[1:], worker.events("outage")


# -- defect 10a: the README's EXPLAIN -------------------------------------------------------------------------------------

def test_the_readmes_explain_shows_the_index_scan_it_promises(pg_cluster, fresh_db, vz_server, tmp_path):
    """The docs' own three rows: PostgreSQL rightly reads the table, so docs/postgres.md shows the plan with seqscan off."""
    readme = (Path(__file__).parents[2] / "docs" / "postgres.md").read_text()
    claim = re.search(r"`EXPLAIN`[^)]*Index Scan using docs_embedding_idx[^)]*\)", readme)
    assert claim and ("enable_seqscan" in claim.group(0) or "realistic size" in claim.group(0)), claim
    block = next(body for body in re.findall(r"```sql\n(.*?)```", readme, flags=re.S) if "EXPLAIN" in body)
    install(pg_cluster.dsn(fresh_db), vz_server.url)
    script = tmp_path / "readme.sql"
    with pg_cluster.connect(fresh_db) as conn:
        size = conn.execute("SELECT value FROM vecplug.settings WHERE name = 'dimensions'").fetchone()[0]
    script.write_text(block.replace("vector(768)", f"vector({size})"))
    psql = subprocess.run([str(pg_cluster.bin_dir / "psql"), "-X", "-v", "ON_ERROR_STOP=1", pg_cluster.dsn(fresh_db),
                           "-f", str(script)], capture_output=True, text=True, timeout=300)
    assert psql.returncode == 0, psql.stderr
    assert "Index Scan using docs_embedding_idx" in psql.stdout, psql.stdout


# -- defect 10b: install.sql's advice for the API key ----------------------------------------------------------------------

def test_install_sql_suggests_a_key_that_stays_out_of_ps_and_the_advice_works(pg_cluster, fresh_db, tmp_path):
    header = (vecplug_pgvector.sql_dir() / "install.sql").read_text().split("\\set ON_ERROR_STOP", 1)[0]
    assert "-v api_key=" not in header, header
    advice = [line.removeprefix("--").strip() for line in header.splitlines() if "`cat " in line and "psql" in line]
    assert advice, header
    key_file = tmp_path / "vecplug.key"
    key_file.write_text("from-the-key-file\n")
    argv = [word.replace("KEYFILE", str(key_file)).replace("http://127.0.0.1:8080", "http://127.0.0.1:9")
            for word in shlex.split(advice[0])]
    argv = [{"DATABASE": pg_cluster.dsn(fresh_db), "install.sql": str(vecplug_pgvector.sql_dir() / "install.sql")}
            .get(word, word) for word in argv]
    assert argv[0] == "psql" and "from-the-key-file" not in " ".join(argv)  # what `ps` would show
    psql = subprocess.run([str(pg_cluster.bin_dir / "psql"), "-X", *argv[1:]], capture_output=True, text=True,
                          timeout=120)
    assert psql.returncode == 0, psql.stderr
    with pg_cluster.connect(fresh_db) as conn:
        settings = dict(conn.execute("SELECT name, value FROM vecplug.settings").fetchall())
    assert (settings["api_key"], settings["server_url"]) == ("from-the-key-file", "http://127.0.0.1:9")


# -- defect 10c: uninstall names vectorizers, not their triggers -------------------------------------------------------

def test_uninstall_names_the_vectorizers_and_drop_vectorizer(pg_cluster, fresh_db, vz_server):
    dsn = pg_cluster.dsn(fresh_db)
    install(dsn, vz_server.url)
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute("CREATE SCHEMA shop")
        for table in ("docs", "notes", "shop.items"):
            conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, body text, title text)")
            conn.execute(f"SELECT vecplug.create_vectorizer('{table}', 'body')")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'title', 'title_embedding')")
        conn.execute("CREATE VIEW installed AS SELECT vecplug.schema_version() AS version")
        with pytest.raises(vecplug_pgvector.InstallError) as refused:
            vecplug_pgvector.uninstall(conn)
        message = str(refused.value)
        assert "trigger vecplug_" not in message, message
        assert "4 vectorizers on tables public.docs (2), public.notes, shop.items" in message, message
        assert "SELECT vecplug.drop_vectorizer('public.docs', 'title_embedding')" in message, message
        assert "--cascade" in message and "view public.installed" in message, message
        assert message.endswith("Nothing was changed."), message
        cli = run_cli("pg", "uninstall", "--dsn", dsn)
        assert cli.returncode != 0 and "4 vectorizers on tables" in cli.stderr, cli.stderr
        assert len(cli.stderr) < 1500, cli.stderr
        for table, column in (("docs", "embedding"), ("docs", "title_embedding"), ("notes", "embedding"),
                              ("shop.items", "embedding")):
            conn.execute("SELECT vecplug.drop_vectorizer(%s, %s)", [table, column])
        with pytest.raises(vecplug_pgvector.InstallError) as still:
            vecplug_pgvector.uninstall(conn)
        assert "vectorizer" not in str(still.value) and "view public.installed" in str(still.value)
        assert vecplug_pgvector.uninstall(conn, cascade=True) == ["view public.installed"]


# -- defect 10d: the MiniLM plugin counts truncated texts ------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("vecplug_minilm")
    with one_torch_thread():
        yield vecplug.load_model("minilm")


def test_minilm_counts_texts_cut_to_its_max_tokens(minilm):
    before = minilm.truncated_count
    with one_torch_thread():
        minilm.embed_documents(["short", "word " * 1000, "All work and no play. " * 4546, "fits " * 200])
    assert minilm.truncated_count - before == 2
    assert minilm.max_tokens == 256


def test_minilm_worker_counts_truncation_in_status(pg_cluster, fresh_db, minilm):
    """The issue's case: a 100,000-character row embedded by a worker with the MiniLM model shows in status."""
    dsn = pg_cluster.dsn(fresh_db)
    install(dsn, None)  # no server: the first worker pins its model
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', dimensions => 384)")
        conn.execute("INSERT INTO docs VALUES (1, 'short'), (2, %s)", ["All work and no play. " * 4546])
    with one_torch_thread():
        report = vecplug_pgvector.Worker(dsn, minilm, show_progress=False).run(once=True)
    assert report.exit_code == 0 and report.embedded == 2 and report.truncated == 1, report
    with pg_cluster.connect(fresh_db) as conn:
        row = status(conn)["public.docs.embedding"]
        assert (row["embedded"], row["truncated"]) == (2, 1)


def test_minilm_served_reports_truncated_texts(tmp_path):
    """``vecplug serve --model minilm`` answers X-Vecplug-Truncated, as the worker's server path reads it."""
    pytest.importorskip("vecplug_minilm")
    import json
    import urllib.request

    from vecplug.testing import running_server

    with running_server("minilm", env=server_env()) as server:
        request = urllib.request.Request(server.url + "/v1/embeddings", method="POST",
                                         data=json.dumps({"input": ["short", "x " * 2000, "no play. " * 11000]}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.headers["X-Vecplug-Truncated"] == "2"
            assert len(json.loads(response.read())["data"]) == 3
        assert server_metric(server.url, "vecplug_truncated_texts_total") == 2
