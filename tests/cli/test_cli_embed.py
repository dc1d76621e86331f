"""``vecplug embed`` streams, and every ordinary CLI mistake is one line and exit 2, before any work."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from terminal import run_with_terminal_stderr


def vecplug_command(*args: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vecplug", *args], capture_output=True, text=True, timeout=120,
                          **options)


def assert_one_line_usage_error(process: subprocess.CompletedProcess, *words: str) -> None:
    assert process.returncode == 2, (process.returncode, process.stderr)
    assert "Traceback" not in process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), process.stderr
    for word in words:
        assert word in lines[0], process.stderr


@pytest.mark.parametrize("args, words", [
    (["embed", "--dimensions", "0", "x"], ["--dimensions", "0"]),
    (["embed", "--device", "tpu", "x"], ["--device", "tpu"]),
    (["embed", "--device", "cuda:x", "x"], ["--device"]),
    (["bench", "--quick", "--repeat", "0"], ["--repeat"]),
    (["bench", "--quick", "--json", "/no-such-dir/x.json"], ["--json", "/no-such-dir"]),
    (["embed", "-o", "/no-such-dir/out.npy", "x"], ["--output", "/no-such-dir"]),
    (["bench", "--model", "/no-such-model-dir"], ["--model"]),
])
def test_usage_mistakes_are_one_line_and_exit_2_before_any_work(args, words):
    start = time.perf_counter()
    process = vecplug_command(*args)
    assert_one_line_usage_error(process, *words)
    # the quick bench takes well over a minute here; a model load several seconds
    assert time.perf_counter() - start < 20


def test_dimensions_larger_than_the_model_is_refused_before_loading(tiny_model_dir):
    process = vecplug_command("embed", "-m", str(tiny_model_dir), "--dimensions", "65", "x")
    assert_one_line_usage_error(process, "64-dimensional", "dimensions=65")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_usage_error(tiny_model_dir):
    process = vecplug_command("embed", "-m", str(tiny_model_dir), "--device", "cuda", "x")
    assert_one_line_usage_error(process, "--device", "no CUDA GPU")


@pytest.mark.slow  # a fresh process or a real wait: seconds of the fast loop
def test_stdin_streams_first_vectors_before_the_input_ends(tiny_model_dir):
    """The first output line arrives while stdin is still open; \\r\\n endings are stripped."""
    process = subprocess.Popen([sys.executable, "-m", "vecplug", "embed", "-m", str(tiny_model_dir)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(process.stdout.readline()), daemon=True)
    reader.start()
    try:
        # two model windows (2,048 texts each) must be read before the first one is written
        for number in range(6000):
            process.stdin.write(f"line {number}\r\n")
        process.stdin.flush()
        reader.join(timeout=90)
        assert first and first[0], "no output while stdin was still open: embed does not stream"
        assert process.poll() is None
        row = json.loads(first[0])
        assert row["text"] == "line 0" and len(row["embedding"]) == 64
        for number in range(6000, 7000):
            process.stdin.write(f"line {number}\n")
        process.stdin.close()
        rest = process.stdout.read().splitlines()
        assert process.wait(timeout=60) == 0, process.stderr.read()
    finally:
        process.kill()
    texts = [row["text"] for row in map(json.loads, first + rest)]
    assert texts == [f"line {number}" for number in range(7000)]


def test_file_input_to_npy_matches_the_api(tiny_model_dir, tiny_model, tmp_path):
    texts = ["first line", "", "third, with a comma", "ünïcode ✓"]
    source = tmp_path / "texts.txt"
    source.write_bytes("\r\n".join(texts).encode() + b"\r\n")
    output = tmp_path / "vectors.npy"
    process = vecplug_command("embed", "-m", str(tiny_model_dir), "--dtype", "float32", "-i", str(source),
                              "-o", str(output), "--query")
    assert process.returncode == 0, process.stderr
    assert process.stderr == ""  # a pipe, not a terminal: no progress bar
    vectors = np.load(output)
    assert vectors.dtype == np.float32 and vectors.shape == (4, 64)
    np.testing.assert_allclose(vectors, tiny_model.embed_queries(texts), atol=1e-6)


def test_json_lines_keep_their_fields(tiny_model_dir, tiny_model, tmp_path):
    rows = [{"id": 1, "body": "alpha", "tags": ["a"]}, {"id": 2, "body": "beta\r"}]
    source = tmp_path / "rows.data"
    source.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")
    process = vecplug_command("embed", "-m", str(tiny_model_dir), "--dtype", "float32", "-i", str(source),
                              "--text-field", "body")
    assert process.returncode == 0, process.stderr
    out = [json.loads(line) for line in process.stdout.splitlines()]
    assert [{key: value for key, value in row.items() if key != "embedding"} for row in out] == rows
    np.testing.assert_allclose([row["embedding"] for row in out], tiny_model.embed_documents(["alpha", "beta\r"]),
                               atol=1e-6)


def test_bad_json_line_names_the_line(tiny_model_dir, tmp_path):
    source = tmp_path / "rows.jsonl"
    source.write_text('{"text": "fine"}\n{"text": \n')
    process = vecplug_command("embed", "-m", str(tiny_model_dir), "-i", str(source))
    assert process.returncode == 1 and "Traceback" not in process.stderr
    assert "line 2 is not JSON" in process.stderr


def test_not_utf8_names_the_line(tiny_model_dir, tmp_path):
    source = tmp_path / "latin1.txt"
    source.write_bytes(b"fine\ncaf\xe9\n")
    process = vecplug_command("embed", "-m", str(tiny_model_dir), "-i", str(source))
    assert process.returncode == 1 and "Traceback" not in process.stderr
    assert "line 2 is not UTF-8" in process.stderr


@pytest.mark.slow  # a fresh process or a real wait: seconds of the fast loop
def test_progress_on_a_terminal_and_not_with_quiet(tiny_model_dir, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(f"text number {number}" for number in range(300)) + "\n")
    command = [sys.executable, "-m", "vecplug", "embed", "-m", str(tiny_model_dir), "-i", str(source),
               "-o", str(tmp_path / "out.jsonl")]
    code, shown = run_with_terminal_stderr(command)
    assert code == 0, shown
    assert "embedding" in shown and "300/300" in shown
    code, shown = run_with_terminal_stderr(command + ["--quiet"])
    assert code == 0 and shown == ""
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 300
