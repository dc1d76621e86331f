"""What `vecplug tune` writes, or does not: refusal when the tuned model does not win, --force, Ctrl-C, SQL pairs.

"Does not win" is made certain with a learning rate that cannot move the
weights (1e-12, one epoch): the tuned recall@10 equals the base's, which
does not beat it.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

import vecplug
from vecplug.testing import write_model
from vecplug.tune.pairs import pairs_from_sql
from vecplug.tune.synthetic import synthetic_pairs

from tune_helpers import run_tune_cli, write_pairs

STILL = ["--learning-rate", "1e-12", "--epochs", "1"]


@pytest.mark.slow
def test_no_gain_writes_nothing_and_exits_1_naming_both_numbers(tmp_path, tiny_model_dir):
    pairs = write_pairs(tmp_path / "pairs.jsonl", synthetic_pairs(40))
    process = run_tune_cli("--pairs", pairs, "-m", tiny_model_dir, "--out", tmp_path / "out", *STILL, "--json",
                           "--hard-negatives", "2", cwd=tmp_path)
    assert process.returncode == 1, process.stderr
    assert "2 hard negatives per query" in process.stderr
    summary = json.loads(process.stdout.strip().splitlines()[-1])
    assert summary["path"] is None and summary["tuned"]["recall@10"] == summary["base"]["recall@10"]
    number = f"{summary['base']['recall@10']:.3f}"
    assert f"recall@10 {number} tuned vs {number} base" in process.stderr and "nothing written" in process.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pairs.jsonl"]  # no out, no staging, no trainer_output


@pytest.mark.slow
def test_the_python_api_returns_no_path_when_the_tuned_model_does_not_win_and_force_writes(tmp_path, tiny_model_dir):
    synthetic = synthetic_pairs(41)  # with a negative each: the next pair's positive
    pairs = [(pair["query"], pair["positive"], after["positive"]) for pair, after in zip(synthetic, synthetic[1:])]
    result = vecplug.tune(pairs, model=str(tiny_model_dir), out=tmp_path / "out", learning_rate=1e-12, epochs=1,
                          quiet=True)
    assert result.path is None and result.tuned["recall@10"] == result.base["recall@10"]
    assert result.base["queries"] == 4 and result.base["corpus"] == 40  # 10% of 40 queries, every positive
    assert list(tmp_path.iterdir()) == []
    forced = vecplug.tune(pairs, model=str(tiny_model_dir), out=tmp_path / "out", learning_rate=1e-12, epochs=1,
                          quiet=True, force=True)
    assert forced.path == (tmp_path / "out").absolute() and [path.name for path in tmp_path.iterdir()] == ["out"]
    assert json.loads((tmp_path / "out" / "vecplug_tune.json").read_text())["options"]["force"] is True


@pytest.mark.slow
def test_ctrl_c_during_training_leaves_nothing(tmp_path):
    base = write_model(tmp_path / "base", shape="tiny")
    pairs = write_pairs(tmp_path / "pairs.jsonl", synthetic_pairs(400))
    workdir, outputs = tmp_path / "cwd", tmp_path / "outputs"
    workdir.mkdir(), outputs.mkdir()
    process = subprocess.Popen([sys.executable, "-m", "vecplug", "tune", "--pairs", pairs, "-m", str(base), "--out",
                                str(outputs / "tuned"), "--epochs", "50"], cwd=workdir, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(outputs.glob(".tuned.vecplug-tune-*/trainer")) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    assert any(outputs.glob(".tuned.vecplug-tune-*")), "training did not start in time"
    time.sleep(3)  # well into the training steps
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and stderr.strip().endswith("Interrupted"), stderr
    assert list(outputs.iterdir()) == [] and list(workdir.iterdir()) == []


@pytest.mark.slow
def test_pairs_from_sql_through_a_server_side_cursor(pg_cluster, fresh_db, tmp_path, tiny_model_dir):
    pairs = synthetic_pairs(40)
    with pg_cluster.connect(fresh_db) as connection:
        connection.execute("CREATE TABLE faq (id serial, question text, answer text)")
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO faq (question, answer) VALUES (%s, %s)",
                               [(pair["query"], pair["positive"]) for pair in pairs])
    dsn = pg_cluster.dsn(fresh_db)
    read = pairs_from_sql(dsn, "SELECT question, answer FROM faq ORDER BY id", fetch=7)
    assert [(pair.query, pair.positive, pair.negative) for pair in read] == \
        [(pair["query"], pair["positive"], None) for pair in pairs]
    with pytest.raises(vecplug.InvalidSettingError, match="returns 1 columns"):
        pairs_from_sql(dsn, "SELECT question FROM faq")
    with pytest.raises(vecplug.InvalidSettingError, match='--sql failed: column "nope" does not exist'):
        pairs_from_sql(dsn, "SELECT nope, answer FROM faq")
    (tmp_path / "out").mkdir()  # an empty folder is fine
    # --force: the still learning rate cannot win, the model is written anyway, exit 0
    process = run_tune_cli("--dsn", dsn, "--sql", "SELECT question, answer FROM faq", "-m", tiny_model_dir, "--out",
                           tmp_path / "out", *STILL, "--force", cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    assert "wrote" in process.stdout and "recall@10" in process.stdout
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]
    record = json.loads((tmp_path / "out" / "vecplug_tune.json").read_text())
    assert record["pairs"] == 40 and record["options"]["force"] is True
    short = run_tune_cli("--dsn", dsn, "--sql", "SELECT question, answer FROM faq LIMIT 5", "-m", tiny_model_dir,
                         "--out", tmp_path / "out2", cwd=tmp_path)
    assert short.returncode == 2 and "the --sql query holds 5 pairs" in short.stderr, short.stderr
