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
        # Chroma rebuilds its function from a name, so name where the model is: a served model by its URL (its
        # name is a path or id on the server's machine, which need not exist here), a local one by its name
        function = ModernBertEmbeddingFunction(model_source(model), dimensions=model.dimensions)
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


def model_source(model) -> str:
    """What ``vecplug.load_model`` takes to get ``model`` again: a served model's URL, else its name."""
    from vecplug.client import RemoteModel

    return model.url if isinstance(model, RemoteModel) else model.name
