"""The click options of every command that takes a model, a server or a database, defined once.

Public core API: the adapters' commands (``vecplug pg ...``) use these too,
so ``--model``, ``--device``, ``--dtype``, ``--dimensions``, ``--server-url``,
``--api-key-file``, the timeouts and ``--dsn`` have one spelling, one type
and one default everywhere. Each decorator takes ``help=`` only for what
the option does in that command ("Also check this server", "The new
model"); what it accepts and where its default comes from stay the shared
text. The values go through ``vecplug.settings.Settings``, which says the
order flags, files and the environment are read in.

    @cli.command()
    @model_options(dimensions=True)
    @server_options(url_help="The server to ask.")
    def command(model, device, dtype, dimensions, server_url, api_key_file): ...

Only click is imported here: ``vecplug --help`` imports this module.
"""
from __future__ import annotations

import urllib.parse

import click

from .devices import DTYPE_ALIASES, DTYPES, normalise_dtype
from .errors import InvalidSettingError
from .settings import API_KEY_ENV, API_KEY_FILE_ENV, DEFAULT_MODEL, MODEL_ENV

MODEL_HELP = f"Model name, alias or directory (default: ${MODEL_ENV} or {DEFAULT_MODEL})."
DEVICE_HELP = "cpu, cuda or cuda:N (default: cuda if available)."
DTYPE_HELP = "Default: the fastest that keeps quality on this hardware."
DIMENSIONS_HELP = "Matryoshka truncation, e.g. 256."
DSN_FORMAT = "a libpq connection string or URI"


def _apply(*decorators):
    """One decorator that applies ``decorators`` in order, so options list in --help as written."""
    def decorate(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return decorate


def model_option(help: str = MODEL_HELP):
    """``-m/--model``: a name, an alias or a directory; None leaves the choice to the command."""
    return click.option("-m", "--model", default=None, help=help)


def device_option(help: str = DEVICE_HELP):
    return click.option("--device", default=None, help=help)


class DtypeType(click.ParamType):
    """A dtype as ``vecplug.load_model`` takes it: ``vecplug.devices``' names and aliases (bf16, fp16 ...), any case."""

    name = "dtype"

    def get_metavar(self, *args, **kwargs) -> str:
        return f"[{'|'.join(DTYPES)}]"

    def convert(self, value, param, ctx):
        try:
            return normalise_dtype(value)
        except InvalidSettingError:
            self.fail(f"{value!r} is not a dtype: use {', '.join(DTYPES)} (or {', '.join(DTYPE_ALIASES)})",
                      param, ctx)


DTYPE = DtypeType()


def dtype_option(help: str = DTYPE_HELP):
    return click.option("--dtype", type=DTYPE, default=None, help=help)


def dimensions_option(help: str = DIMENSIONS_HELP):
    return click.option("--dimensions", type=click.IntRange(min=1), default=None, help=help)


def model_options(*, model_help: str = MODEL_HELP, device_help: str = DEVICE_HELP, dtype_help: str = DTYPE_HELP,
                  dimensions: bool | str = False):
    """``--model``, ``--device``, ``--dtype`` and, with ``dimensions`` (True or its help), ``--dimensions``."""
    options = [model_option(model_help), device_option(device_help), dtype_option(dtype_help)]
    if dimensions:
        options.append(dimensions_option(DIMENSIONS_HELP if dimensions is True else dimensions))
    return _apply(*options)


def dsn_option(purpose: str = "The database", *, optional: bool = False, callback=None):
    """``--dsn``. ``optional``: no database unless one is named (default None); else libpq's PG* variables ("").

    ``callback``: click's, to refuse a malformed DSN before any work (the PostgreSQL adapter parses it).
    """
    if optional:
        return click.option("--dsn", default=None, callback=callback, help=f"{purpose}: {DSN_FORMAT}.")
    return click.option("--dsn", default="", callback=callback,
                        help=f"{purpose}: {DSN_FORMAT} (default: the PG* environment variables).")


def _checked_url(context, parameter, value):
    if value is None:
        return None
    location = urllib.parse.urlsplit(value)
    if location.scheme not in ("http", "https") or not location.hostname:
        raise click.BadParameter(f"{value!r} is not an http:// or https:// URL, e.g. http://127.0.0.1:8080")
    return value


def server_url_option(help: str = "A `vecplug serve`, e.g. http://127.0.0.1:8080."):
    """``--server-url``, refused at once unless it is an http:// or https:// URL."""
    return click.option("--server-url", default=None, callback=_checked_url, help=help)


def api_key_file_option(otherwise: str = "no key"):
    """``--api-key-file``: the key is never a flag (``ps`` would show it); ``otherwise`` ends the fallbacks."""
    return click.option("--api-key-file", type=click.Path(exists=True, dir_okay=False), default=None,
                        help=f"File whose first line is the server's API key (else ${API_KEY_FILE_ENV}, "
                             f"else ${API_KEY_ENV}, else {otherwise}).")


def server_options(*, url_help: str = "A `vecplug serve`, e.g. http://127.0.0.1:8080.", key_otherwise: str = "no key"):
    """``--server-url`` and ``--api-key-file``."""
    return _apply(server_url_option(url_help), api_key_file_option(key_otherwise))


def timeout_options():
    """``--connect-timeout`` and ``--read-timeout`` (seconds; None keeps what is there)."""
    return _apply(
        click.option("--connect-timeout", type=float, default=None,
                     help="Seconds to wait for a connection (default 5)."),
        click.option("--read-timeout", type=float, default=None, help="Seconds to wait for an answer (default 60)."),
    )
