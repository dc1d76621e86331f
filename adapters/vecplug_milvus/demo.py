"""The Milvus part of ``vecplug demo``: a Milvus Lite ``.db`` in the demo's folder.

Milvus Lite locks a ``.db`` to the process that opened it until that
process exits. So the store releases the file when the demo closes it (a
later demo, or the user's own script, can open it), and if another
process holds ``milvus.db`` now (a demo still running on the same
``--dir``), it uses ``milvus-<pid>.db`` instead of failing.
"""
from __future__ import annotations

import os
from pathlib import Path


class MilvusDemoStore:
    uses_dsn = False  # a local store in the demo's own folder
    COLLECTION = "vecplug_demo"

    def __init__(self, folder: Path, model):
        from pymilvus import MilvusClient

        from .embedder import MilvusEmbedder
        from .lite import held_elsewhere

        self.path = folder / "milvus.db"
        if held_elsewhere(self.path):
            self.path = folder / f"milvus-{os.getpid()}.db"
        self.name = f"Milvus Lite ({self.path})"
        self.client = MilvusClient(str(self.path))
        self.embedder = MilvusEmbedder(self.client, model)
        if self.client.has_collection(self.COLLECTION):
            self.client.drop_collection(self.COLLECTION)  # a named folder used again: start afresh
        self.embedder.create_collection(self.COLLECTION)

    def add(self, ids: list[int], texts: list[str]) -> None:
        self.embedder.insert(self.COLLECTION, list(texts), ids=list(ids))

    def search(self, question: str, limit: int) -> list[tuple[int, float]]:
        hits = self.embedder.search(self.COLLECTION, question, limit=limit, output_fields=[])
        return [(int(hit["id"]), hit["distance"]) for hit in hits]

    def close(self) -> None:
        from .lite import release

        if self.client is not None:
            self.client.close()
            release(self.path)  # close() alone keeps the file locked until this process exits
            self.client = None
