"""One tuning run, start to end: check, measure the base, train, measure the tuned model, write or refuse.

Everything that can be wrong with the input is refused before the model
loads; the model is written (renamed into DIR) only when the tuned
recall@10 beats the base's, or with ``force``.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from ..errors import InvalidSettingError
from .metrics import corpus_of, measure, mine_hard_negatives
from .options import TuneOptions
from .pairs import Pair, split_held_out
from .writing import check_output, publish, staging_folder

TRAINING_COST = 6  # one training text costs about this many inference passes: cached forward, forward, backward


@dataclasses.dataclass
class TuneResult:
    """``base`` and ``tuned``: {"recall@10", "ndcg@10", "queries", "corpus"}; ``path``: DIR, or None if not written."""

    base: dict
    tuned: dict
    path: Path | None
    options: dict
    record: dict

    def to_dict(self) -> dict:
        return {"base": self.base, "tuned": self.tuned, "path": str(self.path) if self.path else None}


def run_tune(pairs: list[Pair], model, out, options: TuneOptions, quiet: bool = False) -> TuneResult:
    """The run; ``quiet``: no plan, estimate or bars on stderr."""
    from ..registry import load_model, resolve

    say = stderr_say(quiet)
    options.check()
    out = check_output(out)
    train_pairs, held_out = split_held_out(pairs, options.eval_fraction, options.seed)
    corpus = corpus_of(pairs)
    if options.hard_negatives and options.hard_negatives > len(corpus_of(train_pairs)) - 2:
        raise InvalidSettingError(f"hard_negatives {options.hard_negatives} is more than the training pairs' "
                                  f"{len(corpus_of(train_pairs))} distinct positives allow: use fewer")
    base = load_model(model, device=options.device)
    directory = getattr(getattr(base, "files", None), "directory", None)
    if directory is None:
        raise InvalidSettingError(f"{base.spec.name} is not a ModernBERT model directory: vecplug tune trains "
                                  "models in the sentence-transformers layout (a hub id or a local folder)")
    spec = base.spec
    resolved = options.resolved(len(train_pairs), spec.dimensions, spec.matryoshka_dims)
    started = time.monotonic()
    corpus_vectors = base.embed_documents(corpus)
    base_metrics = measure(base, held_out, corpus, corpus_vectors)
    texts_per_second = len(corpus) / max(time.monotonic() - started, 1e-3)
    negatives = mine_hard_negatives(base, train_pairs, resolved.hard_negatives) if resolved.hard_negatives else None
    columns = 2 + (train_pairs[0].negative is not None) + resolved.hard_negatives
    estimate = resolved.epochs * len(train_pairs) * columns * TRAINING_COST / texts_per_second
    say(f"tuning {spec.name} on {len(train_pairs)} pairs ({len(held_out)} held out, searched among "
        f"{len(corpus)} positives): {resolved.epochs} epochs, batch size {resolved.batch_size}, learning rate "
        f"{resolved.learning_rate:g}, Matryoshka {','.join(map(str, resolved.matryoshka))}"
        + (f", {resolved.hard_negatives} hard negatives per query" if resolved.hard_negatives else "")
        + f" on {base.device}")
    say(f"estimated training time: about {format_seconds(estimate)} (from this machine's embedding speed; "
        "a rough guide)")
    say(f"base: recall@10 {base_metrics['recall@10']:.3f}, nDCG@10 {base_metrics['ndcg@10']:.3f}")
    from .training import train

    with staging_folder(out) as staging:
        started = time.monotonic()
        train(Path(directory), spec.prompts, spec.max_tokens, train_pairs, negatives, resolved,
              work=staging / "trainer", save_to=staging / "model", quiet=quiet)
        seconds = round(time.monotonic() - started, 1)
        registration = resolve(str(staging / "model"))
        tuned = registration.loader(registration.spec, *registration.loader.placement(options.device, None))
        tuned_metrics = measure(tuned, held_out, corpus)
        record = {
            "base_model": {"name": spec.name, "fingerprint": spec.fingerprint},
            "model": {"fingerprint": tuned.spec.fingerprint, "matryoshka_dims": list(resolved.matryoshka),
                      "any_dimensions": bool(spec.any_dimensions and not options.matryoshka),
                      "max_tokens": spec.max_tokens, "prompts": dict(spec.prompts)},
            "pairs": len(pairs), "train_pairs": len(train_pairs), "held_out_pairs": len(held_out),
            "seed": resolved.seed, "options": options_record(resolved), "training_seconds": seconds,
            "device": str(tuned.device), "base": base_metrics, "tuned": tuned_metrics,
        }
        del tuned
        path = None
        if tuned_metrics["recall@10"] > base_metrics["recall@10"] or resolved.force:
            path = publish(staging / "model", out, record)
    return TuneResult(base_metrics, tuned_metrics, path, options_record(resolved), record)


def options_record(options: TuneOptions) -> dict:
    record = dataclasses.asdict(options)
    record["matryoshka"] = list(options.matryoshka or ())
    return record


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def stderr_say(quiet: bool = False):
    """A ``say`` that writes lines to stderr (none when ``quiet``)."""
    def say(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    return say
