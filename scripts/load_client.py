#!/usr/bin/env python3
"""Load a running ``vecplug serve`` from a separate process and check every answer.

    python scripts/load_client.py http://127.0.0.1:8080 --model DIR --connections 64 --seconds 20

Each connection is a keep-alive HTTP/1.1 client on asyncio streams (no HTTP
library: the client must cost the shared CPU as little as possible) sending
``POST /v1/embeddings`` with 1 to 16 texts of mixed length, a random input
type, back to back. With ``--model``, every vector is compared with the same
text embedded in this process (cosine >= --min-cosine), so a vector routed to
the wrong request or the wrong position fails. Prints one JSON object:
requests, texts, failures, latency percentiles.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import urllib.parse


def text_pool(size: int, seed: int = 0) -> list[str]:
    """Distinct real texts of mixed length: paragraphs, their first words, and a few long documents."""
    from vecplug.testing import long_documents, stdlib_paragraphs

    rng = random.Random(seed)
    paragraphs = list(stdlib_paragraphs())
    pool = {" ".join(paragraph.split()[: rng.choice([3, 8, 20, 60, 400])]) for paragraph in paragraphs[: size * 2]}
    pool.update(long_documents(count=8))
    return sorted(pool)[:size]


class Connection:
    """One keep-alive HTTP/1.1 connection; requests are sent one at a time."""

    def __init__(self, host: str, port: int, api_key: str | None):
        self.host, self.port, self.api_key = host, port, api_key
        self.reader = self.writer = None

    async def post(self, path: str, payload: dict) -> tuple[int, dict, bytes]:
        return await self.request("POST", path, payload)

    async def request(self, method: str, path: str, payload: dict | None = None) -> tuple[int, dict, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        body = json.dumps(payload).encode() if payload is not None else b""
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n")
        if self.api_key:
            head += f"Authorization: Bearer {self.api_key}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        headers = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        data = await self.reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, data

    async def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def run_load(url: str, texts: list[str], connections: int, seconds: float, min_texts: int, max_texts: int,
                   reference=None, min_cosine: float = 0.99999, api_key: str | None = None, seed: int = 0,
                   input_types=("document", "query"), batches: list[list[str]] | None = None,
                   path: str = "/v1/embeddings", prompt: str = "", model_name: str | None = None):
    """Drive the server; returns a summary dict. ``reference[(kind, text)]`` is the expected vector.

    Without ``batches``, each connection sends random requests until ``seconds`` have passed.
    With ``batches`` (a fixed workload: each list once), connections take the next
    batch until none is left, as documents in the ``document`` kind; then ``prompt``
    is put before each text and no ``input_type`` is sent (for servers that apply no
    prompt and know no such field, like Infinity).
    """
    import numpy as np

    parts = urllib.parse.urlsplit(url)
    latencies: list[float] = []
    failures: list[str] = []
    counts = {"requests": 0, "texts": 0, "tokens": 0}
    deadline = time.perf_counter() + seconds
    queue = list(reversed(batches)) if batches is not None else None

    def next_request(rng) -> tuple[list[str], str, dict] | None:
        if queue is not None:
            if not queue:
                return None
            batch = queue.pop()
            payload = {"input": [prompt + text for text in batch]}
            if model_name:
                payload["model"] = model_name
            return batch, "document", payload
        if time.perf_counter() >= deadline:
            return None
        batch = rng.sample(texts, rng.randint(min_texts, max_texts))
        kind = rng.choice(input_types)
        return batch, kind, {"input": batch, "input_type": kind}

    async def worker(number: int):
        rng = random.Random(seed * 1000 + number)
        connection = Connection(parts.hostname, parts.port, api_key)
        try:
            while (request := next_request(rng)) is not None:
                batch, kind, payload = request
                started = time.perf_counter()
                try:
                    status, _, data = await connection.post(parts.path + path, payload)
                except (OSError, asyncio.IncompleteReadError, ConnectionError, ValueError) as error:
                    failures.append(f"connection {number}: {type(error).__name__}: {error}")
                    await connection.close()
                    continue
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    failures.append(f"HTTP {status}: {data[:200]!r}")
                    continue
                body = json.loads(data)
                counts["requests"] += 1
                counts["texts"] += len(batch)
                counts["tokens"] += (body.get("usage") or {}).get("prompt_tokens", 0)
                if [item["index"] for item in body["data"]] != list(range(len(batch))):
                    failures.append(f"indices {[item['index'] for item in body['data']]} for {len(batch)} texts")
                    continue
                if reference is not None:
                    got = np.asarray([item["embedding"] for item in body["data"]], dtype=np.float32)
                    want = np.stack([reference[(kind, text)] for text in batch])
                    cosine = float((got * want).sum(1).min())
                    if cosine < min_cosine:
                        failures.append(f"wrong vectors: min cosine {cosine:.6f} against this request's own texts")
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(number) for number in range(connections)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)

    def percentile(share: float) -> float | None:
        return round(1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1) if ordered else None

    return {
        "connections": connections, "seconds": round(elapsed, 2), **counts,
        "failures": len(failures), "first_failures": failures[:5],
        "requests_per_s": round(counts["requests"] / elapsed, 1), "texts_per_s": round(counts["texts"] / elapsed, 1),
        "tokens_per_s": round(counts["tokens"] / elapsed),
        "latency_ms": {"p50": percentile(0.50), "p90": percentile(0.90), "p99": percentile(0.99),
                       "max": round(1000 * ordered[-1], 1) if ordered else None},
    }


async def http_rate(url: str, path: str, connections: int, seconds: float) -> float:
    """Requests per second the server answers on ``GET path`` (no model work): the HTTP stack's own ceiling."""
    parts = urllib.parse.urlsplit(url)
    deadline = time.perf_counter() + seconds
    answered = 0

    async def worker():
        nonlocal answered
        connection = Connection(parts.hostname, parts.port, None)
        try:
            while time.perf_counter() < deadline:
                status, _, _ = await connection.request("GET", parts.path + path)
                answered += status == 200
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return answered / (time.perf_counter() - started)


