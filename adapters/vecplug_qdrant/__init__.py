"""vecplug adapter for Qdrant: ModernBERT vectors into and out of qdrant-client, right.

    from qdrant_client import QdrantClient
    from vecplug_qdrant import QdrantEmbedder

    client = QdrantClient(path="qdrant-data")
    embedder = QdrantEmbedder(client)                 # $VECPLUG_MODEL or the default model
    embedder.create_collection("docs")                # sized for the model, records it
    client.upload_points("docs", embedder.points(texts))
    embedder.query("docs", "a question", limit=5)
    embedder.recommend("docs", positive=[1, 2], negative=[3], limit=5)   # Qdrant's recommend API

    embedder.upsert("docs", long_texts, ids=ids, chunk_tokens=512)          # one point per passage
    embedder.query("docs", "a question", limit=5, group_by="source_id")     # best passage per document

    embedder = QdrantEmbedder.from_collection(client, "docs")   # later: the collection's own model

qdrant-client 1.20 embeds ``models.Document`` only through fastembed, with
no ModernBERT and no query/document prompts; this gives the vectors
explicitly. Names are imported on first use, so importing this package
loads neither qdrant_client nor torch.
"""
import importlib

_EXPORTS = {
    "QdrantEmbedder": "sync",
    "AsyncQdrantEmbedder": "aio",
    "CollectionNotFoundError": "collection",
    "CollectionExistsError": "collection",
    "UnrecordedCollectionError": "collection",
    "document_id": "ingest",
    "chunk_id": "ingest",
    "QdrantStore": "store",
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
