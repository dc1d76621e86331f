#!/usr/bin/env python3
"""A small query's latency while bulk clients keep ``vecplug serve`` busy, and the bulk throughput it costs.

    python scripts/bench_server_mixed.py                        # base shape, 8 bulk clients x 2,048 texts
    python scripts/bench_server_mixed.py --src /path/to/old/checkout --src .   # before and after, one run
    python scripts/bench_server_mixed.py --shape tiny --bulk-clients 2 --bulk-texts 64 --seconds 3  # smoke

For each source tree (``--src``, default: the installed vecplug) a real
``vecplug serve`` subprocess runs with that tree first on its PYTHONPATH, and:

1. idle: a prober sends one-text query requests back to back on an idle server
   (``--probes`` of them): the small request's idle latency (p50);
2. bulk alone: ``--bulk-clients`` keep-alive clients send requests of
   ``--bulk-texts`` short documents back to back for ``--seconds``: docs/s;
3. mixed: the same bulk clients plus the prober (one query, then ``--probe-gap``
   seconds of pause): the query's p50 / p99 under bulk, the ratio to idle, and
   the bulk docs/s with the prober beside it;
4. a huge text (run right after the idle probes): one request of one
   ``--huge-text-bytes`` text (8 MB: absurd, cut to max tokens anyway) and,
   50 ms later, a one-text query: both latencies.

The goal (issue 23): p99 under bulk within max(1 s, 4x idle) and the bulk
throughput within 10% of the tree before. Prints one JSON line per tree and a
table. The clients are ``scripts/load_client.py``'s (asyncio streams, no HTTP
library), run in this process; they mostly wait.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from load_client import Connection  # noqa: E402


def percentile(values: list[float], share: float) -> float | None:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1) if ordered else None


def server_metric(url: str, name: str) -> float:
    """One unlabelled value of the server's /metrics (0 when absent)."""
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=60) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


async def bulk_client(url: str, texts: list[str]) -> None:
    """Send ``texts`` back to back until cancelled (a 429 waits a moment: many bulk clients may fill the queue)."""
    parts = urllib.parse.urlsplit(url)
    connection = Connection(parts.hostname, parts.port, None)
    try:
        while True:
            status, _, _ = await connection.post("/v1/embeddings", {"input": texts})
            if status != 200:
                await asyncio.sleep(0.2)
    finally:
        await connection.close()


class Prober:
    """One-text query requests, one at a time, ``gap`` seconds apart, with their latencies.

    A probe still unanswered when the window ends counts with the time it
    has waited so far (a lower bound): under FIFO a probe can wait longer
    than the window.
    """

    def __init__(self, url: str, queries: list[str], gap: float):
        self.url, self.queries, self.gap = url, queries, gap
        self.latencies: list[float] = []
        self.sent_at: float | None = None

    async def run(self, count: int | None = None) -> None:
        parts = urllib.parse.urlsplit(self.url)
        connection = Connection(parts.hostname, parts.port, None)
        number = 0
        try:
            while count is None or number < count:
                self.sent_at = time.perf_counter()
                status, _, data = await connection.post(
                    "/v1/embeddings", {"input": self.queries[number % len(self.queries)], "input_type": "query"})
                if status != 200:
                    raise RuntimeError(f"a probe failed: HTTP {status} {data[:200]!r}")
                self.latencies.append(time.perf_counter() - self.sent_at)
                self.sent_at = None
                number += 1
                if self.gap:
                    await asyncio.sleep(self.gap)
        finally:
            await connection.close()

    def stop(self) -> None:
        if self.sent_at is not None:
            self.latencies.append(time.perf_counter() - self.sent_at)


async def window(url: str, bulk: list[str], clients: int, seconds: float, prober: Prober | None) -> dict:
    """Bulk clients (and the prober) for ``seconds``: the texts the engine embedded per second, and the probes.

    Throughput is the server's own count of texts through forward passes
    (``vecplug_batch_texts``), so requests still running when the window
    ends count for what was done of them.
    """
    tasks = [asyncio.ensure_future(bulk_client(url, bulk)) for _ in range(clients)]
    if prober is not None:
        await asyncio.sleep(min(2.0, seconds / 4))  # the bulk clients fill the queue first
        tasks.append(asyncio.ensure_future(prober.run()))
    before = await asyncio.to_thread(server_metric, url, "vecplug_batch_texts_sum")
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    after = await asyncio.to_thread(server_metric, url, "vecplug_batch_texts_sum")
    elapsed = time.perf_counter() - started
    if prober is not None:
        prober.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"docs_per_s": round((after - before) / elapsed, 1)}


