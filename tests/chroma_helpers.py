"""A real ``chroma run`` server for the tests, fresh-process runs and a brute-force reference.

The server binds 127.0.0.1 on a free port, is waited for through its
heartbeat with a deadline, and is always terminated, even when a test fails.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 30


def chroma_executable() -> str:
    beside_python = Path(sys.executable).with_name("chroma")
    found = str(beside_python) if beside_python.exists() else shutil.which("chroma")
    if not found:
        raise RuntimeError(f"no `chroma` CLI next to {sys.executable} or on PATH; install chromadb")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def offline_environment() -> dict:
    """The test's environment (offline hub, private HF_HOME) plus no Chroma telemetry."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", "TOKENIZERS_PARALLELISM": "false"}


@contextlib.contextmanager
def chroma_server(path: Path):
    """Run ``chroma run --path path`` until the block ends; yield its port."""
    port = free_port()
    log_path = path.with_suffix(".log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [chroma_executable(), "run", "--path", str(path), "--host", HOST, "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=offline_environment(),
        )
        try:
            wait_for_heartbeat(process, port, log_path)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def wait_for_heartbeat(process: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    url = f"http://{HOST}:{port}/api/v2/heartbeat"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chroma run exited with {process.returncode}:\n{log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"chroma run gave no heartbeat on port {port} in {STARTUP_TIMEOUT_S}s:\n"
                       f"{log_path.read_text()[-2000:]}")


def run_python(code: str, timeout: float = 120) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=offline_environment()
    )
    if completed.returncode != 0:
        raise AssertionError(f"subprocess failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def brute_force(query_vector: np.ndarray, ids: list[str], vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Ids ranked by cosine distance to ``query_vector``, and those distances (vectors are unit length)."""
    distances = 1.0 - vectors @ query_vector
    order = np.argsort(distances, kind="stable")
    return [ids[index] for index in order], distances[order]


def assert_same_ranking(result_ids, result_distances, expected_ids, expected_distances, tolerance=1e-5):
    """Chroma's ranking equals the brute-force one; neighbours closer than ``tolerance`` may swap."""
    result_distances = np.asarray(result_distances, dtype=np.float64)
    np.testing.assert_allclose(result_distances, expected_distances[: len(result_distances)], atol=tolerance)
    expected_rank = {record_id: rank for rank, record_id in enumerate(expected_ids)}
    for position, record_id in enumerate(result_ids):
        if record_id != expected_ids[position]:
            swapped_with = expected_rank[record_id]
            gap = abs(expected_distances[swapped_with] - expected_distances[position])
            assert gap <= tolerance, f"{record_id} ranked {position}, brute force ranks it {swapped_with}"
