"""``ModernBertEmbeddings``: a LangChain ``Embeddings`` that applies the model's document and query prompts.

LangChain calls ``embed_documents`` when a vector store adds texts and
``embed_query`` when it searches; ModernBERT embedders need a different
prompt for each (``search_document: `` / ``search_query: ``), which a generic
sentence-transformers wrapper leaves out. Here each method asks vecplug for
its kind, so the prompts are the model's own (none for a model without).

A list goes to the model whole: vecplug batches it by tokens itself, so no
batch size is needed. The async forms run the same call in a worker thread
(``asyncio.to_thread``): loading, tokenizing and the forward passes, or
the HTTP requests to a server, never block the event loop.
"""
from __future__ import annotations

import asyncio

from langchain_core.embeddings import Embeddings

from vecplug.model import check_texts

from vecplug.lazy_model import LazyModel, pick_model


class ModernBertEmbeddings(Embeddings):
    """vecplug's model in LangChain: local, or a ``vecplug serve`` at ``server_url``.

    ``model`` (or ``model_name``, as other LangChain classes spell it): a
    hub id, alias, local directory or server URL (None: ``$VECPLUG_MODEL``
    or ``nomic-ai/modernbert-embed-base``).
    ``dimensions``: Matryoshka truncation (then re-normalised).
    ``api_key``: the server's key (None: ``$VECPLUG_API_KEY_FILE`` or
    ``$VECPLUG_API_KEY``). ``device``/``dtype``: a local model's (None: the
    fastest that keeps quality here). ``fingerprint``: refuse a model whose
    vectors would not match ones you have (``embeddings.fingerprint`` of the
    run that made them). Settings are checked now; the model
    loads with the first embedding, once (``.model`` loads it on demand).
    Vectors are L2-normalised lists of floats. Picklable: a copy carries the
    settings, not the weights.
    """

    def __init__(self, model=None, server_url=None, dimensions=None, *, model_name=None, api_key=None, device=None,
                 dtype=None, fingerprint=None):
        self._lazy = LazyModel(pick_model(model, model_name), server_url, dimensions, device=device, dtype=dtype,
                               api_key=api_key, fingerprint=fingerprint)

    # -- what the object is ---------------------------------------------------
    @property
    def model(self):
        """The ``vecplug.EmbeddingModel`` (a ``RemoteModel`` for a server), loaded on first access."""
        return self._lazy.get()

    @property
    def model_name(self) -> str:
        """The loaded model's name (``spec.name``); before it loads, the name asked for."""
        return self._lazy.get().name if self._lazy.loaded else self._lazy.requested_name

    @property
    def server_url(self) -> str | None:
        return self._lazy.server_url

    @property
    def fingerprint(self) -> str:
        """The loaded model's fingerprint (its vector space; loads the model): keep it with your vectors."""
        return self.model.fingerprint

    @property
    def dimensions(self) -> int:
        """The vectors' length (loads the model when no ``dimensions`` was given)."""
        return self._lazy.dimensions or self.model.dimensions

    # -- LangChain's Embeddings ----------------------------------------------------
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, document prompt applied; every text is checked before any is embedded."""
        texts = check_texts(texts)
        if not texts:
            return []
        return self.model.embed_documents(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        """The vector of one question, query prompt applied."""
        return self.model.embed_queries([check_query(text)])[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)

    def __repr__(self) -> str:
        where = f" at {self.server_url}" if self.server_url else ""
        return f"ModernBertEmbeddings({self.model_name!r}{where})"


def check_query(text) -> str:
    """A query is one str: a list here is a mistake LangChain's signature does not catch."""
    if not isinstance(text, str):
        raise TypeError(f"the query must be a str, got {type(text).__name__} ({text!r:.60}); "
                        "embed several texts with embed_documents")
    return check_texts([text])[0]