def wait_for_empty_queue(url: str, timeout: float = 600) -> None:
    """Until the texts of the cancelled requests are dropped and the pools in progress are done."""
    deadline = time.monotonic() + timeout
    while server_metric(url, "vecplug_queue_texts") > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)


async def beside_a_huge_text(url: str, huge: str, queries: list[str]) -> dict:
    """A one-text query sent while a request of one huge text (megabytes) is being tokenized: both latencies."""
    parts = urllib.parse.urlsplit(url)
    big, small = Connection(parts.hostname, parts.port, None), Connection(parts.hostname, parts.port, None)
    try:
        started = time.perf_counter()
        huge_request = asyncio.ensure_future(big.post("/v1/embeddings", {"input": [huge]}))
        await asyncio.sleep(0.05)  # its body is in and being tokenized
        query_started = time.perf_counter()
        status, _, _ = await small.post("/v1/embeddings", {"input": queries[0], "input_type": "query"})
        query_ms = 1000 * (time.perf_counter() - query_started)
        huge_status, _, _ = await huge_request
        huge_ms = 1000 * (time.perf_counter() - started)
        if status != 200 or huge_status != 200:
            raise RuntimeError(f"beside a huge text: HTTP {status} (query), {huge_status} (huge text)")
        return {"huge_text_ms": round(huge_ms, 1), "query_beside_huge_text_ms": round(query_ms, 1)}
    finally:
        await big.close()
        await small.close()


