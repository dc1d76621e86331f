"""Prompts over HTTP: Milvus's TEI Functions and clients that can set only a model name.

One real ``vecplug serve`` of the tiny ModernBERT, found in a Hugging Face
cache as ``nomic-ai/modernbert-embed-base`` so it has that model's aliases
and prompts (float32, exact parity with the in-process model). Milvus 2.6's
TEI provider posts ``/embed`` with its own ``ingestion_prompt`` /
``search_prompt`` already in the texts; LangChain's and LlamaIndex's OpenAI
classes reach ``/v1/embeddings`` with ``model="<id>:query"``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import vecplug
from vecplug.testing import running_server
from test_server import call

pytestmark = pytest.mark.slow  # a server of its own: the tiny model under a hub name, with aliases

NAME = "nomic-ai/modernbert-embed-base"
ALIASES = ("modernbert-embed-base", "nomic-modernbert")
TEXTS = ["where do rivers start?", "Rivers start in mountains, from rain and melting snow.", "short", ""]


def milvus_body(texts: list[str], prompt: str = "", direction: str = "Right") -> dict:
    """What Milvus 2.6's TEI provider posts: its prompt put before every text, truncate, a direction."""
    return {"inputs": [prompt + text for text in texts], "truncate": True, "truncation_direction": direction}


@pytest.fixture(scope="module")
def hub(tmp_path_factory, tiny_model_dir):
    """The tiny model in a Hugging Face cache under the known name (refs/main -> snapshots/<commit>)."""
    home = tmp_path_factory.mktemp("hf-home")
    repo = home / "hub" / ("models--" + NAME.replace("/", "--"))
    snapshot = repo / "snapshots" / "0123abcd"
    shutil.copytree(tiny_model_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    return home, snapshot


@pytest.fixture(scope="module")
def served(hub):
    home, _ = hub
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    with running_server(NAME, "--dtype", "float32", env=env) as server:
        yield server.url


@pytest.fixture(scope="module")
def local(hub):
    model = vecplug.load_model(str(hub[1]), dtype="float32")
    assert model.spec.prompts == {"query": "search_query: ", "document": "search_document: "}
    return model


def close(served_vectors, expected) -> bool:
    return np.abs(np.asarray(served_vectors, dtype=np.float32) - expected).max() < 1e-5


def test_the_served_model_is_the_local_one(served, local):
    status, _, models = call(served, "/v1/models")
    assert status == 200
    card = models["data"][0]
    assert card["id"] == NAME and tuple(card["vecplug"]["aliases"]) == ALIASES
    assert card["vecplug"]["fingerprint"] == local.fingerprint


def test_milvus_tei_shape_with_and_without_its_prompts(served, local):
    """Milvus's ingestion_prompt / search_prompt in the text give exactly vecplug's document / query vectors."""
    queries, documents = local.embed_queries(TEXTS), local.embed_documents(TEXTS)
    assert not close(queries, documents)
    cases = [("", documents), ("search_document: ", documents), ("search_query: ", queries)]
    for prompt, expected in cases:
        status, headers, vectors = call(served, "/embed", milvus_body(TEXTS, prompt))
        assert status == 200, vectors
        assert close(vectors, expected), prompt
        assert headers["X-Vecplug-Fingerprint"] == local.fingerprint
    # TEI's prompt_name over a text that carries the other prompt: the text's own prompt wins
    status, _, vectors = call(served, "/embed", {"inputs": ["search_document: " + text for text in TEXTS],
                                                 "prompt_name": "query"})
    assert status == 200 and close(vectors, documents)
    # the right-hand direction in either spelling; Left (keep the tail) is refused, naming the fix
    assert call(served, "/embed", milvus_body(TEXTS, direction="right"))[0] == 200
    status, _, error = call(served, "/embed", milvus_body(TEXTS, direction="Left"))
    assert status == 422 and error["error_type"] == "Validation"
    assert "truncation_direction=left is not supported" in error["error"] and "Right" in error["error"]


def test_prompted_texts_tokenize_and_embed_all_as_they_stand(served):
    _, _, with_prompt = call(served, "/tokenize", {"inputs": ["search_query: where?"]})
    _, _, as_query = call(served, "/tokenize", {"inputs": ["where?"], "prompt_name": "query"})
    assert with_prompt == as_query
    assert "".join(token["text"] for token in with_prompt[0][1:-1]) == "search_query: where?"  # prompted once
    _, _, states = call(served, "/embed_all", {"inputs": ["search_query: where?"], "prompt_name": "document"})
    _, _, query_states = call(served, "/embed_all", {"inputs": ["where?"], "prompt_name": "query"})
    assert len(states[0]) == len(as_query[0]) and close(states[0], np.array(query_states[0]))


def test_remote_model_and_chunks_agree_with_the_local_rule(served, local):
    """RemoteModel and /embed_chunks (plain and late) read prompted texts as the local model does."""
    remote = vecplug.load_model(served)
    with_query_prompt = ["search_query: " + text for text in TEXTS]
    assert close(remote.embed_documents(with_query_prompt), local.embed_queries(TEXTS))
    text = "search_document: Rivers start in mountains. " * 20
    for late in (False, True):
        served_chunks = remote.embed_chunks([text], chunk_tokens=32, late=late)[0]
        local_chunks = local.embed_chunks([text], chunk_tokens=32, late=late)[0]
        assert served_chunks.spans == local_chunks.spans and close(served_chunks.vectors, local_chunks.vectors)


@pytest.mark.parametrize("name", [NAME, *ALIASES])
def test_model_name_suffix_picks_the_prompt(served, local, name):
    for kind in ("query", "document"):
        status, _, body = call(served, "/v1/embeddings", {"input": TEXTS, "model": f"{name}:{kind}"})
        assert status == 200, body
        assert body["model"] == NAME
        assert close([item["embedding"] for item in body["data"]], local.embed(TEXTS, kind)), (name, kind)


def test_milvus_openai_provider_shape(served, local):
    """Milvus's OpenAI provider: one model name, encoding_format float, the field's dim, a user."""
    body = {"model": f"{NAME}:document", "input": TEXTS, "encoding_format": "float", "dimensions": local.dimensions,
            "user": "milvus"}
    status, _, answer = call(served, "/v1/embeddings", body)
    assert status == 200 and close([item["embedding"] for item in answer["data"]], local.embed_documents(TEXTS))


def test_model_name_suffix_mistakes_are_clear(served, local):
    status, _, body = call(served, "/v1/embeddings", {"input": "x", "model": f"{NAME}:passage"})
    assert status == 404 and body["error"]["code"] == "model_not_found"
    assert ":query or :document" in body["error"]["message"] and ALIASES[0] in body["error"]["message"]
    status, _, body = call(served, "/v1/embeddings", {"input": "x", "model": f"{NAME}:query",
                                                      "input_type": "document"})
    assert status == 400 and body["error"]["param"] == "input_type"
    assert "picks the query prompt but input_type is 'document'" in body["error"]["message"]
    status, _, body = call(served, "/v1/embeddings", {"input": "x", "model": f"{NAME}:query", "input_type": "query"})
    assert status == 200 and close([body["data"][0]["embedding"]], local.embed_queries(["x"]))


def test_models_description_explains_the_suffix(served):
    description = call(served, "/v1/models")[2]["data"][0]["description"]
    assert f'"{NAME}:query"' in description and f'"{NAME}:document"' in description
    assert all(alias in description for alias in ALIASES)
    assert "'search_query: '" in description and "gets none added" in description


def test_token_id_input_gets_400_with_the_langchain_hint(served):
    for token_ids in ([[101, 2054, 102]], [101, 2054, 102]):
        status, _, body = call(served, "/v1/embeddings", {"input": token_ids, "model": f"{NAME}:query"})
        assert status == 400
        message = body["error"]["message"]
        assert "token-id input is not supported" in message and "check_embedding_ctx_length=False" in message


def tiktoken_offline(monkeypatch):
    """LangChain's default path tokenizes with tiktoken's cl100k_base; llama-index-core ships that file."""
    import llama_index.core

    cache = Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache"
    assert any(cache.iterdir()), f"no tiktoken cache in {cache}"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))


