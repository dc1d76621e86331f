"""Chunking's cost: plain and late chunking against ``embed_documents`` on the same long texts, in turns.

    .venv/bin/python scripts/bench_chunks.py                       # ModernBERT-base shape, as in BENCHMARKS.md
    .venv/bin/python scripts/bench_chunks.py --shape tiny --docs 4 --tokens 600 --repeat 1   # a smoke run

Every mode embeds the same documents (each within ``max_tokens``, so
``embed_documents`` cuts nothing): "whole" gives one vector per document,
"plain" one per 512-token chunk (each chunk runs alone, with its prompt),
"late" one per chunk pooled from the whole document's pass. Reported per
mode: documents/s and the documents' own tokens/s, the ratio to "whole",
and MFU: the FLOPs of the sequences that mode actually ran over the bf16
(or the dtype's) matmul rate measured in the same process.
"""
import argparse
import json
import time

import vecplug
from vecplug.bench import measure_matmul_peak
from vecplug.testing import cached_model, stdlib_paragraphs


def long_documents(model, count: int, tokens: int) -> list[str]:
    """``count`` documents of about ``tokens`` tokens, consecutive real paragraphs joined by blank lines."""
    paragraphs, documents, current = stdlib_paragraphs(), [], []
    for paragraph in paragraphs:
        current.append(paragraph)
        if len(current) % 4 == 0 and sum(model.token_counts(["\n\n".join(current)])) >= tokens:
            documents.append("\n\n".join(current))
            current = []
            if len(documents) == count:
                return documents
    raise SystemExit(f"not enough text for {count} documents of {tokens} tokens")


def sequences_run(model, mode: str, documents: list[str], chunk_tokens: int) -> list[int]:
    """Token counts of the sequences a mode runs through the model (the MFU numerator)."""
    if mode == "plain":
        pieces = [piece for result in model.embed_chunks(documents, chunk_tokens) for piece in result.texts]
        return model.token_counts(pieces)
    return model.token_counts(documents)  # whole and late: each document once, prompt and special tokens included


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="base", help="model shape (base as in BENCHMARKS.md; tiny to smoke-test)")
    parser.add_argument("--docs", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=4000, help="about how long each document is")
    parser.add_argument("--chunk-tokens", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=2, help="rounds; each mode's best round counts")
    options = parser.parse_args()

    model = vecplug.load_model(cached_model("bench-models", options.shape))
    documents = long_documents(model, options.docs, options.tokens)
    own_tokens = sum(len(offsets) for offsets in model.token_offsets(documents))
    modes = {
        "whole": lambda: model.embed_documents(documents),
        "plain": lambda: model.embed_chunks(documents, options.chunk_tokens),
        "late": lambda: model.embed_chunks(documents, options.chunk_tokens, late=True),
    }
    model.embed_chunks(documents[:1], options.chunk_tokens, late=True)  # warm-up
    best = {mode: float("inf") for mode in modes}
    for _ in range(options.repeat):
        for mode, run in modes.items():  # in turns, so a slow spell of the machine hits every mode
            start = time.perf_counter()
            run()
            best[mode] = min(best[mode], time.perf_counter() - start)
    peak = measure_matmul_peak(model.encoder.dtype)
    chunks = sum(len(result) for result in model.embed_chunks(documents, options.chunk_tokens))
    rows = {}
    for mode, seconds in best.items():
        flops = model.forward_flops(sequences_run(model, mode, documents, options.chunk_tokens))
        rows[mode] = {
            "seconds": round(seconds, 2),
            "docs_per_s": round(len(documents) / seconds, 3),
            "tokens_per_s": round(own_tokens / seconds),
            "vs_whole": round(best["whole"] / seconds, 3),
            "mfu": round(flops / seconds / peak, 3),
        }
    print(json.dumps({
        "shape": options.shape, "docs": len(documents), "own_tokens": own_tokens, "chunks": chunks,
        "chunk_tokens": options.chunk_tokens, "matmul_peak_tflops": round(peak / 1e12, 3),
        "dtype": str(model.encoder.dtype), "rows": rows,
    }))


if __name__ == "__main__":
    main()
