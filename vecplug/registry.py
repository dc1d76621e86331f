"""Resolve a model name, alias or directory to a loaded model, through the plugins.

Loaded models are cached by (name, device, dtype), so every adapter and the
CLI in one process share one copy of the weights. Device and dtype are
checked and normalised here, once for every plugin; then the loader's
``placement(device, dtype)`` says what "auto" means on this machine, so
``device=None`` and ``device="cpu"`` share one copy too.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .contracts import Loader
from .devices import normalise_device, normalise_dtype, require_device_present
from .errors import InvalidSettingError, ModelNotAvailableError, UnknownModelError
from .model import EmbeddingModel, ModelLoader, ModelSpec, check_dimensions, normalise_dimensions
from .plugins import call_implementation, load_plugins, pm
from .settings import Settings


class _CallableLoader(ModelLoader):
    """A plain function registered as a loader, given the base class's defaults."""

    def __init__(self, function: Callable):
        self.function = function

    def __call__(self, spec, device, dtype):
        return self.function(spec, device, dtype)

    def __repr__(self) -> str:
        return f"<loader {self.function!r}>"


def as_loader(loader) -> Loader:
    """``loader`` itself when it honours the Loader contract, else wrapped in the defaults."""
    if isinstance(loader, Loader):
        return loader
    if not callable(loader):
        raise TypeError(f"a model loader must be callable as loader(spec, device, dtype), got {loader!r}")
    return _CallableLoader(loader)


@dataclass(frozen=True)
class Registration:
    spec: ModelSpec
    loader: Loader
    plugin: str


_cache: dict[tuple, EmbeddingModel] = {}
_cache_lock = threading.Lock()


def default_model_name() -> str:
    """``$VECPLUG_MODEL``, else ``DEFAULT_MODEL`` (``vecplug.settings``)."""
    return Settings().model_name()


def registered_models() -> dict[str, Registration]:
    """Every registered model by name (aliases not repeated)."""
    load_plugins()
    found: dict[str, Registration] = {}
    for implementation in pm.hook.vecplug_register_models.get_hookimpls():
        plugin_name = implementation.plugin_name

        def register(spec: ModelSpec, loader: Loader, _plugin=plugin_name) -> None:
            if not isinstance(spec, ModelSpec):
                raise TypeError(f"plugin {_plugin} registered {spec!r}, expected a vecplug.ModelSpec")
            found.setdefault(spec.name, Registration(spec, as_loader(loader), _plugin))

        call_implementation(implementation, register=register)
    return found


def find_registration(name: str) -> Registration | None:
    """The model registered under ``name`` or an alias of it; case does not matter (the hub's ids ignore it too)."""
    models = registered_models()
    if name in models:
        return models[name]
    wanted = name.casefold()
    for registration in models.values():
        if wanted in (known.casefold() for known in (registration.spec.name, *registration.spec.aliases)):
            return registration
    return None


def close_names(name: str, limit: int = 3) -> list[str]:
    """Registered names and aliases that look like ``name`` (a typo, a missing org prefix), closest first."""
    import difflib

    known = {}
    for registration in registered_models().values():
        for spelling in (registration.spec.name, *registration.spec.aliases):
            known.setdefault(spelling.casefold(), spelling)
    wanted = name.casefold()
    found = difflib.get_close_matches(wanted, known, n=limit, cutoff=0.6)
    # "modernbert-embed-base" for "nomic-ai/modernbert-embed-base": the part after the org counts too
    found += [spelling for spelling in known if spelling.rpartition("/")[2] == wanted and spelling not in found]
    return [known[spelling] for spelling in found[:limit]]


