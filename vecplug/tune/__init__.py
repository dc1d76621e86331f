"""``vecplug.tune``: fine-tune a ModernBERT embedding model on your own (query, positive) pairs.

    result = vecplug.tune(pairs, model="nomic-ai/modernbert-embed-base", out="tuned-model")
    result.base, result.tuned   # {"recall@10", "ndcg@10", ...} on held-out queries
    result.path                 # the written directory, or None when the tuned model did not win

Import-light: sentence-transformers, torch and datasets load when a run starts.
Modules: ``pairs`` (reading, checks, the held-out split), ``options``
(defaults that learn), ``metrics`` (recall/nDCG, hard negatives),
``training`` (sentence-transformers), ``writing`` (staging and the final
rename), ``run`` (one run), ``cli`` (the ``vecplug tune`` command).
"""
from __future__ import annotations

from typing import Iterable

from .pairs import Pair, pairs_from_iterable

__all__ = ["Pair", "tune"]


def tune(pairs: Iterable, model: str | None = None, out=None, *, epochs: int | None = None,
         batch_size: int | None = None, learning_rate: float | None = None, matryoshka=None,
         hard_negatives: int = 0, eval_fraction: float = 0.1, seed: int = 0, force: bool = False,
         device: str | None = None, quiet: bool = False):
    """Fine-tune ``model`` (default: vecplug's default model) on ``pairs`` and write it to ``out`` if it wins.

    ``pairs``: dicts with "query", "positive" and optionally "negative", or
    tuples in that order; at least 16. A seeded ``eval_fraction`` of the
    queries is held out; recall@10 and nDCG@10 are measured on them before
    and after training. ``out`` is written only when the tuned recall@10 beats
    the base's (or with ``force=True``); otherwise ``.path`` is None and
    nothing is written. Bad input raises ``vecplug.InvalidSettingError``
    before any training. ``None`` options are chosen from the data and the
    model (shown on stderr before training unless ``quiet``).
    """
    from ..errors import InvalidSettingError
    from .options import TuneOptions
    from .run import run_tune

    if out is None:
        raise InvalidSettingError("out is required: the folder to write the tuned model to")
    options = TuneOptions(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                          matryoshka=tuple(matryoshka) if matryoshka else None, hard_negatives=hard_negatives,
                          eval_fraction=eval_fraction, seed=seed, force=force, device=device)
    options.check()
    return run_tune(pairs_from_iterable(pairs), model, out, options, quiet)
