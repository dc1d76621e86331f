"""One order for the ids of any store: ``dedup`` reports a pair once, as ``a < b`` in this order.

Stores keep int ids (PostgreSQL keys, Qdrant points), str ids (Chroma,
Qdrant UUIDs, text keys) or both; Python refuses to compare an int with a
str. The order: every int before every str, ints by value, strs by their
code points; anything else (a UUID object, a bigint as Decimal) by its str.
"""
from __future__ import annotations


def id_order_key(item_id) -> tuple:
    """The sort key of an id: ``(0, int)`` for ints, ``(1, str)`` for everything else."""
    if isinstance(item_id, int) and not isinstance(item_id, bool):
        return (0, item_id, "")
    return (1, 0, str(item_id))
