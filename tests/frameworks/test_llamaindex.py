"""vecplug_llamaindex.ModernBertEmbedding: the model's vectors and prompts in LlamaIndex, locally and through a server."""
from __future__ import annotations

import asyncio
import pickle

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

import vecplug  # noqa: E402
from conftest import SERVER_KEY  # noqa: E402
from frameworks_helpers import TEXTS, loop_turns_while  # noqa: E402
from vecplug.demo import corpus  # noqa: E402
from vecplug_llamaindex import ModernBertEmbedding  # noqa: E402

QUESTION = "how long can a document be?"


def test_text_and_query_methods_are_the_models_with_their_prompts(tiny_model_dir, tiny_model):
    embedding = ModernBertEmbedding(str(tiny_model_dir), dtype="float32", embed_batch_size=7)
    documents = tiny_model.embed_documents(TEXTS)
    # 40 texts in calls of 7: each call is batched by the model, the rows come back in order
    np.testing.assert_allclose(embedding.get_text_embedding_batch(TEXTS), documents, atol=1e-6)
    np.testing.assert_allclose(embedding.get_text_embedding(TEXTS[3]), documents[3], atol=1e-6)
    np.testing.assert_allclose(embedding.get_query_embedding(QUESTION), tiny_model.embed_queries([QUESTION])[0],
                               atol=1e-6)
    assert not np.allclose(embedding.get_query_embedding(TEXTS[3]), documents[3], atol=1e-3)  # the prompts differ
    assert embedding.get_text_embedding_batch([]) == []
    assert ModernBertEmbedding().embed_batch_size == 256  # enough texts per call for token batching


def test_through_vecplug_serve_with_its_key(keyed_server, tiny_model, monkeypatch):
    embedding = ModernBertEmbedding(server_url=keyed_server.url, api_key=SERVER_KEY)
    assert embedding.model_name is None  # the server says which model it serves, once asked
    np.testing.assert_allclose(embedding.get_text_embedding_batch(TEXTS), tiny_model.embed_documents(TEXTS),
                               atol=2e-6)
    np.testing.assert_allclose(embedding.get_query_embedding(QUESTION), tiny_model.embed_queries([QUESTION])[0],
                               atol=2e-6)
    assert embedding.model_name == tiny_model.name
    assert "api_key" not in embedding.to_dict() and SERVER_KEY not in repr(embedding)
    with pytest.raises(vecplug.ServerError, match="401"):
        ModernBertEmbedding(server_url=keyed_server.url).get_query_embedding(QUESTION)
    monkeypatch.setenv("VECPLUG_API_KEY", SERVER_KEY)
    copy = ModernBertEmbedding.from_dict(embedding.to_dict())  # the key comes from the environment here
    np.testing.assert_allclose(copy.get_query_embedding(QUESTION), tiny_model.embed_queries([QUESTION])[0],
                               atol=2e-6)


def test_async_methods_equal_sync_and_leave_the_event_loop_free(tiny_model_dir):
    embedding = ModernBertEmbedding(str(tiny_model_dir), dtype="float32", embed_batch_size=16)

    async def all_of_them():
        batch, turns = await loop_turns_while(embedding.aget_text_embedding_batch(TEXTS))
        return batch, turns, await embedding.aget_text_embedding(TEXTS[0]), await embedding.aget_query_embedding(
            QUESTION)

    batch, turns, text, query = asyncio.run(all_of_them())
    np.testing.assert_allclose(batch, embedding.get_text_embedding_batch(TEXTS), atol=1e-6)
    assert text == embedding.get_text_embedding(TEXTS[0]) and query == embedding.get_query_embedding(QUESTION)
    assert turns > 3, f"the event loop turned {turns} times while the texts were embedded: it was blocked"


def test_dimensions_and_model_name(tiny_model_dir, tiny_model):
    embedding = ModernBertEmbedding(model_name=str(tiny_model_dir), dimensions=32, dtype="float32")
    assert embedding.model_name == str(tiny_model_dir) and embedding.dimensions == 32
    np.testing.assert_allclose(embedding.get_query_embedding(QUESTION),
                               tiny_model.with_dimensions(32).embed_queries([QUESTION])[0], atol=1e-6)
    assert embedding.model_name == tiny_model.name
    with pytest.raises(ValueError, match="name two models"):
        ModernBertEmbedding("minilm", model_name="nomic-ai/modernbert-embed-base")
    with pytest.raises(ValueError, match="frozen"):  # it would not change the loaded model
        embedding.dimensions = 16
    embedding.embed_batch_size = 64  # LlamaIndex's own settings stay settable


