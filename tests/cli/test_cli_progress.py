"""``vecplug --version``, and the bench's progress as a person sees it."""
from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest

import vecplug

from terminal import run_with_terminal_stderr


def test_version_names_the_installed_distribution():
    process = subprocess.run([sys.executable, "-m", "vecplug", "--version"], capture_output=True, text=True,
                             timeout=60)
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip().endswith(f"version {version('vecplug')}")
    assert version("vecplug") == vecplug.__version__


@pytest.mark.slow  # a whole `vecplug bench --quick`, sentence-transformers included
def test_bench_shows_a_step_per_pass_on_a_terminal():
    code, shown = run_with_terminal_stderr([sys.executable, "-m", "vecplug", "bench", "--quick", "--corpus",
                                            "paragraphs", "--st-dtype", "float32"])
    assert code == 0, shown
    # two engines, a warm-up and one timed pass each
    assert "paragraphs (64 texts): vecplug" in shown and "pass 1/1" in shown and "4/4" in shown
