"""PostgreSQL in ``vecplug demo --dsn`` and ``vecplug doctor --dsn``, on a real cluster with a real server."""
from __future__ import annotations

import json
import subprocess
import sys

from demo_stores import demo_store_count
from vecplug.demo import corpus


def run_vecplug(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vecplug", *args], capture_output=True, text=True, timeout=timeout)


def test_demo_with_dsn_finds_the_open_paragraph_in_postgres(pg_cluster, fresh_db, tmp_path):
    """MiniLM (real weights): every question's expected paragraph first in PostgreSQL and every local store."""
    process = run_vecplug("demo", "--model", "minilm", "--quiet", "--dsn", pg_cluster.dsn(fresh_db),
                          "--dir", str(tmp_path))
    assert process.returncode == 0, process.stderr
    assert f"PostgreSQL (table vecplug_demo.docs in database {fresh_db})" in process.stdout
    answers = demo_store_count(with_dsn=True) * len(corpus.QUESTIONS)  # PostgreSQL, Chroma, Qdrant, Milvus Lite
    assert f"{answers}/{answers} answers" in process.stdout, process.stdout
    with pg_cluster.connect(fresh_db) as conn:
        nearest = conn.execute("SELECT body FROM vecplug_demo.docs ORDER BY id LIMIT 1").fetchone()[0]
    assert nearest == corpus.by_id(1).text


def test_demo_with_an_unreachable_dsn_is_one_line(tmp_path):
    process = run_vecplug("demo", "--tiny", "--quiet", "--dsn", "host=127.0.0.1 port=1 dbname=x connect_timeout=2",
                          "--dir", str(tmp_path))
    assert process.returncode == 1 and "Traceback" not in process.stderr
    assert process.stderr.startswith("Error: pgvector:") and process.stderr.count("\n") == 1


def doctor_checks(*args: str) -> dict:
    process = run_vecplug("doctor", "--json", *args)
    return process.returncode, {(c["section"], c["name"]): c for c in map(json.loads, process.stdout.splitlines())}


def test_doctor_before_and_after_install_and_against_the_server(pg_cluster, fresh_db, tiny_server):
    dsn = pg_cluster.dsn(fresh_db)
    code, checks = doctor_checks("--dsn", dsn)
    assert code == 0
    assert checks[("PostgreSQL", "reachable")]["status"] == "ok"
    assert checks[("PostgreSQL", "pgvector")]["detail"].startswith("available")
    assert checks[("PostgreSQL", "schema vecplug")]["status"] == "warn"
    install = run_vecplug("pg", "install", "--dsn", dsn, "--server-url", tiny_server.url)
    assert install.returncode == 0, install.stderr
    code, checks = doctor_checks("--dsn", dsn, "--server-url", tiny_server.url)
    assert code == 0, [check for check in checks.values() if check["status"] == "fail"]
    assert checks[("PostgreSQL", "pgvector")]["status"] == "ok"
    assert checks[("PostgreSQL", "plpython3u")]["status"] == "ok"
    assert "SQL query functions installed" in checks[("PostgreSQL", "schema vecplug")]["detail"]
    assert checks[("PostgreSQL", "server agrees")]["status"] == "ok"
    assert checks[(f"server {tiny_server.url}", "health")]["status"] == "ok"
    # the database recorded another model than the server now serves: a failure that says what to do
    with pg_cluster.connect(fresh_db) as conn:
        conn.execute("UPDATE vecplug.settings SET value = 'feedfacefeedfacefeedface' WHERE name = 'model_fingerprint'")
    code, checks = doctor_checks("--dsn", dsn)
    assert code == 1
    disagreement = checks[("PostgreSQL", "server agrees")]
    assert disagreement["status"] == "fail" and "feedfacefeedfacefeedface" in disagreement["detail"]


def test_doctor_with_an_unreachable_dsn_fails():
    code, checks = doctor_checks("--dsn", "host=127.0.0.1 port=1 dbname=x connect_timeout=2")
    assert code == 1 and checks[("PostgreSQL", "reachable")]["status"] == "fail"
