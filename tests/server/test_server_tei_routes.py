"""TEI's ``/tokenize``, ``/decode`` and ``/embed`` with ``normalize=false``; what ``/health`` shows to whom.

Against a real ``vecplug serve`` of the tiny model (float32, exact), with an
API key so that both sides of ``/health`` are seen.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from vecplug.testing import running_server
from test_server import call

KEY = {"Authorization": "Bearer tei-key"}


@pytest.fixture(scope="module")
def keyed(tiny_model_dir):
    with running_server(tiny_model_dir, "--dtype", "float32", env={**os.environ, "VECPLUG_API_KEY": "tei-key"}) as server:
        yield server.url


def test_health_without_the_key_does_not_show_the_local_path(keyed, tiny_model_dir, tiny_model):
    status, _, health = call(keyed, "/health")
    assert status == 200
    assert health == {"status": "ok", "model": tiny_model_dir.name, "fingerprint": tiny_model.fingerprint}
    status, _, health = call(keyed, "/health", headers=KEY)
    assert status == 200 and health["model_path"] == str(tiny_model_dir.resolve())
    assert health["device"] == "cpu" and health["dtype"] == "float32" and health["version"]
    assert call(keyed, "/info")[0] == 401  # /info (the whole spec and engine report) needs the key


def test_tokenize_gives_tei_tokens_of_the_prompted_text(keyed, tiny_model):
    prompt = tiny_model.spec.prompts["query"]
    status, headers, answer = call(keyed, "/tokenize", {"inputs": ["Hello world", "x"], "prompt_name": "query"},
                                   headers=KEY)
    assert status == 200 and len(answer) == 2
    tokens = answer[0]
    assert tokens[0]["special"] and tokens[0]["start"] is None and tokens[-1]["special"]
    assert [token["id"] for token in tokens] == tiny_model.tokenize([prompt + "Hello world"])[0]
    text = prompt + "Hello world"
    for token in tokens[1:-1]:
        assert not token["special"] and token["text"] == text[token["start"]:token["stop"]]
    assert "".join(token["text"] for token in tokens[1:-1]) == text
    _, _, bare = call(keyed, "/tokenize", {"inputs": "Hello world", "add_special_tokens": False}, headers=KEY)
    assert not any(token["special"] for token in bare[0])
    assert "".join(token["text"] for token in bare[0]) == tiny_model.spec.prompts["document"] + "Hello world"


def test_decode_turns_ids_back_into_text(keyed, tiny_model):
    ids = tiny_model.tokenize(["Hello world"])[0]
    status, _, texts = call(keyed, "/decode", {"ids": ids}, headers=KEY)
    assert status == 200 and texts == ["Hello world"]
    status, _, texts = call(keyed, "/decode", {"ids": [ids, ids], "skip_special_tokens": False}, headers=KEY)
    assert status == 200 and len(texts) == 2 and texts[0].startswith("[CLS]") and "[SEP]" in texts[0]
    status, _, error = call(keyed, "/decode", {"ids": [10**9]}, headers=KEY)
    assert status == 422 and "not a token id of this model" in error["error"] and error["error_type"] == "Validation"
    assert call(keyed, "/decode", {"ids": [1]})[0] == 401


def test_normalize_false_serves_the_pooled_vectors_before_normalisation(keyed, tiny_model):
    texts = ["a text to embed", "another one, longer than the first"]
    status, _, raw = call(keyed, "/embed", {"inputs": texts, "normalize": False}, headers=KEY)
    assert status == 200
    raw = np.asarray(raw)
    norms = np.linalg.norm(raw, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)  # really unnormalised
    np.testing.assert_allclose(raw / norms[:, None], tiny_model.embed_documents(texts), atol=1e-5)
    status, _, cut = call(keyed, "/embed", {"inputs": texts[:1], "normalize": False, "dimensions": 16}, headers=KEY)
    assert status == 200 and np.allclose(cut[0], raw[0][:16], atol=1e-5)  # cut, not re-normalised


def test_the_new_routes_are_documented_and_listed(keyed):
    _, _, schema = call(keyed, "/openapi.json", headers=KEY)
    assert {"/tokenize", "/decode"} <= set(schema["paths"])
    _, _, info = call(keyed, "/info", headers=KEY)
    assert {"POST /tokenize", "POST /decode"} <= set(info["vecplug_routes"])


@pytest.mark.parametrize("pooling", ["cls", "lasttoken"])
def test_normalize_false_pools_the_way_the_model_pools(tmp_path, pooling):
    """A sentence-transformers model with CLS or last-token pooling: the unnormalised vector, normalised, is
    exactly what /embed serves."""
    import vecplug
    from vecplug.testing import write_model

    model_dir = write_model(tmp_path / f"{pooling}-model", pooling=pooling)
    texts = ["a text to embed", "another one, longer than the first"]
    with running_server(model_dir, "--dtype", "float32") as server:
        status, _, raw = call(server.url, "/embed", {"inputs": texts, "normalize": False})
        assert status == 200, raw
        _, _, served = call(server.url, "/embed", {"inputs": texts})
    raw = np.asarray(raw)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1)[:, None], served, atol=1e-5)
    assert vecplug.load_model(str(model_dir), dtype="float32").describe()["pooling"] == pooling