def reference_vectors(model_dir: str, texts: list[str], dtype: str) -> dict:
    import vecplug

    model = vecplug.load_model(model_dir, dtype=dtype)
    reference = {}
    for kind in ("document", "query"):
        for text, vector in zip(texts, model.embed(texts, kind)):
            reference[(kind, text)] = vector
    return reference


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--model", help="the served model's directory: check every vector against it")
    parser.add_argument("--dtype", default="float32", help="dtype of the reference model (the server's)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--min-texts", type=int, default=1)
    parser.add_argument("--max-texts", type=int, default=16)
    parser.add_argument("--pool", type=int, default=400, help="distinct texts to draw from")
    parser.add_argument("--min-cosine", type=float, default=0.99999)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--batches", default=None,
                        help="a JSON file with a list of text lists: send each once (a fixed workload), then stop")
    parser.add_argument("--path", default="/v1/embeddings")
    parser.add_argument("--prompt", default="", help="with --batches: put this before each text (servers without prompts)")
    parser.add_argument("--model-name", default=None, help="with --batches: the model field to send")
    parser.add_argument("--http-rate", metavar="PATH", default=None,
                        help="only measure GET PATH requests per second for --seconds (the HTTP stack's ceiling)")
    arguments = parser.parse_args(argv)
    if arguments.http_rate:
        rate = asyncio.run(http_rate(arguments.url.rstrip("/"), arguments.http_rate, arguments.connections,
                                     arguments.seconds))
        print(json.dumps({"path": arguments.http_rate, "connections": arguments.connections,
                          "requests_per_s": round(rate, 1)}))
        return 0
    batches = json.loads(open(arguments.batches).read()) if arguments.batches else None
    texts = [] if batches is not None else text_pool(arguments.pool)
    reference = reference_vectors(arguments.model, texts, arguments.dtype) if arguments.model else None
    summary = asyncio.run(run_load(arguments.url.rstrip("/"), texts, arguments.connections, arguments.seconds,
                                   arguments.min_texts, arguments.max_texts, reference, arguments.min_cosine,
                                   arguments.api_key, batches=batches, path=arguments.path, prompt=arguments.prompt,
                                   model_name=arguments.model_name))
    print(json.dumps(summary))
    return 0 if summary["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
