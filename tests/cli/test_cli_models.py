"""Model names and dtypes as a person types them, and the model that is not here (issue 23, items 8 and 12)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

import vecplug
from vecplug.cli import cli
from vecplug.registry import close_names, resolve


def test_names_and_aliases_match_in_any_case():
    assert resolve("Nomic-AI/ModernBERT-Embed-Base").spec.name == "nomic-ai/modernbert-embed-base"
    assert resolve("MiniLM").spec.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert resolve("sentence-transformers/all-minilm-l6-v2").spec.name == "sentence-transformers/all-MiniLM-L6-v2"


def test_a_directory_keeps_its_case(tiny_model_dir):
    assert resolve(str(tiny_model_dir)).plugin == "directory"
    shouted = tiny_model_dir.parent / tiny_model_dir.name.upper()
    assert not shouted.exists()
    with pytest.raises(vecplug.UnknownModelError):
        resolve(str(shouted))


def test_an_unknown_name_suggests_close_ones():
    assert close_names("minilmm") == ["minilm"]
    assert "nomic-ai/modernbert-embed-base" in close_names("nomic-ai/modernbert-embed-bse")
    with pytest.raises(vecplug.UnknownModelError, match="Did you mean 'minilm'"):
        resolve("minlm")
    with pytest.raises(vecplug.UnknownModelError) as raised:
        resolve("something-else-entirely")
    assert "Did you mean" not in str(raised.value)


def test_dtype_takes_the_spellings_load_model_takes(tiny_model_dir, tiny_model):
    for spelling in ("bf16", "BFloat16", "fp32"):
        result = CliRunner().invoke(cli, ["embed", "-m", str(tiny_model_dir), "--dtype", spelling, "x"])
        assert result.exit_code == 0, (spelling, result.output)
        assert len(json.loads(result.output)["embedding"]) == tiny_model.dimensions
    refused = CliRunner().invoke(cli, ["embed", "-m", str(tiny_model_dir), "--dtype", "int8", "x"])
    assert refused.exit_code == 2 and "use float32, bfloat16, float16 (or fp32, float, bf16" in refused.output


def test_help_lists_the_dtypes_once():
    shown = CliRunner().invoke(cli, ["embed", "--help"]).output
    assert "--dtype [float32|bfloat16|float16]" in shown


def vecplug_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vecplug", *args], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def test_a_missing_model_offline_shows_the_command_that_fixes_it():
    process = vecplug_cli("embed", "-m", "nomic-ai/modernbert-embed-base", "x")
    assert process.returncode == 1 and process.stderr.count("\n") == 1, process.stderr
    assert "`HF_HUB_OFFLINE=0 vecplug pull -m nomic-ai/modernbert-embed-base`" in process.stderr
    assert "use the installed MiniLM plugin: `-m minilm`" in process.stderr


def test_pull_says_what_it_would_do(tiny_model_dir):
    present = CliRunner().invoke(cli, ["pull", "-m", "minilm"])
    assert present.exit_code == 0 and "sentence-transformers/all-MiniLM-L6-v2 is already on this machine" \
        in present.output
    local = CliRunner().invoke(cli, ["pull", "-m", str(tiny_model_dir)])
    assert local.exit_code == 0 and "is a local model directory: nothing to download" in local.output
    offline = vecplug_cli("pull")  # the tests run with HF_HUB_OFFLINE=1
    assert offline.returncode == 2 and offline.stderr.count("\n") == 1, offline.stderr
    assert "run it as HF_HUB_OFFLINE=0 vecplug pull -m nomic-ai/modernbert-embed-base" in offline.stderr


def test_doctor_flags_a_missing_default_model_with_the_fix(monkeypatch):
    from vecplug.doctor import model_checks

    checks = {check.name: check for check in model_checks()}
    default = checks["default"]
    assert default.status == "warn" and "nomic-ai/modernbert-embed-base" in default.detail
    assert "`vecplug pull`" in default.detail and "-m minilm" in default.detail
    monkeypatch.setenv("VECPLUG_MODEL", "minilm")
    present = {check.name: check for check in model_checks()}["default"]
    assert present.status == "info" and present.detail == "minilm (from $VECPLUG_MODEL)"
