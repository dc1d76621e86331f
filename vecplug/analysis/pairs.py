"""``dedup``: every pair of stored items at least ``threshold`` alike, found through the store's own index.

Row by row: for each streamed item, ``store.nearest(its vector, k,
exclude=[its id])``; while the k-th neighbour is still at least the
threshold there may be more, so k doubles and the item is asked again. A
pair is reported once, as ``a < b`` in ``id_order_key`` order, the first
time either side finds it (an approximate index may find it from one side
only). Memory: one batch of items, and the pairs already reported (the
output itself), never every row.
"""
from __future__ import annotations

from collections.abc import Iterator

from ..errors import InvalidSettingError
from .ids import id_order_key

FIRST_K = 10  # neighbours asked first; most items have fewer duplicates than this


def check_threshold(threshold: float) -> float:
    if not isinstance(threshold, (int, float)) or not -1.0 <= threshold <= 1.0:
        raise InvalidSettingError(f"the threshold is a cosine similarity, between -1 and 1; got {threshold!r}")
    return float(threshold)


def neighbours_above(store, item, threshold: float, first_k: int = FIRST_K) -> list:
    """Every neighbour of ``item`` whose score is at least ``threshold`` (k grows until the k-th falls below)."""
    k = first_k
    while True:
        hits = store.nearest(item.vector, k, exclude=[item.id])
        if len(hits) < k or hits[-1].score < threshold:
            return [hit for hit in hits if hit.score >= threshold]
        k *= 2


def duplicate_pairs(store, threshold: float = 0.95, *, batch_size: int = 1000,
                    on_progress=None) -> Iterator[dict]:
    """Yield ``{"a", "b", "score"}`` for every pair at least ``threshold`` alike, each once, ``a < b``.

    ``on_progress(n)`` is called after each batch of ``n`` items (a progress bar).
    """
    threshold = check_threshold(threshold)
    reported: set = set()
    for batch in store.items(batch_size):
        for item in batch:
            for hit in neighbours_above(store, item, threshold):
                a, b = sorted((item.id, hit.id), key=id_order_key)
                pair = (id_order_key(a), id_order_key(b))
                if pair in reported:
                    continue
                reported.add(pair)
                yield {"a": a, "b": b, "score": float(hit.score)}
        if on_progress is not None:
            on_progress(len(batch))
