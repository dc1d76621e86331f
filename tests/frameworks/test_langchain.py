"""vecplug_langchain.ModernBertEmbeddings: the model's vectors and prompts in LangChain, locally and through a server."""
from __future__ import annotations

import asyncio
import pickle

import numpy as np
import pytest

pytest.importorskip("langchain_core")

import vecplug  # noqa: E402
from conftest import SERVER_KEY  # noqa: E402
from frameworks_helpers import TEXTS, loop_turns_while  # noqa: E402
from vecplug.demo import corpus  # noqa: E402
from vecplug_langchain import ModernBertEmbeddings  # noqa: E402

QUESTION = "how long can a document be?"


def test_documents_and_queries_are_the_models_with_their_prompts(tiny_model_dir, tiny_model):
    embeddings = ModernBertEmbeddings(str(tiny_model_dir), dtype="float32")
    documents = embeddings.embed_documents(TEXTS)
    query = embeddings.embed_query(QUESTION)
    assert isinstance(documents, list) and isinstance(documents[0], list) and isinstance(documents[0][0], float)
    np.testing.assert_allclose(documents, tiny_model.embed_documents(TEXTS), atol=1e-6)
    np.testing.assert_allclose(query, tiny_model.embed_queries([QUESTION])[0], atol=1e-6)
    # the two kinds really differ: "search_query: " and "search_document: " reached the model
    assert not np.allclose(embeddings.embed_query(TEXTS[0]), documents[0], atol=1e-3)
    assert embeddings.embed_documents([]) == []
    assert embeddings.model_name == tiny_model.name and embeddings.dimensions == tiny_model.dimensions
    same = ModernBertEmbeddings(model_name=str(tiny_model_dir), dtype="float32")  # LangChain's usual spelling
    assert same.embed_query(QUESTION) == embeddings.embed_query(QUESTION)


def test_through_vecplug_serve_with_its_key(keyed_server, tiny_model, monkeypatch):
    embeddings = ModernBertEmbeddings(server_url=keyed_server.url, api_key=SERVER_KEY)
    np.testing.assert_allclose(embeddings.embed_documents(TEXTS), tiny_model.embed_documents(TEXTS), atol=2e-6)
    np.testing.assert_allclose(embeddings.embed_query(QUESTION), tiny_model.embed_queries([QUESTION])[0], atol=2e-6)
    assert embeddings.model_name == tiny_model.name and embeddings.server_url == keyed_server.url
    with pytest.raises(vecplug.ServerError, match="401"):
        ModernBertEmbeddings(server_url=keyed_server.url).embed_query(QUESTION)  # no key anywhere
    monkeypatch.setenv("VECPLUG_API_KEY", SERVER_KEY)  # as vecplug's own client reads it
    np.testing.assert_allclose(ModernBertEmbeddings(keyed_server.url).embed_query(QUESTION),
                               tiny_model.embed_queries([QUESTION])[0], atol=2e-6)


def test_a_server_must_serve_the_model_asked_for(keyed_server, minilm_name):
    embeddings = ModernBertEmbeddings(minilm_name, server_url=keyed_server.url, api_key=SERVER_KEY)
    with pytest.raises(vecplug.ModelMismatchError, match="serves .*not 'minilm'"):
        embeddings.embed_query(QUESTION)


def test_async_forms_equal_sync_and_leave_the_event_loop_free(tiny_model_dir):
    embeddings = ModernBertEmbeddings(str(tiny_model_dir), dtype="float32")

    async def both():
        documents, turns = await loop_turns_while(embeddings.aembed_documents(TEXTS))
        query = await embeddings.aembed_query(QUESTION)
        return documents, turns, query

    documents, turns, query = asyncio.run(both())
    assert documents == embeddings.embed_documents(TEXTS) and query == embeddings.embed_query(QUESTION)
    assert turns > 3, f"the event loop turned {turns} times while the texts were embedded: it was blocked"


def test_dimensions_cut_like_the_model(tiny_model_dir, tiny_model, keyed_server):
    local = ModernBertEmbeddings(str(tiny_model_dir), dimensions=np.int64(32), dtype="float32")
    served = ModernBertEmbeddings(server_url=keyed_server.url, dimensions=32, api_key=SERVER_KEY)
    expected = tiny_model.with_dimensions(32).embed_queries([QUESTION])[0]
    assert local.dimensions == 32 and len(local.embed_query(QUESTION)) == 32
    np.testing.assert_allclose(local.embed_query(QUESTION), expected, atol=1e-6)
    np.testing.assert_allclose(served.embed_query(QUESTION), expected, atol=2e-6)


@pytest.mark.parametrize("settings, error, message", [
    (dict(dimensions=0), vecplug.InvalidSettingError, "dimensions must be a positive integer"),
    (dict(device="tpu"), vecplug.InvalidSettingError, "device must be 'cpu', 'cuda'"),
    (dict(dtype="int8"), vecplug.InvalidSettingError, "dtype must be one of"),
    (dict(server_url="localhost:8080"), ValueError, "server_url must be the http:// or https:// URL"),
    (dict(server_url="http://127.0.0.1:9", device="cpu"), vecplug.InvalidSettingError, "pass neither with server_url"),
    (dict(model="http://127.0.0.1:9", server_url="http://127.0.0.1:9"), ValueError, "pass it once"),
    (dict(api_key="k"), ValueError, "pass it with server_url"),
    (dict(model=42), TypeError, "model must be a model name"),
    (dict(model="minilm", model_name="nomic-ai/modernbert-embed-base"), ValueError, "name two models"),
])
def test_bad_settings_fail_where_they_are_made(settings, error, message):
    with pytest.raises(error, match=message):
        ModernBertEmbeddings(**settings)


