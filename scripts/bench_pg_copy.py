#!/usr/bin/env python3
"""The write path: COPY into a table with an async vectorizer against the same table without one (issue 21).

    python scripts/bench_pg_copy.py                      # 50,000 rows, this checkout's SQL and main's, 5 rounds
    python scripts/bench_pg_copy.py --against-rev none   # this checkout only
    python scripts/bench_pg_copy.py --dsn "dbname=x"     # an existing database (a superuser's DSN; it makes
                                                         # databases vecplug_copy_<n> and drops them)

For each SQL revision, a database installed from that revision's
``sql/install.sql`` (``git archive``; psql, no Python) holds four tables owned
by a role that is no superuser (so row-level security on vecplug's queue
applies, as for any application role): a plain table without a vectorizer
and the same with an async one, and a partitioned pair (4 partitions by hash;
partitioned tables keep row-level triggers). Rounds take turns (each
table, each revision) and the median counts. Each COPY is of the same
``--rows`` rows (id, a paragraph-sized text) into an emptied table, in one
transaction, so only the write path differs. Prints a table and JSON lines
with the ratio vectorizer/plain per revision; the goal is <= 1.5x.
"""
from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # pg_rig: the throwaway cluster, as root or not

OWNER = "vecplug_copy_owner"
TABLES = {  # name -> (partitioned, vectorizer)
    "plain": (False, False), "with_vectorizer": (False, True),
    "partitioned_plain": (True, False), "partitioned_with_vectorizer": (True, True),
}


def sql_of_revision(revision: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "sql"], check=True,
                             capture_output=True).stdout
    with tempfile.NamedTemporaryFile(suffix=".tar") as handle:
        handle.write(archive)
        handle.flush()
        with tarfile.open(handle.name) as tar:
            tar.extractall(into, filter="data")
    return into / "sql"


def rows_as_copy_data(rows: int) -> bytes:
    text = "paragraph {} about the quick brown fox that jumps over the lazy dog, and what the dog thought of it"
    return "".join(f"{index}\t{text.format(index)}\n" for index in range(rows)).encode()


def prepare(psql: str, dsn: str, sql_root: Path, dimensions: int) -> None:
    import psycopg

    subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", dsn, "-f", "install.sql"], cwd=sql_root, check=True,
                   capture_output=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [OWNER]).fetchone():
            conn.execute(f"CREATE ROLE {OWNER} LOGIN")
        conn.execute(f"GRANT CREATE ON SCHEMA public TO {OWNER}")
        conn.execute(f"SET ROLE {OWNER}")
        for name, (partitioned, vectorizer) in TABLES.items():
            vector = "" if vectorizer else f", embedding public.vector({dimensions})"
            conn.execute(f"CREATE TABLE {name} (id integer PRIMARY KEY, body text{vector})"
                         + (" PARTITION BY HASH (id)" if partitioned else ""))
            for part in range(4 if partitioned else 0):
                conn.execute(f"CREATE TABLE {name}_{part} PARTITION OF {name} "
                             f"FOR VALUES WITH (MODULUS 4, REMAINDER {part})")
            if vectorizer:
                conn.execute("SELECT vecplug.create_vectorizer(%s, 'body', dimensions => %s, index => 'none')",
                             [name, dimensions])


def time_copy(dsn: str, table: str, data: bytes) -> float:
    """Seconds for one COPY of ``data`` into the emptied ``table`` (its queued work forgotten too), committed."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {table}")  # the vectorizer's TRUNCATE trigger empties its queue
        conn.execute(f"VACUUM {table}")
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cursor, cursor.copy(f"COPY {table} (id, body) FROM STDIN") as copy:
            copy.write(data)
        return time.perf_counter() - started


def queued(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT coalesce(sum(pending), 0) FROM vecplug.status").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5, help="rounds, taking turns; the median counts")
    parser.add_argument("--against-rev", default="main",
                        help="git revision whose SQL is measured beside this checkout's ('none': skip)")
    parser.add_argument("--dsn", help="a superuser's connection to an existing cluster (default: a throwaway one)")
    options = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the throwaway cluster is stopped in `finally`

    import psycopg

    from pg_rig import find_bin_dir, start_cluster

    cluster = None if options.dsn else start_cluster()
    admin = options.dsn or cluster.dsn()
    psql = str((cluster.bin_dir if cluster else find_bin_dir()) / "psql")
    revisions = {"this checkout": None}
    if options.against_rev != "none":
        revisions = {options.against_rev: options.against_rev, **revisions}
    data = rows_as_copy_data(options.rows)
    made = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            dsns = {}
            for index, (label, revision) in enumerate(revisions.items()):
                name = f"vecplug_copy_{index}"
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {name}")
                    conn.execute(f"CREATE DATABASE {name}")
                made.append(name)
                dsn = psycopg.conninfo.make_conninfo(admin, dbname=name)
                sql_root = sql_of_revision(revision, Path(folder) / str(index)) if revision else ROOT / "sql"
                prepare(psql, dsn, sql_root, 64)
                dsns[label] = psycopg.conninfo.make_conninfo(dsn, user=OWNER)
            seconds: dict[tuple[str, str], list[float]] = {}
            for round_number in range(options.rounds + 1):  # the first round warms up and does not count
                for label, dsn in dsns.items():
                    for table in TABLES:
                        took = time_copy(dsn, table, data)
                        if round_number:
                            seconds.setdefault((label, table), []).append(took)
            for label, dsn in dsns.items():  # nothing lost: every row of the last COPYs is queued
                expected = options.rows * sum(vectorizer for _, vectorizer in TABLES.values())
                if queued(dsn) != expected:
                    raise SystemExit(f"{label}: {queued(dsn)} rows queued, not {expected}")
    finally:
        if made:
            with psycopg.connect(admin, autocommit=True) as conn:
                for name in made:
                    conn.execute(f"DROP DATABASE IF EXISTS {name}")
        if cluster is not None:
            cluster.stop()
    print(f"COPY of {options.rows} rows, median of {options.rounds} rounds (ms); as a non-superuser table owner")
    print(f"{'SQL':<16} {'plain':>8} {'+vectorizer':>12} {'ratio':>6} "
          f"{'partitioned':>12} {'+vectorizer':>12} {'ratio':>6}")
    for label in dsns:
        median = {table: statistics.median(seconds[(label, table)]) * 1000 for table in TABLES}
        plain = median["with_vectorizer"] / median["plain"]
        partitioned = median["partitioned_with_vectorizer"] / median["partitioned_plain"]
        print(f"{label:<16} {median['plain']:8.1f} {median['with_vectorizer']:12.1f} {plain:5.2f}x "
              f"{median['partitioned_plain']:12.1f} {median['partitioned_with_vectorizer']:12.1f} {partitioned:5.2f}x")
        print(json.dumps({"sql": label, "rows": options.rows, "rounds": options.rounds,
                          "median_ms": {table: round(value, 1) for table, value in median.items()},
                          "ratio": round(plain, 2), "partitioned_ratio": round(partitioned, 2)}))


if __name__ == "__main__":
    main()
