"""``POST /embed_chunks``, TEI's ``/embed_all`` and ``RemoteModel.embed_chunks`` against a real ``vecplug serve``.

The local model (float32, like the session's ``tiny_server``) is the
reference: the server must give exactly its spans and, within float noise,
its vectors, for plain and late chunking.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import vecplug
from test_server import call
from test_server_robustness import metric_values
from vecplug.client import RemoteModel
from vecplug.errors import InvalidSettingError
from vecplug.testing import long_documents, running_server, stdlib_paragraphs

# a text of 20,000+ tokens, one of multi-byte characters, one of newlines only, an empty one, a short one
LONG_TEXT = "\n\n".join(stdlib_paragraphs())[:90_000]
MULTI_BYTE = "Ünïcödé ✓ — 日本語のテキストです。🙂 Ελληνικά κείμενα. " * 40
TEXTS = [LONG_TEXT, MULTI_BYTE, "\n\n\n", "", "  short  "]


@pytest.fixture(scope="module")
def url(tiny_server):
    return tiny_server.url


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """The local model's chunks of TEXTS for the settings the tests use (computed once)."""
    model = vecplug.load_model(str(tiny_model_dir), dtype="float32")
    return {late: model.embed_chunks(TEXTS, chunk_tokens=128, overlap_tokens=16, late=late) for late in (False, True)}


def chunks_body(texts, **settings):
    return {"inputs": texts, "chunk_tokens": 128, "overlap_tokens": 16, **settings}


def test_the_long_text_has_over_20000_tokens(tiny_model):
    assert len(tiny_model.token_offsets([LONG_TEXT])[0]) > 20_000


@pytest.mark.parametrize("late", [False, True])
def test_embed_chunks_gives_the_local_models_spans_and_vectors(url, reference, late):
    status, headers, answer = call(url, "/embed_chunks", chunks_body(TEXTS, late=late))
    assert status == 200, answer
    assert len(answer) == len(TEXTS)
    for served, expected in zip(answer, reference[late]):
        assert set(served) == {"spans", "embeddings"}
        assert [tuple(span) for span in served["spans"]] == expected.spans
        vectors = np.array(served["embeddings"], dtype=np.float32).reshape(expected.vectors.shape)
        np.testing.assert_allclose(vectors, expected.vectors, atol=1e-5)
    assert len(answer[0]["spans"]) > 150  # the long text really was chunked
    assert answer[2] == {"spans": [], "embeddings": []} and answer[3] == {"spans": [], "embeddings": []}
    assert headers["X-Vecplug-Fingerprint"]


def test_dimensions_cut_like_the_local_view(url, tiny_model):
    texts = ["A paragraph about one thing.\n\nAnd another about something else entirely, at some length."]
    for late in (False, True):
        status, headers, answer = call(url, "/embed_chunks", {"inputs": texts, "chunk_tokens": 8, "late": late,
                                                              "dimensions": 16})
        assert status == 200, answer
        expected = tiny_model.with_dimensions(16).embed_chunks(texts, chunk_tokens=8, late=late)[0]
        np.testing.assert_allclose(answer[0]["embeddings"], expected.vectors, atol=1e-5)
        assert headers["X-Vecplug-Fingerprint"] == tiny_model.with_dimensions(16).fingerprint
    status, _, answer = call(url, "/embed_chunks", {"inputs": texts, "dimensions": 65})
    assert status == 422 and "dimensions" in answer["error"]


@pytest.mark.parametrize("body, words", [
    ({"inputs": "one text"}, ["inputs", "list of texts"]),
    ({"inputs": []}, ["inputs", "empty"]),
    ({"inputs": ["x"], "chunk_tokens": 0}, ["chunk_tokens", "greater than or equal to 1"]),
    ({"inputs": ["x"], "chunk_tokens": "512"}, ["chunk_tokens", "whole number"]),
    ({"inputs": ["x"], "chunk_tokens": 8, "overlap_tokens": 8}, ["overlap_tokens", "less than chunk_tokens (8)"]),
    ({"inputs": ["x"], "overlap_tokens": -1}, ["overlap_tokens"]),
    ({"inputs": ["x"], "late": "yes"}, ["late", "boolean"]),
    ({"inputs": ["x"], "late": 1}, ["late", "boolean"]),
    ({"inputs": ["x"], "chunk_size": 8}, ["chunk_size", "unknown field"]),
    ({"inputs": [1]}, ["inputs[0]", "token-id input"]),
])
def test_bad_settings_are_a_422_naming_the_field(url, body, words):
    status, _, answer = call(url, "/embed_chunks", body)
    assert status == 422, answer
    assert answer["error_type"] == "Validation"
    for word in words:
        assert word in answer["error"], answer


