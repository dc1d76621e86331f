"""The README's examples run as written (with a tiny local model standing in for the hub one).

Every ```python block runs, in order, in one fresh process with
VECPLUG_MODEL pointing at a tiny model; every `$ vecplug ...` line in a
```console block runs as a command. Blocks that need a GPU are skipped.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
NEEDS_GPU = re.compile(r"""device=["']cuda""")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory):
    """384 dimensions, so the README's dimensions=256 examples run as written."""
    from vecplug.testing import write_model

    return write_model(tmp_path_factory.mktemp("readme") / "small-modernbert", shape="small")


@pytest.fixture
def readme_env(small_model_dir):
    return {**os.environ, "VECPLUG_MODEL": str(small_model_dir), "HF_HUB_OFFLINE": "1"}


def test_readme_python_examples_run(readme_env, tmp_path):
    runnable = [block for block in blocks("python") if not NEEDS_GPU.search(block)]
    assert len(runnable) >= 3
    script = "\n\n".join(f"print('--- block {index}')\n{block}" for index, block in enumerate(runnable))
    (tmp_path / "readme_examples.py").write_text(script)
    process = subprocess.run([sys.executable, "readme_examples.py"], cwd=tmp_path, env=readme_env,
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-5000:]


def test_readme_cli_examples_run(readme_env, tmp_path):
    commands = [line[2:].split("  #")[0].strip() for block in blocks("console") for line in block.splitlines()
                if line.startswith("$ vecplug ")]
    assert any(command.startswith("vecplug embed") for command in commands)
    bin_dir = Path(sys.executable).parent
    for command in commands:
        if command.startswith("vecplug bench"):
            continue  # ./scripts/test.sh runs `vecplug bench --quick` itself
        argv = shlex.split(command)
        process = subprocess.run([str(bin_dir / argv[0]), *argv[1:]], cwd=tmp_path, env=readme_env,
                                 capture_output=True, text=True, timeout=300)
        assert process.returncode == 0, f"{command}: {process.stderr[-3000:]}"
        assert process.stdout.strip(), f"{command} printed nothing"
