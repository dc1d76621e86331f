"""What `vecplug` says while it waits: at a terminal, on Ctrl-C, for a slow server (issue 23, item 11).

Real processes on a pseudo-terminal, as a person would run them.
"""
from __future__ import annotations

import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

PLUGIN_SERVER = [sys.executable, str(Path(__file__).parents[1] / "plugin_server.py")]


def read_until(stream, wanted: str, timeout: float) -> str:
    """What ``stream`` (a pipe) said until ``wanted`` appeared, or until ``timeout`` seconds."""
    shown, deadline = b"", time.monotonic() + timeout
    while wanted.encode() not in shown and time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.5)
        if ready:
            data = os.read(stream.fileno(), 4096)
            if not data:
                break
            shown += data
    return shown.decode(errors="replace")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow  # loads a model in a fresh process
def test_embed_on_a_terminal_says_it_reads_stdin_and_ctrl_c_is_one_line(tiny_model_dir):
    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "vecplug", "embed", "-m", str(tiny_model_dir)],
                               stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(terminal)
    try:
        said = read_until(process.stderr, "Ctrl-D to end", timeout=120)
        assert "reading texts from stdin, one per line (Ctrl-D to end)" in said, said
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read().decode(errors="replace")
        assert process.wait(30) == 130
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
    lines = [line for line in (said + rest).splitlines() if line.strip()]
    assert lines[-1] == "Interrupted" and "Traceback" not in rest, said + rest


def test_embed_from_a_pipe_says_nothing_about_stdin(tiny_model_dir):
    process = subprocess.run([sys.executable, "-m", "vecplug", "embed", "-m", str(tiny_model_dir)], input="one\n",
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 0 and "Ctrl-D" not in process.stderr, process.stderr


@pytest.mark.slow  # waits through a 5-second model load
def test_a_loading_server_is_waited_for_and_said_once():
    port = free_port()
    env = {**os.environ, "FAKE_LOAD_SECONDS": "5"}
    server = subprocess.Popen([*PLUGIN_SERVER, "serve", "-m", "fake-hash", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        assert "listening on" in read_until(server.stderr, "listening on", timeout=120)
        url = f"http://127.0.0.1:{port}"
        client = subprocess.run([sys.executable, "-m", "vecplug", "embed", "-m", url, "hello"], capture_output=True,
                                text=True, timeout=120)
        assert client.returncode == 0, client.stderr
        assert client.stderr.count("waiting for the vecplug server at") == 1, client.stderr
        assert f"waiting for the vecplug server at {url}: 503" in client.stderr
        assert "(the model may be loading)" in client.stderr and '"embedding"' in client.stdout
    finally:
        server.terminate()
        server.wait(60)
