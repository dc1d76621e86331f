"""``LazyModel``: the vecplug model behind a framework's embedding class, checked at once, loaded on first use.

LangChain's ``ModernBertEmbeddings`` and LlamaIndex's ``ModernBertEmbedding``
both take the same settings (a model name, path or ``vecplug serve`` URL, a
server URL, dimensions, device, dtype, an API key) and keep one rule for
them, here, in the core (it imports no framework library), for any adapter
whose host library builds and copies embedding objects the same way.

Why lazy: frameworks build embedding objects early (LlamaIndex's
``Settings.embed_model`` at import time, a LangChain chain's config) and copy
or pickle them (worker processes, LlamaIndex's ``to_dict``/``from_dict``).
So the object holds only its settings; the weights (or the server's
connection) come with the first embedding, once per object, through
``vecplug.load_model``'s cache (one copy per model, device and dtype in a
process). A copy made by ``pickle`` carries the settings, never the weights,
and loads again where it is used. Everything that can be checked without
loading is checked in the constructor, so a typo fails where it was made.
"""
from __future__ import annotations

import os
import threading

import vecplug
from vecplug.client import is_url
from vecplug.devices import normalise_device, normalise_dtype
from vecplug.model import normalise_dimensions


def pick_model(model, model_name):
    """``model`` or ``model_name`` (the frameworks' usual spelling): one model, named once or twice alike."""
    if model is not None and model_name is not None and _spelled(model) != _spelled(model_name):
        raise ValueError(f"model={model!r} and model_name={model_name!r} name two models: pass one")
    return model if model is not None else model_name


def _spelled(name):
    return os.fspath(name) if isinstance(name, (str, os.PathLike)) else name


class LazyModel:
    """The settings of one embedding object and, after the first use, its loaded vecplug model.

    ``model``: a hub id, alias, local directory or ``vecplug serve`` URL
    (None: ``$VECPLUG_MODEL`` when this object is made, or vecplug's
    default; with ``server_url``, the served model). ``server_url``: a
    ``vecplug serve`` that runs the model; with ``model`` too, the server's
    model must answer to that name. ``api_key``: the server's key (None:
    ``$VECPLUG_API_KEY_FILE`` / ``$VECPLUG_API_KEY``, as ``vecplug.RemoteModel``
    reads them). ``device``/``dtype``: for a local model only (a server
    chooses its own). ``dimensions``: Matryoshka truncation. ``fingerprint``:
    the vector space the vectors must be in (``model.fingerprint`` of an
    earlier run); a model that loads with another one is refused at first use.
    """

    def __init__(self, model=None, server_url=None, dimensions=None, *, device=None, dtype=None, api_key=None,
                 fingerprint=None):
        if model is not None and not isinstance(model, (str, os.PathLike)):
            raise TypeError(f"model must be a model name, a local directory or a vecplug serve URL, "
                            f"got {type(model).__name__} ({model!r:.60})")
        if server_url is not None and not is_url(server_url):
            raise ValueError(f"server_url must be the http:// or https:// URL of a `vecplug serve`, "
                             f"got {server_url!r}")
        if model is None and server_url is None:  # $VECPLUG_MODEL (maybe a server's URL) or the default, read now:
            model = vecplug.default_model_name()  # a copy loads what this object would have loaded
        if is_url(model):
            if server_url is not None:
                raise ValueError(f"model={model!r} is already a server URL; pass it once, as server_url")
            model, server_url = None, model
        if api_key is not None and (not isinstance(api_key, str) or server_url is None):
            raise ValueError("api_key is the key of a `vecplug serve` (a str): pass it with server_url, "
                             "or leave it out for a local model")
        self.server_url = server_url
        self.model_name = None if model is None else os.fspath(model)
        self.dimensions = normalise_dimensions(dimensions)
        self.device, self.dtype = normalise_device(device), normalise_dtype(dtype)
        if server_url is not None and (self.device is not None or self.dtype is not None):
            raise vecplug.InvalidSettingError(
                f"{server_url} is a server: it runs the model on its own device and dtype "
                "(`vecplug serve --device/--dtype`); pass neither with server_url")
        self.api_key = api_key
        if fingerprint is not None and (not isinstance(fingerprint, str) or not fingerprint):
            raise ValueError(f"fingerprint must be a model's fingerprint (a non-empty str), got {fingerprint!r}")
        self.fingerprint = fingerprint
        self._model = None
        self._lock = threading.Lock()

    @property
    def requested_name(self) -> str:
        """What was asked for, before anything loads: the model's name (or the default's), else the server."""
        return self.model_name or self.server_url

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def get(self) -> "vecplug.EmbeddingModel":
        """The model, loaded on the first call (once, whichever thread asks first)."""
        model = self._model
        if model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
                model = self._model
        return model

    def _load(self):
        if self.server_url is None:
            model = vecplug.load_model(self.model_name, device=self.device, dtype=self.dtype,
                                       dimensions=self.dimensions)
        else:
            remote = vecplug.RemoteModel(self.server_url, api_key=self.api_key)
            if self.model_name is not None:
                check_served_name(remote, self.model_name)
            model = remote.with_dimensions(self.dimensions)
        if self.fingerprint is not None:  # the core's one rule: the same weights under another name pass
            # the recorded side has a fingerprint only: its name is not known here
            vecplug.check_same_space({"name": "a model", "fingerprint": self.fingerprint}, model,
                                     where="the vectors of fingerprint=", action="embed with",
                                     hint="Load the model that made them, or embed your texts again without "
                                          "fingerprint=.")
        return model

    # -- pickle: the settings travel, the weights and the lock do not
    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None, "_lock": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = f" at {self.server_url}" if self.server_url else ""
        return f"<LazyModel {self.model_name or 'default'}{where} {'loaded' if self.loaded else 'not loaded yet'}>"


def check_served_name(remote, name: str) -> None:
    """A server asked for by URL *and* model name must serve that model: say which one it serves instead."""
    spec = remote.spec
    answers_to = {spec.name.lower(), *(alias.lower() for alias in spec.aliases)}
    if remote.served_name:
        answers_to.add(remote.served_name.lower())
    if name.lower() not in answers_to:
        raise vecplug.ModelMismatchError(
            f"the server at {remote.url} serves {spec.name}, not {name!r}: its vectors would not be the ones "
            f"you asked for. Leave model out to use the served model, or point server_url at a server of {name}")
