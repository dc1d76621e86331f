"""``ModernBertEmbeddingFunction``: a vecplug model with milvus-model's embedding-function interface.

pymilvus's ``model`` extra (milvus-model) gives embedding functions with
``encode_documents``, ``encode_queries`` (lists of numpy vectors) and
``dim``; calling one encodes documents. This one follows that interface,
so code written for those functions takes vecplug's models, with the
document and query prompts applied. It needs neither milvus-model nor
pymilvus.
"""
from __future__ import annotations

from vecplug.model import check_texts

from .embedder import resolve_model


class ModernBertEmbeddingFunction:
    """``encode_documents(texts)`` / ``encode_queries(texts)``: lists of float32 unit vectors, ``dim`` wide.

    ``model``: a name, alias, local directory, ``vecplug serve`` URL or
    loaded model (None: ``$VECPLUG_MODEL`` or the default); ``dimensions``:
    a Matryoshka cut.
    """

    def __init__(self, model=None, dimensions=None, *, device=None, dtype=None):
        self.model = resolve_model(model, dimensions, device, dtype)

    @property
    def dim(self) -> int:
        return self.model.dimensions

    @property
    def model_name(self) -> str:
        return self.model.name

    def encode_documents(self, documents: list[str]) -> list:
        """One vector per document, with the model's document prompt."""
        return list(self.model.embed_documents(check_texts(documents)))

    def encode_queries(self, queries: list[str]) -> list:
        """One vector per query, with the model's query prompt."""
        return list(self.model.embed_queries(check_texts(queries)))

    def __call__(self, texts: list[str]) -> list:
        """Documents: what milvus-model's functions do when called."""
        return self.encode_documents(texts)

    def __repr__(self) -> str:
        return f"<ModernBertEmbeddingFunction {self.model.name} dim={self.dim}>"
