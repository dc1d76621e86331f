"""Every ``vecplug`` failure is one line and an exit status, never a traceback (issue 23, item 7).

Real processes: what is checked is what a person sees on stderr. 2 for usage
mistakes (a bad flag or value, an unknown model, a malformed DSN), 1 for what
fails while running (a database or server that does not answer, a missing
extra), 130 for Ctrl-C.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import click
import pytest

from vecplug.cli import cli

UNREACHABLE_DSN = "postgresql://nobody@127.0.0.1:1/x"
MALFORMED_DSN = "not a dsn"
DEAD_URL = "http://127.0.0.1:9"  # the discard port: nothing listens there

# Each command (walked from the click group below) with bad input: (arguments, exit status, text on stderr).
BAD_INPUT = {
    "embed": [(["--dtype", "int8", "x"], 2, "'int8' is not a dtype"),
              (["-m", "no-such-model", "x"], 2, "unknown model 'no-such-model'"),
              (["-m", "MiniLM-typo", "x"], 2, "Did you mean"),
              (["-m", DEAD_URL, "x"], 1, "no server listens there")],
    "models": [(["--no-such-flag"], 2, "No such option")],
    "bench": [(["--st-dtype", "int4"], 2, "'int4' is not a dtype"),
              (["--device", "tpu"], 2, "device must be"),
              (["--st-backend", "tensorrt"], 2, "Invalid value for '--st-backend'")],
    "demo": [(["--tiny", "--model", "minilm"], 2, "not both"),
             (["--model", "no-such-model"], 2, "unknown model 'no-such-model'")],
    "doctor": [(["--server-url", "ftp://x"], 2, "is not an http:// or https:// URL"),
               (["--dtype", "int8"], 2, "'int8' is not a dtype")],
    "plugins": [(["extra"], 2, "unexpected extra argument")],
    "pull": [(["-m", "no-such-model"], 2, "unknown model 'no-such-model'")],
    "serve": [(["-m", "no-such-model"], 2, "unknown model 'no-such-model'"),
              (["--dtype", "int8"], 2, "'int8' is not a dtype")],
    "pg": [(["no-such-command"], 2, "No such command")],
    "pg install": [(["--dsn", UNREACHABLE_DSN], 1, "cannot connect to PostgreSQL"),
                   (["--dsn", MALFORMED_DSN], 2, "is not a PostgreSQL connection string")],
    "pg uninstall": [(["--dsn", UNREACHABLE_DSN], 1, "cannot connect to PostgreSQL"),
                     (["--dsn", MALFORMED_DSN], 2, "is not a PostgreSQL connection string")],
    "pg status": [(["--dsn", UNREACHABLE_DSN], 1, "cannot connect to PostgreSQL"),
                  (["--dsn", MALFORMED_DSN], 2, "is not a PostgreSQL connection string")],
    "pg worker": [(["--once", "--dsn", UNREACHABLE_DSN], 1, "cannot connect to PostgreSQL"),
                  (["--dsn", MALFORMED_DSN], 2, "is not a PostgreSQL connection string"),
                  (["--dsn", UNREACHABLE_DSN, "--model", "no-such-model"], 2, "unknown model 'no-such-model'")],
    "pg reembed": [(["--vectorizer", "1", "--model", "minilm", "--dsn", UNREACHABLE_DSN], 1,
                    "cannot connect to PostgreSQL"),
                   (["--vectorizer", "1", "--model", "minilm", "--dsn", MALFORMED_DSN], 2,
                    "is not a PostgreSQL connection string"),
                   (["--vectorizer", "1", "--model", "minilmm"], 2, "Did you mean 'minilm'")],
    "pg sql-dir": [(["extra"], 2, "unexpected extra argument")],
    "tune": [(["--out", "tuned"], 2, "give --pairs FILE.jsonl, or --dsn DSN --sql QUERY"),
             (["--sql", "SELECT 1, 2", "--dsn", UNREACHABLE_DSN, "--out", "tuned"], 1, "cannot connect to PostgreSQL"),
             (["--sql", "SELECT 1, 2", "--dsn", MALFORMED_DSN, "--out", "tuned"], 2,
              "is not a PostgreSQL connection string")],
    "search": [(["x"], 2, "name a store"),
               (["x", "--chroma", "/nonexistent", "--qdrant", "/nonexistent", "--collection", "c"], 2,
                "name one store")],
    "recommend": [(["--positive", "1", "--qdrant", "/nonexistent", "--collection", "c"], 2,
                   "no Qdrant store in '/nonexistent'")],
    "cluster": [(["--chroma", "/nonexistent"], 2, "--chroma needs --collection"),
                (["--method", "means"], 2, "Invalid value for '--method'")],
    "dedup": [(["--threshold", "2", "--chroma", "x", "--collection", "c"], 2, "not in the range")],
}


def every_command(group: click.Group, prefix: str = "") -> list[str]:
    """Every command and group under ``group``, the adapters' included, as typed after ``vecplug``."""
    found = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        found.append(path)
        if isinstance(command, click.Group):
            found += every_command(command, path + " ")
    return found