def test_langchain_openai_embeddings_by_model_name(served, local, monkeypatch):
    import openai
    from langchain_openai import OpenAIEmbeddings

    def client(kind: str, **options):
        return OpenAIEmbeddings(model=f"{ALIASES[0]}:{kind}", base_url=served + "/v1", api_key="unused",
                                max_retries=0, **options)

    queries = client("query", check_embedding_ctx_length=False)
    assert close([queries.embed_query(TEXTS[0])], local.embed_queries(TEXTS[:1]))
    assert close(queries.embed_documents(TEXTS), local.embed_queries(TEXTS))  # the name decides, not the method
    documents = client("document", check_embedding_ctx_length=False)
    assert close(documents.embed_documents(TEXTS), local.embed_documents(TEXTS))
    tiktoken_offline(monkeypatch)
    with pytest.raises(openai.BadRequestError, match="check_embedding_ctx_length=False"):
        client("query").embed_documents(TEXTS)


def test_llamaindex_openai_embedding_by_model_name(served, local):
    """LlamaIndex validates ``model`` against OpenAI's names; ``model_name=`` sends any name as it is."""
    from llama_index.embeddings.openai import OpenAIEmbedding

    def client(kind: str):
        return OpenAIEmbedding(model_name=f"{NAME}:{kind}", api_base=served + "/v1", api_key="unused",
                               max_retries=0)

    assert close([client("query").get_query_embedding(TEXTS[0])], local.embed_queries(TEXTS[:1]))
    assert close(client("document").get_text_embedding_batch(TEXTS), local.embed_documents(TEXTS))
