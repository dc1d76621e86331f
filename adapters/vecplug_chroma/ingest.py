"""``add`` / ``upsert``: write to a Chroma collection through ``vecplug_before_ingest``.

An embedding function only ever sees texts, and Chroma stores the
documents and metadata it was handed, so a plugin that redacts or enriches
records must run before Chroma is called; these helpers do that.

The input is checked whole before the first write: documents, ids,
metadata (with Chroma's own validator), and for ``add`` that no id is in
the collection already (Chroma would keep the old record and drop the new
one silently). Then it goes in batches Chroma accepts (its
``get_max_batch_size()``, at most ``WRITE_BATCH``): each batch through the
plugins, their output checked the same way, embedded by Chroma and
written, so memory holds one batch of records and vectors. What can fail
after the first write: a plugin's output in a later batch, or Chroma
itself (a server going down); the exception then notes how many records
were stored, and the same call with ``upsert`` finishes the job.
With ``chunk_tokens`` each document the plugins return is stored as
chunk records (``chunks.py``): the plugins see whole documents, and the
chunks are cut from the text they return.
Import-light: chromadb is only touched through the collection passed in.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

import vecplug
from vecplug.model import check_texts

from .checks import check_collection
from .chunks import ChunkSettings, chunk_records, chunking_model, existing_sources, refuse_chunk_fields, sources_where

# Records per Chroma write: one batch of vectors in memory at a time, far below Chroma's limits (5,461 locally).
WRITE_BATCH = 1000


def add(collection, documents, ids=None, metadatas=None, *, chunk_tokens=None, overlap_tokens=0,
        late=False) -> list[str]:
    """Add documents to ``collection`` after the ingest plugins; return the stored ids.

    ``ids=None`` generates random ids (``uuid4().hex``), so adding the same
    text twice stores it twice; pass your own ids to make writes repeatable.

    ``chunk_tokens``: store each document as chunk records (see
    ``vecplug_chroma.chunks``): ids ``f"{id}#{i}"``, the chunk text as the
    record's document, vectors from the collection's vecplug model's
    ``embed_chunks(texts, chunk_tokens, overlap_tokens, late)``, metadata
    plus ``source_id``, ``chunk_index``, ``chunk_start``, ``chunk_end``.
    Returns the chunk ids. Like every ``add``, it refuses an id the
    collection has (as a record or as chunks): ``upsert`` replaces.
    """
    chunking = ChunkSettings.of(chunk_tokens, overlap_tokens, late)  # bad settings fail before any work
    return _write(collection, "add", documents, ids, metadatas, chunking)


def upsert(collection, documents, ids=None, metadatas=None, *, chunk_tokens=None, overlap_tokens=0,
           late=False) -> list[str]:
    """Insert or replace documents by id after the ingest plugins; return the stored ids.

    Without ``ids`` nothing can match an existing record (ids are random
    ``uuid4().hex``): pass ids to replace.

    ``chunk_tokens``: chunk records as in ``add``. Each batch's documents
    lose everything stored under their ids (their chunk records, by
    ``source_id``, and a whole-document record with the id) before their
    new chunks are written: a shorter text leaves no stale chunk, a
    whitespace-only one leaves none. The vectors are computed before that
    delete, so a model or plugin error changes nothing; a Chroma failure
    between the delete and the write leaves those documents absent (never
    old and new chunks mixed), and the same call again finishes the job.
    """
    chunking = ChunkSettings.of(chunk_tokens, overlap_tokens, late)
    return _write(collection, "upsert", documents, ids, metadatas, chunking)


def _write(collection, operation: str, documents, ids, metadatas, chunking: ChunkSettings | None = None) -> list[str]:
    documents = _check_documents(documents, operation)
    ids = _check_ids(ids, len(documents))
    metadatas = _check_metadatas(metadatas, len(documents))
    if chunking is not None:
        for index, metadata in enumerate(metadatas):
            refuse_chunk_fields(metadata, f"metadata at index {index}")
    _validate_metadatas(metadatas, ids)
    check_collection(collection)
    model = chunking_model(collection) if chunking is not None else None
    batch_size = write_batch_size(collection)
    if operation == "add":
        _refuse_existing_ids(collection, ids, batch_size, chunked=chunking is not None)
    target = vecplug.Target("chroma", collection.name)
    stored: list[str] = []
    for start in range(0, len(documents), batch_size):
        records = [
            vecplug.Record(id=record_id, text=text, metadata=dict(metadata or {}))
            for record_id, text, metadata in zip(ids[start : start + batch_size], documents[start : start + batch_size],
                                                 metadatas[start : start + batch_size])
        ]
        try:
            records = _after_plugins(collection, operation, records, target, ids[start : start + batch_size], stored,
                                     chunked=chunking is not None)
            if not records:
                continue
            if chunking is not None:
                stored.extend(_write_chunks(collection, operation, records, model, chunking, batch_size))
                continue
            _write_batch(collection, operation, records)
        except Exception as error:
            if stored and hasattr(error, "add_note"):  # Python 3.11+
                error.add_note(
                    f"vecplug_chroma.{operation}: {len(stored)} records were stored before this batch failed; "
                    "upsert the same ids again to finish"
                )
            raise
        stored.extend(record.id for record in records)
    return stored


def _after_plugins(collection, operation: str, records: list, target, input_ids: list[str], stored: list[str],
                   chunked: bool = False):
    """One batch through ``vecplug_before_ingest``, and what it returned checked like the input was."""
    records = vecplug.before_ingest(records, target)
    if not records:  # every record dropped by a plugin: nothing to write
        return records
    batch_ids = _check_ids([record.id for record in records], len(records), source="after vecplug_before_ingest")
    check_texts([record.text for record in records])
    if chunked:
        for record in records:
            refuse_chunk_fields(record.metadata, f"metadata of {record.id!r} after vecplug_before_ingest")
    _validate_metadatas([record.metadata for record in records], batch_ids)
    new_ids = set(batch_ids) - set(input_ids)  # plugins may rename or add records: check those too
    if new_ids:
        again = sorted(new_ids & set(stored))
        if again:
            raise ValueError(f"vecplug_before_ingest returned ids already written by this call: {again[:5]}")
        if operation == "add":
            _refuse_existing_ids(collection, sorted(new_ids), len(new_ids), chunked=chunked)
    return records


def _write_chunks(collection, operation: str, records: list, model, chunking: ChunkSettings, batch_size: int) -> list:
    """Embed one batch's chunks, then (upsert) delete what its ids stored before, then write the chunks."""
    built = chunk_records(model, records, chunking)  # before any delete: a model error changes nothing
    if operation == "upsert":
        source_ids = [record.id for record in records]
        collection.delete(where=sources_where(source_ids))
        collection.delete(ids=source_ids)
    for arguments in built.slices(batch_size):
        getattr(collection, operation)(**arguments)
    return built.ids


