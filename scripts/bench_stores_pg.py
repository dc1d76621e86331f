#!/usr/bin/env python3
"""``vecplug dedup`` and ``vecplug cluster`` on a PostgreSQL table: time and peak memory as rows grow (issue 26).

    python scripts/bench_stores_pg.py                              # 10,000, 30,000, 100,000 rows of 768 dims
    python scripts/bench_stores_pg.py --rows 500 --dims 32         # a smoke run
    python scripts/bench_stores_pg.py --dsn "dbname=x user=postgres"   # an existing cluster (it makes and
                                                                   # drops database vecplug_bench_stores)

The vectors are loaded directly with COPY (binary; the benchmark is about
dedup and cluster, not embedding): ``--clusters`` planted topics (unit
centres plus noise, cosine about 0.5 inside a topic, about 0 across), each
text made of its topic's words (for cluster's top terms), and 1% of the rows
planted near-duplicates of another row (cosine above 0.98). An HNSW cosine
index is built, as a vectorizer makes one. Each measured step runs as its own
process, whose RSS is sampled (``psutil``), and so are the PostgreSQL
backends serving it (USS, their private memory: shared buffers are the
server's, not the command's). Both commands'
answers are checked: dedup's recall of the planted pairs, cluster's adjusted
Rand index against the planted topics. Prints a table and one JSON line per
size (with the command that was timed).
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # pg_rig: the throwaway cluster, as root or not

DATABASE = "vecplug_bench_stores"
DUPLICATE_SHARE = 0.01
COPY_CHUNK = 5000


def planted_rows(rows: int, dims: int, clusters: int, seed: int = 0):
    """Yield (ids, topics, texts, vectors, duplicate pairs) in chunks: memory stays flat in ``rows``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dims)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for start in range(0, rows, COPY_CHUNK):
        count = min(COPY_CHUNK, rows - start)
        topics = rng.integers(0, clusters, size=count)
        noise = rng.normal(size=(count, dims)).astype(np.float32) / np.sqrt(dims)
        vectors = centres[topics] + noise
        half = count // 2  # near-duplicates in the second half, each of a row of the first half
        chosen = half + rng.choice(count - half, size=int(count * DUPLICATE_SHARE), replace=False)
        sources = rng.choice(half, size=len(chosen), replace=False)
        pairs = []
        for row, source in zip(chosen, sources):
            topics[row] = topics[source]
            vectors[row] = vectors[source] + 0.05 * rng.normal(size=dims).astype(np.float32) / np.sqrt(dims)
            pairs.append((int(start + source), int(start + row)))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        texts = [" ".join(f"topic{topic}word{index}" for index in rng.choice(12, size=6, replace=False))
                 for topic in topics]
        yield list(range(start, start + count)), topics.tolist(), texts, vectors, pairs


def load(dsn: str, table: str, rows: int, dims: int, clusters: int) -> dict:
    """Create and fill ``table``, build its index; returns timings, planted topics and duplicate pairs."""
    import psycopg
    from pgvector.psycopg import register_vector

    topics, pairs = [], []
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, body text NOT NULL, embedding vector({dims}))")
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["integer", "text", "vector"])
            for ids, chunk_topics, texts, vectors, chunk_pairs in planted_rows(rows, dims, clusters):
                topics += chunk_topics
                pairs += chunk_pairs
                for row in zip(ids, texts, vectors):
                    copy.write_row(row)
        copied = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute(f"CREATE INDEX ON {table} USING hnsw (embedding vector_cosine_ops)")
        conn.execute(f"ANALYZE {table}")
        indexed = time.perf_counter() - started
    return {"copy_s": round(copied, 2), "index_s": round(indexed, 2), "topics": topics, "pairs": pairs}


def run_measured(argv: list[str], dsn: str, output: Path) -> dict:
    """Run ``argv`` (stdout to ``output``): its wall time, its peak RSS and the backends' peak USS, sampled.

    Sampled (every 50 ms for the command, 250 ms for the backends), not the
    kernel's ``ru_maxrss``: a child started by this (large) process inherits
    its high-water mark through vfork and exec, which would count this
    script's memory as the command's.
    """
    import psycopg

    peaks = {"rss": 0, "uss": 0}
    done = threading.Event()

    def sample_backends():
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not done.wait(0.25):
                pids = [row[0] for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'vecplug%%' AND pid <> "
                    "pg_backend_pid()").fetchall()]
                peaks["uss"] = max(peaks["uss"], sum(_memory(pid, "uss") for pid in pids))

    sampler = threading.Thread(target=sample_backends, daemon=True)
    sampler.start()
    started = time.perf_counter()
    errors = output.with_suffix(".stderr")
    with output.open("wb") as sink, errors.open("wb") as error_sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=error_sink)
        while process.poll() is None:
            peaks["rss"] = max(peaks["rss"], _memory(process.pid, "rss"))
            time.sleep(0.05)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({process.returncode}):\n{errors.read_text()[-3000:]}")
    return {"s": round(seconds, 2), "peak_rss_mb": round(peaks["rss"] / 2**20, 1),
            "backend_peak_uss_mb": round(peaks["uss"] / 2**20, 1)}


