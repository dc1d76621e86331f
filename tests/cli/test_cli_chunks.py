"""``vecplug embed --chunk-tokens``: one JSON line per chunk, locally or through a server, and its refusals."""
from __future__ import annotations

import json

import numpy as np
import pytest

from test_cli_embed import assert_one_line_usage_error, vecplug_command

TEXTS = ["A first paragraph of a few words.\n\nAnd a second paragraph, a little longer than the first one.",
         "",
         "\n",
         "ünïcödé ✓ 日本語のテキスト。" * 5]


def chunk_lines(process) -> list[dict]:
    assert process.returncode == 0, process.stderr
    return [json.loads(line) for line in process.stdout.splitlines()]


def assert_lines_are_the_chunks(lines, texts, sources, results):
    expected = [(source, index, span, text[span[0]:span[1]], vector)
                for source, text, chunks in zip(sources, texts, results)
                for index, (span, vector) in enumerate(zip(chunks.spans, chunks.vectors))]
    assert [(line["source"], line["chunk_index"], (line["start"], line["end"]), line["text"]) for line in lines] \
        == [row[:4] for row in expected]
    assert all(set(line) == {"source", "chunk_index", "start", "end", "text", "embedding"} for line in lines)
    np.testing.assert_allclose([line["embedding"] for line in lines], [row[4] for row in expected], atol=1e-6)


def test_lines_give_one_json_line_per_chunk(tiny_model_dir, tiny_model, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(text.replace("\n", " ") for text in TEXTS) + "\n", encoding="utf-8")
    texts = [text.replace("\n", " ") for text in TEXTS]
    process = vecplug_command("embed", "-m", str(tiny_model_dir), "--dtype", "float32", "-i", str(source),
                              "--chunk-tokens", "6", "--overlap-tokens", "2")
    lines = chunk_lines(process)
    assert_lines_are_the_chunks(lines, texts, [1, 2, 3, 4], tiny_model.embed_chunks(texts, 6, 2))
    assert {line["source"] for line in lines} == {1, 4}  # whitespace-only lines give no chunks


def test_json_lines_use_their_id_and_late_chunking(tiny_model_dir, tiny_model, tmp_path):
    rows = [{"id": "doc-a", "body": TEXTS[0]}, {"body": TEXTS[3]}, {"id": 7, "body": TEXTS[2]}]
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    output = tmp_path / "chunks.jsonl"
    process = vecplug_command("embed", "-m", str(tiny_model_dir), "--dtype", "float32", "-i", str(source),
                              "--text-field", "body", "--chunk-tokens", "8", "--late", "-o", str(output))
    assert process.returncode == 0, process.stderr
    lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    texts = [row["body"] for row in rows]
    assert_lines_are_the_chunks(lines, texts, ["doc-a", 2, 7], tiny_model.embed_chunks(texts, 8, late=True))


def test_through_a_server(tiny_server, tiny_model):
    process = vecplug_command("embed", "-m", tiny_server.url, "--chunk-tokens", "5", "--late", TEXTS[0], TEXTS[3])
    texts = [TEXTS[0], TEXTS[3]]
    assert_lines_are_the_chunks(chunk_lines(process), texts, [1, 2], tiny_model.embed_chunks(texts, 5, late=True))


@pytest.mark.parametrize("args, words", [
    (["--overlap-tokens", "2"], ["--overlap-tokens only works with --chunk-tokens"]),
    (["--late"], ["--late only works with --chunk-tokens"]),
    (["--chunk-tokens", "4", "--overlap-tokens", "4"], ["--overlap-tokens", "less than chunk_tokens (4)"]),
    (["--chunk-tokens", "0"], ["--chunk-tokens", "0"]),
    (["--chunk-tokens", "4", "-o", "out.npy"], ["--chunk-tokens writes JSON lines", ".npy"]),
    (["--chunk-tokens", "4", "--query"], ["--query", "documents"]),
])
def test_options_that_do_not_fit_are_usage_errors(args, words, tmp_path):
    process = vecplug_command("embed", *args, "some text", cwd=tmp_path)
    assert_one_line_usage_error(process, *words)
    assert not (tmp_path / "out.npy").exists()
