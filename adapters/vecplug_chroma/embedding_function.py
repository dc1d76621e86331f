"""``ModernBertEmbeddingFunction``: a Chroma embedding function that knows its prompts.

Chroma persists ``get_config()`` with the collection, where every client of
the collection reads it, and rebuilds the function from it when a
collection is reopened without one. The config therefore holds what fixes
the vector space (model, fingerprint, prompts, dimensions) and nothing that
is one reader's choice: device, dtype and batch size are chosen on each
host (automatically for a rebuilt function), so a GPU client cannot leave a
CPU-only client a collection it cannot query. Configs written before this
(with device, dtype and batch_size keys) are read, those keys ignored. A
function made with a ``vecplug serve`` URL also keeps ``url``: where the
vectors are computed, which may change; the vector space may not.

Chroma rebuilds the function from the config on every call that needs it,
so functions are built once per config and kept (``build_from_config``);
a function this process made itself for the same model is the one used,
with the device, dtype and batch size it was given.
A config whose model cannot be loaded here (files gone, weights changed)
still builds: the function raises the reason when it is asked to embed,
and the collection stays readable and can be switched to a working model
with ``update_embedding_function``.

Importing this module registers the class with Chroma.
"""
from __future__ import annotations

import json
import os
import threading
from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

import vecplug
from vecplug.client import RemoteModel, is_url
from vecplug.model import check_texts

NAME = "vecplug_modernbert"
# What identifies the vector space: a collection keeps these for life, and they
# are all its config holds (with the vecplug version that wrote it). Device,
# dtype and batch size are each reader's own choice, never persisted.
FIXED_KEYS = ("model", "fingerprint", "prompts", "dimensions")
# Configs written before that also have "device", "dtype" and "batch_size": read, those ignored.
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
    ``device``, ``dtype`` and ``batch_size`` are this process's choice: they
    are not stored with the collection (``get_config`` has the vector space only).

    ``model`` may be a ``vecplug serve`` URL: the model then runs in that
    server, and the collection's config also keeps the URL (not the API key,
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
        with _built_lock:  # this process's choice for this model, also for collections Chroma reopens
            _built.setdefault(_space_key(self.get_config()), self)

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
            "vecplug_version": vecplug.__version__,
            **({"url": self.model.url} if isinstance(self.model, RemoteModel) else {}),
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "ModernBertEmbeddingFunction":
        """The function of a persisted collection: built once per config, checked against its fingerprint.

        The model is looked up by name, so a directory whose weights were
        replaced, or a hub id that now resolves to another revision, would
        silently put new vectors next to old ones; the fingerprint catches
        it. The function is the first this process made for the same
        vector space (with its device, dtype and batch size), else a new
        one on this host's automatic device and dtype, kept for next time.
        A model that cannot be loaded here gives an
        ``UnavailableEmbeddingFunction`` that raises the reason when asked
        to embed (Chroma calls this when it only reads the collection, and
        inside ``modify`` after the new config is stored).
        """
        ModernBertEmbeddingFunction.validate_config(config)
        function = _built.get(_space_key(config))
        if function is not None:
            return function
        try:  # a served model is found at its server again
            function = ModernBertEmbeddingFunction(model=config.get("url") or config["model"],
                                                   dimensions=config["dimensions"])
            check_same_space(config, function.get_config(), action="open it with what its model name loads here:")
        except Exception as error:  # re-raised, whole, when the function is asked to embed
            kept = [*FIXED_KEYS, *(["url"] if config.get("url") else [])]
            return UnavailableEmbeddingFunction({key: config[key] for key in kept}, error)
        return _built.get(_space_key(config), function)

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
        if config.get("url") is not None and not is_url(config["url"]):
            problems.append("url must be an http(s):// URL or null")
        if problems:
            raise ValueError(f"invalid {NAME} config ({'; '.join(problems)}): {config!r}")

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        """The model may move (same fingerprint); what fixes the vector space may not change."""
        check_same_space(old_config, new_config, action="switch this collection to")

    def __repr__(self) -> str:
        return f"<ModernBertEmbeddingFunction {self.model.name} dim={self.model.dimensions} device={self.device}>"


def check_same_space(stored: dict[str, Any], new: dict[str, Any], action: str,
                     collection_name: str | None = None) -> None:
    """Raise ModelMismatchError when two configs describe different vector spaces (vecplug's one rule)."""
    where = f"Chroma collection {collection_name!r}" if collection_name else "this Chroma collection"
    vecplug.check_same_space(stored, new, where=where, action=action, hint=CHROMA_HINT)


class UnavailableEmbeddingFunction(ModernBertEmbeddingFunction):
    """The function of a collection whose model cannot be loaded here: it raises why when asked to embed.

    Chroma builds a collection's function whenever it reads the collection's
    configuration, also for ``get``/``count`` and inside ``modify``; failing
    there would lock users out of reading their data and store a refused
    ``modify`` half-way. Its config is the stored one, so switching the
    collection to the same weights under a new name is still checked.
    """

    def __init__(self, config: dict[str, Any], error: Exception):  # no model: nothing to load
        self._config, self._error = dict(config), error
        self.device = self.dtype = self.batch_size = None

    @property
    def model(self):
        raise self._error.with_traceback(None)

    @property
    def fingerprint(self) -> str:
        return self._config["fingerprint"]

    def _embed(self, texts, kind):
        raise self._error.with_traceback(None)

    def get_config(self) -> dict[str, Any]:
        return {**self._config, "vecplug_version": vecplug.__version__}

    def __repr__(self) -> str:
        return f"<UnavailableEmbeddingFunction {self._config['model']}: {self._error}>"


# The function of each vector space in this process, by its config's space keys.
_built: dict[str, ModernBertEmbeddingFunction] = {}
_built_lock = threading.Lock()


def _space_key(config: dict[str, Any]) -> str:
    """The vector space, and the server computing it if any: a served collection keeps using its server."""
    return json.dumps({**{key: config[key] for key in FIXED_KEYS}, "url": config.get("url")}, sort_keys=True)


register_embedding_function(ModernBertEmbeddingFunction)