def _memory(pid: int, kind: str) -> int:
    import psutil

    try:
        process = psutil.Process(pid)
        return process.memory_full_info().uss if kind == "uss" else process.memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


def stream_only(dsn: str, table: str) -> None:
    """The child of the "items" step: every row through PostgresStore.items(), nothing kept."""
    from vecplug_pgvector.stores import open_store
    from vecplug.stores import StoreSelection

    rows = 0
    with open_store(StoreSelection(dsn=dsn, table=table)) as store:
        for batch in store.items():
            rows += len(batch)
    print(rows)


def commands_available() -> bool:
    probe = subprocess.run([sys.executable, "-m", "vecplug", "dedup", "--help"], capture_output=True)
    return probe.returncode == 0


def measure(dsn: str, table: str, rows: int, dims: int, clusters: int, threshold: float, folder: Path) -> dict:
    from sklearn.metrics import adjusted_rand_score

    loaded = load(dsn, table, rows, dims, clusters)
    result = {"rows": rows, "dims": dims, "clusters": clusters, "copy_s": loaded["copy_s"],
              "index_s": loaded["index_s"]}
    streamed = folder / "items.txt"
    result["items"] = run_measured([sys.executable, __file__, "--stream-only", dsn, table], dsn, streamed)
    if int(streamed.read_text()) != rows:
        raise SystemExit(f"items() streamed {streamed.read_text().strip()} rows, not {rows}")
    if not commands_available():
        result["commands"] = "vecplug dedup/cluster are not in this checkout"
        return result
    store = ["--dsn", dsn, "--table", table]
    dedup = ["vecplug", "dedup", *store, "--threshold", str(threshold), "--json"]
    pairs_file = folder / "pairs.jsonl"
    result["dedup"] = {"command": " ".join(dedup[:2] + ["--dsn DSN"] + dedup[4:]),
                       **run_measured([sys.executable, "-m", *dedup], dsn, pairs_file)}
    found = {tuple(sorted((line["a"], line["b"]))) for line in map(json.loads, pairs_file.read_text().splitlines())}
    planted = {tuple(sorted(pair)) for pair in loaded["pairs"]}
    result["dedup"].update(pairs=len(found), planted=len(planted),
                           recall=round(len(found & planted) / max(len(planted), 1), 4))
    cluster = ["vecplug", "cluster", *store, "-k", str(clusters), "--json"]
    labels_file = folder / "labels.jsonl"
    result["cluster"] = {"command": " ".join(cluster[:2] + ["--dsn DSN"] + cluster[4:]),
                         **run_measured([sys.executable, "-m", *cluster], dsn, labels_file)}
    labels = {line["id"]: line["cluster"] for line in map(json.loads, labels_file.read_text().splitlines())}
    result["cluster"]["ari"] = round(adjusted_rand_score(loaded["topics"], [labels[i] for i in range(rows)]), 4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--dims", type=int, default=768)
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--dsn", help="a superuser's connection to an existing cluster (default: a throwaway one)")
    parser.add_argument("--stream-only", nargs=2, metavar=("DSN", "TABLE"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.stream_only:
        return stream_only(*options.stream_only)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the throwaway cluster is stopped in `finally`

    import psycopg

    from pg_rig import start_cluster

    cluster = None if options.dsn else start_cluster()
    admin = options.dsn or cluster.dsn()
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
            conn.execute(f"CREATE DATABASE {DATABASE}")
        dsn = psycopg.conninfo.make_conninfo(admin, dbname=DATABASE)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
        results = []
        with tempfile.TemporaryDirectory() as folder:
            for rows in options.rows:
                results.append(measure(dsn, f"bench_{rows}", rows, options.dims, options.clusters,
                                       options.threshold, Path(folder)))
                print(json.dumps(results[-1]), flush=True)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        if cluster is not None:
            cluster.stop()
    print_table(results)
    print(json.dumps({"results": results}))


def print_table(results: list[dict]) -> None:
    print(f"{'rows':>8} {'copy s':>7} {'index s':>8} {'items s':>8} {'MB':>6} | "
          f"{'dedup s':>8} {'MB':>6} {'PG MB':>6} {'recall':>6} | {'cluster s':>9} {'MB':>6} {'ARI':>6}")
    for row in results:
        line = (f"{row['rows']:>8} {row['copy_s']:>7} {row['index_s']:>8} {row['items']['s']:>8} "
                f"{row['items']['peak_rss_mb']:>6} | ")
        if "dedup" in row:
            line += (f"{row['dedup']['s']:>8} {row['dedup']['peak_rss_mb']:>6} "
                     f"{row['dedup']['backend_peak_uss_mb']:>6} {row['dedup']['recall']:>6} | "
                     f"{row['cluster']['s']:>9} {row['cluster']['peak_rss_mb']:>6} {row['cluster']['ari']:>6}")
        else:
            line += row["commands"]
        print(line)


if __name__ == "__main__":
    main()
