#!/usr/bin/env python3
"""vecplug's vectorizer worker beside pgai 0.12's, on the same cluster, corpus and `vecplug serve`.

    ./scripts/setup_pgai_venv.sh                       # once: pgai[vectorizer-worker] in its own venv
    .venv/bin/python scripts/bench_pgai.py             # [--rows 2000] [--repeat 2] [--pgai PATH]

Both workers embed through the same server: pgai with
``ai.embedding_openai('tiny', N, base_url => <server>/v1)`` into a column
(``ai.destination_column``, ``ai.chunking_none``), vecplug with
``vecplug.create_vectorizer``. Three things are measured:

1. An UPDATE of a column that is not the text, on 100 embedded rows: how
   many texts the server embeds again (its ``vecplug_texts_total``).
2. The server down while rows arrive: is the worker still running 20 s
   later, and are the rows embedded once the server is back?
3. The worker's own cost per row beyond embedding: ``(wall(N rows) -
   wall(empty queue) - server seconds) / N`` with ``--once`` (wall(empty
   queue) is the process start; server seconds are the server's own
   ``vecplug_request_seconds_sum`` for /v1/embeddings), at 64 dimensions (the
   tiny model) and 768 (a one-layer model 768 wide, so embedding stays cheap).
   Workers take turns; the fastest pass counts.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # pg_rig (the cluster) and the vectorizer test helpers
VECPLUG = [sys.executable, "-m", "vecplug"]
WIDE = dict(hidden_size=768, num_hidden_layers=1, num_attention_heads=12, intermediate_size=1152,
            local_attention=128, vocab_size=4096)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Bench:
    def __init__(self, cluster, pgai: str):
        self.cluster = cluster
        self.pgai = pgai
        from pg_vectorizer_helpers import server_env

        self.env = server_env(OPENAI_API_KEY="unused-by-vecplug-serve")

    def database(self, name: str, server_url: str | None, dimensions: int, rows: list[str], worker: str) -> str:
        """A fresh database with table docs (rows, text and a lang column) and the worker's vectorizer on it."""
        import vecplug_pgvector

        self.cluster.create_database(name)
        dsn = f"postgresql://postgres@127.0.0.1:{self.cluster.port}/{name}"
        with self.cluster.connect(name) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute(f"CREATE TABLE docs (id integer PRIMARY KEY, body text, lang text, embedding vector({dimensions}))")
            conn.execute("INSERT INTO docs (id, body, lang) SELECT i, b, 'en' FROM unnest(%s::text[]) WITH ORDINALITY AS t(b, i)",
                         [rows])
        if worker == "pgai":
            subprocess.run([self.pgai, "install", "-d", dsn], check=True, capture_output=True, timeout=300)
            with self.cluster.connect(name) as conn:
                conn.execute("""SELECT ai.create_vectorizer('docs'::regclass, loading => ai.loading_column('body'),
                                  destination => ai.destination_column('embedding'), chunking => ai.chunking_none(),
                                  embedding => ai.embedding_openai('bench', %s, base_url => %s),
                                  scheduling => ai.scheduling_none(), indexing => ai.indexing_none())""",
                             [dimensions, f"{server_url}/v1"])
        else:
            vecplug_pgvector.install(dsn, server_url)
            with self.cluster.connect(name) as conn:
                conn.execute("SELECT vecplug.create_vectorizer('docs', 'body', dimensions => %s, index => 'none')",
                             [dimensions])
        return dsn

    def worker_command(self, worker: str, dsn: str, server_url: str, once: bool) -> list[str]:
        if worker == "pgai":
            return [self.pgai, "vectorizer", "worker", "-d", dsn, "--poll-interval", "1"] + (["--once"] if once else [])
        return [*VECPLUG, "pg", "worker", "--dsn", dsn, "--server-url", server_url, "--poll-interval", "1"] + \
            (["--once"] if once else [])

    def drain(self, worker: str, dsn: str, server_url: str) -> float:
        started = time.perf_counter()
        done = subprocess.run(self.worker_command(worker, dsn, server_url, once=True), capture_output=True,
                              text=True, env=self.env, timeout=3600)
        if done.returncode:
            raise RuntimeError(f"{worker} worker failed: {done.stderr[-3000:]}")
        return time.perf_counter() - started

    def embedded(self, name: str) -> int:
        with self.cluster.connect(name) as conn:
            return conn.execute("SELECT count(embedding) FROM docs").fetchone()[0]


def non_text_update(bench: Bench, server, texts: list[str]) -> dict:
    from pg_vectorizer_helpers import server_metric

    results = {}
    for worker in ("pgai", "vecplug"):
        name = f"update_{worker}"
        dsn = bench.database(name, server.url, 64, texts[:100], worker)
        bench.drain(worker, dsn, server.url)
        before = server_metric(server.url)
        with bench.cluster.connect(name) as conn:
            conn.execute("UPDATE docs SET lang = 'fr'")
        bench.drain(worker, dsn, server.url)
        results[worker] = {"rows": 100, "re_embedded_after_non_text_update": int(server_metric(server.url) - before)}
    return results