def _write_batch(collection, operation: str, records: list) -> None:
    """Chroma embeds (the collection's function, document prompt) and writes one batch."""
    # Chroma refuses empty metadata dicts; None means "no metadata" to it
    metadatas = [record.metadata or None for record in records]
    getattr(collection, operation)(
        ids=[record.id for record in records],
        documents=[record.text for record in records],
        metadatas=metadatas if any(metadatas) else None,
    )


def write_batch_size(collection) -> int:
    """Records per write: what this Chroma accepts in one call (``get_max_batch_size``), at most ``WRITE_BATCH``."""
    client = getattr(collection, "_client", None)  # Chroma keeps no public handle on a collection's client
    try:
        limit = int(client.get_max_batch_size())
    except Exception:  # an older or unusual client: stay well under every known limit
        limit = WRITE_BATCH
    return max(1, min(limit, WRITE_BATCH))


def _refuse_existing_ids(collection, ids: list[str], batch_size: int, chunked: bool = False) -> None:
    """``add`` of an id Chroma already has is silently ignored by Chroma: refuse it before embedding anything.

    ``chunked``: an id whose chunk records are stored counts as there too.
    """
    existing: list[str] = []
    for start in range(0, len(ids), batch_size):
        existing += collection.get(ids=ids[start : start + batch_size], include=[])["ids"]
    if chunked:
        existing = list(dict.fromkeys(existing + existing_sources(collection, ids, batch_size)))
    if existing:
        shown = ", ".join(map(repr, existing[:5])) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise ValueError(
            f"{len(existing)} of these ids are already in collection {collection.name!r} ({shown}); "
            "Chroma would keep the stored records and drop these. Use vecplug_chroma.upsert to replace "
            "them, or pass new ids. Nothing was written."
        )


def _validate_metadatas(metadatas, ids) -> None:
    """Chroma's own metadata rules (no nested dicts ...), for every record before anything is written."""
    from chromadb.api.types import validate_metadata

    for index, (metadata, record_id) in enumerate(zip(metadatas, ids)):
        if metadata:
            try:
                validate_metadata(dict(metadata))
            except (TypeError, ValueError) as error:
                raise type(error)(f"metadata at index {index} ({record_id!r}): {error}") from error


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