def test_embed_all_gives_every_tokens_state(url, tiny_model):
    texts = ["hello world", "a longer text, with ünïcode ✓ in it"]
    status, _, answer = call(url, "/embed_all", {"inputs": texts, "prompt_name": "query"})
    assert status == 200, answer
    token_ids = tiny_model.tokenize([tiny_model.spec.prompt_for("query") + text for text in texts])
    for states, ids in zip(answer, token_ids):
        expected = tiny_model.token_states([ids])
        np.testing.assert_allclose(np.array(states), expected, atol=1e-5)
    status, _, single = call(url, "/embed_all", {"inputs": "one"})
    assert status == 200 and np.array(single).shape[0] == 1 and np.array(single).shape[2] == tiny_model.dimensions
    too_long = " ".join(["word"] * (tiny_model.max_tokens + 10))
    status, _, answer = call(url, "/embed_all", {"inputs": ["fits", too_long], "truncate": False})
    assert status == 413 and "index 1" in answer["error"]


def test_info_and_openapi_list_the_routes(url):
    status, _, info = call(url, "/info")
    assert status == 200 and {"POST /embed_chunks", "POST /embed_all"} <= set(info["vecplug_routes"])
    _, _, schema = call(url, "/openapi.json")
    request = schema["components"]["schemas"]["EmbedChunksRequest"]
    assert set(request["properties"]) == {"inputs", "chunk_tokens", "overlap_tokens", "late", "dimensions"}
    assert request["properties"]["inputs"]["maxItems"] >= 1
    assert "/embed_chunks" in schema["paths"] and "/embed_all" in schema["paths"]


# -- RemoteModel ------------------------------------------------------------------------------

@pytest.mark.parametrize("late", [False, True])
def test_remote_model_embed_chunks_is_the_local_models(url, reference, late):
    remote = RemoteModel(url, batch_size=2)  # several requests, two in flight
    results = remote.embed_chunks(TEXTS, chunk_tokens=128, overlap_tokens=16, late=late)
    assert len(results) == len(TEXTS)
    for text, got, expected in zip(TEXTS, results, reference[late]):
        assert isinstance(got, vecplug.Chunks)
        assert got.spans == expected.spans
        assert got.texts == [text[start:end] for start, end in got.spans] == expected.texts
        assert got.vectors.dtype == np.float32 and got.vectors.shape == expected.vectors.shape
        np.testing.assert_allclose(got.vectors, expected.vectors, atol=1e-5)


def test_remote_dimensions_view(url, tiny_model):
    texts = ["one short text", "and a second one, a little longer than the first"]
    got = vecplug.load_model(url, dimensions=16).embed_chunks(texts, chunk_tokens=4, late=True)
    expected = tiny_model.with_dimensions(16).embed_chunks(texts, chunk_tokens=4, late=True)
    for one, other in zip(got, expected):
        assert one.spans == other.spans and one.vectors.shape[1] == 16
        np.testing.assert_allclose(one.vectors, other.vectors, atol=1e-5)


def test_remote_bad_arguments_raise_before_any_request(url):
    remote = RemoteModel(url)
    before = metric_values(url)
    for settings in [{"chunk_tokens": 0}, {"chunk_tokens": 8, "overlap_tokens": 8}, {"overlap_tokens": -1},
                     {"chunk_tokens": 8.5}, {"late": "yes"}]:
        with pytest.raises(InvalidSettingError):
            remote.embed_chunks(["text"], **settings)
    with pytest.raises(TypeError):
        remote.embed_chunks("a bare string")
    with pytest.raises(TypeError):
        remote.embed_chunks(["fine", 3])
    after = metric_values(url)
    assert not [name for name in after if "/embed_chunks" in name and after[name] != before.get(name)]