def resolve(name_or_path: str | os.PathLike | None) -> Registration:
    """The registration that serves a name, alias or local directory.

    Names and aliases match in any case; a directory is a directory (its case is the file system's).
    An unknown name is an ``UnknownModelError`` that suggests the closest registered names.
    """
    name = os.fspath(name_or_path) if name_or_path is not None else default_model_name()
    registration = find_registration(name)
    if registration is not None:
        return registration
    path = Path(name).expanduser()
    if path.is_dir():
        claimed = pm.hook.vecplug_model_from_directory(path=path.resolve())
        if claimed is None:
            raise UnknownModelError(
                f"no vecplug plugin recognises the model directory {path}; "
                "ModernBERT directories need config.json with model_type 'modernbert'"
            )
        spec, loader = claimed
        return Registration(spec, as_loader(loader), "directory")
    if looks_like_hub_id(name):
        try:
            claimed = pm.hook.vecplug_model_from_hub(name=name)
        except ModelNotAvailableError as error:
            suggestions = close_names(name)  # offline, a typo of a registered name is the likelier story
            if suggestions:
                raise ModelNotAvailableError(
                    f"{error} Did you mean {' or '.join(repr(found) for found in suggestions)}?") from None
            raise
        if claimed is not None:
            spec, loader = claimed
            return Registration(spec, as_loader(loader), "hub")
    suggestions = close_names(name)
    guess = f"Did you mean {' or '.join(repr(found) for found in suggestions)}? " if suggestions else ""
    known = ", ".join(sorted(registered_models())) or "(none)"
    raise UnknownModelError(
        f"unknown model {name!r}. {guess}Registered models: {known}. "
        "Pass one of those, an alias (see `vecplug models`), or a local model directory."
    )


def looks_like_hub_id(name: str) -> bool:
    """``owner/name`` with hub-legal characters: worth asking the plugins for (never a local path)."""
    import re

    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", name) is not None and not Path(name).exists()


def load_model(
    name_or_path: str | os.PathLike | None = None,
    device: str | None = None,
    dtype: str | None = None,
    dimensions: int | None = None,
) -> EmbeddingModel:
    """Load (or reuse) a model: hub id, alias, local directory, server URL, or None for the default.

    An ``http(s)://`` URL gives a ``vecplug.client.RemoteModel`` for a running
    ``vecplug serve`` (API key from ``$VECPLUG_API_KEY``).

    ``device``: "cpu", "cuda" or None (auto). ``dtype``: "float32", "bfloat16",
    "float16" or None (the fastest that keeps quality on this hardware).
    ``dimensions``: Matryoshka truncation then re-normalisation.
    A setting that cannot work here (device="tpu", "cuda" without a GPU, an
    unknown dtype, dimensions of 0 or more than the model has) raises
    ``vecplug.InvalidSettingError`` before anything is loaded.
    """
    from .client import RemoteModel, is_url

    dimensions = normalise_dimensions(dimensions)  # every setting is checked before any work
    device, dtype = normalise_device(device), normalise_dtype(dtype)
    if is_url(name_or_path):
        if device is not None or dtype is not None:
            raise InvalidSettingError(
                f"{name_or_path} is a server: it runs the model on its own device and dtype "
                "(`vecplug serve --device/--dtype`); pass neither with a URL"
            )
        return RemoteModel(name_or_path).with_dimensions(dimensions)
    if device is not None:
        require_device_present(device)
    registration = resolve(name_or_path)
    if registration.spec.dimensions:
        check_dimensions(dimensions, registration.spec)
    device, dtype = registration.loader.placement(device, dtype)
    key = (registration.spec.name, device, dtype)
    with _cache_lock:
        model = _cache.get(key)
        if model is None:
            model = registration.loader(registration.spec, device, dtype)
            if not isinstance(model, EmbeddingModel):
                raise TypeError(f"loader of {registration.spec.name} returned {model!r}, not an EmbeddingModel")
            _cache[key] = model
    return model.with_dimensions(dimensions)


def clear_cache() -> None:
    """Forget loaded models (tests; freeing memory)."""
    with _cache_lock:
        _cache.clear()


def embed(texts, kind: str = "document", model: str | None = None, dimensions: int | None = None):
    """Embed texts through the ``vecplug_embed`` hook.

    The plugin that serves ``model`` answers; a model registered by a plugin
    that does not implement the hook is embedded through ``load_model``.
    """
    from .model import check_kind, check_texts

    check_kind(kind)
    texts = check_texts(texts)
    load_plugins()
    result = pm.hook.vecplug_embed(texts=texts, kind=kind, model=model, dimensions=dimensions)
    if result is None:
        result = load_model(model, dimensions=dimensions).embed(texts, kind)
    return result
