"""``ModernBertEmbeddingFunction``: a Chroma embedding function that knows its prompts.

Chroma persists ``get_config()`` with the collection and rebuilds the
function from it when a collection is reopened without one; the config
therefore carries everything that fixes the vector space (model,
fingerprint, prompts, dimensions) and nothing that does not (device,
dtype, batch size), so the second group may change and the first may not.

Importing this module registers the class with Chroma.
"""
from __future__ import annotations

import os
from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

import vecplug
from vecplug.client import RemoteModel, is_url
from vecplug.model import check_texts

NAME = "vecplug_modernbert"
# What identifies the vector space: a collection keeps these for life. The rest
# of the config (device, dtype, batch_size) is how vectors are computed here.
FIXED_KEYS = ("model", "fingerprint", "prompts", "dimensions")
PLURALS = {"document": "documents", "query": "queries"}
CHROMA_HINT = "Open it with the original model, or create a new collection and re-add the documents."


class ModernBertEmbeddingFunction(EmbeddingFunction[Documents]):
    """Embeds documents with the model's document prompt and queries with its query prompt.

    Chroma calls ``__call__`` for ``add``/``upsert``/``update`` and
    ``embed_query`` for ``query(query_texts=...)``; a plain sentence-transformers
    function uses no prompt for either, which puts ModernBERT embedders' queries
    in the wrong place.

    ``batch_size`` bounds how many texts go to the model per call (memory, not
    results); None hands the whole list over, the model batches by tokens itself.

    ``model`` may be a ``vecplug serve`` URL: the model then runs in that
    server, and the collection's config keeps the URL (not the API key,
    which comes from ``$VECPLUG_API_KEY``), so a reopened collection finds
    the same server.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        device: str | None = None,
        dtype: str | None = None,
        dimensions: int | None = None,
        batch_size: int | None = None,
    ):
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        self.model = vecplug.load_model(model, device=device, dtype=dtype, dimensions=dimensions)
        self.device, self.dtype, self.batch_size = device, dtype, batch_size

    @property
    def fingerprint(self) -> str:
        return self.model.fingerprint

    # -- embedding ---------------------------------------------------------
    def __call__(self, input: Documents) -> Embeddings:
        return self._embed(input, "document")

    def embed_query(self, input: Documents) -> Embeddings:
        return self._embed(input, "query")

    def _embed(self, texts: Documents, kind: str) -> Embeddings:
        texts = check_texts(texts)  # every item, before any batch runs: errors name the real index
        if not texts:
            # Chroma's own message for this ("Expected Embeddings to be non-empty") blames the vectors
            raise ValueError(f"no {PLURALS[kind]} to embed: the input list is empty")
        step = self.batch_size or len(texts)
        rows: list = []
        for start in range(0, len(texts), step):
            rows.extend(self.model.embed(texts[start : start + step], kind))
        return rows

    # -- Chroma's configuration protocol -------------------------------------
    @staticmethod
    def name() -> str:
        return NAME

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        # vectors are L2-normalised: all three rank identically
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        spec = self.model.spec
        return {
            "model": spec.name,
            "fingerprint": spec.fingerprint,
            "prompts": dict(spec.prompts),
            "dimensions": spec.dimensions,
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "vecplug_version": vecplug.__version__,
            **({"url": self.model.url} if isinstance(self.model, RemoteModel) else {}),
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "ModernBertEmbeddingFunction":
        """Rebuild the function of a persisted collection, refusing a model that changed since.

        The model is looked up by name, so a directory whose weights were
        replaced, or a hub id that now resolves to another revision, would
        silently put new vectors next to old ones; the fingerprint catches it.
        """
        ModernBertEmbeddingFunction.validate_config(config)
        function = ModernBertEmbeddingFunction(
            model=config.get("url") or config["model"],  # a served model is found at its server again
            device=config.get("device"),
            dtype=config.get("dtype"),
            dimensions=config["dimensions"],
            batch_size=config.get("batch_size"),
        )
        check_same_space(config, function.get_config(), action="open this collection with")
        return function

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        missing = [key for key in FIXED_KEYS if key not in config]
        if missing:
            raise ValueError(f"{NAME} config is missing {', '.join(missing)}: {config!r}")
        problems = []
        if not isinstance(config["model"], str) or not config["model"]:
            problems.append("model must be a non-empty string")
        if not isinstance(config["fingerprint"], str) or not config["fingerprint"]:
            problems.append("fingerprint must be a non-empty string")
        if not isinstance(config["prompts"], dict) or not all(
            isinstance(value, str) for value in config["prompts"].values()
        ):
            problems.append("prompts must map kinds to strings")
        if not isinstance(config["dimensions"], int) or config["dimensions"] < 1:
            problems.append("dimensions must be a positive integer")
        for key in ("device", "dtype"):
            if config.get(key) is not None and not isinstance(config[key], str):
                problems.append(f"{key} must be a string or null")
        if config.get("batch_size") is not None and (
            not isinstance(config["batch_size"], int) or config["batch_size"] < 1
        ):
            problems.append("batch_size must be a positive integer or null")
        if config.get("url") is not None and not is_url(config["url"]):
            problems.append("url must be an http(s):// URL or null")
        if problems:
            raise ValueError(f"invalid {NAME} config ({'; '.join(problems)}): {config!r}")

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        """Device, dtype and batch size may change; what fixes the vector space may not."""
        check_same_space(old_config, new_config, action="switch this collection to")

    def __repr__(self) -> str:
        return f"<ModernBertEmbeddingFunction {self.model.name} dim={self.model.dimensions} device={self.device}>"


def check_same_space(stored: dict[str, Any], new: dict[str, Any], action: str, collection_name: str | None = None) -> None:
    """Raise ModelMismatchError when two configs describe different vector spaces (vecplug's one rule)."""
    where = f"Chroma collection {collection_name!r}" if collection_name else "this Chroma collection"
    vecplug.check_same_space(stored, new, where=where, action=action, hint=CHROMA_HINT)


register_embedding_function(ModernBertEmbeddingFunction)
