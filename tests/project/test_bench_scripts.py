"""The benchmark scripts behind BENCHMARKS.md still run (a tiny model, a few texts): they cannot rot unseen.

They sit outside the package and the default bench, so nothing else imports
them; a renamed core function broke `scripts/bench_server.py` once before
anyone noticed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def run_script(name: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VECPLUG_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    process = subprocess.run([sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True,
                             env=env, timeout=600)
    assert process.returncode == 0, f"{name} failed:\n{process.stdout[-2000:]}\n{process.stderr[-4000:]}"
    return process


@pytest.mark.slow  # a benchmark script end to end: a server, clients, two timed engines
def test_bench_server_compares_the_server_with_the_engine(tmp_path):
    report = tmp_path / "server.json"
    run_script("bench_server.py", "--shape", "tiny", "--size", "quick", "--repeat", "1", "--clients", "4",
               "--json", str(report), tmp_path=tmp_path)
    result = json.loads(report.read_text())
    engines = {row["engine"]: row for row in result["rows"]}
    assert set(engines) == {"direct", "server"}
    assert engines["direct"]["vs_direct"] == 1.0 and engines["server"]["vs_direct"] > 0
    assert 0 < engines["server"]["mfu"] < 1 and result["environment"]["texts"] > 0


def test_ab_engine_times_every_corpus(tmp_path):
    process = run_script("ab_engine.py", "--shape", "tiny", "--size", "quick", tmp_path=tmp_path)
    result = json.loads(process.stdout.splitlines()[-1])
    assert set(result) == {"source", "paragraphs", "long"} and result["paragraphs"] > 0 and result["long"] > 0


def test_bench_pg_worker_embeds_every_row_like_the_engine(tmp_path, pg_cluster):
    process = run_script("bench_pg_worker.py", "--rows", "200", "--shape", "tiny", "--repeat", "1",
                         "--batch-size", "64", tmp_path=tmp_path)
    result = json.loads(process.stdout.splitlines()[-1])
    assert result["rows"] == 200 and result["min_cosine"] >= 0.999
    assert [row["path"] for row in result["results"]] == ["direct", "worker, batch 64"]


def test_bench_pg_sync_compares_two_versions_of_the_sql(tmp_path, pg_cluster):
    """Against HEAD's own SQL (always in a clone): both databases embed every row, the ratio is printed."""
    import shutil

    if shutil.which("git") is None or not (SCRIPTS.parent / ".git").exists():
        import pytest

        pytest.skip("needs the git checkout (it reads an older revision's SQL with git archive)")
    process = run_script("bench_pg_sync.py", "--rows", "20", "--shape", "tiny", "--against-rev", "HEAD",
                         tmp_path=tmp_path)
    lines = [json.loads(line) for line in process.stdout.splitlines() if line.startswith("{")]
    assert [line.get("sql") for line in lines[:2]] == ["HEAD", "this checkout"]
    assert lines[2]["bulk_ratio_reference_over_current"] > 0


def test_bench_chunks_times_whole_plain_and_late(tmp_path):
    process = run_script("bench_chunks.py", "--shape", "tiny", "--docs", "3", "--tokens", "600", "--repeat", "1",
                         tmp_path=tmp_path)
    result = json.loads(process.stdout.splitlines()[-1])
    assert set(result["rows"]) == {"whole", "plain", "late"} and result["chunks"] > result["docs"]
    assert result["rows"]["whole"]["vs_whole"] == 1.0
    assert all(0 < row["mfu"] < 1 and row["tokens_per_s"] > 0 for row in result["rows"].values())


def test_bench_pg_copy_times_the_write_path_and_loses_nothing(tmp_path, pg_cluster):
    """This checkout's SQL only, a few rows: every row queued (the script checks), the ratio printed."""
    process = run_script("bench_pg_copy.py", "--rows", "300", "--rounds", "1", "--against-rev", "none",
                         tmp_path=tmp_path)
    result = json.loads(process.stdout.splitlines()[-1])
    assert result["sql"] == "this checkout" and result["rows"] == 300
    assert result["ratio"] > 0 and result["partitioned_ratio"] > 0


@pytest.mark.slow  # a server, bulk clients and a prober for two short windows
def test_bench_server_mixed_measures_a_query_under_bulk(tmp_path):
    report = tmp_path / "mixed.json"
    run_script("bench_server_mixed.py", "--shape", "tiny", "--bulk-clients", "2", "--bulk-texts", "64",
               "--seconds", "2", "--probes", "5", "--json", str(report), tmp_path=tmp_path)
    [row] = json.loads(report.read_text())["rows"]
    assert row["idle_p50_ms"] > 0 and row["probes_under_bulk"] > 0 and row["under_bulk_p99_ms"] > 0
    assert row["bulk_docs_per_s_alone"] > 0 and row["bulk_docs_per_s_with_prober"] > 0
