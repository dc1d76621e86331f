"""What ``vecplug search``, ``recommend``, ``cluster`` and ``dedup`` need from a store.

The core knows no database. The commands build a ``StoreSelection`` from the
one set of store options every command shares (``--dsn/--table``,
``--chroma/--collection``, ``--qdrant/--collection``, ``--milvus/--collection``,
``--lancedb/--table``)
and ask the adapters,
through the ``vecplug_open_store`` hook, to open it; the adapter whose
option is set returns a ``VectorStore`` and the others return None. The
commands then work only through this Protocol, on the vectors already
stored (no re-embedding), through each database's own index: a store never
hands over every vector at once, it streams them in batches.

Scores are cosine similarities, higher is better, whatever distance the
store keeps internally (PostgreSQL's ``<=>``, Chroma's and LanceDB's cosine
distances are ``1 - score``; Milvus's COSINE score is the score).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import VecplugError

if TYPE_CHECKING:
    import numpy as np


class UnknownIdsError(VecplugError, LookupError):
    """Ids the user named are not in the store (the message lists them)."""


class StoreNotFoundError(VecplugError, LookupError):
    """The table or collection the user named does not exist (the message names it)."""


def id_as_stored(value, integer_ids: bool):
    """An id as a store with ``integer_ids`` (or text ids) keeps it: the command line gives every id as a str,
    and numpy's ints are not ints to a filter's literals; None for a value an integer key cannot hold."""
    if not integer_ids:
        return str(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclasses.dataclass(frozen=True)
class StoreSelection:
    """The store options of a command, as the user gave them (None: not given)."""

    dsn: str | None = None           # "": libpq's PG* environment variables
    table: str | None = None
    column: str | None = None        # vector column; None: the vectorizer's, else "embedding"
    text_column: str | None = None   # None: the vectorizer's source column, else "body"
    id_column: str | None = None     # None: the table's primary key
    chroma: str | None = None        # a folder (PersistentClient) or an http(s) URL
    qdrant: str | None = None        # a folder (local mode) or an http(s) URL
    collection: str | None = None
    lancedb: str | None = None       # a database folder or a LanceDB URI (with table)
    milvus: str | None = None        # a Milvus Lite .db or a server URI (with collection)


@dataclasses.dataclass(frozen=True)
class Hit:
    """One stored item: its id, its cosine similarity to what was asked (higher is better), its text."""

    id: Any
    score: float
    text: str | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "score": self.score, "text": self.text}


@dataclasses.dataclass(frozen=True)
class StoredItem:
    """An item as streamed for cluster and dedup: id, unit-length float32 vector, text (may be None)."""

    id: Any
    vector: "np.ndarray"
    text: str | None = None


@runtime_checkable
class VectorStore(Protocol):
    """A table or collection of stored vectors, opened by an adapter's ``vecplug_open_store``."""

    description: str  # for messages and headers: "table public.docs", "Chroma collection 'notes' in ./db"

    def recorded_model(self) -> "dict | None":
        """The model the store recorded (``ModelSpec.to_dict()``-like, with "name"), or None if it recorded none."""

    def count(self) -> int:
        """How many items hold a vector (for progress bars and the choice of a clustering strategy)."""

    def nearest(self, vector: "np.ndarray", k: int, *, where: "str | None" = None,
                exclude: Sequence = ()) -> "list[Hit]":
        """The ``k`` items nearest ``vector`` through the store's index, best first, never one in ``exclude``.

        ``where`` is the store's own filter syntax (SQL condition, Chroma
        ``where`` JSON, Qdrant filter JSON, Milvus expression, LanceDB SQL
        filter); the adapter
        parses and checks it.
        """

    def vectors(self, ids: Sequence) -> "dict[Any, np.ndarray]":
        """The stored vectors of ``ids``; raises ``UnknownIdsError`` naming every id that is not stored."""

    def recommend(self, positive: Sequence, negative: Sequence, k: int) -> "list[Hit]":
        """Items like ``positive`` and unlike ``negative`` (ids), best first, never one of the given ids."""

    def items(self, batch_size: int = 1000) -> "Iterator[list[StoredItem]]":
        """Every item with a vector, in batches of at most ``batch_size``: memory stays flat in the row count."""

    def write_labels(self, field: str, labels: "Iterator[tuple[Any, int]]") -> int:
        """Store an int label per id in ``field`` (a column, metadata key or payload key); returns how many."""

    def close(self) -> None: ...
