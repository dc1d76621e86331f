"""vecplug adapter for Milvus: ModernBERT vectors into and out of pymilvus's ``MilvusClient``.

    from pymilvus import MilvusClient
    from vecplug_milvus import MilvusEmbedder

    client = MilvusClient("milvus.db")                # Milvus Lite, in this process (or a server's URI)
    embedder = MilvusEmbedder(client)                 # $VECPLUG_MODEL or the default model
    embedder.create_collection("docs")                # sized for the model, records it
    embedder.insert("docs", texts, metadata=[{"topic": "a"}, ...])
    embedder.search("docs", "a question", limit=5, filter='topic == "a"')

    embedder = MilvusEmbedder.from_collection(client, "docs")   # later: the collection's own model
    vecplug_milvus.recommend(client, "docs", positive=[3], negative=[7])  # from the stored vectors

``ModernBertEmbeddingFunction`` offers the same models with milvus-model's
interface (``encode_documents``, ``encode_queries``, ``dim``). Names are
imported on first use, so importing this package loads neither pymilvus
nor torch.
"""
import importlib

_EXPORTS = {
    "MilvusEmbedder": "embedder",
    "ModernBertEmbeddingFunction": "embedding_function",
    "CollectionNotFoundError": "collection",
    "CollectionExistsError": "collection",
    "UnrecordedCollectionError": "collection",
    "release": "lite",
    "recommend": "store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
