"""vecplug's settings: where each one comes from, decided in one place.

Public core API: adapters and plugins import ``Settings`` (and the ``*_ENV``
names) instead of reading ``os.environ`` or key files themselves, so every
command and library call agrees on the same order:

1. **the caller's value**: a command-line flag, or a Python argument;
2. **a file** named by a flag, else by an environment variable (only the
   API key has one: ``--api-key-file``, else ``$VECPLUG_API_KEY_FILE``,
   the form Docker and Kubernetes secrets take);
3. **the environment variable**;
4. **the built-in default**.

The first that is set wins; an empty environment variable counts as unset.

Every setting, as ``name``: flag or argument; file; environment; default
(``-``: there is none; only the key, the model and the threads have more
than a flag and a default):

- ``api_key``: ``api_key=`` (never a flag); ``--api-key-file``, else
  ``$VECPLUG_API_KEY_FILE``; ``$VECPLUG_API_KEY``; no key (the ``vecplug
  pg`` commands then use the key ``vecplug pg install`` recorded).
- ``model``: ``-m/--model``, ``model=``; -; ``$VECPLUG_MODEL``;
  ``nomic-ai/modernbert-embed-base``.
- ``threads``: -; -; ``$VECPLUG_THREADS``; torch's choice (``vecplug.runtime``).
- ``device``: ``--device``, ``device=``; -; -; cuda if there is one, else cpu.
- ``dtype``: ``--dtype``, ``dtype=``; -; -; the fastest that keeps quality.
- ``dimensions``: ``--dimensions``, ``dimensions=``; -; -; the model's own.
- ``server_url``: ``--server-url``, ``server_url=``; -; -; none (the
  ``vecplug pg`` commands: the server ``vecplug pg install`` recorded).
- ``dsn``: ``--dsn``; -; libpq's ``PG*`` variables, read by libpq; libpq's
  defaults (``doctor`` and ``demo``: no PostgreSQL).
- ``connect_timeout``, ``read_timeout``: ``--connect-timeout``,
  ``--read-timeout``; -; -; 5 and 60 seconds (``vecplug pg install``).

An API key is one line: a key file's first non-blank line, white space
around it stripped (so an editor's trailing newline does no harm), and
``$VECPLUG_API_KEY`` stripped too; a key file with no such line, or a
variable of white space only, is an error, never "no key". The key is never a
flag, where ``ps`` shows it to every user. Whatever is wrong is an
``InvalidSettingError`` that names the setting, where it came from and what
to do; the CLI prints it as one line and exits 2.

``Settings`` holds what the caller gave and resolves lazily: asking for the
model never opens a key file, so a broken ``$VECPLUG_API_KEY_FILE`` only
troubles the commands that talk to a server.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .errors import InvalidSettingError

API_KEY_ENV = "VECPLUG_API_KEY"
API_KEY_FILE_ENV = "VECPLUG_API_KEY_FILE"
MODEL_ENV = "VECPLUG_MODEL"
THREADS_ENV = "VECPLUG_THREADS"
DEFAULT_MODEL = "nomic-ai/modernbert-embed-base"

GIVEN = "given"  # the source of a flag's or an argument's value
BUILT_IN = "built in"


class Resolved(NamedTuple):
    """A setting's value and where it came from: ``given``, ``--api-key-file``, ``$VECPLUG_MODEL``, ``built in`` ..."""

    value: Any
    source: str


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the caller gave (a flag or an argument; None: not given), resolved in the module's order.

    The fields without a file or an environment variable (device, dtype,
    dimensions, server_url, dsn, the timeouts) are final as given: None
    leaves the choice to whoever uses them. The others resolve through
    ``api_key_value()``, ``model_name()`` and ``thread_count()``, and
    ``resolve(name)`` also says where the value came from. ``environ``
    replaces ``os.environ`` (tests; a ``running_server`` env).
    """

    model: str | os.PathLike | None = None
    device: str | None = None
    dtype: str | None = None
    dimensions: int | None = None
    server_url: str | None = None
    api_key: str | None = dataclasses.field(default=None, repr=False)
    api_key_file: str | os.PathLike | None = None
    dsn: str | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None
    environ: Mapping[str, str] | None = dataclasses.field(default=None, repr=False, compare=False)

    def resolve(self, name: str) -> Resolved:
        """``name``'s value and source: the caller's, a file's, the environment's or the default."""
        resolver = _RESOLVERS.get(name)
        if resolver is not None:
            return resolver(self)
        if name not in _PLAIN:
            raise ValueError(f"no setting {name!r}; settings: {', '.join(sorted([*_RESOLVERS, *_PLAIN]))}")
        value = getattr(self, name)
        return Resolved(value, GIVEN if value is not None else BUILT_IN)

    def api_key_value(self) -> str | None:
        """The server's API key, or None for no key. The only reader of the key in vecplug."""
        return self.resolve("api_key").value

    def model_name(self) -> str:
        """The model to load: ``model``, else ``$VECPLUG_MODEL``, else ``DEFAULT_MODEL``."""
        return self.resolve("model").value

    def thread_count(self) -> int | None:
        """``$VECPLUG_THREADS`` as a positive int; None when unset (``vecplug.runtime`` then chooses)."""
        return self.resolve("threads").value

    def _env(self, name: str) -> str:
        return (os.environ if self.environ is None else self.environ).get(name) or ""


