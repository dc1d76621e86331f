"""What adapters write: ``Record`` objects passed through ``vecplug_before_ingest``."""
from __future__ import annotations

import dataclasses
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
    """Where records are going: a database kind and a collection or table name."""

    database: str
    name: str

    def __str__(self) -> str:
        return f"{self.database}:{self.name}"


def before_ingest(records: list[Record], target: Target) -> list[Record]:
    """Run every ``vecplug_before_ingest`` plugin in turn; return what is to be stored.

    Each plugin sees the previous one's output (pluggy would give all of them
    the same input), in pluggy's call order: last registered first.
    """
    load_plugins()
    current = list(records)
    for implementation in reversed(pm.hook.vecplug_before_ingest.get_hookimpls()):
        result = call_implementation(implementation, records=current, target=target)
        if result is None:
            continue
        result = list(result)
        for index, record in enumerate(result):
            if not isinstance(record, Record) or not isinstance(record.text, str):
                raise TypeError(
                    f"vecplug_before_ingest plugin {implementation.plugin_name} returned "
                    f"{record!r} at index {index}; it must return vecplug.Record objects with str text"
                )
        current = result
    return current
