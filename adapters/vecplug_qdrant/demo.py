"""The Qdrant part of ``vecplug demo``: local mode (Qdrant's engine in Python) in the demo's folder."""
from __future__ import annotations

from pathlib import Path


class QdrantDemoStore:
    uses_dsn = False  # a local store in the demo's own folder
    COLLECTION = "vecplug_demo"

    def __init__(self, folder: Path, model):
        from qdrant_client import QdrantClient

        from .sync import QdrantEmbedder

        path = folder / "qdrant"
        self.name = f"Qdrant local ({path})"
        self.client = QdrantClient(path=str(path))
        self.embedder = QdrantEmbedder(self.client, model)
        if self.client.collection_exists(self.COLLECTION):
            self.client.delete_collection(self.COLLECTION)  # a named folder used again: start afresh
        self.embedder.create_collection(self.COLLECTION)

    def add(self, ids: list[int], texts: list[str]) -> None:
        self.embedder.upsert(self.COLLECTION, list(texts), ids=list(ids))

    def search(self, question: str, limit: int) -> list[tuple[int, float]]:
        return [(int(hit.id), float(hit.score)) for hit in self.embedder.query(self.COLLECTION, question, limit=limit)]

    def close(self) -> None:
        self.client.close()
