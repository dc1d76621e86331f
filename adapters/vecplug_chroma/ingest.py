"""``add`` / ``upsert``: write to a Chroma collection through ``vecplug_before_ingest``.

An embedding function only ever sees texts, and Chroma stores the
documents and metadata it was handed, so a plugin that redacts or enriches
records must run before Chroma is called; these helpers do that.

Everything is checked before Chroma is called, and Chroma itself checks,
embeds and only then writes, so a failed call leaves the collection as it was.
Import-light: chromadb is only touched through the collection passed in.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

import vecplug
from vecplug.model import check_texts

from .checks import check_collection


def add(collection, documents, ids=None, metadatas=None) -> list[str]:
    """Add documents to ``collection`` after the ingest plugins; return the stored ids.

    ``ids=None`` generates random ids (``uuid4().hex``), so adding the same
    text twice stores it twice; pass your own ids to make writes repeatable.
    """
    return _write(collection, "add", documents, ids, metadatas)


def upsert(collection, documents, ids=None, metadatas=None) -> list[str]:
    """Insert or replace documents by id after the ingest plugins; return the stored ids.

    Without ``ids`` nothing can match an existing record (ids are random
    ``uuid4().hex``): pass ids to replace.
    """
    return _write(collection, "upsert", documents, ids, metadatas)


def _write(collection, operation: str, documents, ids, metadatas) -> list[str]:
    documents = _check_documents(documents, operation)
    ids = _check_ids(ids, len(documents))
    metadatas = _check_metadatas(metadatas, len(documents))
    check_collection(collection)
    records = [
        vecplug.Record(id=record_id, text=text, metadata=dict(metadata or {}))
        for record_id, text, metadata in zip(ids, documents, metadatas)
    ]
    records = vecplug.before_ingest(records, vecplug.Target("chroma", collection.name))
    if not records:  # every record dropped by a plugin: nothing to write
        return []
    stored_ids = _check_ids([record.id for record in records], len(records), source="after vecplug_before_ingest")
    # Chroma refuses empty metadata dicts; None means "no metadata" to it
    stored_metadatas = [record.metadata or None for record in records]
    write = getattr(collection, operation)
    write(
        ids=stored_ids,
        documents=[record.text for record in records],
        metadatas=stored_metadatas if any(stored_metadatas) else None,
    )
    return stored_ids


def _check_documents(documents, operation: str) -> list[str]:
    if documents is None:
        raise TypeError("documents is None; pass a list of str")
    documents = check_texts(documents)  # TypeError naming the first bad index
    if not documents:
        raise ValueError(f"documents is empty; nothing to {operation}")
    return documents


def _check_ids(ids, count: int, source: str = "") -> list[str]:
    where = f" {source}" if source else ""
    if ids is None:
        return [uuid.uuid4().hex for _ in range(count)]
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise TypeError(f"ids{where} must be a list of str, got {type(ids).__name__}")
    if len(ids) != count:
        raise ValueError(f"ids{where} has {len(ids)} items but there are {count} documents")
    for index, record_id in enumerate(ids):
        if not isinstance(record_id, str) or not record_id:
            raise TypeError(f"id at index {index}{where} is {record_id!r}; Chroma ids must be non-empty str")
    seen: set[str] = set()
    duplicates = sorted({record_id for record_id in ids if record_id in seen or seen.add(record_id)})
    if duplicates:
        raise ValueError(f"ids{where} repeat {', '.join(map(repr, duplicates[:5]))}; each id must be unique")
    return list(ids)


def _check_metadatas(metadatas, count: int) -> list:
    if metadatas is None:
        return [None] * count
    if isinstance(metadatas, Mapping) or not isinstance(metadatas, Sequence):
        raise TypeError(f"metadatas must be a list of dicts (one per document), got {type(metadatas).__name__}")
    if len(metadatas) != count:
        raise ValueError(f"metadatas has {len(metadatas)} items but there are {count} documents")
    for index, metadata in enumerate(metadatas):
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata at index {index} is {type(metadata).__name__}, expected a dict or None")
    return list(metadatas)
