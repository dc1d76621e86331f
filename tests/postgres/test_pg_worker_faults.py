"""The worker as a process, under faults: the server down, kill -9, two workers, a database restart, SIGTERM.

Plus what it tells the outside: JSON logs, Prometheus metrics, a progress
bar on a terminal, LISTEN wake-ups, its exit codes and `vecplug pg status`.
A slow ``vecplug_before_ingest`` plugin (a launcher script registers it)
holds batches open long enough to hit them mid-way.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

psycopg = pytest.importorskip("psycopg")

from pg_docs import held_texts  # noqa: E402
from pg_rig import start_cluster  # noqa: E402
from pg_vectorizer_helpers import (  # noqa: E402
    VECPLUG_CLI,
    WorkerProcess,
    embedding_server,
    install,
    queue_rows,
    run_worker_once,
    server_env,
    server_metric,
    wait_for,
)

SLOW_LAUNCHER = textwrap.dedent("""
    import os, sys, time
    import vecplug

    class Slow:
        '''Notes each batch in $VZ_MARKER, then holds it for $VZ_SLEEP seconds.'''
        @vecplug.hookimpl
        def vecplug_before_ingest(self, records, target):
            with open(os.environ["VZ_MARKER"], "a") as marker:
                marker.write(f"{len(records)}\\n")
            time.sleep(float(os.environ["VZ_SLEEP"]))

    vecplug.load_plugins()
    vecplug.pm.register(Slow(), name="slow")
    from vecplug.cli import main
    sys.argv[0] = "vecplug"
    main()