def test_bad_input_is_named_and_nothing_is_embedded(tiny_model_dir):
    embeddings = ModernBertEmbeddings(str(tiny_model_dir))
    with pytest.raises(TypeError, match="not a single str; wrap it in a list"):
        embeddings.embed_documents("one text")
    with pytest.raises(TypeError, match="text at index 1 is NoneType"):
        embeddings.embed_documents(["fine", None])
    with pytest.raises(TypeError, match="the query must be a str, got list"):
        embeddings.embed_query(["a question"])
    with pytest.raises(ValueError, match="lone surrogate"):
        embeddings.embed_query("bad \udcff byte")
    with pytest.raises(vecplug.UnknownModelError, match="no-such-model"):
        ModernBertEmbeddings("no-such-model").embed_query(QUESTION)


def test_the_default_model_is_read_when_the_object_is_made(tiny_model_dir, tiny_model, monkeypatch):
    monkeypatch.setenv("VECPLUG_MODEL", str(tiny_model_dir))
    embeddings = ModernBertEmbeddings(dtype="float32")
    monkeypatch.setenv("VECPLUG_MODEL", "no-such-model")  # later changes do not move a made object
    assert embeddings.model_name == str(tiny_model_dir)
    copy = pickle.loads(pickle.dumps(embeddings))
    np.testing.assert_allclose(copy.embed_query(QUESTION), tiny_model.embed_queries([QUESTION])[0], atol=1e-6)


def test_a_default_model_that_is_a_server_gets_the_key(keyed_server, tiny_model, monkeypatch):
    monkeypatch.setenv("VECPLUG_MODEL", keyed_server.url)
    embeddings = ModernBertEmbeddings(api_key=SERVER_KEY)
    assert embeddings.server_url == keyed_server.url
    np.testing.assert_allclose(embeddings.embed_query(QUESTION), tiny_model.embed_queries([QUESTION])[0], atol=2e-6)


def test_loaded_on_first_use_once_and_pickled_without_weights(tiny_model_dir):
    embeddings = ModernBertEmbeddings(str(tiny_model_dir), dtype="float32")
    assert not embeddings._lazy.loaded  # building one is free: frameworks make them early
    vector = embeddings.embed_query(QUESTION)
    assert embeddings._lazy.loaded and embeddings.model is embeddings.model
    data = pickle.dumps(embeddings)
    assert len(data) < 2_000, f"{len(data)} bytes: the pickle carries more than the settings"
    copy = pickle.loads(data)
    assert not copy._lazy.loaded and copy.embed_query(QUESTION) == vector


def test_in_memory_vector_store_answers_questions(minilm_name):
    """Real MiniLM weights: each of the demo corpus' questions finds the paragraph that answers it."""
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore.from_texts([document.text for document in corpus.DOCUMENTS],
                                           ModernBertEmbeddings(minilm_name),
                                           metadatas=[{"id": document.id} for document in corpus.DOCUMENTS])
    for question, answer in corpus.QUESTIONS:
        assert store.similarity_search(question, k=1)[0].metadata["id"] == answer, question
    question, answer = corpus.QUESTIONS[0]
    found = asyncio.run(store.as_retriever(search_kwargs={"k": 1}).ainvoke(question))
    assert found[0].page_content == corpus.by_id(answer).text


def test_loading_the_plugins_imports_no_framework():
    """`vecplug --help` loads every entry point: these two must not pull LangChain, LlamaIndex or torch with them."""
    import subprocess
    import sys

    code = ("import sys, vecplug; vecplug.load_plugins(); import vecplug_langchain, vecplug_llamaindex; "
            "print([name for name in ('langchain_core', 'llama_index', 'torch', 'numpy') if name in sys.modules])")
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "[]", process.stdout
    assert {"langchain", "llamaindex"} <= {vecplug.pm.get_name(plugin) for plugin in vecplug.pm.get_plugins()}


def test_a_fingerprint_refuses_another_model(tiny_model_dir, tiny_model_no_prompts_dir, keyed_server):
    """Vectors kept from an earlier run name their model's fingerprint: another model is refused, the same one passes."""
    kept = ModernBertEmbeddings(str(tiny_model_dir), dtype="float32")
    fingerprint = kept.fingerprint
    assert ModernBertEmbeddings(server_url=keyed_server.url, api_key=SERVER_KEY,
                                fingerprint=fingerprint).embed_query(QUESTION)  # same weights, served
    other = ModernBertEmbeddings(str(tiny_model_no_prompts_dir), fingerprint=fingerprint)
    with pytest.raises(vecplug.ModelMismatchError, match="refusing to embed with .*tiny-no-prompts"):
        other.embed_documents(["a text"])
    with pytest.raises(ValueError, match="fingerprint must be"):
        ModernBertEmbeddings(fingerprint="")
