"""``ModernBertEmbedding``: a LlamaIndex ``BaseEmbedding`` that applies the model's document and query prompts.

LlamaIndex embeds nodes with the text methods and questions with the query
methods; ModernBERT embedders need a different prompt for each
(``search_document: `` / ``search_query: ``). Each method here asks vecplug
for its kind, so the prompts are the model's own.

LlamaIndex cuts a list into ``embed_batch_size`` texts per call; each call
goes to the model whole, and vecplug batches it by tokens. The default here
is 256 texts (LlamaIndex's own default, 10, would give the model batches
too small to fill). The async methods run the same calls in a worker
thread (``asyncio.to_thread``): loading and embedding never block the event
loop, and ``aget_text_embedding_batch``'s concurrent batches share the one
loaded model (vecplug's models are safe to call from several threads).

The class is a pydantic model: its settings are fields (``to_dict`` /
``from_dict`` and pickle carry them; the API key is left out of ``to_dict``),
the loaded model a private attribute that a copy does not carry.
"""
from __future__ import annotations

import asyncio
from typing import Any, List, Optional

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from pydantic import Field, PrivateAttr

from vecplug.model import check_texts
from vecplug.lazy_model import LazyModel, pick_model

BATCH_TEXTS = 256


class ModernBertEmbedding(BaseEmbedding):
    """vecplug's model in LlamaIndex: local, or a ``vecplug serve`` at ``server_url``.

    ``model`` (or LlamaIndex's usual ``model_name``): a hub id, alias, local
    directory or server URL (None: ``$VECPLUG_MODEL`` or
    ``nomic-ai/modernbert-embed-base``). ``dimensions``: Matryoshka
    truncation. ``api_key``: the server's key (None: ``$VECPLUG_API_KEY_FILE``
    or ``$VECPLUG_API_KEY``). ``device``/``dtype``: a local model's.
    ``fingerprint``: refuse a model whose vectors would not match ones you
    have. Settings are checked now; the model loads with the first embedding,
    once, and ``model_name`` and ``fingerprint`` then report it, so
    ``to_dict()`` of a used object loads only the same model again.
    """

    # Frozen: the model is chosen by these when the object is made; changing one later would be ignored silently.
    model_name: Optional[str] = Field(
        default=None, frozen=True,
        description="The vecplug model: a hub id, alias or local directory; after loading, its name.")
    server_url: Optional[str] = Field(default=None, frozen=True, description="A `vecplug serve` that runs the model.")
    dimensions: Optional[int] = Field(default=None, frozen=True,
                                      description="Matryoshka truncation; None: the model's size.")
    device: Optional[str] = Field(default=None, frozen=True, description="A local model's device; None: automatic.")
    dtype: Optional[str] = Field(default=None, frozen=True, description="A local model's dtype; None: automatic.")
    fingerprint: Optional[str] = Field(
        default=None, frozen=True,
        description="The model's vector space: filled when it loads; given, another model is refused.")
    api_key: Optional[str] = Field(default=None, exclude=True, repr=False, frozen=True,
                                   description="The server's key; None: $VECPLUG_API_KEY_FILE or $VECPLUG_API_KEY.")
    embed_batch_size: int = Field(default=BATCH_TEXTS, gt=0, le=2048,
                                  description="Texts per call to the model, which batches them by tokens.")

    _lazy: LazyModel = PrivateAttr()

    def __init__(self, model: Optional[str] = None, server_url: Optional[str] = None,
                 dimensions: Optional[int] = None, *, model_name: Optional[str] = None, **settings: Any):
        lazy = LazyModel(pick_model(model, model_name), server_url, dimensions,
                         device=settings.get("device"), dtype=settings.get("dtype"),
                         api_key=settings.get("api_key"), fingerprint=settings.get("fingerprint"))
        settings.update(device=lazy.device, dtype=lazy.dtype)
        super().__init__(model_name=lazy.model_name,
                         server_url=lazy.server_url, dimensions=lazy.dimensions, **settings)
        self._lazy = lazy

    @classmethod
    def class_name(cls) -> str:
        return "ModernBertEmbedding"

    @property
    def model(self):
        """The ``vecplug.EmbeddingModel`` (a ``RemoteModel`` for a server), loaded on first access."""
        model = self._lazy.get()
        if self.model_name != model.name or self.fingerprint != model.fingerprint:
            # what was loaded, for reports and to_dict(); past the freeze, which is there for users
            self.__dict__.update(model_name=model.name, fingerprint=model.fingerprint)
        return model

    # -- LlamaIndex's BaseEmbedding ------------------------------------------------
    def get_text_embedding_batch(self, texts: List[str], show_progress: bool = False,
                                 **kwargs: Any) -> List[Embedding]:
        """Every text checked before the first batch: an error names its index in ``texts``, not in a batch."""
        return super().get_text_embedding_batch(check_texts(texts), show_progress=show_progress, **kwargs)

    async def aget_text_embedding_batch(self, texts: List[str], show_progress: bool = False,
                                        **kwargs: Any) -> List[Embedding]:
        return await super().aget_text_embedding_batch(check_texts(texts), show_progress=show_progress, **kwargs)

    def _get_query_embedding(self, query: str) -> Embedding:
        return self.model.embed_queries([check_one(query, "query")])[0].tolist()

    def _get_text_embedding(self, text: str) -> Embedding:
        return self.model.embed_documents([check_one(text, "text")])[0].tolist()

    def _get_text_embeddings(self, texts: List[str]) -> List[Embedding]:
        texts = check_texts(texts)
        if not texts:
            return []
        return self.model.embed_documents(texts).tolist()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: List[str]) -> List[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)


def check_one(text, what: str) -> str:
    """One str, where LlamaIndex's signature says so: a list here is a mistake worth naming."""
    if not isinstance(text, str):
        raise TypeError(f"the {what} must be a str, got {type(text).__name__} ({text!r:.60}); "
                        "embed several texts with get_text_embedding_batch")
    return check_texts([text])[0]
