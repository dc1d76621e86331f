"""vecplug's Chroma adapter: a prompt-aware embedding function and plugin-aware writes.

    import chromadb, vecplug_chroma
    function = vecplug_chroma.ModernBertEmbeddingFunction()   # model, device, dtype, dimensions
    collection = chromadb.PersistentClient("db").create_collection("docs", embedding_function=function)
    vecplug_chroma.add(collection, ["text", ...])             # runs vecplug_before_ingest first
    collection.query(query_texts=["question"])                # query prompt applied
    vecplug_chroma.upsert(collection, long_texts, ids=ids, chunk_tokens=512)   # records "id#0", "id#1", ...
    vecplug_chroma.best_chunks(collection, "question", n_results=5)            # best passage per document
    vecplug_chroma.recommend(collection, positive=["a"], negative=["b"], n_results=5)  # like a, unlike b

Importing this package registers the function with Chroma, so a process
that reopens a collection with ``get_collection(name)`` and no function gets
it rebuilt from the persisted config.

This package is also the parent of the ``vecplug`` entry-point module
(``vecplug_chroma.plugin``), imported by ``vecplug --help``: it must not
import chromadb itself. Registration therefore happens now if chromadb is
already imported, and otherwise the moment ``import chromadb`` completes.
"""
from __future__ import annotations

import importlib

from vecplug.after_import import after_import

from .checks import check_collection, update_embedding_function
from .chunks import best_chunks
from .ingest import add, upsert
from .store import recommend

__all__ = ["ModernBertEmbeddingFunction", "add", "best_chunks", "check_collection", "recommend",
           "update_embedding_function", "upsert"]


def __getattr__(name: str):
    if name == "ModernBertEmbeddingFunction":
        from .embedding_function import ModernBertEmbeddingFunction

        return ModernBertEmbeddingFunction
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _register() -> None:
    importlib.import_module(f"{__name__}.embedding_function")  # registers with Chroma on import


after_import("chromadb", _register, who=__name__)
