"""``MilvusStore``: a Milvus collection as a ``vecplug.stores.VectorStore`` for search, recommend, cluster, dedup.

Opened by ``vecplug_open_store`` for ``--milvus PATH_OR_URI --collection C``:
a Milvus Lite ``.db`` (it must exist: ``MilvusClient`` would make an empty
one) or a server's http(s) URI. The collection is laid out as
``vecplug_milvus`` writes it (``id``, ``vector`` with a COSINE index,
``document``, dynamic fields). Works on the stored vectors only, through
Milvus's own calls: ``search`` (its score is the cosine similarity),
``get``, ``query_iterator`` (items, in batches), and ``upsert`` with
``partial_update`` (labels as a dynamic field, nothing else rewritten).

pymilvus logs each failed call (with a traceback) before raising it; the
store turns the errors into one line, so it quiets pymilvus's logger while
it calls Milvus.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from vecplug import InvalidSettingError
from vecplug.analysis.clustering import check_label_field
from vecplug.analysis.recommending import recommend_by_average
from vecplug.quiet_logs import loggers_quieted
from vecplug.stores import Hit, StoredItem, StoreNotFoundError, UnknownIdsError, id_as_stored

from . import collection as layout
from .chunks import CHUNK_FIELDS

# Ids per ``get`` or labelled rows per ``upsert``.
IDS_PER_CALL = 1000


def quiet_pymilvus():
    """pymilvus's own error logs off for the block (the store raises what they say, as one line)."""
    return loggers_quieted(("pymilvus",), logging.CRITICAL + 1)


def open_client(location: str):
    """A ``MilvusClient`` for a server URI or an existing Milvus Lite file, with a clear error otherwise."""
    from pymilvus import MilvusClient

    if location.startswith(("http://", "https://", "tcp://")):
        return MilvusClient(uri=location)
    if not Path(location).exists():
        raise StoreNotFoundError(f"there is no Milvus Lite database at {location!r} (--milvus)")
    from .lite import held_elsewhere

    if held_elsewhere(location):
        raise StoreNotFoundError(f"another process holds the Milvus Lite database {location!r} (Milvus Lite "
                                 "serves a file to one process at a time): stop it, or serve the data from a "
                                 "Milvus server")
    with quiet_pymilvus():
        return MilvusClient(location)


