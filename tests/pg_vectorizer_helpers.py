"""Shared by the vectorizer tests: an embedding server, its counters, the worker as a process, vectors as arrays.

The servers and in-process models run torch on one thread: the tiny test
model gains nothing from more, and on a busy 2-core machine each extra
thread's wake-up costs more than the work (measured here: 40x).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
VECPLUG_CLI = [sys.executable, "-m", "vecplug"]


def server_env(**extra) -> dict:
    return {**os.environ, **ONE_THREAD, "HF_HUB_OFFLINE": "1", **extra}


@contextlib.contextmanager
def embedding_server(model_dir, *args):
    """``vecplug serve`` of ``model_dir`` in float32 on one thread (a fixed ``--port`` may come in ``args``)."""
    from vecplug.testing import running_server

    with running_server(model_dir, "--dtype", "float32", *args, env=server_env()) as server:
        yield server


@contextlib.contextmanager
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def server_metric(url: str, name: str = "vecplug_texts_total", having: str = "") -> float:
    """A counter of ``GET /metrics`` at ``url``, summed over the series whose labels contain ``having``."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    values = [float(match.group(2)) for match in re.finditer(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.M)
              if having in (match.group(1) or "")]
    assert values or having, f"no metric {name} in:\n{text[:2000]}"
    return sum(values)


def install(dsn: str, server_url: str | None) -> None:
    import vecplug_pgvector

    vecplug_pgvector.install(dsn, server_url)


def vectors(conn, table: str = "docs", column: str = "embedding", key: str = "id") -> dict:
    """{key: float32 array or None} of every row."""
    from pgvector.psycopg import register_vector
    from psycopg import sql

    register_vector(conn)
    rows = conn.execute(sql.SQL("SELECT {}, {} FROM {}").format(
        sql.Identifier(key), sql.Identifier(column), sql.Identifier(table))).fetchall()
    return {row[0]: None if row[1] is None else np.asarray(row[1].to_numpy(), dtype=np.float32) for row in rows}


def assert_embedded_as(found: dict, expected: dict, min_cosine: float = 0.9999) -> None:
    """Every key of ``expected`` has a vector whose cosine with the expected one is at least ``min_cosine``."""
    missing = [key for key in expected if found.get(key) is None]
    assert not missing, f"{len(missing)} rows without a vector, e.g. {missing[:5]}"
    keys = list(expected)
    got = np.stack([found[key] for key in keys])
    want = np.stack([expected[key] for key in keys])
    cosines = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cosines.min() >= min_cosine, f"min cosine {cosines.min()} at key {keys[int(cosines.argmin())]}"


def queue_rows(conn, vectorizer_id: int | None = None) -> list[tuple]:
    """(vectorizer id, key, attempts) of every queued row: vecplug.queue's rows, then the keys of the writing
    statements no worker has spread into it yet (vecplug.queued_statements, one row per statement)."""
    where = "" if vectorizer_id is None else f" WHERE vectorizer_id = {int(vectorizer_id)}"
    return conn.execute(f"""
        SELECT vectorizer_id, pk, attempts FROM (
            SELECT vectorizer_id, pk, attempts, 0 AS part, id, 0::bigint AS line FROM vecplug.queue{where}
            UNION ALL
            SELECT s.vectorizer_id, k.pk, 0, 1, s.id, k.line
            FROM vecplug.queued_statements s, vecplug._statement_keys(s.keys) k{where}) queued
        ORDER BY part, id, line""").fetchall()


def status(conn) -> dict:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cursor:
        return {row["vectorizer"]: row for row in cursor.execute("SELECT * FROM vecplug.status").fetchall()}


def wait_for(predicate, timeout: float, message: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {message}")
        time.sleep(interval)


class WorkerProcess:
    """``vecplug pg worker`` in a subprocess; stderr (JSON log lines) goes to a file."""

    def __init__(self, dsn: str, *args: str, launcher: list[str] | None = None, log_dir: Path):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"worker-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen([*(launcher or VECPLUG_CLI), "pg", "worker", "--dsn", dsn, *args],
                                        stdout=subprocess.DEVNULL, stderr=self._log, stdin=subprocess.DEVNULL,
                                        env=server_env(PYTHONFAULTHANDLER="1"))

    def log_lines(self) -> list[dict]:
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                lines.append({"message": line})
        return lines

    def events(self, name: str) -> list[dict]:
        return [line for line in self.log_lines() if line.get("event") == name]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; a worker that does not stop dumps its threads' stacks into its log (SIGABRT)."""
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: stacks into the log
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        self._log.close()
        return self.process.returncode


def run_worker_once(dsn: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*VECPLUG_CLI, "pg", "worker", "--dsn", dsn, "--once", *args], capture_output=True,
                          text=True, timeout=timeout, env=server_env())


@pytest.fixture(scope="session")
def vz_server(tiny_model_dir):
    """One ``vecplug serve`` of the tiny model (float32, one thread) for the vectorizer tests."""
    with embedding_server(tiny_model_dir) as server:
        yield server
