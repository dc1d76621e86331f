"""Bad input to `vecplug tune` is one line naming the problem and where, exit 2, before any model loads."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import vecplug
from vecplug.tune.synthetic import synthetic_pairs

from tune_helpers import run_tune_cli, write_pairs

GOOD = [json.dumps(pair) for pair in synthetic_pairs(20)]


@pytest.mark.parametrize("lines, message", [
    (GOOD[:2] + ['{"query": "q"}'] + GOOD[3:], 'line 3: no "positive"'),
    (GOOD[:4] + ['{"query": "q", "positive": '] + GOOD[5:], "line 5: invalid JSON"),
    (GOOD[:5] + ['{"query": "q", "positive": ""}'] + GOOD[6:], 'line 6: "positive" must be a non-empty string'),
    (GOOD[:1] + ['["q", "p"]'] + GOOD[2:], "line 2: expected an object"),
    (GOOD[:10], "holds 10 pairs; tuning needs at least 16"),
    (['{"query": "q", "positive": "p", "negative": "n"}'] + GOOD[1:], 'line 2: no "negative", but'),
])
def test_bad_pairs_are_named_by_line_exit_2_nothing_written(tmp_path, tiny_model_dir, lines, message):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(lines) + "\n")
    process = run_tune_cli("--pairs", pairs, "-m", tiny_model_dir, "--out", tmp_path / "out", cwd=tmp_path)
    assert process.returncode == 2, process.stderr
    assert message in process.stderr and process.stderr.count("\n") == 1, process.stderr
    assert f"{pairs}: " in process.stderr or "pairs" in process.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pairs.jsonl"]


def test_an_output_folder_that_is_not_empty_is_refused_before_anything_loads(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    pairs = write_pairs(tmp_path / "pairs.jsonl", synthetic_pairs(20))
    # the model does not exist: the folder is refused first, with no model loaded
    process = run_tune_cli("--pairs", pairs, "-m", tmp_path / "no-such-model", "--out", out, cwd=tmp_path)
    assert process.returncode == 2 and "exists and is not empty" in process.stderr, process.stderr
    assert [path.name for path in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("args, message", [
    ([], "give --pairs FILE.jsonl, or --dsn DSN --sql QUERY"),
    (["--pairs", "p.jsonl", "--sql", "SELECT 1"], "one source"),
    (["--pairs", "missing.jsonl"], "--pairs missing.jsonl: No such file or directory"),
    (["--pairs", "p.jsonl", "--matryoshka", "64,x"], "--matryoshka takes sizes like 768,512,256"),
    (["--pairs", "p.jsonl", "--eval-fraction", "0.9"], "--eval-fraction"),
    (["--pairs", "p.jsonl", "--learning-rate", "3"], "learning_rate must be between 0 and 1"),
])
def test_bad_options_exit_2(tmp_path, tiny_model_dir, args, message):
    write_pairs(tmp_path / "p.jsonl", synthetic_pairs(20))
    process = run_tune_cli(*args, "-m", tiny_model_dir, "--out", "out", cwd=tmp_path)
    assert process.returncode == 2 and message in process.stderr, process.stderr
    assert not (tmp_path / "out").exists()


def test_the_python_api_names_the_bad_pair(tmp_path, tiny_model_dir):
    pairs = [("q", "p")] * 17 + [("q", None)]
    with pytest.raises(vecplug.InvalidSettingError, match='pair 18: "positive" must be a non-empty string'):
        vecplug.tune(pairs, model=str(tiny_model_dir), out=tmp_path / "out")
    with pytest.raises(vecplug.InvalidSettingError, match="not a string"):
        vecplug.tune("pairs.jsonl", model=str(tiny_model_dir), out=tmp_path / "out")
    with pytest.raises(vecplug.InvalidSettingError, match="hard_negatives must be 0 or more"):
        vecplug.tune(synthetic_pairs(20), model=str(tiny_model_dir), out=tmp_path / "out", hard_negatives=-1)
    assert not (tmp_path / "out").exists()


BLOCKED = """
    import importlib.abc, sys

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "sentence_transformers":
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    from vecplug.cli import main
    main({args!r})
"""


def test_without_the_tune_extra_one_line_names_it(tmp_path):
    pairs = write_pairs(tmp_path / "p.jsonl", synthetic_pairs(20))
    code = textwrap.dedent(BLOCKED.format(args=["tune", "--pairs", pairs, "--out", str(tmp_path / "out")]))
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert process.returncode == 1 and process.stderr.count("\n") == 1, process.stderr
    assert "vecplug tune needs vecplug's tune extra" in process.stderr
    assert 'pip install ".[tune]"' in process.stderr
