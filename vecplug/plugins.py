"""The plugin manager: built-in plugins and entry-point plugins, loaded once.

Loading is lazy so that importing vecplug or running ``vecplug --help`` costs
nothing but the plugin modules themselves, which must keep their heavy imports
(torch, chromadb, qdrant_client, psycopg) inside functions.

``VECPLUG_LOAD_PLUGINS`` (comma-separated entry-point names, empty for none)
chooses which entry-point plugins load; ``VECPLUG_BLOCK_PLUGINS`` blocks some.
Built-in plugins always load.
"""
from __future__ import annotations

import importlib
import os
import sys
import threading
from importlib.metadata import entry_points

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "vecplug"
BUILTIN_PLUGINS = ("vecplug.modernbert.plugin",)

pm = pluggy.PluginManager("vecplug")
pm.add_hookspecs(hookspecs)

_loaded = False
# Re-entrant: a plugin module may call vecplug while it is being imported.
_load_lock = threading.RLock()
_loading = False


def _names_from_env(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def load_plugins() -> pluggy.PluginManager:
    """Register built-in and entry-point plugins, once per process.

    Safe to call from many threads at once: every caller returns only once
    every plugin is registered (``_loaded`` is set last, under the lock), so
    none sees a half-filled registry. A plugin that calls vecplug while it
    is being imported gets the registry as it stands (no recursion).
    """
    global _loaded, _loading
    if _loaded:
        return pm
    with _load_lock:
        if _loaded or _loading:
            return pm
        _loading = True
        try:
            _register_builtin_plugins()
            _register_entry_point_plugins()
            _loaded = True
        finally:
            _loading = False
    return pm


def _register_builtin_plugins() -> None:
    for module_name in BUILTIN_PLUGINS:
        module = importlib.import_module(module_name)
        if not pm.is_registered(module):
            pm.register(module, name=module_name)


def _register_entry_point_plugins() -> None:
    allowed = _names_from_env("VECPLUG_LOAD_PLUGINS")
    blocked = _names_from_env("VECPLUG_BLOCK_PLUGINS") or set()
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in blocked or (allowed is not None and entry_point.name not in allowed):
            continue
        if pm.get_plugin(entry_point.name) is not None:
            continue
        try:
            module = entry_point.load()
        except Exception as error:  # a broken plugin must not take the CLI down
            print(f"vecplug: plugin {entry_point.name!r} failed to load: {error}", file=sys.stderr)
            continue
        pm.register(module, name=entry_point.name)


def get_plugins() -> list[dict]:
    """Name and hooks of every registered plugin (for ``vecplug plugins``)."""
    load_plugins()
    plugins = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        plugins.append({"name": name, "hooks": hooks})
    return sorted(plugins, key=lambda plugin: plugin["name"])


def call_implementation(implementation, **arguments):
    """Call one hook implementation directly, passing only the arguments it names.

    Used where vecplug runs implementations one by one (chaining
    ``vecplug_before_ingest``, tagging registrations with their plugin).
    """
    return implementation.function(**{name: arguments[name] for name in implementation.argnames})
