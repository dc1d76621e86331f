"""``vecplug doctor``: what it reports comes from the engine's own report and the plugins, and failures fail."""
from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import vecplug


def doctor(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vecplug", "doctor", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def checks_by_name(stdout: str) -> dict[tuple[str, str], dict]:
    return {(check["section"], check["name"]): check for check in map(json.loads, stdout.splitlines())}


def test_reports_engine_plugins_models_and_a_measured_matmul_rate(tmp_path):
    process = doctor("--json")
    assert process.returncode == 0, process.stderr
    checks = checks_by_name(process.stdout)
    assert all(check["status"] in ("ok", "info", "warn", "fail") for check in checks.values())
    import torch

    assert checks[("torch", "torch")]["detail"] == torch.__version__
    from vecplug.cpu import cpu_kind

    assert checks[("torch", "CPU")]["detail"] == f"{cpu_kind()}, {os.cpu_count()} logical cores"
    engine = {name: check["detail"] for (section, name), check in checks.items() if section == "engine modernbert"}
    from vecplug.modernbert.report import engine_report

    expected = engine_report()
    assert engine["dtype"].startswith(expected["dtype"] + " (") and engine["attention"].startswith(expected["attention"])
    assert engine["threads"].split()[0] == str(torch.get_num_threads())
    rate = float(checks[("torch", "bf16 matmul")]["detail"].split()[0])
    assert rate > 0
    loaded = checks[("plugins", "loaded")]["detail"].split(", ")
    assert {"vecplug.modernbert.plugin", "chroma", "qdrant", "minilm"} <= set(loaded)
    assert checks[("models", "sentence-transformers/all-MiniLM-L6-v2")]["status"] == "ok"
    # the test HF cache is empty: the hub models are reported absent
    assert "not on this machine" in checks[("models", "nomic-ai/modernbert-embed-base")]["detail"]


def test_a_model_in_the_hub_cache_is_found(tmp_path, tiny_model_dir):
    """The HF cache layout (refs/main -> snapshots/<commit>/) as huggingface_hub writes it."""
    repo = tmp_path / "hub" / "models--nomic-ai--modernbert-embed-base"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    (snapshot / "model.safetensors").write_bytes((tiny_model_dir / "model.safetensors").read_bytes())
    process = doctor("--json", env={**os.environ, "HF_HOME": str(tmp_path)})
    checks = checks_by_name(process.stdout)
    model = checks[("models", "nomic-ai/modernbert-embed-base")]
    assert model["status"] == "ok" and str(snapshot) in model["detail"]


def test_a_plugin_that_fails_to_load_is_listed(tmp_path):
    """An installed distribution whose vecplug entry point cannot be imported."""
    dist_info = tmp_path / "broken_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[vecplug]\nbroken = no_such_module_for_vecplug\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    process = doctor("--json", env=env)
    assert process.returncode == 0, process.stderr
    failed = checks_by_name(process.stdout)[("plugins", "broken failed")]
    assert failed["status"] == "warn" and "no_such_module_for_vecplug" in failed["detail"]


def test_an_unreachable_server_fails(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    process = doctor("--server-url", f"http://127.0.0.1:{port}")
    assert process.returncode == 1
    assert f"server http://127.0.0.1:{port}:" in process.stdout and "FAIL reachable" in process.stdout


def test_doctor_usage_mistakes():
    process = doctor("--server-url", "localhost:8080")
    assert process.returncode == 2 and "--server-url" in process.stderr and process.stderr.count("\n") == 1
    process = doctor("--device", "tpu")
    assert process.returncode == 2


def test_bench_and_doctor_read_no_engine_internals():
    """The core asks the engine through its report and hooks; only the built-in plugin's own modules import it."""
    core = Path(vecplug.__file__).parent
    for module in ("bench.py", "doctor.py", "cli.py", "cli_checks.py", "embed_io.py", "demo/run.py"):
        tree = ast.parse((core / module).read_text())
        imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        assert not [name for name in imported if "modernbert" in name], module
