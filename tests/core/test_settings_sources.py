"""One source of settings (issue 20): the caller's value > a key file > the environment > the default, everywhere.

``vecplug.settings.Settings`` decides; these tests pin its order and its
messages, then check that the commands and the client really go through it:
the same key file gives the same key (or the same error) to every command.
"""
from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest

import vecplug
from vecplug.settings import DEFAULT_MODEL, Settings
from vecplug.testing import running_server


def key_file(tmp_path, text: str, name: str = "key"):
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the order ------------------------------------------------------------------------------------------------------

def test_api_key_order_given_then_flag_file_then_env_file_then_env_then_none(tmp_path):
    flag_file = key_file(tmp_path, "from-flag-file\n", "flag")
    env_file = key_file(tmp_path, "from-env-file\n", "env")
    everything = {"VECPLUG_API_KEY_FILE": str(env_file), "VECPLUG_API_KEY": "from-env"}

    def resolved(environ, **given):
        found = Settings(environ=environ, **given).resolve("api_key")
        return found.value, found.source

    assert resolved(everything, api_key="given", api_key_file=flag_file) == ("given", "given")
    assert resolved(everything, api_key_file=flag_file) == ("from-flag-file", "--api-key-file")
    assert resolved(everything) == ("from-env-file", "$VECPLUG_API_KEY_FILE")
    assert resolved({"VECPLUG_API_KEY": "from-env"}) == ("from-env", "$VECPLUG_API_KEY")
    assert resolved({}) == (None, "built in")
    assert resolved({"VECPLUG_API_KEY": "", "VECPLUG_API_KEY_FILE": ""}) == (None, "built in")  # empty: unset
    assert resolved(everything, api_key="") == ("", "given")  # "" asks for no key, whatever the environment says


def test_a_key_is_one_line_stripped_from_a_file_or_the_environment(tmp_path):
    for text in ("k-123", "k-123\n", "  k-123  \r\n", "\n\nk-123\nsecond line ignored\n", "\ufeffk-123\n"):
        assert Settings(api_key_file=key_file(tmp_path, text), environ={}).api_key_value() == "k-123", repr(text)
    assert Settings(environ={"VECPLUG_API_KEY": " k-123\n"}).api_key_value() == "k-123"


def test_model_order_given_then_env_then_default(monkeypatch):
    assert Settings(model="given", environ={"VECPLUG_MODEL": "env"}).resolve("model") == ("given", "given")
    assert Settings(environ={"VECPLUG_MODEL": "env"}).resolve("model") == ("env", "$VECPLUG_MODEL")
    assert Settings(environ={"VECPLUG_MODEL": ""}).resolve("model") == (DEFAULT_MODEL, "built in")
    monkeypatch.setenv("VECPLUG_MODEL", "/models/mine")
    assert vecplug.default_model_name() == "/models/mine"  # the registry's default is the settings' model
    monkeypatch.delenv("VECPLUG_MODEL")
    assert vecplug.default_model_name() == DEFAULT_MODEL


def test_threads_from_the_environment_or_left_to_the_runtime(monkeypatch):
    from vecplug import runtime

    assert Settings(environ={"VECPLUG_THREADS": " 3 "}).resolve("threads") == (3, "$VECPLUG_THREADS")
    assert Settings(environ={}).thread_count() is None
    monkeypatch.setenv("VECPLUG_THREADS", "2")
    assert runtime.requested_threads() == 2


def test_settings_without_a_file_or_variable_are_the_callers(tmp_path):
    given = Settings(device="cpu", dsn="dbname=x", read_timeout=9.0, environ={})
    assert given.resolve("device") == ("cpu", "given") and given.resolve("dsn") == ("dbname=x", "given")
    assert given.resolve("dtype") == (None, "built in") and given.resolve("read_timeout").value == 9.0
    with pytest.raises(ValueError, match="no setting 'api_keys'; settings: api_key, connect_timeout"):
        given.resolve("api_keys")
    assert "secret" not in repr(Settings(api_key="secret"))  # never in a log line


def test_asking_for_the_model_never_opens_a_key_file(tmp_path):
    broken = {"VECPLUG_API_KEY_FILE": str(tmp_path / "missing"), "VECPLUG_MODEL": "m"}
    assert Settings(environ=broken).model_name() == "m"


# -- the messages ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("environ, given, message", [
    ({}, {"api_key_file": "EMPTY"}, r"the API key file .*empty-key \(from --api-key-file\) is empty; write the key "
                                    r"on its first line, or leave out --api-key-file for no key"),
    ({"VECPLUG_API_KEY_FILE": "EMPTY"}, {}, r"the API key file .*empty-key \(from \$VECPLUG_API_KEY_FILE\) is empty; "
                                            r"write the key on its first line, or unset \$VECPLUG_API_KEY_FILE"),
    ({"VECPLUG_API_KEY_FILE": "MISSING"}, {}, r"cannot read the API key file .*no-such-file \(from "
                                              r"\$VECPLUG_API_KEY_FILE\): No such file or directory; point "
                                              r"\$VECPLUG_API_KEY_FILE at a readable file"),
    ({"VECPLUG_API_KEY": " \n"}, {}, r"the API key in \$VECPLUG_API_KEY is only white space: set the key there, "
                                     r"or unset \$VECPLUG_API_KEY for no key"),
    ({"VECPLUG_THREADS": "two"}, {}, r"VECPLUG_THREADS must be a positive integer \(torch threads for embedding\), "
                                     r"got 'two'; unset it to let vecplug choose"),
])
def test_a_bad_setting_names_itself_its_source_and_the_fix(tmp_path, environ, given, message):
    paths = {"EMPTY": str(key_file(tmp_path, " \n\n", "empty-key")), "MISSING": str(tmp_path / "no-such-file")}
    environ = {name: paths.get(value, value) for name, value in environ.items()}
    given = {name: paths.get(value, value) for name, value in given.items()}
    setting = "threads" if "VECPLUG_THREADS" in environ else "api_key"
    with pytest.raises(vecplug.InvalidSettingError, match=message):
        Settings(environ=environ, **given).resolve(setting)


