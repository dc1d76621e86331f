"""``vecplug serve``'s life cycle: slow clients, too many clients, clients that hang up, SIGTERM within a bound.

Each test runs a real ``vecplug serve`` subprocess and talks to it over raw
sockets where a well-behaved client library would hide the behaviour. The
timing bounds are generous on purpose (several times the configured
timeout): the test machine is shared and busy; the point is "bounded", not
a latency figure.
"""
from __future__ import annotations

import json
import signal
import socket
import threading
import time

import pytest

from vecplug.testing import running_server
from test_server import call

TIMEOUT = 2  # --request-timeout and --answer-timeout of the module's server, seconds
SLACK = 8  # generous: a busy 2-core machine
# Each text is one pass of --max-batch-tokens 64: a thousand of them keep the tiny model busy for seconds.
BUSY = [" ".join(["a long text that keeps the engine busy"] * 30)] * 1000


@pytest.fixture(scope="module")
def strict_server(tiny_model_dir):
    with running_server(tiny_model_dir, "--max-batch-tokens", "64", "--request-timeout", str(TIMEOUT),
                        "--answer-timeout", str(TIMEOUT), "--max-connections", "4") as server:
        yield server


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def raw_request(url: str, path: str, body: bytes, sent: int | None = None) -> socket.socket:
    """A POST on a bare socket with only the first ``sent`` bytes of its body sent (all by default)."""
    connection = socket.create_connection(address(url))
    connection.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:sent])
    return connection


def read_until_closed(connection: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    connection.settimeout(limit)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received, time.monotonic() - started


def log_after(server, mark: int) -> str:
    return server.log()[mark:]


def test_a_client_trickling_headers_is_cut_off(strict_server):
    connection = socket.create_connection(address(strict_server.url))
    connection.sendall(b"GET /health HTTP/1.1\r\nHo")  # half a header line, then nothing
    received, seconds = read_until_closed(connection, TIMEOUT + SLACK)
    assert received == b"" and seconds < TIMEOUT + SLACK
    assert seconds >= TIMEOUT * 0.8, "closed before the timeout: a slow but honest client would be cut too"
    assert call(strict_server.url, "/health")[0] == 200


def test_a_body_that_does_not_arrive_in_time_is_a_408(strict_server):
    connection = raw_request(strict_server.url, "/embed", json.dumps({"inputs": "x" * 100}).encode(), sent=10)
    received, seconds = read_until_closed(connection, TIMEOUT + SLACK)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and seconds < TIMEOUT + SLACK, received
    assert "--request-timeout" in json.loads(body)["error"]  # TEI's error shape on a TEI route


@pytest.mark.slow  # waits out the request timeout on a busy engine
def test_an_answer_later_than_the_timeout_is_a_504_and_its_texts_are_dropped(strict_server):
    mark = len(strict_server.log())
    started = time.monotonic()
    status, headers, body = call(strict_server.url, "/v1/embeddings", {"input": BUSY})
    assert status == 504 and time.monotonic() - started < TIMEOUT + SLACK, body
    assert "--answer-timeout" in body["error"]["message"] and body["error"]["code"] == "timeout"
    assert headers["Retry-After"]
    _, _, metrics = call(strict_server.url, "/metrics")
    dropped = [line for line in metrics.splitlines() if line.startswith("vecplug_dropped_texts_total")]
    assert float(dropped[0].split()[-1]) > 0, dropped  # its queued texts left the queue
    status, _, body = call(strict_server.url, "/v1/embeddings", {"input": "the next request"})
    assert status == 200
    assert "Traceback" not in log_after(strict_server, mark)


def test_connections_beyond_the_limit_get_503(strict_server):
    idle = [socket.create_connection(address(strict_server.url)) for _ in range(3)]
    try:
        time.sleep(0.2)
        status, _, _ = call(strict_server.url, "/health")
        assert status == 503  # the 4th open connection: --max-connections 4
    finally:
        for connection in idle:
            connection.close()
    deadline = time.monotonic() + SLACK
    while call(strict_server.url, "/health")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


@pytest.mark.slow  # a busy engine
def test_a_client_hanging_up_is_one_info_line_not_a_traceback(strict_server):
    mark = len(strict_server.log())
    body = json.dumps({"input": BUSY[:200]}).encode()
    leaving = raw_request(strict_server.url, "/v1/embeddings", body)  # whole request, then gone mid-work
    time.sleep(0.5)
    leaving.close()
    half = raw_request(strict_server.url, "/v1/embeddings", body, sent=100)  # gone before its body is in
    time.sleep(0.3)
    half.close()
    deadline = time.monotonic() + SLACK
    while log_after(strict_server, mark).count("client disconnected before the answer") < 2:
        assert time.monotonic() < deadline, log_after(strict_server, mark)
        time.sleep(0.1)
    log = log_after(strict_server, mark)
    assert "Traceback" not in log and "ERROR" not in log, log
    assert "INFO:     client disconnected before the answer to POST /v1/embeddings (200 texts); its queued " \
           "texts were dropped" in log
    assert "(its body had not all arrived)" in log
    status, _, answer = call(strict_server.url, "/v1/embeddings", {"input": ["still serving"]})
    assert status == 200 and len(answer["data"]) == 1


@pytest.mark.slow  # a fresh process and a drain
def test_sigterm_drain_is_bounded_by_the_graceful_timeout(tiny_model_dir):
    graceful = 2
    many = BUSY * 2  # far more than 2 s of work
    with running_server(tiny_model_dir, "--max-batch-tokens", "64", "--graceful-timeout", str(graceful)) as server:
        result = {}
        busy = threading.Thread(target=lambda: result.update(answer=call(server.url, "/v1/embeddings",
                                                                         {"input": many})))
        busy.start()
        late_body = json.dumps({"input": "arrives during the drain"}).encode()
        late = raw_request(server.url, "/v1/embeddings", late_body, sent=0)  # headers in, body not yet
        time.sleep(1.0)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        late.sendall(late_body)
        received, _ = read_until_closed(late, SLACK)
        assert received.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in received.lower(), received
        assert b"shutting down" in received
        assert server.process.wait(graceful + SLACK) == 0, server.log()[-2000:]
        exited = time.monotonic() - signalled
        busy.join(SLACK)
        assert exited < graceful + SLACK, exited
        status, headers, body = result["answer"]
        # not finished in time: answered 503 with Retry-After, not cut off
        assert status == 503 and headers["Retry-After"] and body["error"]["code"] == "draining", body
        log = server.log()
        assert "--graceful-timeout 2 s is near" in log and "Traceback" not in log, log[-2000:]
