"""``vecplug serve``: the HTTP contract, parity with the in-process model, real clients unchanged.

Every test talks to a real ``vecplug serve`` subprocess (the session's
``tiny_server``, float32, so parity is exact up to batching noise).
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from vecplug.testing import long_documents, stdlib_paragraphs


def call(url: str, path: str, body=None, headers: dict | None = None, method: str | None = None):
    """(status, headers, parsed JSON or text) of one request; never raises on an HTTP error status."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json",
                                                                     **(headers or {})}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, raw, response_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, raw, response_headers = error.code, error.read(), error.headers
    try:
        return status, response_headers, json.loads(raw)
    except ValueError:
        return status, response_headers, raw.decode()


def cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


TEXTS = [*stdlib_paragraphs()[:40:3], long_documents(count=2)[1], "", "short"]


@pytest.fixture(scope="module")
def url(tiny_server):
    return tiny_server.url


def test_health_and_models_describe_the_served_model(url, tiny_model):
    status, _, health = call(url, "/health")
    assert status == 200 and health["status"] == "ok"
    assert health["fingerprint"] == tiny_model.fingerprint
    status, _, models = call(url, "/v1/models")
    assert status == 200 and models["object"] == "list"
    card = models["data"][0]
    assert card["id"] == tiny_model.name and card["object"] == "model" and card["owned_by"] == "vecplug"
    assert card["vecplug"] == tiny_model.spec.to_dict()


@pytest.mark.parametrize("input_type", ["document", "query"])
def test_vectors_equal_the_in_process_model(url, tiny_model, input_type):
    status, headers, body = call(url, "/v1/embeddings", {"input": TEXTS, "input_type": input_type})
    assert status == 200, body
    assert body["object"] == "list" and body["model"] == tiny_model.name
    assert [item["index"] for item in body["data"]] == list(range(len(TEXTS)))
    served = np.array([item["embedding"] for item in body["data"]], dtype=np.float32)
    local = tiny_model.embed(TEXTS, input_type)
    assert served.shape == local.shape
    assert cosines(served, local).min() >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)
    prompt = tiny_model.spec.prompt_for(input_type)
    tokens = sum(len(ids) for ids in tiny_model.tokenize([prompt + text for text in TEXTS]))
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert headers["X-Vecplug-Fingerprint"] == tiny_model.fingerprint


def test_default_dtype_parity(tiny_model_dir):
    """At the default dtype (bf16 where the CPU has it) the server matches the in-process model to 0.9999."""
    import vecplug
    from vecplug.testing import running_server

    local = vecplug.load_model(str(tiny_model_dir))
    with running_server(tiny_model_dir) as server:
        for input_type in ("document", "query"):
            for dimensions in (None, 16):
                body = {"input": TEXTS, "input_type": input_type, **({"dimensions": dimensions} if dimensions else {})}
                status, _, answer = call(server.url, "/v1/embeddings", body)
                assert status == 200, answer
                served = [item["embedding"] for item in answer["data"]]
                expected = local.with_dimensions(dimensions).embed(TEXTS, input_type)
                assert cosines(served, expected).min() >= 0.9999, (input_type, dimensions)


def test_query_and_document_prompts_differ(url):
    vectors = {}
    for kind in ("query", "document"):
        _, _, body = call(url, "/v1/embeddings", {"input": "same words", "input_type": kind})
        vectors[kind] = np.array(body["data"][0]["embedding"])
    assert cosines([vectors["query"]], [vectors["document"]])[0] < 0.9999


def test_dimensions_and_base64(url, tiny_model):
    status, headers, body = call(url, "/v1/embeddings", {"input": TEXTS[:5], "dimensions": 16,
                                                         "encoding_format": "base64", "input_type": "query"})
    assert status == 200, body
    served = np.stack([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in body["data"]])
    local = tiny_model.with_dimensions(16).embed_queries(TEXTS[:5])
    assert served.shape == (5, 16)
    assert cosines(served, local).min() >= 0.99999
    assert headers["X-Vecplug-Fingerprint"] == tiny_model.with_dimensions(16).fingerprint


def test_a_single_string_and_model_aliases(url, tiny_model):
    status, _, body = call(url, "/v1/embeddings", {"input": "one text", "model": tiny_model.name})
    assert status == 200 and len(body["data"]) == 1
    local = tiny_model.embed_documents(["one text"])
    assert cosines([body["data"][0]["embedding"]], local)[0] >= 0.99999


