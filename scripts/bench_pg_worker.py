#!/usr/bin/env python3
"""Ingest speed: `vecplug pg worker` against the same model embedding the same texts directly, in one run.

    .venv/bin/python scripts/bench_pg_worker.py           # 5,000 rows, base-shaped model: defaults, batch 64, 256
    .venv/bin/python scripts/bench_pg_worker.py --rows 500 --shape tiny --repeat 1   # a quick look
    .venv/bin/python scripts/bench_pg_worker.py --rows 400 --long --chunk-tokens 128 --batch-size default
        # long documents: a plain vectorizer beside a chunked one on the same texts

A throwaway PostgreSQL cluster (tests/pg_rig.py) holds a table of real
paragraphs from Python's docs with an async vectorizer. Passes take turns
(direct, worker at each batch size, again ...) and the fastest pass of each
counts, so a slow spell on a shared machine hits all alike. The worker runs
in this process with the very model object the direct pass uses (same
weights, dtype, threads), from a full queue to an empty one: locking,
reading, the ingest hook, embedding, writing, committing. Prints a table and
one JSON line; the target (issue 21) is worker/direct >= 0.95 at the worker's defaults.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # pg_rig: the test cluster, as root or not


def texts_for(rows: int, long: bool = False) -> list[str]:
    """Real paragraphs (about 60 tokens), or with ``long`` ~512-token documents of consecutive ones."""
    from vecplug.testing import long_documents, stdlib_paragraphs

    pool = long_documents() if long else list(dict.fromkeys(stdlib_paragraphs()))
    return [pool[index % len(pool)] for index in range(rows)]


def prepare(cluster, texts: list[str], dimensions: int, chunk_tokens: int | None) -> tuple[str, dict]:
    """The database, and its vectorizers by table: ``docs`` (one vector a row), ``docs_chunked`` (chunks)."""
    import vecplug_pgvector

    name = cluster.create_database("bench_worker")
    dsn = cluster.dsn(name)
    vecplug_pgvector.install(dsn)
    vectorizers = {}
    with cluster.connect(name) as conn:
        for table in ["docs"] + (["docs_chunked"] if chunk_tokens else []):
            conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, body text NOT NULL)")
            extra = ", chunk_tokens => %s" if table == "docs_chunked" else ""
            vectorizers[table] = conn.execute(
                f"SELECT vecplug.create_vectorizer('{table}', 'body', dimensions => %s{extra})",
                [dimensions] + ([chunk_tokens] if extra else [])).fetchone()[0]
            conn.execute(f"INSERT INTO {table} SELECT * FROM unnest(%s::int[], %s::text[])",
                         [list(range(len(texts))), texts])
    return dsn, vectorizers


def requeue(cluster, table: str, vectorizer: int) -> None:
    """Every row of ``table`` back to no vector (no chunks) and queued once, as after a bulk INSERT; nothing else queued."""
    with cluster.connect("bench_worker") as conn:
        conn.execute("DELETE FROM vecplug.queue")
        conn.execute("DELETE FROM vecplug.queued_statements")
        if table == "docs_chunked":
            conn.execute("DELETE FROM docs_chunked_chunks")
        else:
            conn.execute(f"UPDATE {table} SET embedding = NULL")
        conn.execute("SELECT vecplug._enqueue_rows_without_vector(%s)", [vectorizer])
        conn.execute(f"VACUUM ANALYZE {table}")


def worker_pass(cluster, dsn: str, table: str, vectorizer: int, model, batch_size: int | None, rows: int) -> float:
    """One drain of the full queue; ``batch_size`` None: the worker's defaults (batches sized by tokens)."""
    import vecplug_pgvector

    requeue(cluster, table, vectorizer)
    sizing = {} if batch_size is None else {"batch_size": batch_size}
    started = time.perf_counter()
    report = vecplug_pgvector.Worker(dsn, model, show_progress=False, **sizing).run(once=True)
    seconds = time.perf_counter() - started
    if report.embedded != rows or report.exit_code:
        raise RuntimeError(f"the worker did not embed every row: {report}")
    return seconds


