"""What adapters write: ``Record`` objects passed through ``vecplug_before_ingest``.

One policy for every adapter, enforced here rather than by each of them:
a plugin may change a record's text and metadata, drop records, and add
records, but what it returns must have unique ids, and a target whose
records are rows that already exist (``accepts_new_ids=False``: a
PostgreSQL vectorizer writes vectors into its table's rows) takes only ids
it was given. Stores that create an entry per id (Chroma, Qdrant) accept
new ones: that is how a plugin splits a document into passages.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

from .plugins import call_implementation, load_plugins, pm


@dataclasses.dataclass
class Record:
    """One item on its way into a database: its id, its text, its metadata."""

    id: Any
    text: str
    metadata: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Target:
    """Where records are going: a database kind, a collection or table name, and whether it takes new ids."""

    database: str
    name: str
    accepts_new_ids: bool = dataclasses.field(default=True, compare=False)

    def __str__(self) -> str:
        return f"{self.database}:{self.name}"


def before_ingest(records: list[Record], target: Target) -> list[Record]:
    """Run every ``vecplug_before_ingest`` plugin in turn; return what is to be stored.

    Each plugin sees the previous one's output (pluggy would give all of them
    the same input), in pluggy's call order: last registered first.
    """
    load_plugins()
    current = list(records)
    given_ids = {_id_key(record.id) for record in current}
    for implementation in reversed(pm.hook.vecplug_before_ingest.get_hookimpls()):
        result = call_implementation(implementation, records=current, target=target)
        if result is None:
            continue
        current = _checked(list(result), implementation.plugin_name, target, given_ids)
    return current


def _checked(records: list, plugin: str, target: Target, given_ids: set) -> list[Record]:
    """What one plugin returned, held to the policy in the module docstring."""
    seen = set()
    for index, record in enumerate(records):
        if not isinstance(record, Record) or not isinstance(record.text, str):
            raise TypeError(
                f"vecplug_before_ingest plugin {plugin} returned {record!r} at index {index}; "
                "it must return vecplug.Record objects with str text"
            )
        key = _id_key(record.id)
        if key in seen:
            raise ValueError(
                f"vecplug_before_ingest plugin {plugin} returned two records with id {record.id!r}; "
                "ids must stay unique (give an added record an id of its own)"
            )
        seen.add(key)
        if not target.accepts_new_ids and key not in given_ids:
            raise ValueError(
                f"vecplug_before_ingest plugin {plugin} returned a record with id {record.id!r} that was not "
                f"in the batch; {target} stores vectors in existing rows, so a plugin may change or drop "
                "its records but not add any"
            )
    return records


def _id_key(record_id):
    """The id itself, or its repr when it cannot be hashed (the adapter's own id check names that problem)."""
    try:
        hash(record_id)
    except TypeError:
        return ("unhashable", repr(record_id))
    return record_id


def batched(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    """Lists of up to ``size`` records; a full list is handed on only once the next record reads cleanly.

    That one-record look-ahead makes every input error (a bad item, ids that
    run out or are left over) surface before the batch it ends is yielded,
    so no batch is ever half made of a broken input.
    """
    batch: list[Record] = []
    for record in records:
        if len(batch) == size:
            yield batch
            batch = []
        batch.append(record)
    if batch:
        yield batch
