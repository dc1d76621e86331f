"""vecplug in LlamaIndex: ``ModernBertEmbedding``, a ``BaseEmbedding`` with the model's document and query prompts.

    from llama_index.core import Settings, VectorStoreIndex
    from vecplug_llamaindex import ModernBertEmbedding

    Settings.embed_model = ModernBertEmbedding()             # or (model, server_url=..., dimensions=...)
    index = VectorStoreIndex.from_documents(documents)
    index.as_retriever(similarity_top_k=3).retrieve("question")

This package is also the parent of the ``vecplug`` entry-point module
(``vecplug_llamaindex.plugin``), which ``vecplug --help`` imports: it imports
llama_index only when ``ModernBertEmbedding`` is asked for.
"""
from __future__ import annotations

__all__ = ["ModernBertEmbedding"]


def __getattr__(name: str):
    if name == "ModernBertEmbedding":
        from .embedding import ModernBertEmbedding

        return ModernBertEmbedding
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
