"""``vecplug serve`` under bad input, wrong keys, overload, clients that leave, SIGTERM and failed loads.

Every refusal is a 4xx with a JSON body that names the problem; none is a
5xx and none stops the server. Each test runs real server processes.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from vecplug.testing import running_server
from test_server import call

PLUGIN_SERVER = [sys.executable, str(Path(__file__).parents[1] / "plugin_server.py")]


def openai_message(body) -> str:
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    assert body["error"]["type"], body
    return body["error"]["message"]


BAD_REQUESTS = [
    # (what, body, status, words the message must contain)
    ("malformed JSON", b'{"input": "unterminated', 400, "not valid JSON"),
    ("empty body", b"", 400, "empty"),
    ("a JSON array", b'["text"]', 400, "JSON object"),
    ("input missing", {"model": "x"}, 400, "input"),
    ("input a number", {"input": 5}, 400, "string or a list of strings"),
    ("input an object", {"input": {"text": "x"}}, 400, "string or a list of strings"),
    ("token ids", {"input": [1, 2, 3]}, 400, "token-id input is not supported"),
    ("null item", {"input": ["ok", None]}, 400, "input[1] is null"),
    ("empty list", {"input": []}, 400, "empty list"),
    ("100,000 strings", {"input": ["x"] * 100_000}, 413, "100,000 texts"),
    ("a 10 MB string", {"input": "x" * 10_000_000}, 413, "request body"),
    ("unknown input_type", {"input": "x", "input_type": "passage"}, 400, "input_type"),
    ("dimensions too large", {"input": "x", "dimensions": 100_000}, 400, "dimensions=100000"),
    ("dimensions zero", {"input": "x", "dimensions": 0}, 400, "dimensions"),
    ("dimensions a string", {"input": "x", "dimensions": "16"}, 400, "dimensions"),
    ("dimensions a boolean", {"input": "x", "dimensions": True}, 400, "dimensions"),
    ("encoding_format", {"input": "x", "encoding_format": "hex"}, 400, "encoding_format"),
    ("misspelt field", {"input": "x", "input_typ": "query"}, 400, "input_typ: unknown field"),
    ("unknown model", {"input": "x", "model": "text-embedding-3-small"}, 404, "not served here"),
]


@pytest.mark.parametrize("what, body, status, words", BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS])
def test_bad_input_is_a_clear_4xx(tiny_server, what, body, status, words):
    got, headers, answer = call(tiny_server.url, "/v1/embeddings", body)
    assert got == status, (what, answer)
    assert headers["Content-Type"] == "application/json"
    assert words in openai_message(answer), answer


def test_bad_input_leaves_the_server_healthy(tiny_server, tiny_model):
    for _, body, _, _ in BAD_REQUESTS:
        call(tiny_server.url, "/v1/embeddings", body)
    status, _, body = call(tiny_server.url, "/v1/embeddings", {"input": ["still here"]})
    assert status == 200
    assert float(np.dot(body["data"][0]["embedding"], tiny_model.embed_documents(["still here"])[0])) > 0.99999
    assert tiny_server.process.poll() is None


def test_unknown_routes_and_methods_answer_json(tiny_server):
    status, _, body = call(tiny_server.url, "/v1/embedding", {"input": "x"})
    assert status == 404 and "POST /v1/embeddings" in openai_message(body)
    status, _, body = call(tiny_server.url, "/v1/embeddings", method="GET")
    assert status == 405 and "GET is not allowed" in openai_message(body)


@pytest.fixture(scope="module")
def keyed_server(tiny_model_dir, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("key") / "api-key"
    key_file.write_text("file-key-123\n")
    with running_server(tiny_model_dir, "--api-key-file", str(key_file)) as server:
        yield server


def test_api_key_from_file_guards_every_route_but_health(keyed_server):
    url = keyed_server.url
    assert call(url, "/health")[0] == 200
    for path, body in [("/v1/embeddings", {"input": "x"}), ("/v1/models", None), ("/embed", {"inputs": "x"}),
                       ("/embed_chunks", {"inputs": ["x"]}), ("/embed_all", {"inputs": "x"}),
                       ("/tokenize", {"inputs": "x"}), ("/decode", {"ids": [1]}),
                       ("/info", None), ("/metrics", None), ("/openapi.json", None)]:
        for headers, problem in [({}, "needs an API key"), ({"Authorization": "Bearer wrong"}, "wrong API key"),
                                 ({"Authorization": "Basic file-key-123"}, "Bearer <key>")]:
            status, response_headers, answer = call(url, path, body, headers=headers,
                                                    method=None if body is not None else "GET")
            assert status == 401, (path, headers, answer)
            message = answer["error"] if path in ("/embed", "/embed_chunks", "/embed_all", "/info", "/tokenize",
                                                  "/decode") \
                else openai_message(answer)
            assert problem in message, answer
            assert response_headers["WWW-Authenticate"].startswith("Bearer")
        status, _, _ = call(url, path, body, headers={"Authorization": "Bearer file-key-123"},
                            method=None if body is not None else "GET")
        assert status == 200, path


def test_api_key_from_the_environment_and_real_clients(tiny_model_dir, tiny_model):
    from openai import AuthenticationError, OpenAI

    env = {**os.environ, "VECPLUG_API_KEY": "env-key-456"}
    with running_server(tiny_model_dir, env=env) as server:
        assert call(server.url, "/v1/models")[0] == 401
        client = OpenAI(base_url=server.url + "/v1", api_key="env-key-456", max_retries=0)
        response = client.embeddings.create(input=["keyed"], model=tiny_model.name)
        assert len(response.data[0].embedding) == tiny_model.dimensions
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0).embeddings.create(input=["x"], model="m")


def test_full_queue_answers_429_with_retry_after(tiny_model_dir):
    texts = [" ".join(["queued words"] * 120)] * 4
    with running_server(tiny_model_dir, "--max-queue-texts", "8", "--max-batch-tokens", "256") as server:
        status, _, body = call(server.url, "/v1/embeddings", {"input": ["x"] * 9})
        assert status == 413 and "at most 8 per request" in openai_message(body)
        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(lambda _: call(server.url, "/v1/embeddings", {"input": texts}), range(24)))
        statuses = [status for status, _, _ in answers]
        assert set(statuses) <= {200, 429}, statuses
        assert statuses.count(429) >= 1 and statuses.count(200) >= 2, statuses
        for status, headers, body in answers:
            if status == 429:
                assert int(headers["Retry-After"]) >= 1
                assert "--max-queue-texts" in openai_message(body)
            else:
                assert len(body["data"]) == 4
        assert call(server.url, "/health")[0] == 200


def metric_values(url: str) -> dict[str, float]:
    _, _, text = call(url, "/metrics")
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def raw_post(url: str, body: dict) -> socket.socket:
    """Send a request on a bare socket and return it unread, so the test can hang up."""
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)))
    data = json.dumps(body).encode()
    connection.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return connection


@pytest.mark.slow  # a fresh process or a real wait: seconds of the fast loop
def test_a_request_whose_client_left_is_never_embedded():
    # one batch of the fake model that takes 3 s: the short request waits for the
    # batch in progress (it would go next, not behind queued bulk) and its client
    # hangs up meanwhile
    busy = [f"a text that keeps the engine busy {number}" for number in range(16)]
    env = {**os.environ, "FAKE_EMBED_SECONDS": "3"}
    with running_server("fake-hash", env=env, launcher=PLUGIN_SERVER) as server:
        before = metric_values(server.url)
        result = {}
        worker = threading.Thread(target=lambda: result.update(zip(("status", "headers", "body"),
                                                                   call(server.url, "/v1/embeddings",
                                                                        {"input": busy}))))
        worker.start()
        time.sleep(0.5)  # the long request is queued first
        leaving = raw_post(server.url, {"input": ["never embedded", "nor this"]})
        time.sleep(0.5)
        leaving.close()
        assert worker.is_alive(), "the busy request finished before the client left: make it longer"
        worker.join(300)
        assert result["status"] == 200 and len(result["body"]["data"]) == len(busy)
        after = metric_values(server.url)
        assert after['vecplug_rejected_requests_total{reason="client_gone"}'] == 1
        assert after["vecplug_dropped_texts_total"] == 2
        assert after["vecplug_texts_total"] - before.get("vecplug_texts_total", 0) == len(busy)


@pytest.mark.slow  # a fresh process or a real wait: seconds of the fast loop
def test_sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_0(tiny_model_dir):
    texts = [" ".join(["draining"] * 200)] * 32
    with running_server(tiny_model_dir, "--max-batch-tokens", "256") as server:
        result = {}
        worker = threading.Thread(target=lambda: result.update(status_body=call(server.url, "/v1/embeddings",
                                                                                {"input": texts})))
        worker.start()
        time.sleep(0.7)
        server.process.terminate()
        time.sleep(0.5)
        with pytest.raises(OSError):  # the listener is closed: new connections are refused
            call(server.url, "/health")
        worker.join(300)
        status, _, body = result["status_body"]
        assert status == 200 and len(body["data"]) == len(texts)
        assert server.process.wait(60) == 0, server.log()[-2000:]
        assert "Shutting down" in server.log()


def test_unknown_model_exits_at_once_with_the_known_names():
    process = subprocess.run([sys.executable, "-m", "vecplug", "serve", "-m", "no-such-model", "--port", "0"],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    assert "unknown model 'no-such-model'" in process.stderr and "nomic-ai/modernbert-embed-base" in process.stderr


def test_a_model_that_fails_to_load_stops_the_server_with_status_1():
    """Loading fails after the server listens (503 meanwhile): the process must exit, not sit there at 503."""
    env = {**os.environ, "FAKE_LOAD_ERROR": "the weights are on a disk that went away"}
    process = subprocess.run([*PLUGIN_SERVER, "serve", "-m", "fake-hash", "--port", "0"],
                             capture_output=True, text=True, timeout=120, env=env)
    assert process.returncode == 1, process.stderr[-2000:]
    assert "listening on" in process.stderr
    assert "Error: could not load the model: RuntimeError: the weights are on a disk that went away" in process.stderr


def test_broken_weights_exit_before_listening(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken-modernbert"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    process = subprocess.run([sys.executable, "-m", "vecplug", "serve", "-m", str(broken), "--port", "0"],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 1, process.stderr[-2000:]
    assert "model.safetensors" in process.stderr and "listening" not in process.stderr


def test_an_incomplete_model_directory_exits_before_listening(tmp_path):
    broken = tmp_path / "incomplete-modernbert"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "modernbert", "hidden_size": 64}))
    process = subprocess.run([sys.executable, "-m", "vecplug", "serve", "-m", str(broken), "--port", "0"],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 1
    assert "has no model.safetensors" in process.stderr and "listening" not in process.stderr


def test_port_in_use_is_one_clear_line(tiny_model_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = subprocess.run([sys.executable, "-m", "vecplug", "serve", "-m", str(tiny_model_dir),
                                  "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in process.stderr and "Traceback" not in process.stderr


@pytest.mark.slow  # waits through a 4-second model load
def test_plugin_model_without_fast_path_and_the_loading_state():
    """A third-party model (only embed_batch) is served; /health and requests say 503 while it loads."""
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from fake_plugin import FAKE_SPEC, HashModel

    env = {**os.environ, "FAKE_LOAD_SECONDS": "4"}
    with _started_while_loading(env) as (url, seen_while_loading):
        assert seen_while_loading["/health"][0] == 503 and seen_while_loading["/health"][2]["status"] == "loading"
        status, headers, body = seen_while_loading["/v1/embeddings"]
        assert status == 503 and "still loading" in openai_message(body) and headers["Retry-After"]
        texts = [f"text number {n}" for n in range(70)]
        status, _, body = call(url, "/v1/embeddings", {"input": texts, "input_type": "query"})
        assert status == 200 and body["model"] == FAKE_SPEC.name
        expected = HashModel(FAKE_SPEC).embed(texts, "query")
        np.testing.assert_allclose([item["embedding"] for item in body["data"]], expected, atol=1e-6)
        assert body["usage"]["prompt_tokens"] == 0  # no tokenizer to count with
        for path in ("/embed_chunks", "/embed_all"):  # they need the model's tokens (contracts.ChunkPath)
            status, _, body = call(url, path, {"inputs": ["a text"]})
            assert status == 501 and "ChunkPath" in body["error"], (path, body)
        for path in ("/tokenize", "/decode"):  # they need the model's tokenizer
            status, _, body = call(url, path, {"inputs": ["a text"]} if path == "/tokenize" else {"ids": [1, 2]})
            assert status == 501 and body["error_type"], (path, body)
        status, _, body = call(url, "/embed", {"inputs": ["a text"], "normalize": False})
        assert status == 422 and "normalize=false is not available" in body["error"], body
        assert "no unnormalised output" in body["error"]


class _started_while_loading:
    """Start the plugin server and record what /health and /v1/embeddings say before it is ready."""

    def __init__(self, env):
        self.env = env

    def __enter__(self):
        import re
        import tempfile

        self.log = tempfile.NamedTemporaryFile(prefix="vecplug-plugin-serve-", suffix=".log")
        self.process = subprocess.Popen([*PLUGIN_SERVER, "serve", "-m", "fake-hash", "--port", "0"],
                                        stdout=self.log, stderr=self.log, env=self.env)
        deadline = time.monotonic() + 60
        url = None
        while url is None:
            assert time.monotonic() < deadline and self.process.poll() is None, Path(self.log.name).read_text()
            found = re.search(r"listening on (http://\S+)", Path(self.log.name).read_text())
            url = found.group(1) if found else time.sleep(0.05)
        seen = {}
        while "/health" not in seen:
            try:
                seen["/health"] = call(url, "/health")
            except OSError:  # uvicorn not accepting yet
                time.sleep(0.05)
        seen["/v1/embeddings"] = call(url, "/v1/embeddings", {"input": "too early"})
        while call(url, "/health")[0] != 200:
            assert time.monotonic() < deadline, Path(self.log.name).read_text()
            time.sleep(0.1)
        return url, seen

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(60)
        self.log.close()