def stored_vectors(cluster):
    import numpy as np
    from pgvector.psycopg import register_vector

    with cluster.connect("bench_worker") as conn:
        register_vector(conn)
        return np.stack([row[0].to_numpy() for row in conn.execute("SELECT embedding FROM docs ORDER BY id")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--shape", default="base", help="write_model shape (default base: ModernBERT-base sized)")
    parser.add_argument("--batch-size", default="default,64,256",
                        help="worker batch sizes, comma-separated ('default': the worker's defaults, token-sized)")
    parser.add_argument("--repeat", type=int, default=2, help="passes of each, taking turns; the fastest counts")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--long", action="store_true", help="~512-token documents instead of paragraphs")
    parser.add_argument("--chunk-tokens", type=int, default=None,
                        help="also a chunked vectorizer (these chunk_tokens) on the same texts, worker defaults")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the throwaway cluster is stopped in `finally`
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import vecplug  # before torch: vecplug sets OpenMP's passive waiting (else it keeps to one thread)

    import torch

    from pg_rig import start_cluster
    from vecplug.bench import bench_model_dir, measure_matmul_peak

    model = vecplug.load_model(str(bench_model_dir(args.shape)), dtype=args.dtype)
    report = model.describe()
    texts = texts_for(args.rows, args.long)
    lengths = model.token_counts(texts, "document") or []
    flops = model.forward_flops(lengths) if lengths else None
    peak = measure_matmul_peak(getattr(torch, report["dtype"]), report["device"])
    model.embed_documents(texts[:256])  # warm-up
    batch_sizes = [None if size == "default" else int(size) for size in args.batch_size.split(",")]
    cluster = start_cluster()
    try:
        dsn, vectorizers = prepare(cluster, texts, model.dimensions, args.chunk_tokens)
        best: dict[str, float] = {}
        direct_vectors = None

        def timed(path: str, run) -> None:
            started = time.perf_counter()
            run()
            best[path] = min(best.get(path, float("inf")), time.perf_counter() - started)
            print(f"turn {turn + 1}: {path} {best[path]:.1f} s", file=sys.stderr, flush=True)

        for turn in range(args.repeat):
            started = time.perf_counter()
            direct_vectors = model.embed_documents(texts)
            best["direct"] = min(best.get("direct", float("inf")), time.perf_counter() - started)
            for size in batch_sizes:
                path = "worker, defaults" if size is None else f"worker, batch {size}"
                timed(path, lambda: worker_pass(cluster, dsn, "docs", vectorizers["docs"], model, size, len(texts)))
            if args.chunk_tokens:
                timed("direct, chunks", lambda: model.embed_chunks(texts, args.chunk_tokens))
                timed("worker, chunks", lambda: worker_pass(cluster, dsn, "docs_chunked", vectorizers["docs_chunked"],
                                                             model, None, len(texts)))
        worker_vectors = stored_vectors(cluster)
    finally:
        cluster.stop()
    cosine = float((worker_vectors * direct_vectors).sum(1).min())
    tokens = sum(lengths)
    print(f"{args.rows} rows, {tokens} tokens, model {args.shape} ({report['device']}, {report['dtype']}, "
          f"{report.get('threads')} threads), matmul peak {peak / 1e12:.2f} TFLOP/s; "
          f"min cosine worker vs direct (last worker pass) {cosine:.6f}")
    print(f"{'path':<20} {'seconds':>8} {'rows/s':>8} {'tokens/s':>9} {'MFU':>6} {'vs direct':>9}")
    rows = []
    for path, seconds in best.items():  # MFU of the chunk paths counts the whole texts' FLOPs: compare rows/s there
        mfu = flops / seconds / peak if flops else None
        ratio = best["direct"] / seconds
        rows.append({"path": path, "seconds": round(seconds, 2), "rows_per_s": round(args.rows / seconds, 1),
                     "tokens_per_s": round(tokens / seconds), "mfu": mfu and round(mfu, 4),
                     "vs_direct": round(ratio, 3)})
        print(f"{path:<20} {seconds:8.1f} {args.rows / seconds:8.1f} {tokens / seconds:9.0f} "
              f"{(mfu or 0) * 100:5.1f}% {ratio:9.3f}")
    print(json.dumps({"rows": args.rows, "shape": args.shape, "tokens": tokens, "device": report["device"],
                      "dtype": report["dtype"], "min_cosine": round(cosine, 6), "results": rows}))


if __name__ == "__main__":
    main()