def test_curl_style_body_without_json_content_type(url):
    request = urllib.request.Request(url + "/v1/embeddings", data=b'{"input": "form-encoded by curl -d"}')
    with urllib.request.urlopen(request, timeout=60) as response:  # urllib sends x-www-form-urlencoded
        assert response.status == 200 and len(json.loads(response.read())["data"]) == 1


def test_tei_embed_and_info(url, tiny_model):
    status, headers, vectors = call(url, "/embed", {"inputs": TEXTS[:4], "prompt_name": "query"})
    assert status == 200, vectors
    assert cosines(vectors, tiny_model.embed_queries(TEXTS[:4])).min() >= 0.99999
    status, _, single = call(url, "/embed", {"inputs": "a document", "dimensions": 8})
    assert status == 200 and np.array(single).shape == (1, 8)
    assert cosines(single, tiny_model.with_dimensions(8).embed_documents(["a document"]))[0] >= 0.99999
    status, _, info = call(url, "/info")
    assert status == 200
    assert info["model_id"] == tiny_model.name and info["max_input_length"] == tiny_model.max_tokens
    assert info["model_type"] == {"embedding": {"pooling": "mean"}} and info["vecplug"]["fingerprint"]


def test_tei_refusals_name_the_problem(url, tiny_model):
    long_text = " ".join(["word"] * (tiny_model.max_tokens + 50))
    cases = [
        # normalize=false is served (test_server_tei_routes); refused only by a model without unnormalised
        # output (the plugin model in test_server_robustness)
        ({"inputs": "x", "truncation_direction": "left"}, 422, "truncation_direction"),
        ({"inputs": "x", "prompt_name": "passage"}, 422, "prompt_name"),
        ({"inputs": ["fits", long_text], "truncate": False}, 413, "index 1"),
        ({"inputs": []}, 422, "empty list"),
    ]
    for body, expected_status, words in cases:
        status, _, answer = call(url, "/embed", body)
        assert status == expected_status, (body, answer)
        assert isinstance(answer["error"], str) and words in answer["error"], answer
        assert answer["error_type"]
    status, _, vectors = call(url, "/embed", {"inputs": [long_text], "truncate": True})
    assert status == 200 and len(vectors) == 1


def test_openai_client_unchanged(url, tiny_model):
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    response = client.embeddings.create(input=TEXTS[:6], model=tiny_model.name)  # the SDK asks for base64
    served = [item.embedding for item in response.data]
    assert cosines(served, tiny_model.embed_documents(TEXTS[:6])).min() >= 0.99999
    floats = client.embeddings.create(input="a question?", model=tiny_model.name, encoding_format="float",
                                      dimensions=32, extra_body={"input_type": "query"})
    assert cosines([floats.data[0].embedding], tiny_model.with_dimensions(32).embed_queries(["a question?"]))[0] \
        >= 0.99999
    assert floats.usage.prompt_tokens > 0
    assert [model.id for model in client.models.list()] == [tiny_model.name]


def test_huggingface_inference_client_unchanged(url, tiny_model, monkeypatch):
    from huggingface_hub import InferenceClient, constants

    # offline mode blocks every request huggingface_hub makes, a local server's too; the hub is never called here
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    for endpoint in (url, url + "/embed"):  # TEI answers on "/" too, where InferenceClient(model=url) posts
        client = InferenceClient(model=endpoint)
        vector = client.feature_extraction("what does the TEI client get?", prompt_name="query")
        assert vector.shape == (1, tiny_model.dimensions)
        expected = tiny_model.embed_queries(["what does the TEI client get?"])
        assert cosines(vector, expected)[0] >= 0.99999


def test_metrics_count_requests_texts_and_batches(url):
    call(url, "/v1/embeddings", {"input": ["counted", "twice"]})
    status, headers, text = call(url, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    assert values['vecplug_requests_total{route="/v1/embeddings",status="200"}'] >= 1
    assert values["vecplug_texts_total"] >= 2 and values["vecplug_tokens_total"] > values["vecplug_texts_total"]
    assert values["vecplug_batch_texts_count"] >= 1 and values["vecplug_batch_tokens_sum"] > 0
    assert "vecplug_queue_texts" in values and "vecplug_truncated_texts_total" in values
    assert any(name.startswith("vecplug_request_seconds_bucket") for name in values)


def test_openapi_schema_documents_the_bodies(url):
    status, _, schema = call(url, "/openapi.json")
    assert status == 200
    request = schema["components"]["schemas"]["EmbeddingRequest"]
    assert set(request["properties"]) >= {"input", "model", "dimensions", "encoding_format", "input_type"}
    assert "EmbedRequest" in schema["components"]["schemas"]
    assert schema["paths"]["/v1/embeddings"]["post"]["requestBody"]["required"] is True
