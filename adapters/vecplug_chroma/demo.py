"""The Chroma part of ``vecplug demo``: a persistent collection in the demo's folder."""
from __future__ import annotations

from pathlib import Path


class ChromaDemoStore:
    uses_dsn = False  # a local store in the demo's own folder

    def __init__(self, folder: Path, model):
        import chromadb

        from .embedding_function import ModernBertEmbeddingFunction
        from .ingest import add

        path = folder / "chroma"
        self.name = f"Chroma ({path})"
        self._add = add
        self.client = chromadb.PersistentClient(str(path))
        function = ModernBertEmbeddingFunction(model.name, dimensions=model.dimensions)
        collection_name = "vecplug_demo"
        if collection_name in [collection.name for collection in self.client.list_collections()]:
            self.client.delete_collection(collection_name)  # a named folder used again: start afresh
        self.collection = self.client.create_collection(collection_name, embedding_function=function)

    def add(self, ids: list[int], texts: list[str]) -> None:
        self._add(self.collection, list(texts), ids=[str(document_id) for document_id in ids])

    def search(self, question: str, limit: int) -> list[tuple[int, float]]:
        found = self.collection.query(query_texts=[question], n_results=limit)
        # the collection's space is cosine: distance = 1 - cosine similarity
        pairs = zip(found["ids"][0], found["distances"][0])
        return [(int(document_id), 1.0 - distance) for document_id, distance in pairs]

    def close(self) -> None:
        self.client = self.collection = None
