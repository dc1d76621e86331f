"""The engine of an older commit against this tree's, in one process, in alternating rounds.

Usage (the old engine is imported as ``vecplug_old``):

    git archive e83094c vecplug | tar -x -C /tmp/old && mv /tmp/old/vecplug /tmp/old/vecplug_old
    python scripts/engine_ab.py --old /tmp/old --paragraphs 192 --long 48 --rounds 4 [--profile]

Both engines embed the same texts with the same tokenizer and model files;
only the forward pass differs. Each round runs both, in alternating order,
and the per-round ratio's median and quartiles are printed, beside MFU (the
bench's model FLOPs over a bf16 matmul measured on the spot) and the min
cosine against this tree's float32 engine. ``--profile`` adds one profiled
pass of each: self CPU time inside the layer products against the rest.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

MATMULS = {"aten::mm", "aten::addmm", "mkldnn::_linear_pointwise"}


def outside_products(model, texts) -> str:
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        model.embed_documents(texts)
    events = profile.key_averages()
    inside = sum(event.self_cpu_time_total for event in events if event.key in MATMULS) / 1e6
    outside = [event for event in events if event.key not in MATMULS]
    top = sorted(outside, key=lambda event: -event.self_cpu_time_total)[:10]
    listed = ", ".join(f"{event.key.split(':')[-1]} {event.self_cpu_time_total / 1e6:.3f}" for event in top)
    return (f"products {inside:.3f} s, the rest {sum(e.self_cpu_time_total for e in outside) / 1e6:.3f} s "
            f"(top ten: {listed})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="folder holding the old commit's package as vecplug_old")
    parser.add_argument("--shape", default="base")
    parser.add_argument("--paragraphs", type=int, default=192)
    parser.add_argument("--long", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    import torch

    sys.path.insert(0, args.old)
    from vecplug_old.modernbert.encoder import UnpaddedModernBert as OldEncoder

    from vecplug.bench import bench_model_dir, corpora, measure_matmul_peak
    from vecplug.registry import load_model

    directory = bench_model_dir(args.shape)
    new = load_model(str(directory))
    old = copy.copy(new)  # same tokenizer and settings, the old forward pass
    old.encoder = OldEncoder(directory, new.encoder.device, new.encoder.dtype)
    exact = load_model(str(directory), dtype="fp32")
    peak = measure_matmul_peak(torch.bfloat16)
    print(f"bf16 matmul peak {peak / 1e12:.3f} TFLOP/s, {torch.get_num_threads()} threads, {new.describe()['dtype']}")
    texts_by_corpus = corpora("cpu")
    for corpus, count in (("paragraphs", args.paragraphs), ("long", args.long)):
        texts = texts_by_corpus[corpus][:count]
        if not texts:
            continue
        reference = exact.embed_documents(texts)
        flops = new.forward_flops(new.token_counts(texts, "document"))
        engines = {"old": old, "new": new}
        for model in engines.values():
            model.embed_documents(texts[:32])
        best, vectors, ratios = {"old": float("inf"), "new": float("inf")}, {}, []
        for number in range(args.rounds):
            took = {}
            for label in (("old", "new") if number % 2 == 0 else ("new", "old")):
                start = time.perf_counter()
                vectors[label] = engines[label].embed_documents(texts)
                took[label] = time.perf_counter() - start
                best[label] = min(best[label], took[label])
            ratios.append(took["old"] / took["new"])
        low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else (ratios[0],) * 3
        print(f"{corpus} ({len(texts)} texts): new/old speed median {statistics.median(ratios):.3f}x "
              f"(quartiles {low:.3f}-{high:.3f}, {len(ratios)} rounds)")
        for label in ("old", "new"):
            cosine = float((vectors[label] * reference).sum(1).min())
            print(f"  {label}: best {best[label]:.3f} s, MFU {100 * flops / best[label] / peak:.1f}%, "
                  f"min cos vs fp32 {cosine:.6f}")
            if args.profile:
                print(f"    {outside_products(engines[label], texts)}")


if __name__ == "__main__":
    main()
