"""``VecplugEmbeddings``: LanceDB's ``"vecplug"`` embedding function, with the model's prompts.

LanceDB stores an embedding function's config in the table's schema
metadata and, when a table is searched or written in another process,
rebuilds the function with ``get_registry().get(name).create(**config)``.
So the config this function stores (``safe_model_dump``) is the vector
space: the model's name (or ``vecplug serve`` URL), dimensions,
fingerprint and prompts. A rebuilt function checks that the model its
name loads here still has that fingerprint (files replaced, a hub id now
resolving to other weights, a server serving another model): otherwise
``vecplug.ModelMismatchError`` before anything is embedded, so new vectors
never land beside old ones of another model. Device and dtype are each
process's own choice and are never stored.

LanceDB wraps every embedding call in a retry loop that retries *any*
exception seven times with growing sleeps, then raises a bare
``Exception``; a wrong text or an unknown model would take minutes to
report and lose its type. This function does not use that loop:
vecplug's own errors arrive at once, and a served model's ``RemoteModel``
already retries what is worth retrying (busy, loading, unreachable).

Importing this module imports lancedb and registers the class.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Optional

from lancedb.embeddings import TextEmbeddingFunction, register
from pydantic import ConfigDict, PrivateAttr

import vecplug
from vecplug.client import RemoteModel, is_url
from vecplug.model import check_text, check_texts

NAME = "vecplug"
LANCEDB_HINT = ("Search and write it with the model it was made with, or create a new table with this model "
                "and add the texts again.")


@register(NAME)
class VecplugEmbeddings(TextEmbeddingFunction):
    """Embeds rows with the model's document prompt and ``table.search(text)`` with its query prompt.

    ``name``: what ``vecplug.load_model`` takes (hub id, alias, local
    directory, or a ``vecplug serve`` URL); None is ``$VECPLUG_MODEL`` or
    the default model. ``dimensions``: Matryoshka cut. ``device``/``dtype``:
    this process's choice, not stored with the table. ``fingerprint`` and
    ``prompts`` are what a table records; passed back by LanceDB when it
    rebuilds the function, they must match the model (you may pass a
    fingerprint yourself to pin one).

    Unknown options are refused (a misspelt ``dimension=256`` must not be
    silently ignored), and the model is loaded at ``create()`` so a wrong
    name or setting fails there, not at the first write. LanceDB's own
    ``max_retries`` option is accepted and has no effect (see the module
    docstring).
    """

    model_config = ConfigDict(extra="forbid")

    name: Optional[Any] = None
    dimensions: Optional[Any] = None
    device: Optional[Any] = None
    dtype: Optional[Any] = None
    fingerprint: Optional[str] = None
    prompts: Optional[dict[str, str]] = None
    vecplug_version: Optional[str] = None  # recorded for future readers; not checked

    _model: Any = PrivateAttr(default=None)

    @classmethod
    def create(cls, **kwargs) -> "VecplugEmbeddings":
        """LanceDB's constructor (also when it rebuilds a table's function): loads and checks the model.

        The loading happens here, after pydantic has built the object, so
        vecplug's own errors (``InvalidSettingError``, ``UnknownModelError``,
        ``ModelMismatchError``) reach the caller as they are; raised inside
        pydantic's validation they would become a ``ValidationError``.
        """
        function = super().create(**kwargs)
        function._load_and_check()
        return function

    @property
    def model(self) -> vecplug.EmbeddingModel:
        """The loaded vecplug model (local, or a ``RemoteModel`` for a URL)."""
        if self._model is None:  # made with the class itself rather than create()
            self._load_and_check()
        return self._model

    def _load_and_check(self) -> None:
        if isinstance(self.name, os.PathLike):
            self.name = os.fspath(self.name)
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError(f"name must be a model name, directory or vecplug serve URL (str), got {self.name!r}")
        device, dtype = self.device, self.dtype
        if device is None and dtype is None and self.fingerprint and not is_url(self.name):
            device, dtype = _chosen_placement(self.name)  # a rebuilt function: this process's choice
        model = _load(self.name, device, dtype, self.dimensions)
        if self.fingerprint is not None or self.prompts is not None:
            # what is not recorded cannot differ: a config with prompts only is compared on its prompts
            recorded = {"name": self.name, "fingerprint": self.fingerprint or model.fingerprint,
                        "prompts": self.prompts}
            if self.dimensions is not None:
                recorded["dimensions"] = self.dimensions
            vecplug.check_same_space(recorded, model, where="this LanceDB table",
                                     action="embed for it with what its recorded model name loads here:",
                                     hint=LANCEDB_HINT)
        elif self.device is not None or self.dtype is not None:
            _remember_placement(model.spec.name, self.device, self.dtype)
        self._model = model

    # -- what LanceDB calls ------------------------------------------------
    def ndims(self) -> int:
        return self.model.dimensions

    def compute_source_embeddings(self, texts, *args, **kwargs) -> list:
        """The rows' source column: the document prompt. Every item is checked before any is embedded."""
        texts = check_texts(self.sanitize_input(texts))
        return list(self.model.embed_documents(texts)) if texts else []

    def compute_query_embeddings(self, query, *args, **kwargs) -> list:
        """``table.search(text)``: one vector with the query prompt."""
        if not isinstance(query, str):
            raise TypeError(f"a LanceDB text search takes one str, got {type(query).__name__} ({query!r:.60}); "
                            "search vectors you computed yourself with table.search(vector)")
        return [self.model.embed_queries([check_text(query, 0)])[0]]

    def generate_embeddings(self, texts, *args, **kwargs) -> list:
        return self.compute_source_embeddings(texts)

    def compute_source_embeddings_with_retry(self, *args, **kwargs) -> list:
        return self.compute_source_embeddings(*args, **kwargs)  # no blind retries: see the module docstring

    def compute_query_embeddings_with_retry(self, *args, **kwargs) -> list:
        return self.compute_query_embeddings(*args, **kwargs)

    # -- what LanceDB stores -------------------------------------------------
    def safe_model_dump(self) -> dict:
        """The table's record of its vector space (never device or dtype: each reader chooses its own)."""
        spec = self.model.spec
        return {
            "name": self.model.url if isinstance(self.model, RemoteModel) else spec.name,
            "dimensions": spec.dimensions,
            "fingerprint": spec.fingerprint,
            "prompts": dict(spec.prompts),
            "vecplug_version": vecplug.__version__,
        }

    def __hash__(self) -> int:  # the base hashes every field, and prompts is a dict
        return hash((self.name, self.dimensions, self.fingerprint, str(self.device), str(self.dtype)))

    def __repr__(self) -> str:
        return f"<VecplugEmbeddings {self.model.name} dim={self.model.dimensions}>"


def _load(name, device, dtype, dimensions) -> vecplug.EmbeddingModel:
    """``vecplug.load_model``; a served model is kept per URL and dimensions (LanceDB rebuilds functions often)."""
    if not is_url(name):
        return vecplug.load_model(name, device=device, dtype=dtype, dimensions=dimensions)
    key = (name, dimensions)
    with _lock:
        model = _remote.get(key)
    if model is None:
        model = vecplug.load_model(name, device=device, dtype=dtype, dimensions=dimensions)
        with _lock:
            model = _remote.setdefault(key, model)
    return model


def _remember_placement(name: str, device, dtype) -> None:
    """The first device/dtype this process chose for a model: what the functions LanceDB rebuilds for it use."""
    with _lock:
        _placements.setdefault(name, (device, dtype))


def _chosen_placement(name: str) -> tuple:
    with _lock:
        return _placements.get(name, (None, None))


_lock = threading.Lock()
_remote: dict[tuple, RemoteModel] = {}
_placements: dict[str, tuple] = {}