_PLAIN = ("device", "dtype", "dimensions", "server_url", "dsn", "connect_timeout", "read_timeout")


def _api_key(settings: Settings) -> Resolved:
    if settings.api_key is not None:  # "" too: the caller asks for no key, whatever the environment says
        return Resolved(settings.api_key, GIVEN)
    if settings.api_key_file is not None:
        return Resolved(read_key_file(settings.api_key_file, "--api-key-file"), "--api-key-file")
    named = settings._env(API_KEY_FILE_ENV).strip()
    if named:
        return Resolved(read_key_file(named, f"${API_KEY_FILE_ENV}"), f"${API_KEY_FILE_ENV}")
    raw = settings._env(API_KEY_ENV)
    if not raw:
        return Resolved(None, BUILT_IN)
    if not raw.strip():
        raise InvalidSettingError(f"the API key in ${API_KEY_ENV} is only white space: set the key there, "
                                  f"or unset ${API_KEY_ENV} for no key")
    return Resolved(raw.strip(), f"${API_KEY_ENV}")


def read_key_file(path: str | os.PathLike, source: str) -> str:
    """The key in ``path``: its first non-blank line, stripped. ``source`` names who named the file, for errors."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        why = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
        raise InvalidSettingError(f"cannot read the API key file {os.fspath(path)} (from {source}): {why}; "
                                  f"point {source} at a readable file whose first line is the key") from None
    lines = text.strip().splitlines()
    if not lines:
        without = f"unset {source}" if source.startswith("$") else f"leave out {source}"
        raise InvalidSettingError(f"the API key file {os.fspath(path)} (from {source}) is empty; "
                                  f"write the key on its first line, or {without} for no key")
    return lines[0].strip()


def _model(settings: Settings) -> Resolved:
    if settings.model is not None:
        return Resolved(os.fspath(settings.model), GIVEN)
    named = settings._env(MODEL_ENV)
    if named:
        return Resolved(named, f"${MODEL_ENV}")
    return Resolved(DEFAULT_MODEL, BUILT_IN)


def _threads(settings: Settings) -> Resolved:
    value = settings._env(THREADS_ENV).strip()
    if not value:
        return Resolved(None, BUILT_IN)
    if not value.isdigit() or int(value) < 1:
        raise InvalidSettingError(
            f"{THREADS_ENV} must be a positive integer (torch threads for embedding), got {value!r}; "
            "unset it to let vecplug choose"
        )
    return Resolved(int(value), f"${THREADS_ENV}")


_RESOLVERS = {"api_key": _api_key, "model": _model, "threads": _threads}
