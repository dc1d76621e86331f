"""``vecplug bench``: vecplug against sentence-transformers, same files, same texts, one run.

Reports docs/s, tokens/s, the speed ratio, MFU (model FLOPs on real tokens
over a matmul peak measured on the spot, in the same dtype) and the min
cosine between the two stacks' vectors. Absolute numbers on a shared machine
mean little; the ratios are the point.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

DOCUMENT_PROMPT = "search_document: "


@dataclass
class Row:
    corpus: str
    engine: str
    dtype: str
    docs: int
    tokens: int
    seconds: float
    min_cosine: float | None = None
    mfu: float | None = None

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def measure_matmul_peak(dtype, device: str = "cpu", size: int = 2048, seconds: float = 1.0) -> float:
    """FLOP/s of a large square matmul in ``dtype``: the roof MFU is measured against."""
    import torch

    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.matmul(a, b)
    _synchronize()  # the warm-up product must not run into the timed ones on a GPU
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or runs < 3:
        torch.matmul(a, b)
        runs += 1
    _synchronize()
    return 2 * size**3 * runs / (time.perf_counter() - start)


def corpora(size: str) -> dict[str, list[str]]:
    """Real English from Python's docs: short paragraphs and ~512-token documents.

    ``size``: "quick" (smoke run), "cpu" (a few minutes on 2 cores) or "full"
    (every paragraph and document: what a GPU needs to fill its batches).
    """
    from .testing import long_documents, stdlib_paragraphs

    paragraphs = list(stdlib_paragraphs())
    counts = {"quick": (64, 4), "cpu": (600, 48), "full": (len(paragraphs), 1000)}[size]
    return {"paragraphs": paragraphs[: counts[0]], "long": long_documents(count=counts[1])}


def bench_model_dir(shape: str) -> Path:
    """A random-weight model of ``shape``, written once and reused from the cache."""
    from .testing import cached_model

    return cached_model("bench-models", shape)


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def vecplug_encoder(model_dir: Path, dtype: str | None, device: str | None):
    """vecplug's document path with its defaults: ``(model, encode)``."""
    from .registry import load_model

    model = load_model(str(model_dir), device=device, dtype=dtype)
    return model, model.embed_documents


def sentence_transformers_encoder(model_dir: Path, dtype: str, device: str):
    """sentence-transformers with its defaults, batch_size=32, the same prompt: what users would run."""
    import torch
    from sentence_transformers import SentenceTransformer

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    model = SentenceTransformer(str(model_dir), device=device)
    if dtype != "float32":
        model = model.to(getattr(torch, dtype))

    def encode(texts):
        vectors = model.encode(texts, batch_size=32, prompt=DOCUMENT_PROMPT, normalize_embeddings=True,
                               convert_to_numpy=True)
        return vectors.astype("float32")

    return encode


def time_in_turns(encoders: dict, texts: list[str], warmups: dict, repeat: int, bar=None, label: str = ""):
    """The fastest of ``repeat`` passes of each encoder over ``texts``, the encoders taking turns.

    Taking turns pass by pass, a slow spell on a shared machine slows every
    engine's passes alike instead of all of one engine's; the fastest pass
    counts, the same rule for every engine. Each encoder first runs its
    warm-up texts (compilation, caches). Returns (seconds, vectors) by name.
    ``bar`` (a ``vecplug.progress`` bar) advances one step per pass and names
    the one running, after ``label``.
    """
    def announce(name, what):
        if bar is not None:
            bar.set_description(f"{label}{name[0]} {name[1]}, {what}")

    def done():
        if bar is not None:
            bar.update(1)

    for name, encode in encoders.items():
        announce(name, "warm-up")
        encode(warmups[name])
        done()
    seconds: dict = {}
    vectors: dict = {}
    for number in range(repeat):
        for name, encode in encoders.items():
            announce(name, f"pass {number + 1}/{repeat}")
            _synchronize()
            start = time.perf_counter()
            vectors[name] = encode(texts)
            _synchronize()
            seconds[name] = min(seconds.get(name, float("inf")), time.perf_counter() - start)
            done()
    return seconds, vectors


