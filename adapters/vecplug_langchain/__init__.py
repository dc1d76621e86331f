"""vecplug in LangChain: ``ModernBertEmbeddings``, an ``Embeddings`` with the model's document and query prompts.

    from langchain_core.vectorstores import InMemoryVectorStore
    from vecplug_langchain import ModernBertEmbeddings

    embeddings = ModernBertEmbeddings()                     # or (model, server_url=..., dimensions=...)
    store = InMemoryVectorStore.from_texts(["text", ...], embeddings)
    store.similarity_search("question", k=3)

This package is also the parent of the ``vecplug`` entry-point module
(``vecplug_langchain.plugin``), which ``vecplug --help`` imports: it imports
langchain_core only when ``ModernBertEmbeddings`` is asked for.
"""
from __future__ import annotations

__all__ = ["ModernBertEmbeddings"]


def __getattr__(name: str):
    if name == "ModernBertEmbeddings":
        from .embeddings import ModernBertEmbeddings

        return ModernBertEmbeddings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