""")


@pytest.fixture
def slow_worker(tmp_path):
    """(launcher argv, marker path, env setter): workers whose batches take $VZ_SLEEP seconds each."""
    script = tmp_path / "slow_worker.py"
    script.write_text(SLOW_LAUNCHER)
    marker = tmp_path / "batches"
    marker.touch()
    return [sys.executable, str(script)], marker


def batches_started(marker) -> int:
    return len(marker.read_text().splitlines())


def make_docs(conn, count: int, mode: str = "async", table: str = "docs", **options) -> dict:
    texts = dict(enumerate(held_texts(count)))
    conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, body text)")
    extra = "".join(f", {name} => '{value}'" for name, value in options.items())
    conn.execute(f"SELECT vecplug.create_vectorizer('{table}', 'body', mode => '{mode}'{extra})")
    conn.execute(f"INSERT INTO {table} SELECT * FROM unnest(%s::int[], %s::text[])", [list(texts), list(texts.values())])
    return texts


def embedded_count(conn, table: str = "docs") -> int:
    return conn.execute(f"SELECT count(embedding) FROM {table}").fetchone()[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def db(pg_cluster, fresh_db, vz_server):
    install(pg_cluster.dsn(fresh_db), vz_server.url)
    return fresh_db


def test_the_server_down_during_ingestion_loses_nothing_and_the_worker_catches_up(
        pg_cluster, fresh_db, tiny_model_dir, tmp_path, slow_worker, monkeypatch):
    launcher, marker = slow_worker
    monkeypatch.setenv("VZ_MARKER", str(marker))
    monkeypatch.setenv("VZ_SLEEP", "0.2")
    port = free_port()
    dsn = pg_cluster.dsn(fresh_db)
    with embedding_server(tiny_model_dir, "--port", str(port)) as server:
        url = server.url
        install(dsn, url)
        with pg_cluster.connect(fresh_db) as conn:
            make_docs(conn, 200)
            conn.execute("CREATE TABLE live (id integer PRIMARY KEY, body text)")
            conn.execute("SELECT vecplug.create_vectorizer('live', 'body', mode => 'sync')")
            conn.execute("CREATE TABLE strict (id integer PRIMARY KEY, body text)")
            conn.execute("SELECT vecplug.create_vectorizer('strict', 'body', mode => 'sync', on_error => 'raise')")
        worker = WorkerProcess(dsn, "--server-url", url, "--batch-size", "10", "--poll-interval", "0.5",
                               launcher=launcher, log_dir=tmp_path)
        try:
            wait_for(lambda: worker.events("batch"), 120, "a first batch")
            server.stop()  # mid-ingestion
            with pg_cluster.connect(fresh_db) as conn:
                notices = []
                conn.add_notice_handler(lambda notice: notices.append(notice.message_primary))
                conn.execute("INSERT INTO docs SELECT g, 'written while the server is down ' || g "
                             "FROM generate_series(1000, 1049) g")
                conn.execute("INSERT INTO live VALUES (1, 'sync, server down'), (2, 'sync too')")  # still succeeds
                assert len([note for note in notices if "could not embed rows of public.live.embedding now" in note]) == 1, notices
                with pytest.raises(psycopg.Error, match=f"could not connect to the embedding server at {url}"):
                    conn.execute("INSERT INTO strict VALUES (1, 'must fail')")
                assert conn.execute("SELECT count(*) FROM strict").fetchone()[0] == 0
                wait_for(lambda: worker.events("outage"), 60, "the worker to notice the outage")
                time.sleep(1.0)
                assert worker.alive()
                waiting = {tuple(row[1]) for row in queue_rows(conn, 1)}  # docs: every row embedded or queued
                assert embedded_count(conn) + len(waiting) == 250 and embedded_count(conn) < 250
                assert len(queue_rows(conn, 2)) == 2  # live: the sync rows wait for the worker
                assert all(row[2] == 0 for row in queue_rows(conn))  # an outage counts no attempt
                assert conn.execute("SELECT count(*) FROM vecplug.failed").fetchone()[0] == 0
            with embedding_server(tiny_model_dir, "--port", str(port)):
                with pg_cluster.connect(fresh_db) as conn:
                    wait_for(lambda: embedded_count(conn) == 250 and embedded_count(conn, "live") == 2, 180,
                             "the worker to catch up")
                    assert queue_rows(conn) == []
                assert worker.events("recovered")
        finally:
            assert worker.stop() == 0, worker.log_text()


def test_kill_9_mid_batch_loses_nothing(pg_cluster, db, vz_server, tmp_path, slow_worker, monkeypatch):
    launcher, marker = slow_worker
    monkeypatch.setenv("VZ_MARKER", str(marker))
    monkeypatch.setenv("VZ_SLEEP", "2")
    dsn = pg_cluster.dsn(db)
    with pg_cluster.connect(db) as conn:
        texts = make_docs(conn, 60)
    worker = WorkerProcess(dsn, "--server-url", vz_server.url, "--batch-size", "10", launcher=launcher,
                           log_dir=tmp_path)
    wait_for(lambda: batches_started(marker) >= 2, 120, "a second batch to start")
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait(30)
    worker.stop()
    with pg_cluster.connect(db) as conn:
        embedded = embedded_count(conn)
        assert embedded in (0, 10)  # the first batch committed or not; the one in hand never half-written
        wait_for(lambda: len(queue_rows(conn)) == 60 - embedded, 30, "the killed session's locks to go")
        result = run_worker_once(dsn, "--server-url", vz_server.url)
        assert result.returncode == 0, result.stderr[-3000:]
        assert embedded_count(conn) == len(texts) and queue_rows(conn) == []


def test_two_workers_on_one_queue_embed_each_row_once(pg_cluster, db, vz_server, tmp_path, slow_worker, monkeypatch):
    launcher, marker = slow_worker
    monkeypatch.setenv("VZ_MARKER", str(marker))
    monkeypatch.setenv("VZ_SLEEP", "0.1")
    dsn = pg_cluster.dsn(db)
    before = server_metric(vz_server.url)
    with pg_cluster.connect(db) as conn:
        make_docs(conn, 400)
        workers = [WorkerProcess(dsn, "--server-url", vz_server.url, "--batch-size", "8", "--poll-interval", "0.5",
                                 launcher=launcher, log_dir=tmp_path) for _ in range(2)]
        try:
            wait_for(lambda: embedded_count(conn) == 400, 300, "both workers to drain the queue")
        finally:
            codes = [worker.stop() for worker in workers]
        assert codes == [0, 0]
        assert queue_rows(conn) == []
    assert server_metric(vz_server.url) - before == 400  # texts embedded == rows
    per_worker = [sum(event["embedded"] for event in worker.events("batch")) for worker in workers]
    assert sum(per_worker) == 400 and min(per_worker) > 0, per_worker


def test_the_database_restarted_under_a_running_worker(vz_server, tmp_path):
    cluster = start_cluster()  # its own: the session's cluster is not restarted under other tests
    try:
        name = cluster.create_database("restart")
        dsn = cluster.dsn(name)
        install(dsn, vz_server.url)
        with cluster.connect(name) as conn:
            make_docs(conn, 50)
        worker = WorkerProcess(dsn, "--server-url", vz_server.url, "--poll-interval", "0.5", log_dir=tmp_path)
        try:
            with cluster.connect(name) as conn:
                wait_for(lambda: embedded_count(conn) == 50, 120, "the first rows")
            restarted = cluster.run_as_owner([str(cluster.bin_dir / "pg_ctl"), "-D", str(cluster.data_dir), "-l",
                                              str(cluster.log_path), "-m", "fast", "-w", "restart"], timeout=120)
            assert restarted.returncode == 0, restarted.stderr
            with cluster.connect(name) as conn:
                conn.execute("INSERT INTO docs SELECT g, 'after the restart ' || g FROM generate_series(100, 149) g")
                wait_for(lambda: embedded_count(conn) == 100, 120, "the worker to reconnect and embed")
            assert worker.alive()
            assert [event["kind"] for event in worker.events("outage")] == ["database"]
            assert worker.events("recovered")
        finally:
            assert worker.stop() == 0, worker.log_text()
    finally:
        cluster.stop()


def test_sigterm_finishes_the_batch_in_hand(pg_cluster, db, vz_server, tmp_path, slow_worker, monkeypatch):
    launcher, marker = slow_worker
    monkeypatch.setenv("VZ_MARKER", str(marker))
    monkeypatch.setenv("VZ_SLEEP", "1.5")
    dsn = pg_cluster.dsn(db)
    with pg_cluster.connect(db) as conn:
        make_docs(conn, 50)
    worker = WorkerProcess(dsn, "--server-url", vz_server.url, "--batch-size", "10", launcher=launcher,
                           log_dir=tmp_path)
    wait_for(lambda: batches_started(marker) >= 2, 120, "a second batch to start")
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(60) == 0
    assert worker.stop() == 0
    with pg_cluster.connect(db) as conn:
        assert embedded_count(conn) == 10 * batches_started(marker)  # the batch in hand was finished, none begun
        assert len(queue_rows(conn)) == 50 - embedded_count(conn)


def test_logs_metrics_and_listen(pg_cluster, db, vz_server, tmp_path):
    """JSON lines on stderr; Prometheus counters on --metrics-port; rows embedded long before --poll-interval."""
    dsn = pg_cluster.dsn(db)
    with pg_cluster.connect(db) as conn:
        make_docs(conn, 5)
        worker = WorkerProcess(dsn, "--server-url", vz_server.url, "--metrics-port", "0", "--poll-interval", "120",
                               log_dir=tmp_path)
        try:
            wait_for(lambda: embedded_count(conn) == 5, 60, "the queued rows")
            time.sleep(0.5)  # the worker is waiting now, LISTENing
            started = time.monotonic()
            conn.execute("INSERT INTO docs SELECT g, 'notified ' || g FROM generate_series(10, 29) g")
            wait_for(lambda: embedded_count(conn) == 25, 30, "a wake-up by NOTIFY")
            assert time.monotonic() - started < 30  # not the 120 s poll
            url = wait_for(lambda: worker.events("metrics"), 10, "the metrics URL")[0]["url"]
            time.sleep(0.2)
            assert server_metric(url.removesuffix("/metrics"), "vecplug_worker_rows_embedded_total",
                                 'vectorizer="public.docs.embedding"') == 25
            assert server_metric(url.removesuffix("/metrics"), "vecplug_worker_available", 'kind="server"') == 1
        finally:
            assert worker.stop() == 0
    lines = worker.log_path.read_text().splitlines()
    assert lines and all(json.loads(line)["level"] in ("info", "warning", "error") for line in lines)
    assert {"model", "batch", "stopped"} <= {json.loads(line).get("event") for line in lines}


def test_a_person_sees_a_progress_bar(pg_cluster, db, vz_server):
    import fcntl
    import pty
    import struct
    import termios

    dsn = pg_cluster.dsn(db)
    with pg_cluster.connect(db) as conn:
        make_docs(conn, 30)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a size
    process = subprocess.Popen([*VECPLUG_CLI, "pg", "worker", "--dsn", dsn, "--server-url", vz_server.url, "--once"],
                               stdout=subprocess.DEVNULL, stderr=follower, env=server_env())
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the process closed its end
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(120) == 0
    text = output.decode(errors="replace")
    assert "30/30" in text and "row" in text, text[-2000:]
    assert "embedded 30 rows" in text and '{"time"' not in text  # no JSON for a person


def test_once_exit_codes_and_the_status_command(pg_cluster, db, vz_server):
    dsn = pg_cluster.dsn(db)
    with pg_cluster.connect(db) as conn:
        make_docs(conn, 12)
    done = run_worker_once(dsn, "--server-url", vz_server.url)
    assert done.returncode == 0 and "embedded 12 rows" in done.stderr
    shown = subprocess.run([*VECPLUG_CLI, "pg", "status", "--dsn", dsn], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0
    header, row = shown.stdout.splitlines()[:2]
    assert header.split()[:4] == ["vectorizer", "mode", "model", "dims"]
    assert row.split()[0:2] == ["1:", "public.docs.embedding"] and row.split()[-6:] == ["0", "-", "0", "0", "12", "0"]
    as_json = subprocess.run([*VECPLUG_CLI, "pg", "status", "--dsn", dsn, "--json"], capture_output=True, text=True,
                             timeout=60)
    assert json.loads(as_json.stdout.splitlines()[0])["embedded"] == 12
    down = run_worker_once(dsn, "--server-url", "http://127.0.0.1:9")
    assert down.returncode == 1 and "127.0.0.1:9" in down.stderr
    unknown = run_worker_once(dsn, "--server-url", vz_server.url, "--vectorizer", "nope")
    assert unknown.returncode == 1 and "no vectorizer 'nope'; there are: 1 (public.docs.embedding)" in unknown.stderr
    both = run_worker_once(dsn, "--server-url", vz_server.url, "--model", "x")
    assert both.returncode == 2 and "--server-url or --model, not both" in both.stderr
    with pg_cluster.connect(db) as conn:
        conn.execute("INSERT INTO docs VALUES (100, 'found through the server install recorded')")
    recorded = run_worker_once(dsn)  # no --server-url: the one `vecplug pg install` recorded
    assert recorded.returncode == 0 and "embedded 1 rows" in recorded.stderr, recorded.stderr[-2000:]
    bare = pg_cluster.create_database(db + "_bare", extensions=("vector",))
    not_installed = run_worker_once(pg_cluster.dsn(bare), "--server-url", vz_server.url)
    assert not_installed.returncode == 1 and "vecplug is not installed there" in not_installed.stderr
    pg_cluster.execute(f'DROP DATABASE "{bare}"')
    with urllib.request.urlopen(vz_server.url + "/health", timeout=5) as response:
        assert response.status == 200
