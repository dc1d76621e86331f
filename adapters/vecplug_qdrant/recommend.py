"""Qdrant's own recommend API for the embedders: arguments and the check that every example id exists.

``RecommendQuery`` with the ``average_vector`` strategy (the one the other
stores copy, ``vecplug.analysis.recommending``): Qdrant averages the
positives' stored vectors, pushes away from the negatives' and never returns
an example. Unknown ids are refused first, all of them named at once
(Qdrant itself stops at the first with "Point ... is not found").
"""
from __future__ import annotations

from collections.abc import Sequence

from vecplug.analysis.recommending import check_examples
from vecplug.stores import UnknownIdsError


def coerce_id(item_id):
    """A point id as Qdrant keeps it: digits (a command-line argument) become an int, UUIDs stay str."""
    if isinstance(item_id, str) and item_id.isdigit():
        return int(item_id)
    return item_id


def examples(positive: Sequence, negative: Sequence) -> tuple[list, list]:
    if isinstance(positive, (str, int)) or isinstance(negative, (str, int)):
        raise TypeError("positive and negative are lists of point ids")
    positive, negative = [coerce_id(item) for item in positive], [coerce_id(item) for item in negative or ()]
    check_examples(positive, negative)
    return positive, negative


def missing_ids(asked: list, found_points) -> None:
    """Raise UnknownIdsError naming every asked id that ``retrieve`` did not return."""
    found = {str(point.id) for point in found_points}
    missing = [item for item in asked if str(item) not in found]
    if missing:
        raise UnknownIdsError(f"no point with id {', '.join(map(str, missing))} in this collection")


def query_arguments(positive: list, negative: list, vector_name: str, limit: int, query_filter=None,
                    with_payload=True, **options) -> dict:
    from qdrant_client import models

    recommend = models.RecommendInput(positive=positive, negative=negative or None,
                                      strategy=models.RecommendStrategy.AVERAGE_VECTOR)
    return {"query": models.RecommendQuery(recommend=recommend), "using": vector_name, "limit": limit,
            "query_filter": query_filter, "with_payload": with_payload, **options}