def run_vecplug(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vecplug", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_every_command_has_bad_input_in_the_table():
    assert sorted(every_command(cli)) == sorted(BAD_INPUT), "a new command needs its bad input in BAD_INPUT"


@pytest.mark.slow  # about 30 fresh processes, 4 at a time: about 10 s
def test_every_command_fails_with_one_line_and_its_status():
    cases = [(command, args, status, text) for command, rows in BAD_INPUT.items() for args, status, text in rows]
    with ThreadPoolExecutor(4) as pool:
        processes = list(pool.map(lambda case: run_vecplug(*case[0].split(), *case[1]), cases))
    for (command, args, status, text), process in zip(cases, processes):
        shown = f"vecplug {command} {' '.join(args)}: exit {process.returncode}, stderr {process.stderr!r}"
        assert "Traceback" not in process.stderr, shown
        assert process.returncode == status, shown
        lines = [line for line in process.stderr.splitlines() if line.strip()]
        if command != "pg worker" or status == 2:  # a worker run ends with its log and report, not one line
            assert lines == [lines[0]] and lines[0].startswith("Error: "), shown
        assert text in process.stderr, shown


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(tmp_path):
    """A bug (here: a plugin command that raises ZeroDivisionError) names itself and how to see more."""
    code = textwrap.dedent("""
        import sys
        import click
        from vecplug.cli import cli, main

        @cli.command("explode")
        def explode():
            1 / 0

        main(sys.argv[1:])
    """)
    plain = subprocess.run([sys.executable, "-c", code, "explode"], capture_output=True, text=True, timeout=60)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.startswith("Error: unexpected ZeroDivisionError: division by zero")
    assert "vecplug --debug" in plain.stderr and plain.stderr.count("\n") == 1
    debug = subprocess.run([sys.executable, "-c", code, "--debug", "explode"], capture_output=True, text=True,
                           timeout=60)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ZeroDivisionError" in debug.stderr


BLOCKED_IMPORT = """
    import importlib.abc, sys
    MISSING = {missing!r}

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in MISSING:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    for name in list(sys.modules):
        if name.split(".")[0] in MISSING:
            del sys.modules[name]
    from vecplug.cli import main
    main({args!r})
"""


@pytest.mark.parametrize("missing, args, extra", [
    (("uvicorn", "fastapi"), ["serve", "-m", "minilm"], "server"),
    (("psycopg",), ["pg", "status", "--dsn", UNREACHABLE_DSN], "postgres"),
])
def test_a_missing_extra_is_one_line_naming_it(missing, args, extra):
    code = textwrap.dedent(BLOCKED_IMPORT.format(missing=missing, args=args))
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert process.returncode == 1 and "Traceback" not in process.stderr, process.stderr
    assert process.stderr.count("\n") == 1, process.stderr
    assert f"vecplug {' '.join(args[:2 if args[0] == 'pg' else 1])} needs vecplug's {extra} extra" in process.stderr
    assert f'pip install ".[{extra}]"' in process.stderr


def test_a_dead_server_url_fails_fast_with_the_fix():
    import time

    started = time.monotonic()
    process = run_vecplug("embed", "-m", DEAD_URL, "hello")
    assert time.monotonic() - started < 15  # was 60 s of retries
    assert process.returncode == 1 and process.stderr.count("\n") == 1, process.stderr
    assert f"the vecplug server at {DEAD_URL}" in process.stderr and "connection refused" in process.stderr
    assert "Start one with `vecplug serve`, or fix the URL (--server-url)" in process.stderr