@pytest.mark.parametrize("settings, error, message", [
    (dict(dimensions=-1), vecplug.InvalidSettingError, "dimensions must be a positive integer"),
    (dict(device="gpu"), vecplug.InvalidSettingError, "device must be 'cpu', 'cuda'"),
    (dict(server_url="127.0.0.1:8080"), ValueError, "server_url must be the http:// or https:// URL"),
    (dict(server_url="http://127.0.0.1:9", dtype="bf16"), vecplug.InvalidSettingError, "pass neither"),
    (dict(api_key="k"), ValueError, "pass it with server_url"),
    (dict(embed_batch_size=0), ValueError, "embed_batch_size"),
])
def test_bad_settings_fail_where_they_are_made(settings, error, message):
    with pytest.raises(error, match=message):
        ModernBertEmbedding(**settings)


def test_bad_input_is_named(tiny_model_dir):
    embedding = ModernBertEmbedding(str(tiny_model_dir), embed_batch_size=2)
    with pytest.raises(TypeError, match="text at index 4 is int"):  # its index in the list, not in its batch
        embedding.get_text_embedding_batch(["a", "b", "c", "d", 3])
    with pytest.raises(TypeError, match="text at index 3 is bytes"):
        asyncio.run(embedding.aget_text_embedding_batch(["a", "b", "c", b"d"]))
    assert not embedding._lazy.loaded  # refused before any text was embedded
    with pytest.raises(TypeError, match="the query must be a str, got list"):
        embedding.get_query_embedding(["a question"])
    with pytest.raises(TypeError, match="the text must be a str, got NoneType"):
        embedding.get_text_embedding(None)


def test_a_saved_object_loads_only_the_same_model(tiny_model_dir, tiny_model_no_prompts_dir, tiny_model):
    embedding = ModernBertEmbedding(str(tiny_model_dir), dtype="float32")
    assert embedding.to_dict()["fingerprint"] is None  # nothing loaded, nothing known yet
    vector = embedding.get_query_embedding(QUESTION)
    saved = embedding.to_dict()
    assert saved["fingerprint"] == tiny_model.fingerprint
    assert ModernBertEmbedding.from_dict(saved).get_query_embedding(QUESTION) == vector
    moved = ModernBertEmbedding.from_dict({**saved, "model_name": str(tiny_model_no_prompts_dir)})
    with pytest.raises(vecplug.ModelMismatchError, match="refusing to embed with"):
        moved.get_text_embedding("a text")


def test_loaded_on_first_use_and_pickled_without_weights(tiny_model_dir):
    embedding = ModernBertEmbedding(str(tiny_model_dir), dtype="float32")
    assert not embedding._lazy.loaded
    vector = embedding.get_query_embedding(QUESTION)
    assert embedding._lazy.loaded and embedding.model is embedding.model
    data = pickle.dumps(embedding)
    assert len(data) < 5_000, f"{len(data)} bytes: the pickle carries more than the settings"
    copy = pickle.loads(data)
    assert isinstance(copy, ModernBertEmbedding) and not copy._lazy.loaded and copy.dtype == "float32"
    assert copy.get_query_embedding(QUESTION) == vector


def test_vector_store_index_retrieves_the_answer(minilm_name):
    """Real MiniLM weights, LlamaIndex's in-memory index and retriever (no LLM): each question finds its paragraph."""
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    nodes = [TextNode(text=document.text, id_=str(document.id)) for document in corpus.DOCUMENTS]
    index = VectorStoreIndex(nodes, embed_model=ModernBertEmbedding(minilm_name))
    retriever = index.as_retriever(similarity_top_k=1)
    for question, answer in corpus.QUESTIONS:
        assert retriever.retrieve(question)[0].node.node_id == str(answer), question
    question, answer = corpus.QUESTIONS[1]
    assert asyncio.run(retriever.aretrieve(question))[0].node.node_id == str(answer)