def server_down(bench: Bench, model_dir: Path, texts: list[str]) -> dict:
    from pg_vectorizer_helpers import embedding_server

    results = {}
    for worker in ("pgai", "vecplug"):
        port = free_port()
        name = f"down_{worker}"
        with embedding_server(model_dir, "--served-name", "bench", "--port", str(port)) as server:
            url = server.url
            dsn = bench.database(name, url, 64, texts[:50], worker)
        started = time.perf_counter()  # --once while the server is down
        once = subprocess.run(bench.worker_command(worker, dsn, url, once=True), capture_output=True, text=True,
                              env=bench.env, timeout=600)
        once_result = {"exit_code": once.returncode, "seconds": round(time.perf_counter() - started, 1),
                       "queue_after": _waiting(bench, name, worker)}
        log = tempfile.NamedTemporaryFile("w+", suffix=f"-{worker}.log", delete=False)
        process = subprocess.Popen(bench.worker_command(worker, dsn, url, once=False), stdout=log, stderr=log,
                                   env=bench.env)
        time.sleep(20)
        alive = process.poll() is None
        waiting = _waiting(bench, name, worker)
        with embedding_server(model_dir, "--served-name", "bench", "--port", str(port)):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and bench.embedded(name) < 50:
                time.sleep(0.5)
            caught_up = bench.embedded(name)
        if process.poll() is None:
            process.terminate()
            process.wait(60)
        log.seek(0)
        lines = [line for line in log.read().splitlines() if line.strip()]
        errors = [line for line in lines if "rror" in line or "xception" in line or "refused" in line.lower()]
        tail = errors[:2] + lines[-2:]
        results[worker] = {"once_with_the_server_down": once_result, "running_20s_after": alive, "exit_code": process.returncode if not alive else None,
                           "queue_after_20s_down": waiting,
                           "rows_embedded_60s_after_server_back": f"{caught_up}/50", "log_excerpt": tail,
                           "log": log.name}
    return results


def _waiting(bench: Bench, name: str, worker: str) -> dict:
    """Queued rows, the most attempts any of them has, and rows given up on (failed tables)."""
    with bench.cluster.connect(name) as conn:
        if worker == "pgai":
            queue, failed = conn.execute("SELECT queue_table, queue_failed_table FROM ai.vectorizer").fetchone()
            queued = conn.execute(f'SELECT count(*), max(loading_retries) FROM ai."{queue}"').fetchone()
            given_up = conn.execute(f'SELECT count(*) FROM ai."{failed}"').fetchone()[0]
        else:
            queued = conn.execute("SELECT count(DISTINCT pk), max(attempts) FROM vecplug.queue").fetchone()
            given_up = conn.execute("SELECT count(*) FROM vecplug.failed").fetchone()[0]
    return {"queued": queued[0], "max_attempts_counted": queued[1], "given_up": given_up}


def own_cost(bench: Bench, model_dir: Path, dimensions: int, texts: list[str], repeat: int) -> dict:
    from pg_vectorizer_helpers import embedding_server, server_metric

    best: dict[str, float] = {}
    with embedding_server(model_dir, "--served-name", "bench") as server:
        databases = {worker: bench.database(f"cost{dimensions}_{worker}", server.url, dimensions, texts, worker)
                     for worker in ("pgai", "vecplug")}
        for _ in range(repeat):
            for worker, dsn in databases.items():
                name = f"cost{dimensions}_{worker}"
                with bench.cluster.connect(name) as conn:  # a new text for every row: every row queued again
                    conn.execute("UPDATE docs SET body = body || ' '")
                server_before = server_metric(server.url, "vecplug_request_seconds_sum", 'route="/v1/embeddings"')
                wall = bench.drain(worker, dsn, server.url)
                served = server_metric(server.url, "vecplug_request_seconds_sum", 'route="/v1/embeddings"') - server_before
                empty = bench.drain(worker, dsn, server.url)  # nothing queued: the process's own start and stop
                assert bench.embedded(name) == len(texts), f"{worker} left rows without a vector"
                cost = (wall - empty - served) / len(texts)
                if cost < best.get(worker, float("inf")):
                    best[worker] = cost
                    best[f"{worker}_detail"] = {"wall_s": round(wall, 2), "empty_queue_s": round(empty, 2),
                                                "server_s": round(served, 2)}
    return {worker: {"ms_per_row": round(best[worker] * 1000, 3), **best[f"{worker}_detail"]}
            for worker in ("pgai", "vecplug")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--pgai", default=str(Path.home() / ".cache/vecplug/pgai-venv/bin/pgai"))
    parser.add_argument("--only", default="update,down,cost", help="which measurements, comma-separated")
    args = parser.parse_args()
    if not Path(args.pgai).exists():
        sys.exit(f"no pgai at {args.pgai}: run ./scripts/setup_pgai_venv.sh first")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the throwaway cluster is stopped in `finally`

    import vecplug.testing
    from pg_rig import start_cluster
    from pg_vectorizer_helpers import embedding_server

    work = Path(tempfile.mkdtemp(prefix="vecplug-bench-pgai-"))
    tiny = vecplug.testing.write_model(work / "tiny", shape="tiny")
    vecplug.testing.SHAPES["wide-shallow"] = WIDE
    wide = vecplug.testing.write_model(work / "wide", shape="wide-shallow")
    paragraphs = list(dict.fromkeys(vecplug.testing.stdlib_paragraphs()))
    texts = [paragraphs[index % len(paragraphs)] for index in range(args.rows)]
    version = subprocess.run([args.pgai, "--version"], capture_output=True, text=True).stdout.strip()
    cluster = start_cluster()
    report = {"pgai": version, "rows": args.rows}
    try:
        bench = Bench(cluster, args.pgai)
        wanted = args.only.split(",")
        if "update" in wanted:
            with embedding_server(tiny, "--served-name", "bench") as server:
                report["non_text_update"] = non_text_update(bench, server, texts)
        if "down" in wanted:
            report["server_down"] = server_down(bench, tiny, texts)
        if "cost" in wanted:
            report["own_cost_64_dims"] = own_cost(bench, tiny, 64, texts, args.repeat)
            report["own_cost_768_dims"] = own_cost(bench, wide, 768, texts, args.repeat)
    finally:
        cluster.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