class MilvusStore:
    """One collection of a Milvus client (closed, and a Lite file let go, when the store opened them)."""

    def __init__(self, client, name: str, *, text_field: str | None = None, owns_client: bool = False,
                 location: str | None = None):
        self.client, self.name, self._owns_client, self._location = client, name, owns_client, location
        self.description = f"Milvus collection {name!r}" + (f" in {location}" if location else "")
        with quiet_pymilvus():
            if not client.has_collection(name):
                self.close()
                raise StoreNotFoundError(f"there is no {self.description} (--collection)")
            description = client.describe_collection(name)
            layout.ensure_loaded(client, name)
        self._record = layout.recorded(description)
        self._ids_are_integers = layout.id_type_of(description) == "int"
        self.text_field = text_field or layout.TEXT_FIELD

    @classmethod
    def open(cls, location: str, name: str, text_field: str | None = None) -> "MilvusStore":
        return cls(open_client(location), name, text_field=text_field, owns_client=True, location=location)

    def recorded_model(self) -> dict | None:
        if self._record is None:
            return None
        return {**self._record["model"], **({"url": self._record["url"]} if self._record.get("url") else {})}

    def count(self) -> int:
        with quiet_pymilvus():
            [row] = self.client.query(self.name, filter="", output_fields=["count(*)"])
        return int(row["count(*)"])

    def _id(self, value):
        return id_as_stored(value, self._ids_are_integers)

    def nearest(self, vector, k: int, *, where: str | None = None, exclude=()) -> list[Hit]:
        excluded = [item for item in (self._id(value) for value in exclude) if item is not None]
        conditions = [f"({where})"] if where else []
        if excluded:
            conditions.append(f"{layout.ID_FIELD} not in {json.dumps(excluded)}")
        try:
            with quiet_pymilvus():
                found = self.client.search(self.name, [[float(value) for value in vector]], limit=k,
                                           filter=" and ".join(conditions), output_fields=[self.text_field])
        except Exception as error:
            if where is None or type(error).__name__ != "MilvusException":
                raise
            raise InvalidSettingError(f"--where is not a Milvus filter ({' '.join(str(error).split())[:300]}); "
                                      "e.g. 'topic == \"space\"'") from None
        return [Hit(hit["id"], float(hit["distance"]), _text(hit.get("entity"), self.text_field))
                for hit in found[0]]

    def vectors(self, ids) -> dict:
        import numpy as np

        asked = list(ids)
        wanted = {self._id(item): item for item in asked if self._id(item) is not None}
        keys, found = list(wanted), {}
        with quiet_pymilvus():
            for start in range(0, len(keys), IDS_PER_CALL):
                for row in self.client.get(self.name, ids=keys[start:start + IDS_PER_CALL],
                                           output_fields=[layout.VECTOR_FIELD]):
                    found[wanted[row[layout.ID_FIELD]]] = np.asarray(row[layout.VECTOR_FIELD], dtype=np.float32)
        missing = [str(item) for item in asked if item not in found]
        if missing:
            raise UnknownIdsError(f"no row with id {', '.join(missing)} in {self.description}")
        return found

    def recommend(self, positive, negative, k: int) -> list[Hit]:
        return recommend_by_average(self, list(positive), list(negative or ()), k)

    def items(self, batch_size: int = 1000):
        import numpy as np

        fields = [layout.ID_FIELD, layout.VECTOR_FIELD, self.text_field]
        with quiet_pymilvus():  # the iterator warns that Milvus Lite keeps no MVCC timestamp
            iterator = self.client.query_iterator(self.name, batch_size=batch_size, output_fields=fields)
        try:
            while True:
                with quiet_pymilvus():
                    rows = iterator.next()
                if not rows:
                    return
                vectors = np.asarray([row[layout.VECTOR_FIELD] for row in rows], dtype=np.float32)
                vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
                yield [StoredItem(row[layout.ID_FIELD], vector, _text(row, self.text_field))
                       for row, vector in zip(rows, vectors)]
        finally:
            iterator.close()

    def write_labels(self, field: str, labels) -> int:
        """Each label into the dynamic field ``field``: ``upsert`` with ``partial_update``, 1,000 rows a call
        (the vectors and texts stay as they are)."""
        check_label_field(field, (*layout.RESERVED_FIELDS, self.text_field, *CHUNK_FIELDS))
        written, pending = 0, []
        for item_id, label in labels:
            pending.append({layout.ID_FIELD: self._id(item_id), field: int(label)})
            if len(pending) == IDS_PER_CALL:
                written += self._upsert(pending)
                pending = []
        return written + (self._upsert(pending) if pending else 0)

    def _upsert(self, rows: list[dict]) -> int:
        with quiet_pymilvus():
            self.client.upsert(self.name, rows, partial_update=True)
        return len(rows)

    def close(self) -> None:
        if not self._owns_client:
            return
        self.client.close()
        if self._location and not self._location.startswith(("http://", "https://", "tcp://")):
            from .lite import release

            release(self._location)  # Milvus Lite holds the file until its server stops: let other processes in


def _text(entity, field: str) -> str | None:
    text = (entity or {}).get(field)
    return text if isinstance(text, str) else None


def recommend(client, name: str, positive, negative=(), limit: int = 10, *, text_field: str | None = None) -> list:
    """Rows like ``positive`` and unlike ``negative`` (ids) from their stored vectors, best first.

    Returns ``vecplug.stores.Hit`` (``id``, ``score``: cosine similarity to
    the recommendation vector, ``text``: the document), never one of the
    given ids; an id not in the collection raises ``UnknownIdsError``.
    """
    if isinstance(positive, str) or isinstance(negative, str):
        raise TypeError("positive and negative are lists of ids")
    return MilvusStore(client, name, text_field=text_field).recommend(positive, negative, limit)
