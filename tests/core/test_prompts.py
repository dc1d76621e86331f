"""The prompt rule: a text that already starts with one of the model's prompts is not prefixed again.

One rule (``ModelSpec.apply_prompt``) for every path: local models here,
the server and its clients in tests/server/test_server_prompts.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import vecplug

NOMIC = {"query": "search_query: ", "document": "search_document: "}


def test_apply_prompt_adds_the_kinds_prompt_once():
    spec = vecplug.ModelSpec(name="m", dimensions=4, max_tokens=8, prompts=NOMIC)
    assert spec.apply_prompt("what is rust?", "query") == "search_query: what is rust?"
    assert spec.apply_prompt("Rust is a language.", "document") == "search_document: Rust is a language."
    # already prompted: read as it stands, whichever kind was asked
    for kind in ("query", "document"):
        assert spec.apply_prompt("search_query: what is rust?", kind) == "search_query: what is rust?"
        assert spec.apply_prompt("search_document: Rust.", kind) == "search_document: Rust."
    # only a prompt at the start counts, and the whole prompt
    assert spec.apply_prompt("see search_query: x", "query") == "search_query: see search_query: x"
    assert spec.apply_prompt("search_query x", "document") == "search_document: search_query x"
    assert spec.starts_with_prompt("search_document: ") and not spec.starts_with_prompt("search_doc")


def test_apply_prompt_without_prompts_and_with_other_names():
    bare = vecplug.ModelSpec(name="m", dimensions=4, max_tokens=8)
    assert bare.apply_prompt("text", "query") == "text" and not bare.starts_with_prompt("text")
    only_query = vecplug.ModelSpec(name="m", dimensions=4, max_tokens=8, prompts={"query": "q: ", "document": ""})
    assert only_query.apply_prompt("x", "document") == "x"
    assert only_query.apply_prompt("q: x", "document") == "q: x"
    named = vecplug.ModelSpec(name="m", dimensions=4, max_tokens=8, prompts={**NOMIC, "clustering": "cluster: "})
    assert named.apply_prompt("x", "clustering") == "cluster: x"
    assert named.apply_prompt("cluster: x", "query") == "cluster: x"
    with pytest.raises(ValueError, match="kind must be 'document' or 'query'"):
        named.apply_prompt("x", "passage")


def test_local_model_reads_a_prompted_text_as_it_stands(tiny_model):
    """What Milvus's search_prompt relies on: the query prompt in the text, sent as a document, is a query."""
    texts = ["where do rivers start?", "Rivers start in mountains.", ""]
    queries, documents = tiny_model.embed_queries(texts), tiny_model.embed_documents(texts)
    assert np.abs(queries - documents).max() > 1e-3  # the prompts matter to this model
    with_query_prompt = ["search_query: " + text for text in texts]
    with_document_prompt = ["search_document: " + text for text in texts]
    np.testing.assert_allclose(tiny_model.embed_documents(with_query_prompt), queries, atol=1e-6)
    np.testing.assert_allclose(tiny_model.embed_queries(with_query_prompt), queries, atol=1e-6)
    np.testing.assert_allclose(tiny_model.embed_queries(with_document_prompt), documents, atol=1e-6)
    streamed = np.stack(list(tiny_model.iter_embed(with_query_prompt, "document")))
    np.testing.assert_allclose(streamed, queries, atol=1e-6)
    assert tiny_model.token_counts(with_query_prompt, "document") == tiny_model.token_counts(texts, "query")


def test_plain_chunks_follow_the_rule(tiny_model):
    """Chunks are documents: a chunk that starts with a prompt is read as it stands, like any text."""
    text = "search_query: where do rivers start?"
    chunks = tiny_model.embed_chunks([text], chunk_tokens=64)[0]
    assert chunks.texts == [text]
    np.testing.assert_allclose(chunks.vectors, tiny_model.embed_queries(["where do rivers start?"]), atol=1e-6)
