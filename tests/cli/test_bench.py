"""``vecplug bench``: the CPU kind in its header, sentence-transformers' ONNX/OpenVINO back-ends as references.

The table and JSON are checked on real ``Row`` objects with known timings,
so every ratio is known exactly; the missing-package error is the real
condition of the project environment (no optimum there); the back-end run
itself needs the reference environment (docs/benchmarks.md) and is skipped
elsewhere, saying so.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time

import pytest

from vecplug.bench import Row, format_table, header_line, speed_ups, to_json
from vecplug.bench_references import INSTALL, missing_backend_line, tokenizer_class_problem
from vecplug.cpu import cpu_kind, kind_has_native_bf16


@pytest.mark.parametrize("flags, kind", [
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "AMX"),  # Sapphire Rapids and later
    ({"avx2", "avx512f", "avx512_bf16"}, "AVX512-BF16"),  # Cooper Lake, Zen 4
    ({"avx2", "avx512f", "avx512bw"}, "AVX512"),  # Skylake-SP, Ice Lake
    ({"avx", "avx2", "fma"}, "AVX2"),
    ({"sse4_2", "avx"}, "other"),
    (set(), "other"),  # no /proc/cpuinfo (macOS, Windows) or an ARM CPU
])
def test_cpu_kind_is_the_strongest_matmul_class_the_flags_give(flags, kind):
    assert cpu_kind(frozenset(flags)) == kind
    assert kind_has_native_bf16(kind) == (kind in ("AMX", "AVX512-BF16"))


def reference_rows() -> list[Row]:
    """One corpus, every engine the bench can run, with round timings: 100 docs each."""
    def row(engine, dtype, seconds, peak):
        return Row("paragraphs", engine, dtype, 100, 5000, seconds, 0.999, 0.1 / seconds, peak)

    return [row("sentence-transformers", "float32", 10.0, "float32"),
            row("sentence-transformers", "bfloat16", 5.0, "bfloat16"),
            row("sentence-transformers (onnx)", "auto (bf16 peak)", 4.0, "bfloat16"),
            row("sentence-transformers (openvino)", "auto: bf16 (bf16 peak)", 2.5, "bfloat16"),
            row("vecplug (grouped_sdpa)", "bfloat16", 1.0, "bfloat16")]


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_table_shows_vecplug_over_each_reference_and_the_fastest():
    lines = format_table(reference_rows()).splitlines()
    header = cells(lines[0])
    assert header == ["corpus", "engine", "dtype", "docs/s", "tokens/s", "speed-up vs ST fp32", "vs ST bf16",
                      "vs ST onnx", "vs ST openvino", "vs fastest ST", "MFU", "min cos vs ST fp32"]
    assert len(cells(lines[1])) == len(header)
    table = {tuple(cells(line)[1:3]): dict(zip(header, cells(line))) for line in lines[2:]}
    vecplug = table["vecplug (grouped_sdpa)", "bfloat16"]
    assert [vecplug[name] for name in header[5:10]] == ["10.00x", "5.00x", "4.00x", "2.50x", "2.50x"]
    assert vecplug["MFU"] == "10.0%" and vecplug["docs/s"] == "100.0"
    openvino = table["sentence-transformers (openvino)", "auto: bf16 (bf16 peak)"]
    assert openvino["vs fastest ST"] == "1.00x"
    assert openvino["MFU"] == "4.0%" and openvino["vs ST openvino"] == "1.00x"
    assert table["sentence-transformers", "float32"]["vs fastest ST"] == "0.25x"


def test_without_backends_the_table_keeps_its_columns_and_adds_the_fastest():
    rows = [row for row in reference_rows() if "(" not in row.engine or row.engine.startswith("vecplug")]
    lines = format_table(rows).splitlines()
    assert cells(lines[0])[5:8] == ["speed-up vs ST fp32", "vs ST bf16", "vs fastest ST"]
    assert cells(lines[-1])[5:8] == ["10.00x", "5.00x", "5.00x"]


def test_ratios_are_per_corpus():
    rows = reference_rows() + [Row("long", "sentence-transformers", "float32", 8, 4000, 8.0),
                               Row("long", "vecplug", "bfloat16", 8, 4000, 2.0)]
    long_vecplug = speed_ups(rows)[-1]
    assert long_vecplug == {"ST fp32": 4.0, "fastest ST": 4.0}  # the paragraphs' references do not count


def test_the_json_carries_the_ratios_the_peak_and_the_header():
    env = {"device": "x86_64 [avx2 avx512f avx512_bf16]", "vecplug_device": "cpu", "cpu_kind": "AVX512-BF16",
           "threads": 2, "matmul_peak_tflops": {"float32": 0.61, "bfloat16": 1.23}}
    result = json.loads(to_json(reference_rows(), env))
    assert result["environment"] == env
    vecplug = result["rows"][-1]
    assert vecplug["speed_up"] == {"ST fp32": 10.0, "ST bf16": 5.0, "ST onnx": 4.0, "ST openvino": 2.5,
                                   "fastest ST": 2.5}
    assert result["rows"][2]["mfu_peak"] == "bfloat16" and result["rows"][0]["mfu_peak"] == "float32"
    assert header_line(env) == "CPU: AVX512-BF16, 2 threads, matmul peak bf16 / fp32 1.23 / 0.61 TFLOP/s"
    on_gpu = {**env, "device": "NVIDIA H100", "vecplug_device": "cuda"}
    assert header_line(on_gpu).startswith("GPU: NVIDIA H100 (CPU: AVX512-BF16), 2 threads")


def test_a_missing_backend_package_is_named_with_its_install_line():
    assert missing_backend_line(()) is None
    absent = [name for name in ("optimum.onnxruntime", "optimum.intel.openvino")
              if importlib.util.find_spec("optimum") is None or importlib.util.find_spec(name) is None]
    if not absent:
        pytest.skip("optimum is installed here with both back-ends (the reference environment)")
    line = missing_backend_line(("onnx", "openvino"))
    assert all(name in line for name in absent) and INSTALL in line and "\n" not in line


@pytest.mark.skipif(importlib.util.find_spec("optimum") is not None,
                    reason="optimum is installed: the missing-package error cannot happen here")
def test_bench_with_a_backend_but_no_optimum_is_one_line_and_exit_2_before_any_work():
    start = time.perf_counter()
    process = subprocess.run([sys.executable, "-m", "vecplug", "bench", "--quick", "--st-backend", "onnx"],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2, process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Invalid value for '--st-backend'"), process.stderr
    assert "optimum.onnxruntime" in lines[0] and 'pip install "sentence-transformers[onnx,openvino]<6"' in lines[0]
    assert process.stdout == "" and time.perf_counter() - start < 20  # no model loaded, nothing timed


def test_a_tokenizer_class_this_transformers_lacks_is_named_with_its_fix(tmp_path, tiny_model_dir):
    import transformers

    assert tokenizer_class_problem(tiny_model_dir) is None  # write_model's "PreTrainedTokenizerFast"
    config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "NoSuchTokenizer"}))
    line = tokenizer_class_problem(tmp_path)
    assert "'NoSuchTokenizer'" in line and transformers.__version__ in line and "PreTrainedTokenizerFast" in line
    assert tokenizer_class_problem(tmp_path / "absent") is None  # sentence-transformers names a missing folder


@pytest.mark.slow  # a quick bench, one corpus, sentence-transformers fp32: about 10 s
def test_the_bench_prints_its_json_line_then_the_cpu_header_then_the_table(tmp_path):
    json_path = tmp_path / "bench.json"
    process = subprocess.run([sys.executable, "-m", "vecplug", "bench", "--quick", "--corpus", "paragraphs",
                              "--st-dtype", "float32", "--device", "cpu", "--json", str(json_path)],
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    first, header, *table = process.stdout.splitlines()
    environment = json.loads(first)
    assert environment["cpu_kind"] == cpu_kind() and environment["threads"] >= 1
    assert header.startswith(f"CPU: {cpu_kind()}, {environment['threads']} threads, matmul peak ")
    assert "vs fastest ST" in table[0] and len(table) == 4  # header, rule, sentence-transformers, vecplug
    saved = json.loads(json_path.read_text())
    assert saved["environment"] == environment and saved["rows"][-1]["speed_up"]["fastest ST"] > 0


@pytest.mark.slow  # exports the tiny model to ONNX and OpenVINO: about 30 s
@pytest.mark.skipif(missing_backend_line(("onnx", "openvino")) is not None,
                    reason="needs the reference environment: " + INSTALL)
def test_onnx_and_openvino_rows_agree_with_sentence_transformers(tiny_model_dir):
    from vecplug import bench

    rows, environment = bench.run(tiny_model_dir, size="quick", device="cpu", st_dtypes=("float32",),
                                  corpus_names=("paragraphs",), quiet=True, st_backends=("onnx", "openvino"))
    by_engine = {row.engine: row for row in rows}
    assert set(by_engine) >= {"sentence-transformers", "sentence-transformers (onnx)",
                              "sentence-transformers (openvino)"}
    peak = "bfloat16" if kind_has_native_bf16(cpu_kind()) else "float32"
    for backend in ("onnx", "openvino"):
        row = by_engine[f"sentence-transformers ({backend})"]
        assert row.mfu_peak == peak and row.dtype.endswith(f"({'bf16' if peak == 'bfloat16' else 'fp32'} peak)")
        assert row.docs == 64 and 0 < row.mfu < 1
        # same weights: fp32 ONNX matches torch closely, OpenVINO's own bf16 less so
        assert row.min_cosine > (0.9999 if backend == "onnx" else 0.99), (backend, row.min_cosine)
    assert environment["st_backends"] == ["onnx", "openvino"] and "optimum" in environment
