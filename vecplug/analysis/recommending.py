"""The recommend strategy for stores without their own: one query vector from the examples' stored vectors.

It is Qdrant's ``average_vector`` strategy, so the three stores rank alike:
``query = mean(positive) + (mean(positive) - mean(negative))``, or
``mean(positive)`` without negatives, normalised; then the store's own
nearest-neighbour search, never returning a given id. Scores are cosine
similarities to that query vector.
"""
from __future__ import annotations

from collections.abc import Sequence

from ..errors import InvalidSettingError


def check_examples(positive: Sequence, negative: Sequence) -> None:
    """At least one positive, and no id both liked and disliked."""
    if not positive:
        raise InvalidSettingError("recommend needs at least one positive id (items to find more like)")
    both = [item for item in positive if item in set(negative)]
    if both:
        raise InvalidSettingError(f"ids given as both positive and negative: {', '.join(map(str, both))}")


def recommendation_vector(positive_vectors, negative_vectors=()):
    """The unit query vector of the average-vector strategy (see the module docstring)."""
    import numpy as np

    liked = np.mean(np.asarray(positive_vectors, dtype=np.float32), axis=0)
    query = liked
    if len(negative_vectors):
        query = 2 * liked - np.mean(np.asarray(negative_vectors, dtype=np.float32), axis=0)
    norm = float(np.linalg.norm(query))
    if norm == 0.0:
        raise InvalidSettingError("the positive and negative examples cancel out: no direction is left to search")
    return (query / norm).astype(np.float32)


def recommend_by_average(store, positive: Sequence, negative: Sequence, k: int) -> list:
    """Items like ``positive`` and unlike ``negative`` through ``store.nearest``, best first, given ids excluded."""
    check_examples(positive, negative)
    stored = store.vectors([*positive, *negative])  # UnknownIdsError names every id that is not stored
    query = recommendation_vector([stored[item] for item in positive], [stored[item] for item in negative])
    return store.nearest(query, k, exclude=[*positive, *negative])
