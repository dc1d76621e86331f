"""``vecplug demo`` and the README's one-line demo command, run as a person would run them."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from terminal import run_with_terminal_stderr

from vecplug.demo import corpus

ROOT = Path(__file__).resolve().parents[2]


def demo(*args: str, env=None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vecplug", "demo", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def top_hits(stdout: str) -> dict[str, list[str]]:
    """Question -> the first-ranked title in each database column."""
    found = {}
    for block in stdout.split("Q: ")[1:]:
        lines = block.splitlines()
        first_row = next(line for line in lines if line.strip().startswith("1. "))
        found[lines[0]] = re.findall(r"1\. (.+?) -?\d\.\d{3}", first_row)
    return found


@pytest.mark.slow  # a whole demo: real MiniLM weights into Chroma and Qdrant
def test_offline_demo_falls_back_to_minilm_and_finds_the_right_paragraphs(tmp_path):
    """HF_HUB_OFFLINE with an empty cache: one line says so, MiniLM answers every question right in both stores."""
    process = demo("--quiet", "--dir", str(tmp_path / "stores"))
    assert process.returncode == 0, process.stderr
    notes = process.stderr.strip().splitlines()
    assert len(notes) == 1 and "nomic-ai/modernbert-embed-base cannot be loaded here" in notes[0], process.stderr
    assert "all-MiniLM-L6-v2" in notes[0]
    assert "Chroma" in process.stdout and "Qdrant local" in process.stdout
    hits = top_hits(process.stdout)
    assert set(hits) == {question for question, _ in corpus.QUESTIONS}
    for question, expected in corpus.QUESTIONS:
        assert hits[question] == [corpus.by_id(expected).title] * 2, (question, hits[question])
    assert "10/10 answers found the expected paragraph first." in process.stdout
    assert (tmp_path / "stores" / "chroma").is_dir() and (tmp_path / "stores" / "qdrant").is_dir()


@pytest.mark.slow  # two whole demo runs
def test_tiny_is_labelled_meaningless_and_a_named_folder_can_be_reused(tmp_path):
    for _ in range(2):  # the second run replaces the first run's collections instead of failing or mixing
        process = demo("--tiny", "--quiet", "--dir", str(tmp_path))
        assert process.returncode == 0, process.stderr
    assert "MEANINGLESS" in process.stdout and "shared words, not meaning" in process.stdout
    assert process.stdout.count("Q: ") == len(corpus.QUESTIONS)
    assert f"The databases stay in {tmp_path}" in process.stdout


def test_demo_mistakes_are_one_line(tmp_path):
    process = demo("--tiny", "--model", "minilm")
    assert process.returncode == 2 and process.stderr.count("\n") == 1 and "Traceback" not in process.stderr
    process = demo("--model", "no-such-model")
    assert process.returncode == 2 and process.stderr.startswith("Error: unknown model 'no-such-model'")


def test_dsn_is_never_ignored(tmp_path):
    """Until an adapter offers a PostgreSQL demo store, --dsn is refused, not silently skipped."""
    import vecplug

    vecplug.load_plugins()
    if any(implementation.plugin_name == "pgvector"
           for implementation in vecplug.pm.hook.vecplug_demo_store.get_hookimpls()):
        return  # the PostgreSQL adapter has its own demo test
    process = demo("--tiny", "--quiet", "--dsn", "postgresql://nobody@127.0.0.1:1/none", "--dir", str(tmp_path))
    assert process.returncode == 1 and "--dsn was given" in process.stderr and "nothing was written" in process.stderr


def test_progress_bar_while_embedding(tmp_path):
    code, shown = run_with_terminal_stderr([sys.executable, "-m", "vecplug", "demo", "--tiny", "--dir",
                                            str(tmp_path)])
    assert code == 0, shown
    assert "embedding into" in shown and f"{2 * len(corpus.DOCUMENTS)}/{2 * len(corpus.DOCUMENTS)}" in shown


@pytest.mark.slow  # builds a virtual environment and installs the project
def test_readme_demo_command_sets_up_and_runs(tmp_path):
    """./scripts/demo.sh as the README gives it, in a new virtual environment.

    The new environment sees this one's packages through a .pth file, so pip
    installs vecplug and the plugin from the checkout (their wheels, built by
    the script's pip) without downloading torch again; the script itself is
    run unchanged.
    """
    readme = (ROOT / "README.md").read_text()
    assert "$ ./scripts/demo.sh" in readme
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site_packages = next(venv.glob("lib/python*/site-packages"))
    here = [path for path in sys.path if path.endswith("site-packages")]
    (site_packages / "outer.pth").write_text("\n".join(here) + "\n")
    env = {**os.environ, "VECPLUG_VENV": str(venv)}
    process = subprocess.run(["./scripts/demo.sh", "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-3000:]
    assert "10/10 answers found the expected paragraph first." in process.stdout
    installed = subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import vecplug, vecplug_minilm; print(vecplug.__file__, vecplug_minilm.__file__)"],
                               capture_output=True, text=True, timeout=60)
    assert installed.stdout.count(str(venv)) == 2, installed.stdout  # installed into the new environment
