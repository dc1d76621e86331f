"""How a ``vecplug`` command fails: one line on stderr and an exit status, never a traceback.

Commands raise what they raise (click's usage errors, vecplug's own errors, an
``OSError``, a missing optional dependency, Ctrl-C); ``run_command`` maps each
kind here, once for every command, the adapters' included:

- **2**, a usage mistake: a bad flag or value (click), a setting that cannot
  work (``InvalidSettingError``; a malformed DSN is one), an unknown model name;
- **1**, a failure while running: a database or server that does not answer,
  a model that failed, a file that cannot be read, a missing extra, a bug;
- **130**, Ctrl-C: one line, ``Interrupted``;
- **0**, a reader that left (``vecplug embed ... | head``).

An exception nobody expected is a bug: its line names the exception and says
that ``vecplug --debug ...`` shows the traceback.

Only click is imported here: ``vecplug --help`` imports this module.
"""
from __future__ import annotations

import sys

import click

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

# which ``pip install ".[extra]"`` brings a module some command imports (vecplug's pyproject.toml)
EXTRA_OF_MODULE = {"uvicorn": "server", "fastapi": "server", "starlette": "server", "orjson": "server",
                   "psycopg": "postgres", "pgvector": "postgres", "prometheus_client": "postgres",
                   "chromadb": "chroma", "qdrant_client": "qdrant",
                   "sentence_transformers": "bench", "psutil": "bench"}


class Failure(click.ClickException):
    """A failure that is already one line: ``Error: <message>`` and ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE):
        super().__init__(message)
        self.exit_code = exit_code


def debug_option(function):
    """``vecplug --debug COMMAND``: an unexpected exception shows its traceback (a bug report wants it)."""
    def remember(context, parameter, value):
        if value:
            context.meta["vecplug.debug"] = True
            _state["debug"] = True
        return value

    return click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=remember,
                        help="Show the traceback of an unexpected error (for a bug report).")(function)


_state = {"debug": False, "command": "vecplug"}


def run_command(group: click.Group, args: list[str] | None = None) -> None:
    """Run ``group`` on ``args`` (default: ``sys.argv[1:]``) and exit with the status of its outcome."""
    _state["debug"] = False
    _state["command"] = command_path(group, sys.argv[1:] if args is None else args)
    try:
        code = group.main(args=args, prog_name="vecplug", standalone_mode=False)
    except BaseException as error:  # noqa: BLE001 - every outcome becomes a line and a status here
        if isinstance(error, SystemExit):
            raise
        if _state["debug"] and not _explained(error):
            raise
        message, code = describe_failure(error)
        if message:
            _print_error(message)
        sys.exit(code)
    sys.exit(code if isinstance(code, int) else 0)


def _print_error(message: str) -> None:
    try:
        click.echo(message, err=True)
    except OSError:  # stderr itself is gone: the status still says it
        pass


def _explained(error: BaseException) -> bool:
    """Errors whose line says all there is (everything but a bug), shown as a line even with --debug."""
    return describe_failure(error, expected_only=True) is not None


def describe_failure(error: BaseException, expected_only: bool = False) -> tuple[str | None, int] | None:
    """(the line to print, or None for none; the exit status) for what a command raised.

    ``expected_only``: None for an exception vecplug does not expect (a bug), instead of its line.
    """
    from .errors import InvalidSettingError, UnknownModelError, VecplugError

    if isinstance(error, click.exceptions.Abort):
        if isinstance(error.__context__, KeyboardInterrupt):
            return "Interrupted", EXIT_INTERRUPTED
        return "Aborted", EXIT_FAILURE
    if isinstance(error, KeyboardInterrupt):
        return "Interrupted", EXIT_INTERRUPTED
    if isinstance(error, click.UsageError):
        return f"Error: {error.format_message()}", error.exit_code
    if isinstance(error, click.ClickException):
        return f"Error: {one_line(error.format_message())}", error.exit_code
    if isinstance(error, (InvalidSettingError, UnknownModelError)):
        return f"Error: {one_line(error)}", EXIT_USAGE
    if isinstance(error, VecplugError):
        return f"Error: {one_line(error)}", EXIT_FAILURE
    if isinstance(error, BrokenPipeError):  # the reader left, nothing is wrong: keep Python quiet at exit
        import os

        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return None, 0
    missing = _missing_module(error)
    if missing:
        return missing_module_line(missing), EXIT_FAILURE
    if isinstance(error, OSError):
        return f"Error: {os_error_line(error)}", EXIT_FAILURE
    if expected_only:
        return None
    return (f"Error: unexpected {type(error).__name__}: {one_line(error) or '(no message)'}. This is a bug in "
            "vecplug or a plugin: run the command again as `vecplug --debug ...` for the traceback, and report "
            "it"), EXIT_FAILURE


def _missing_module(error: BaseException) -> str | None:
    """The module a ModuleNotFoundError names, unless it is vecplug's own (then it is a bug, not an extra)."""
    if not isinstance(error, ModuleNotFoundError):
        return None
    name = error.name
    if not name:  # raised by hand, e.g. by an import hook: "No module named 'x'"
        import re

        found = re.search(r"No module named '([\w.]+)'", str(error))
        name = found.group(1) if found else None
    if not name or name.split(".")[0].startswith("vecplug"):
        return None
    return name


def one_line(error) -> str:
    """An error's message on one line (libpq and others write several)."""
    return " ".join(str(error).split())


def os_error_line(error: OSError) -> str:
    """``cannot read /x (No such file or directory)`` style: the file and the system's reason."""
    reason = error.strerror or one_line(error) or type(error).__name__
    if isinstance(error, ConnectionRefusedError):
        return f"connection refused ({reason}): is the service running, at that host and port?"
    if error.filename:
        return f"{error.filename}: {reason}"
    return f"{reason} ({type(error).__name__})"


def missing_module_line(module: str, extra: str | None = None) -> str:
    """The one install that brings a missing module: its vecplug extra when it has one (``extra`` overrides)."""
    root = module.split(".")[0]
    extra = extra or EXTRA_OF_MODULE.get(root)
    command = _state["command"]
    if extra:
        return (f"Error: {command} needs vecplug's {extra} extra ({root} is not installed): "
                f'pip install ".[{extra}]" in the vecplug checkout (or ".[all]")')
    return f"Error: {command} needs the Python module {root}, which is not installed: " \
           f"pip install {root.replace('_', '-')}"


def command_path(group: click.Group, args: list[str]) -> str:
    """``vecplug pg install`` for ``["pg", "--x", "install", ...]``: the (sub)command names in ``args``."""
    names, command = ["vecplug"], group
    for arg in args:
        commands = getattr(command, "commands", None)
        if not commands:
            break
        if arg in commands:
            names.append(arg)
            command = commands[arg]
    return " ".join(names)
