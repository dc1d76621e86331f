"""Load: 64 connections from a separate client process for 20 s against a tiny model.

Requests carry 1 to 16 texts of mixed length (3 words to ~500 tokens) with a
random input type; the client checks every vector against the same text
embedded in its own process, so a vector routed to the wrong request or
position fails. Zero failed requests allowed; p50/p99 are printed (run
pytest with -s to see them).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # 20 s of load plus the server's start

LOAD_CLIENT = Path(__file__).parents[2] / "scripts" / "load_client.py"


def test_64_connections_for_20_seconds(tiny_model_dir):
    from vecplug.testing import running_server

    with running_server(tiny_model_dir, "--dtype", "float32") as server:
        process = subprocess.run([sys.executable, str(LOAD_CLIENT), server.url, "--model", str(tiny_model_dir),
                                  "--connections", "64", "--seconds", "20"],
                                 capture_output=True, text=True, timeout=600)
        assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
        summary = json.loads(process.stdout.splitlines()[-1])
        print("load test:", json.dumps(summary))
        assert summary["failures"] == 0 and summary["first_failures"] == []
        assert summary["requests"] >= 64  # every connection got answers, and kept going
        assert summary["latency_ms"]["p99"] is not None
        assert server.process.poll() is None
        assert server.stop() == 0