def run(model_dir: Path, size: str = "cpu", dtype: str | None = None, device: str | None = None,
        st_dtypes: tuple[str, ...] = ("float32", "bfloat16"), corpus_names: tuple[str, ...] = ("paragraphs", "long"),
        repeat: int = 1, quiet: bool = False):
    """Every engine over every corpus, in turns; a progress bar (one step per pass) for a person.

    vecplug loads first and its ``describe()`` says where it runs:
    sentence-transformers runs on the same device, and the report heads the results.
    """
    import torch

    from .progress import progress

    model, embed = vecplug_encoder(model_dir, dtype, device)
    report = model.describe()
    device, vecplug_dtype = report["device"], report["dtype"]
    encoders = {("sentence-transformers", st_dtype): sentence_transformers_encoder(model_dir, st_dtype, device)
                for st_dtype in st_dtypes}
    attention = f" ({report['attention']})" if report.get("attention") else ""
    encoders[(f"vecplug{attention}", vecplug_dtype)] = embed
    peaks = {name: measure_matmul_peak(getattr(torch, name), device) for name in {*st_dtypes, vecplug_dtype}}
    rows: list[Row] = []
    texts_by_corpus = corpora(size)
    bar = progress(total=len(corpus_names) * len(encoders) * (repeat + 1), desc="bench", unit="pass", quiet=quiet)
    for corpus in corpus_names:
        texts = texts_by_corpus[corpus]
        warmups = {key: texts if key[0].startswith("vecplug") else texts[:64] for key in encoders}
        seconds, vectors = time_in_turns(encoders, texts, warmups, repeat, bar, f"{corpus} ({len(texts)} texts): ")
        lengths = model.token_counts(texts, "document") or []
        flops = model.forward_flops(lengths) if lengths else None
        reference = vectors.get(("sentence-transformers", "float32"), vectors.get(next(iter(encoders))))
        for (engine, engine_dtype), engine_seconds in seconds.items():
            cosine = float((vectors[(engine, engine_dtype)] * reference).sum(1).min())
            mfu = flops / engine_seconds / peaks[engine_dtype] if flops else None
            rows.append(Row(corpus, engine, engine_dtype, len(texts), sum(lengths), engine_seconds, cosine, mfu))
    bar.close()
    return rows, environment(report, peaks)


def environment(report: dict, peaks: dict) -> dict:
    """The bench header: the engine's own report (device, dtype, threads ...), peaks and versions."""
    import torch

    info = {
        "device": report.get("hardware", report["device"]),
        "torch": torch.__version__,
        "threads": report.get("threads", torch.get_num_threads()),
        "vecplug_dtype": report["dtype"],
        "attention": report.get("attention"),
        "matmul_peak_tflops": {name: round(peak / 1e12, 3) for name, peak in peaks.items()},
        "python": platform.python_version(),
    }
    try:
        import sentence_transformers
        import transformers

        info["sentence_transformers"] = sentence_transformers.__version__
        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def format_table(rows: list[Row]) -> str:
    lines = ["| corpus | engine | dtype | docs/s | tokens/s | speed-up vs ST fp32 | vs ST bf16 | MFU | min cos vs ST fp32 |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        def ratio(st_dtype):
            base = next((r for r in rows if r.corpus == row.corpus and r.engine == "sentence-transformers"
                         and r.dtype == st_dtype), None)
            return f"{base.seconds / row.seconds:.2f}x" if base else "-"

        tokens_per_s = f"{row.tokens_per_s:,.0f}" if row.tokens else "-"

        cosine = f"{row.min_cosine:.5f}" if row.min_cosine is not None else "-"
        mfu = f"{100 * row.mfu:.1f}%" if row.mfu is not None else "-"
        lines.append(f"| {row.corpus} | {row.engine} | {row.dtype} | {row.docs_per_s:,.1f} | {tokens_per_s} "
                     f"| {ratio('float32')} | {ratio('bfloat16')} | {mfu} | {cosine} |")
    return "\n".join(lines)


def to_json(rows: list[Row], env: dict) -> str:
    return json.dumps({"environment": env, "rows": [asdict(row) | {"docs_per_s": row.docs_per_s,
                                                                     "tokens_per_s": row.tokens_per_s}
                                                    for row in rows]}, indent=2)
