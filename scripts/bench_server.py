#!/usr/bin/env python3
"""Throughput of ``vecplug serve`` against the engine embedding the same texts directly, in one run.

    python scripts/bench_server.py                      # base-shaped random-weight model, 600 paragraphs
    python scripts/bench_server.py --repeat 3 --corpus long --json out.json
    python scripts/bench_server.py --infinity-url http://127.0.0.1:7997 --infinity-model DIR  # see bench_infinity.sh

Engines, taking turns pass by pass (a slow spell on a shared machine slows
every engine alike; the fastest pass of each counts, as in ``vecplug bench``):

- direct: ``model.embed_documents(texts)`` in this process (the server idles meanwhile);
- server: a ``vecplug serve`` subprocess with the same model files and dtype,
  loaded by a separate client process (``scripts/load_client.py``) with
  ``--clients`` keep-alive connections sending ``--texts-per-request`` texts each,
  every text once, document prompt applied by the server;
- infinity (optional): an Infinity server started by ``bench_infinity.sh`` with the
  same model files, the same client and texts, the client adding the document
  prompt (Infinity applies none).

Cores: every process shares the machine's cores. The direct engine uses
torch's intra-op threads in this process; the server uses as many for its
forward passes plus its event-loop and tokenizer threads; the client process
is one asyncio thread that mostly waits. Only one engine works at a time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
LOAD_CLIENT = HERE / "load_client.py"
DOCUMENT_PROMPT = "search_document: "


def client_pass(url: str, texts: list[str], clients: int, per_request: int, path: str = "/v1/embeddings",
                prompt: str = "", model_name: str | None = None) -> dict:
    """One pass of the fixed workload from a separate client process; its summary."""
    batches_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-server-batches-{os.getpid()}.json"
    batches_file.write_text(json.dumps([texts[start:start + per_request]
                                        for start in range(0, len(texts), per_request)]))
    command = [sys.executable, str(LOAD_CLIENT), url, "--batches", str(batches_file), "--connections", str(clients),
               "--path", path, "--prompt", prompt]
    if model_name:
        command += ["--model-name", model_name]
    process = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    batches_file.unlink(missing_ok=True)
    if process.returncode != 0:
        raise RuntimeError(f"the load client failed:\n{process.stdout[-2000:]}{process.stderr[-2000:]}")
    summary = json.loads(process.stdout.splitlines()[-1])
    if summary["texts"] != len(texts):
        raise RuntimeError(f"only {summary['texts']} of {len(texts)} texts came back: {summary['first_failures']}")
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="base", choices=["tiny", "small", "base", "large"])
    parser.add_argument("--model", default=None, help="model directory (default: a random-weight --shape model)")
    parser.add_argument("--corpus", default="paragraphs", choices=["paragraphs", "long"])
    parser.add_argument("--size", default="cpu", choices=["quick", "cpu", "full"])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--texts-per-request", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dtype", default=None, help="dtype for vecplug (direct and server); default: its own choice")
    parser.add_argument("--infinity-url", default=None)
    parser.add_argument("--infinity-model", default=None, help="the model id Infinity serves (its --model-id)")
    parser.add_argument("--json", dest="json_path", default=None)
    arguments = parser.parse_args(argv)

    import vecplug  # before torch: vecplug sets OpenMP's passive waiting, read when torch loads

    import torch

    from vecplug import bench
    from vecplug.testing import running_server

    model_dir = Path(arguments.model) if arguments.model else bench.bench_model_dir(arguments.shape)
    texts = bench.corpora(arguments.size)[arguments.corpus]
    model = vecplug.load_model(str(model_dir), dtype=arguments.dtype)
    report = model.describe()
    dtype = report["dtype"]
    lengths = model.token_counts(texts, "document")
    tokens = sum(lengths)
    flops = model.forward_flops(lengths)
    peak = bench.measure_matmul_peak(getattr(torch, dtype))
    server_args = ["--dtype", dtype]
    results: dict[str, dict] = {}

    def record(engine: str, seconds: float, **extra) -> None:
        best = results.get(engine)
        if best is None or seconds < best["seconds"]:
            results[engine] = {"seconds": seconds, **extra}

    with running_server(model_dir, *server_args) as server:
        model.embed_documents(texts[:64])  # warm-ups: caches, allocator, first-call costs
        client_pass(server.url, texts[:64], arguments.clients, arguments.texts_per_request)
        if arguments.infinity_url:
            client_pass(arguments.infinity_url, texts[:64], arguments.clients, arguments.texts_per_request,
                        path="/embeddings", prompt=DOCUMENT_PROMPT, model_name=arguments.infinity_model)
        for turn in range(arguments.repeat):
            started = time.perf_counter()
            model.embed_documents(texts)
            record("direct", time.perf_counter() - started)
            summary = client_pass(server.url, texts, arguments.clients, arguments.texts_per_request)
            record("server", summary["seconds"], latency_ms=summary["latency_ms"])
            if arguments.infinity_url:
                summary = client_pass(arguments.infinity_url, texts, arguments.clients, arguments.texts_per_request,
                                      path="/embeddings", prompt=DOCUMENT_PROMPT,
                                      model_name=arguments.infinity_model)
                record("infinity", summary["seconds"], latency_ms=summary["latency_ms"])
            print(f"turn {turn + 1}: " + ", ".join(f"{name} {row['seconds']:.2f}s" for name, row in results.items()),
                  file=sys.stderr)

        http = subprocess.run([sys.executable, str(LOAD_CLIENT), server.url, "--http-rate", "/health",
                               "--connections", str(arguments.clients), "--seconds", "3"],
                              capture_output=True, text=True, timeout=120)
        http_rate = json.loads(http.stdout.splitlines()[-1])["requests_per_s"]

    environment = {"cpu": report.get("hardware", report["device"]), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                   "threads": report.get("threads"), "threads_reason": report.get("threads_reason"),
                   "dtype": dtype, "model": str(model_dir), "corpus": arguments.corpus, "texts": len(texts),
                   "tokens": tokens, "clients": arguments.clients, "texts_per_request": arguments.texts_per_request,
                   "repeat": arguments.repeat, "matmul_peak_tflops": round(peak / 1e12, 3),
                   "load_average": os.getloadavg(), "server_health_requests_per_s": http_rate,
                   "server_embedding_requests_per_s": round(len(texts) / arguments.texts_per_request
                                                             / results["server"]["seconds"], 1)}
    rows = []
    for engine, row in results.items():
        rows.append({"engine": engine, "docs_per_s": len(texts) / row["seconds"], "tokens_per_s": tokens / row["seconds"],
                     "vs_direct": results["direct"]["seconds"] / row["seconds"],
                     "vs_infinity": (results["infinity"]["seconds"] / row["seconds"]) if "infinity" in results else None,
                     "mfu": flops / row["seconds"] / peak, **row})
    print(json.dumps(environment))
    print("| engine | docs/s | tokens/s | vs direct | vs Infinity | MFU | latency p50 / p99 (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        latency = row.get("latency_ms")
        shown = f"{latency['p50']:.0f} / {latency['p99']:.0f}" if latency else "-"
        versus = f"{row['vs_infinity']:.2f}x" if row["vs_infinity"] else "-"
        print(f"| {row['engine']} | {row['docs_per_s']:.1f} | {row['tokens_per_s']:,.0f} | {row['vs_direct']:.2f}x "
              f"| {versus} | {100 * row['mfu']:.1f}% | {shown} |")
    if arguments.json_path:
        Path(arguments.json_path).write_text(json.dumps({"environment": environment, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