def measure(url: str, bulk: list[str], queries: list[str], arguments) -> dict:
    idle = Prober(url, queries, 0.0)
    asyncio.run(idle.run(count=arguments.probes))
    idle_ms = percentile(idle.latencies[len(idle.latencies) // 5:], 0.5)  # the first probes warm caches
    words = "the kettle boils water while the tree grows leaves "
    huge = words * (arguments.huge_text_bytes // len(words))
    beside_huge = asyncio.run(beside_a_huge_text(url, huge, queries))
    alone = asyncio.run(window(url, bulk, arguments.bulk_clients, arguments.seconds, None))
    wait_for_empty_queue(url)
    mixed_prober = Prober(url, queries, arguments.probe_gap)
    mixed = asyncio.run(window(url, bulk, arguments.bulk_clients, arguments.seconds, mixed_prober))
    wait_for_empty_queue(url)
    latencies = mixed_prober.latencies
    p99 = percentile(latencies, 0.99)
    bound_ms = max(1000.0, 4 * idle_ms)
    return {"idle_p50_ms": idle_ms, "under_bulk_p50_ms": percentile(latencies, 0.5), "under_bulk_p99_ms": p99,
            "under_bulk_max_ms": percentile(latencies, 1.0), "probes_under_bulk": len(latencies),
            "p99_over_idle": round(p99 / idle_ms, 1) if p99 else None,
            "goal_ms": bound_ms, "goal_met": bool(p99 and p99 <= bound_ms),
            "bulk_docs_per_s_alone": alone["docs_per_s"], "bulk_docs_per_s_with_prober": mixed["docs_per_s"],
            **beside_huge}


def bulk_cost(model_dir: Path, bulk: list[str], dtype: str | None) -> tuple[float, float, str]:
    """(forward FLOPs of one bulk document, the matmul rate measured now in the server's dtype, that dtype).

    With them every docs/s figure comes with its share of the machine's matmul rate (MFU), which is what
    can be compared across machines.
    """
    import torch
    import vecplug
    from vecplug import bench

    model = vecplug.load_model(str(model_dir), dtype=dtype)
    chosen = model.describe()["dtype"]
    flops = model.forward_flops(model.token_counts(bulk, "document")) / len(bulk)
    del model
    return flops, bench.measure_matmul_peak(getattr(torch, chosen)), chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", action="append", default=None,
                        help="a checkout whose vecplug the server runs (repeat to compare; default: the installed one)")
    parser.add_argument("--shape", default="base", choices=["tiny", "small", "base", "large"])
    parser.add_argument("--model", default=None, help="model directory (default: a random-weight --shape model)")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--bulk-clients", type=int, default=8)
    parser.add_argument("--bulk-texts", type=int, default=2048, help="texts per bulk request")
    parser.add_argument("--bulk-words", type=int, default=12, help="words per bulk text (short documents)")
    parser.add_argument("--seconds", type=float, default=40.0, help="each timed window: bulk alone, then mixed")
    parser.add_argument("--probes", type=int, default=30, help="idle probes")
    parser.add_argument("--probe-gap", type=float, default=0.25, help="pause between probes under bulk")
    parser.add_argument("--max-queue-texts", type=int, default=None,
                        help="the server's queue (default: room for every bulk client's request)")
    parser.add_argument("--huge-text-bytes", type=int, default=8_000_000,
                        help="one text this long (under --max-request-bytes' 8 MiB) while a query is sent")
    parser.add_argument("--json", dest="json_path", default=None)
    arguments = parser.parse_args(argv)

    from vecplug import bench
    from vecplug.testing import running_server, stdlib_paragraphs

    model_dir = Path(arguments.model).resolve() if arguments.model else bench.bench_model_dir(arguments.shape)
    json_path = Path(arguments.json_path).resolve() if arguments.json_path else None
    paragraphs = stdlib_paragraphs()
    bulk = [" ".join(paragraphs[index % len(paragraphs)].split()[:arguments.bulk_words])
            for index in range(arguments.bulk_texts)]
    queries = ["where is the answer?", "how do I open a file", "exceptions", "what does yield do"]
    flops_per_doc, peak, dtype = bulk_cost(model_dir, bulk, arguments.dtype)
    queue = arguments.max_queue_texts or (arguments.bulk_clients + 1) * arguments.bulk_texts + 64
    server_args = ["--max-queue-texts", str(queue), "--dtype", dtype]
    sources = [str(Path(source).resolve()) for source in arguments.src or []] or [None]
    # ``python -m vecplug`` puts its working directory first on sys.path, before PYTHONPATH: the
    # server must not start in a checkout, or that checkout's vecplug is the one measured
    os.chdir(tempfile.mkdtemp(prefix="bench-server-mixed-"))
    results = []
    for source in sources:
        env = dict(os.environ)
        if source:  # the tree's adapters too: the installed ones may not match its core
            paths = [source] + [str(Path(source) / "adapters")] * (Path(source) / "adapters").is_dir()
            env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        with running_server(model_dir, *server_args, env=env) as server:
            row = {"src": source or "installed", **measure(server.url, bulk, queries, arguments)}
        for window_name in ("alone", "with_prober"):
            row[f"bulk_mfu_{window_name}"] = round(row[f"bulk_docs_per_s_{window_name}"] * flops_per_doc / peak, 3)
        first = results[0] if results else row
        row["bulk_vs_first_src"] = round(row["bulk_docs_per_s_with_prober"] / first["bulk_docs_per_s_with_prober"], 3)
        results.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"dtype": dtype, "matmul_peak_tflops": round(peak / 1e12, 3), "load_average": os.getloadavg()}))
    print("| src | idle p50 ms | under bulk p50 / p99 ms | p99 / idle | goal | bulk docs/s alone (MFU) "
          "| with prober (MFU) | with prober vs first src | query beside a huge text ms (the huge text's) |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for row in results:
        print(f"| {row['src']} | {row['idle_p50_ms']} | {row['under_bulk_p50_ms']} / {row['under_bulk_p99_ms']} "
              f"| {row['p99_over_idle']}x | {'met' if row['goal_met'] else 'missed'} ({row['goal_ms']:.0f} ms) "
              f"| {row['bulk_docs_per_s_alone']} ({100 * row['bulk_mfu_alone']:.1f}%) "
              f"| {row['bulk_docs_per_s_with_prober']} ({100 * row['bulk_mfu_with_prober']:.1f}%) "
              f"| {row['bulk_vs_first_src']}x | {row['query_beside_huge_text_ms']} ({row['huge_text_ms']}) |")
    if json_path:
        json_path.write_text(json.dumps({"shape": arguments.shape, "rows": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
