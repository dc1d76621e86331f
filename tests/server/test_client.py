"""``vecplug.client.RemoteModel`` and ``load_model(url)`` against real ``vecplug serve`` processes."""
from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import vecplug
from vecplug.client import RemoteModel
from vecplug.testing import running_server, stdlib_paragraphs

TEXTS = list(stdlib_paragraphs()[:30])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_load_model_url_is_the_same_model(tiny_server, tiny_model):
    remote = vecplug.load_model(tiny_server.url)
    assert isinstance(remote, RemoteModel) and isinstance(remote, vecplug.EmbeddingModel)
    assert remote.spec.to_dict() == tiny_model.spec.to_dict()
    assert (remote.name, remote.dimensions, remote.max_tokens) == (tiny_model.name, 64, tiny_model.max_tokens)
    for kind in ("document", "query"):
        np.testing.assert_allclose(remote.embed(TEXTS, kind), tiny_model.embed(TEXTS, kind), atol=2e-6)
    assert remote.embed_documents([]).shape == (0, 64)
    assert vecplug.load_model(tiny_server.url + "/v1/").url == tiny_server.url  # OpenAI-style base URLs work


def test_streams_in_order_with_several_requests_in_flight(tiny_server, tiny_model):
    remote = RemoteModel(tiny_server.url, batch_size=7)
    generator = (text for text in TEXTS * 3)
    rows = list(remote.iter_embed(generator, "query"))
    np.testing.assert_allclose(np.stack(rows), tiny_model.embed_queries(TEXTS * 3), atol=2e-6)


def test_dimensions_view_matches_the_local_view(tiny_server, tiny_model):
    remote = vecplug.load_model(tiny_server.url, dimensions=16)
    local = tiny_model.with_dimensions(16)
    assert remote.dimensions == 16 and remote.fingerprint == local.fingerprint
    np.testing.assert_allclose(remote.embed_documents(TEXTS[:5]), local.embed_documents(TEXTS[:5]), atol=2e-6)
    with pytest.raises(ValueError, match="asks for more"):
        vecplug.load_model(tiny_server.url, dimensions=65)


def test_bad_items_raise_locally_like_a_local_model(tiny_server):
    remote = RemoteModel(tiny_server.url)
    with pytest.raises(TypeError, match="index 1"):
        remote.embed_documents(["fine", None])
    with pytest.raises(ValueError, match="kind"):
        remote.embed(["x"], "passage")
    with pytest.raises(NotImplementedError, match="embed_documents"):
        remote.embed_batch(["x"])
    with pytest.raises(ValueError, match="pass neither"):
        vecplug.load_model(tiny_server.url, device="cpu")


def test_fingerprint_check(tiny_server, tiny_model):
    assert RemoteModel(tiny_server.url, fingerprint=tiny_model.fingerprint).fingerprint == tiny_model.fingerprint
    with pytest.raises(vecplug.ModelMismatchError, match="not the expected abc"):
        RemoteModel(tiny_server.url, fingerprint="abc")


@pytest.mark.slow  # a fresh process or a real wait: seconds of the fast loop
def test_a_server_that_changed_its_model_is_refused(tiny_model_dir, tiny_model_no_prompts_dir):
    port = free_port()
    with running_server(tiny_model_dir, "--port", str(port)) as first:
        remote = RemoteModel(first.url)
        remote.embed_documents(["before"])
    with running_server(tiny_model_no_prompts_dir, "--port", str(port)) as second:
        assert second.url == remote.url
        with pytest.raises(vecplug.ModelMismatchError, match="model changed"):
            remote.embed_documents(["after"])


def test_no_server_is_a_clear_error_within_the_retry_time():
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(vecplug.ServerUnavailableError, match=f"{url}.*within 1 s") as raised:
        RemoteModel(url, retry_seconds=1)
    assert time.monotonic() - started < 3
    assert isinstance(raised.value, ConnectionError) and "cannot connect" in str(raised.value)


@pytest.mark.slow  # waits through refused connections and a model load
def test_waits_for_a_server_that_is_still_starting(tiny_model_dir):
    """Created before the server listens: refused connections, then 503 while loading, then vectors."""
    port = free_port()
    result = {}
    client = threading.Thread(target=lambda: result.update(model=RemoteModel(f"http://127.0.0.1:{port}",
                                                                             retry_seconds=120, refused_seconds=120)))
    client.start()
    time.sleep(1.0)
    with running_server(tiny_model_dir, "--port", str(port)):
        client.join(120)
        assert result["model"].embed_queries(["finally"]).shape == (1, 64)


def test_api_key_from_argument_or_environment(tiny_model_dir, monkeypatch):
    env = {**os.environ, "VECPLUG_API_KEY": "client-key"}
    with running_server(tiny_model_dir, env=env) as server:
        with pytest.raises(vecplug.ServerError, match="401.*VECPLUG_API_KEY") as raised:
            RemoteModel(server.url)
        assert raised.value.status == 401 and raised.value.url == server.url
        assert RemoteModel(server.url, api_key="client-key").embed_documents(["x"]).shape == (1, 64)
        monkeypatch.setenv("VECPLUG_API_KEY", "client-key")
        assert vecplug.load_model(server.url).embed_documents(["y"]).shape == (1, 64)


@pytest.mark.slow  # eight clients backing off against a full queue
def test_retries_429_until_the_queue_has_room(tiny_model_dir, tiny_model):
    """Eight clients against a queue of 16 texts: raw requests would see 429s; RemoteModel sees vectors."""
    texts = [" ".join(["retry"] * 60)] * 6
    with running_server(tiny_model_dir, "--max-queue-texts", "16", "--max-batch-tokens", "256",
                        "--dtype", "float32") as server:
        remote = RemoteModel(server.url, batch_size=6)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: remote.embed_documents(texts), range(8)))
        expected = tiny_model.embed_documents(texts)
        for vectors in results:
            np.testing.assert_allclose(vectors, expected, atol=2e-6)
        from test_server_robustness import metric_values

        assert metric_values(server.url)['vecplug_rejected_requests_total{reason="queue_full"}'] >= 1


def test_other_errors_are_not_retried(tiny_server):
    remote = RemoteModel(tiny_server.url, retry_seconds=30)
    started = time.monotonic()
    with pytest.raises(vecplug.ServerError, match="413") as raised:
        remote.embed_documents(["x" * 9_000_000])
    assert raised.value.status == 413 and time.monotonic() - started < 10
