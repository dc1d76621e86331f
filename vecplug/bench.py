"""``vecplug bench``: vecplug against sentence-transformers, same files, same texts, one run.

Reports docs/s, tokens/s, the speed ratio over each sentence-transformers
reference (torch in fp32 and bf16, and with ``--st-backend`` its ONNX and
OpenVINO back-ends) and over the fastest of them, MFU (model FLOPs on real
tokens over a matmul peak measured on the spot, in the row's dtype) and the
min cosine between the stacks' vectors. The header names the CPU kind and
threads. Absolute numbers on a shared machine mean little; the ratios are the
point.
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
    mfu_peak: str | None = None  # the dtype whose matmul peak ``mfu`` is measured against

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
        repeat: int = 1, quiet: bool = False, st_backends: tuple[str, ...] = ()):
    """Every engine over every corpus, in turns; a progress bar (one step per pass) for a person.

    vecplug loads first and its ``describe()`` says where it runs:
    sentence-transformers runs on the same device, and the report heads the
    results. ``st_backends`` ("onnx", "openvino") add sentence-transformers'
    CPU back-ends, on torch's thread count, their MFU against this CPU's
    fastest roof (bf16 where it has native bf16, else fp32).
    """
    import torch

    from .cpu import cpu_kind, kind_has_native_bf16
    from .errors import InvalidSettingError
    from .progress import progress

    model, embed = vecplug_encoder(model_dir, dtype, device)
    report = model.describe()
    device, vecplug_dtype = report["device"], report["dtype"]
    if st_backends and device != "cpu":
        raise InvalidSettingError(f"--st-backend {' '.join(st_backends)} measures sentence-transformers' CPU "
                                  f"back-ends, but vecplug runs on {device} here: add --device cpu")
    threads = torch.get_num_threads()  # vecplug's load has applied its thread choice
    encoders, peak_of = {}, {}
    for st_dtype in st_dtypes:
        key = ("sentence-transformers", st_dtype)
        encoders[key], peak_of[key] = sentence_transformers_encoder(model_dir, st_dtype, device), st_dtype
    backend_peak = "bfloat16" if kind_has_native_bf16(cpu_kind()) else "float32"
    from .bench_references import backend_encoder

    for backend in st_backends:
        encode, precision = backend_encoder(model_dir, backend, threads, DOCUMENT_PROMPT)
        computed = f": {precision}" if precision else ""
        key = (f"sentence-transformers ({backend})", f"auto{computed} ({PEAK_NAMES[backend_peak]} peak)")
        encoders[key], peak_of[key] = encode, backend_peak
    attention = f" ({report['attention']})" if report.get("attention") else ""
    key = (f"vecplug{attention}", vecplug_dtype)
    encoders[key], peak_of[key] = embed, vecplug_dtype
    peaks = {name: measure_matmul_peak(getattr(torch, name), device) for name in set(peak_of.values())}
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
        for key, engine_seconds in seconds.items():
            cosine = float((vectors[key] * reference).sum(1).min())
            mfu = flops / engine_seconds / peaks[peak_of[key]] if flops else None
            rows.append(Row(corpus, *key, len(texts), sum(lengths), engine_seconds, cosine, mfu, peak_of[key]))
    bar.close()
    return rows, environment(report, peaks, threads, st_backends)


PEAK_NAMES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def environment(report: dict, peaks: dict, threads: int | None = None, st_backends: tuple[str, ...] = ()) -> dict:
    """The bench header: the engine's own report (device, dtype ...), CPU kind, threads, peaks and versions."""
    import torch

    from .cpu import cpu_kind

    info = {
        "device": report.get("hardware", report["device"]),
        "vecplug_device": report["device"],
        "cpu_kind": cpu_kind(),
        "torch": torch.__version__,
        "threads": threads if threads is not None else report.get("threads", torch.get_num_threads()),
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
    if st_backends:
        from .bench_references import backend_versions

        info["st_backends"] = list(st_backends)
        info.update(backend_versions(st_backends))
    return info


def header_line(env: dict) -> str:
    """One line for a person: "CPU: AVX512-BF16, 2 threads, matmul peak bf16 1.23 / fp32 0.61 TFLOP/s"."""
    on_cpu = env.get("vecplug_device", "cpu") == "cpu"
    where = f"CPU: {env['cpu_kind']}" if on_cpu else f"GPU: {env['device']} (CPU: {env['cpu_kind']})"
    peaks = sorted(env["matmul_peak_tflops"].items(), key=lambda item: -item[1])
    names = " / ".join(PEAK_NAMES.get(name, name) for name, _ in peaks)
    values = " / ".join(f"{value:g}" for _, value in peaks)
    return f"{where}, {env['threads']} threads, matmul peak {names} {values} TFLOP/s"


def reference_name(row: Row) -> str | None:
    """"ST fp32", "ST bf16", "ST onnx", "ST openvino" for a sentence-transformers row; None for vecplug's."""
    if row.engine == "sentence-transformers":
        return f"ST {PEAK_NAMES.get(row.dtype, row.dtype)}"
    if row.engine.startswith("sentence-transformers ("):
        return "ST " + row.engine.split("(", 1)[1].rstrip(")")
    return None


def speed_ups(rows: list[Row]) -> list[dict]:
    """Per row, its speed over each reference of its corpus, and over the fastest reference ("fastest ST")."""
    found = []
    for row in rows:
        references = {reference_name(other): other.seconds for other in rows
                      if other.corpus == row.corpus and reference_name(other)}
        ratios = {name: seconds / row.seconds for name, seconds in references.items()}
        if references:
            ratios["fastest ST"] = min(references.values()) / row.seconds
        found.append(ratios)
    return found


def format_table(rows: list[Row]) -> str:
    """Markdown: one ratio column per reference run (ST fp32 and bf16 always, as before), then "vs fastest ST"."""
    names = ["ST fp32", "ST bf16"]
    names += [name for name in dict.fromkeys(map(reference_name, rows)) if name and name not in names]
    columns = [f"speed-up vs {names[0]}"] + [f"vs {name}" for name in names[1:]] + ["vs fastest ST"]
    lines = [f"| corpus | engine | dtype | docs/s | tokens/s | {' | '.join(columns)} | MFU | min cos vs ST fp32 |",
             "|---|---|---|---:|---:|" + "---:|" * len(columns) + "---:|---:|"]
    for row, ratios in zip(rows, speed_ups(rows)):
        shown = [f"{ratios[name]:.2f}x" if name in ratios else "-" for name in [*names, "fastest ST"]]
        tokens_per_s = f"{row.tokens_per_s:,.0f}" if row.tokens else "-"
        cosine = f"{row.min_cosine:.5f}" if row.min_cosine is not None else "-"
        mfu = f"{100 * row.mfu:.1f}%" if row.mfu is not None else "-"
        lines.append(f"| {row.corpus} | {row.engine} | {row.dtype} | {row.docs_per_s:,.1f} | {tokens_per_s} "
                     f"| {' | '.join(shown)} | {mfu} | {cosine} |")
    return "\n".join(lines)


def to_json(rows: list[Row], env: dict) -> str:
    """The header and every row, with its speed-up over each reference ("ST fp32" ..., "fastest ST")."""
    shown = [asdict(row) | {"docs_per_s": row.docs_per_s, "tokens_per_s": row.tokens_per_s, "speed_up": ratios}
             for row, ratios in zip(rows, speed_ups(rows))]
    return json.dumps({"environment": env, "rows": shown}, indent=2)