# -- every command and the client read the key one way ----------------------------------------------------------------

def vecplug_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vecplug", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("command", [
    ["serve", "--port", "0"],
    ["doctor"],
    ["pg", "install", "--dsn", "host=/nonexistent"],
    ["pg", "worker", "--dsn", "host=/nonexistent", "--once"],
    ["pg", "reembed", "--dsn", "host=/nonexistent", "--vectorizer", "v", "--server-url", "http://127.0.0.1:9"],
])
def test_an_empty_key_file_is_the_same_usage_error_for_every_command(tmp_path, command):
    """Before: serve refused it, doctor and the worker took "no key", pg install cleared the recorded key."""
    empty = key_file(tmp_path, "\n", "empty-key")
    process = vecplug_cli(*command, "--api-key-file", str(empty))
    assert process.returncode == 2, process.stderr
    assert f"the API key file {empty} (from --api-key-file) is empty" in process.stderr, process.stderr
    assert process.stderr.count("\n") == 1, process.stderr
    from_env = vecplug_cli(*command, env={"VECPLUG_API_KEY_FILE": str(empty)})
    assert from_env.returncode == 2 and "(from $VECPLUG_API_KEY_FILE) is empty" in from_env.stderr, from_env.stderr


@pytest.mark.slow  # a fresh process or a real wait: seconds of the fast loop
def test_a_server_and_its_clients_take_the_key_from_a_secret_file(tiny_model_dir, tmp_path, monkeypatch):
    """The Docker/Kubernetes form: $VECPLUG_API_KEY_FILE names a mounted secret; the key file's newline is harmless."""
    secret = key_file(tmp_path, "secret-from-file\n", "secret")
    with running_server(tiny_model_dir, env={**os.environ, "VECPLUG_API_KEY_FILE": str(secret)}) as server:
        with pytest.raises(vecplug.ServerError, match="401"):
            vecplug.load_model(server.url)
        monkeypatch.setenv("VECPLUG_API_KEY_FILE", str(secret))
        assert vecplug.load_model(server.url).embed_documents(["x"]).shape == (1, 64)
        monkeypatch.delenv("VECPLUG_API_KEY_FILE")
        doctor = vecplug_cli("doctor", "--server-url", server.url, "--api-key-file", str(secret))
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr


# -- one set of options ---------------------------------------------------------------------------------------------

def commands():
    """Every (path, click command) under ``vecplug``, the plugins' included."""
    from vecplug.cli import cli

    def walk(group, path):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from walk(command, [*path, name])
            else:
                yield " ".join([*path, name]), command

    return dict(walk(cli, []))


def test_shared_options_have_one_type_and_default_everywhere():
    found = {}
    for path, command in commands().items():
        for parameter in command.params:
            if parameter.name in ("model", "device", "dtype", "dimensions", "server_url", "api_key_file", "dsn"):
                found.setdefault(parameter.name, {})[path] = parameter
    assert {"embed", "serve", "bench", "demo", "pg worker", "pg reembed"} <= set(found["model"])
    assert {"doctor", "pg install", "pg worker", "pg reembed"} <= set(found["api_key_file"])
    assert set(found["api_key_file"]) <= set(found["server_url"]) | {"serve"}  # a key goes with a server
    for name, by_command in found.items():
        shapes = {(tuple(parameter.opts), type(parameter.type).__name__, repr(getattr(parameter.type, "choices", None)))
                  for parameter in by_command.values()}
        assert len(shapes) == 1, (name, shapes)
    assert {parameter.opts[0] for parameter in found["model"].values()} == {"-m"}
    assert all(parameter.callback is not None for parameter in found["server_url"].values())  # refused when not a URL
    dsn_defaults = {path: parameter.default for path, parameter in found["dsn"].items()}
    assert dsn_defaults["doctor"] is None and dsn_defaults["demo"] is None  # no PostgreSQL unless named
    assert {default for path, default in dsn_defaults.items() if path.startswith("pg ")} == {""}  # libpq's PG*


def test_a_server_url_that_is_not_one_is_refused_before_any_connection():
    process = vecplug_cli("pg", "worker", "--dsn", "host=/nonexistent", "--server-url", "localhost:8080")
    assert process.returncode == 2, process.stderr
    assert "'--server-url': 'localhost:8080' is not an http:// or https:// URL" in process.stderr