# -- limits, key and overload on a server of its own ---------------------------------------------

@pytest.mark.slow  # a server of its own, and twelve clients against a queue of four texts
def test_limits_key_and_overload(tiny_model_dir, tiny_model):
    """Small limits: inputs count (not chunks), body bytes are a 413, the key is needed, a full queue is a 429."""
    env = {**os.environ, "VECPLUG_API_KEY": "chunk-key"}
    key = {"Authorization": "Bearer chunk-key"}
    with running_server(tiny_model_dir, "--dtype", "float32", "--max-queue-texts", "4", "--max-request-bytes",
                        "200000", "--max-batch-tokens", "512", env=env) as server:
        url = server.url
        status, _, answer = call(url, "/embed_chunks", {"inputs": ["x"]})
        assert status == 401 and "API key" in answer["error"]
        status, _, answer = call(url, "/embed_chunks", {"inputs": ["x"] * 5}, headers=key)
        assert status == 413 and "at most 4 per request" in answer["error"]
        status, _, answer = call(url, "/embed_chunks", {"inputs": ["x" * 250_000]}, headers=key)
        assert status == 413 and "--max-request-bytes" in answer["error"]
        # one input of 300+ chunks: far more than 4 texts per request or in the queue, still fine
        text = long_documents(count=1)[0] * 3
        status, _, answer = call(url, "/embed_chunks", {"inputs": [text], "chunk_tokens": 4}, headers=key)
        assert status == 200 and len(answer[0]["spans"]) > 4
        expected = tiny_model.embed_chunks([text], chunk_tokens=4)[0]
        assert [tuple(span) for span in answer[0]["spans"]] == expected.spans
        np.testing.assert_allclose(answer[0]["embeddings"], expected.vectors, atol=1e-5)

        # overload: raw requests meet 429 with Retry-After; RemoteModel retries them into answers
        texts = [long_documents(count=4)[index] for index in range(4)]
        bodies = [{"inputs": texts, "chunk_tokens": 64, "late": late} for late in (False, True)] * 6
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda body: call(url, "/embed_chunks", body, headers=key), bodies))
        statuses = [status for status, _, _ in answers]
        assert set(statuses) <= {200, 429} and 429 in statuses and 200 in statuses, statuses
        refused = next(answer for answer in answers if answer[0] == 429)
        assert int(refused[1]["Retry-After"]) >= 1 and "--max-queue-texts" in refused[2]["error"]
        remote = RemoteModel(url, api_key="chunk-key")
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda late: remote.embed_chunks(texts, chunk_tokens=64, late=late),
                                    [False, True] * 2))
        for late, result in zip([False, True] * 2, results):
            expected = tiny_model.embed_chunks(texts, chunk_tokens=64, late=late)
            for got, reference in zip(result, expected):
                assert got.spans == reference.spans
                np.testing.assert_allclose(got.vectors, reference.vectors, atol=1e-5)
        assert call(url, "/health")[0] == 200


@pytest.mark.slow  # a server of its own
def test_a_server_with_dimensions_serves_that_many_on_every_route(tiny_model_dir, tiny_model):
    """`vecplug serve --dimensions 16`: /embed, /v1/embeddings and /embed_chunks give 16 (they gave 64 on the
    first two before /embed_chunks came: the batcher's vectors are the model's full ones)."""
    view = tiny_model.with_dimensions(16)
    with running_server(tiny_model_dir, "--dtype", "float32", "--dimensions", "16") as server:
        status, _, vectors = call(server.url, "/embed", {"inputs": ["a text"]})
        assert status == 200
        np.testing.assert_allclose(vectors, view.embed_documents(["a text"]), atol=1e-5)
        status, _, answer = call(server.url, "/v1/embeddings", {"input": ["a text"]})
        assert status == 200 and len(answer["data"][0]["embedding"]) == 16
        for late in (False, True):
            got = RemoteModel(server.url).embed_chunks(["a text of a few words"], chunk_tokens=3, late=late)[0]
            expected = view.embed_chunks(["a text of a few words"], chunk_tokens=3, late=late)[0]
            assert got.spans == expected.spans
            np.testing.assert_allclose(got.vectors, expected.vectors, atol=1e-5)
