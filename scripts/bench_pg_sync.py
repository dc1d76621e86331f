"""Sync vectorizers, before and after issue 19: one request per statement (schema version 2, a write-back
UPDATE as vecplug's owner) against one request per row (version 3, the vector set on the row being written).

    python scripts/bench_pg_sync.py --rows 100 --shape base --against-rev 974ac1e

A throwaway PostgreSQL cluster (tests/pg_rig.py) gets two databases: one
installed from the SQL of git revision ``--against-rev`` (extracted with
``git archive``), one from this checkout; a ``vecplug serve`` of a
random-weight ModernBERT of ``--shape`` (one torch thread, as the tests run
it) serves both. Each times one INSERT of ``--rows`` paragraphs and 50
one-row INSERTs, checks every row has its vector, and prints a JSON line per
version with the ratio of this checkout to the other.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # pg_rig: the test cluster, as root or not


def sql_of_revision(revision: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "sql"], check=True,
                             capture_output=True).stdout
    with tempfile.NamedTemporaryFile(suffix=".tar") as handle:
        handle.write(archive)
        handle.flush()
        with tarfile.open(handle.name) as tar:
            tar.extractall(into, filter="data")
    return into / "sql"


def time_inserts(cluster, name: str, sql_root: Path, server_url: str, rows: int) -> dict:
    import psycopg

    import vecplug_pgvector

    cluster.create_database(name)
    subprocess.run([str(cluster.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", cluster.dsn(name),
                    "-f", "install.sql"], cwd=sql_root, check=True, capture_output=True)
    vecplug_pgvector.install(cluster.dsn(name), server_url)  # records the served model (same SQL: nothing else)
    texts = [f"paragraph {i}: " + "the quick brown fox jumps over the lazy dog " * (1 + i % 5) for i in range(rows)]
    with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
        conn.execute("SELECT vecplug.create_vectorizer('t', 'body', mode => 'sync')")
        conn.execute("INSERT INTO t VALUES (-1, 'warm up')")
        started = time.perf_counter()
        conn.execute("INSERT INTO t SELECT * FROM unnest(%s::int[], %s::text[])", [list(range(rows)), texts])
        bulk = time.perf_counter() - started
        started = time.perf_counter()
        for index in range(50):
            conn.execute("INSERT INTO t VALUES (%s, %s)", [rows + index, f"one row {index}"])
        single = (time.perf_counter() - started) / 50
        missing = conn.execute("SELECT count(*) FROM t WHERE embedding IS NULL").fetchone()[0]
    if missing:
        raise SystemExit(f"{name}: {missing} rows without a vector")
    return {"bulk_seconds": round(bulk, 3), "one_row_ms": round(single * 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--shape", default="tiny", choices=("tiny", "base"))
    parser.add_argument("--against-rev", default="974ac1e", help="git revision whose SQL is the reference")
    options = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the throwaway cluster is stopped in `finally`

    from pg_rig import start_cluster

    from vecplug.testing import cached_model, running_server

    model = cached_model("modernbert", options.shape)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cluster = start_cluster()
    try:
        with tempfile.TemporaryDirectory() as folder, \
                running_server(model, "--dtype", "float32", env=env) as server:
            reference = time_inserts(cluster, "sync_reference", sql_of_revision(options.against_rev, Path(folder)),
                                     server.url, options.rows)
            current = time_inserts(cluster, "sync_current", ROOT / "sql", server.url, options.rows)
    finally:
        cluster.stop()
    for label, figures in ((options.against_rev, reference), ("this checkout", current)):
        print(json.dumps({"sql": label, "rows": options.rows, "shape": options.shape, **figures}))
    print(json.dumps({"bulk_ratio_reference_over_current": round(reference["bulk_seconds"] / current["bulk_seconds"], 2),
                      "one_row_ratio_reference_over_current": round(reference["one_row_ms"] / current["one_row_ms"], 2)}))


if __name__ == "__main__":
    main()
