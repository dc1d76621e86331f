"""Documents to Qdrant points, lazily: records in batches, through the plugins, then the model.

Input is read, and ``vecplug_before_ingest`` runs, in the caller's thread and
one batch at a time: a generator over a database cursor or a file works, and
memory holds a batch, never the stream.

With chunking (``ChunkSettings``), each record the plugins return is a source
document: it becomes one point per chunk (``chunk_points_of_batch``), and
the batch also names its source ids, whose old points the writer deletes
before writing the new ones.
"""
from __future__ import annotations

import dataclasses
import numbers
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Collection, Iterable, Iterator, Mapping

from vecplug import Record, Target, before_ingest
from vecplug.chunking import ChunkSettings
from vecplug.model import check_text

DATABASE = "qdrant"
# uuid5 namespace of generated point ids; changing it would change every generated id
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "vecplug:qdrant:document")
# uuid5 namespace of chunk point ids (see ``chunk_id``); changing it would change every chunk's id
CHUNK_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "vecplug:qdrant:chunk")
# The payload keys a chunk point carries about its place in its document (the text goes under text_field).
CHUNK_FIELDS = ("source_id", "chunk_index", "chunk_start", "chunk_end")
_MISSING = object()


def document_id(text: str) -> str:
    """The id a document gets when none is given: uuid5 of its text.

    Deterministic, so that running an interrupted ingestion again overwrites
    the points it already wrote instead of adding copies. The price: equal
    texts share one point (the last payload wins); pass ids to keep them apart.
    """
    return str(uuid.uuid5(ID_NAMESPACE, text))


def chunk_id(source_id, chunk_index: int) -> str:
    """The point id of chunk ``chunk_index`` of document ``source_id``: uuid5 of ``f"{source_id}#{chunk_index}"``.

    Qdrant ids must be integers or UUIDs, so a chunk cannot be ``"doc#3"``
    as in Chroma; a uuid5 of it is deterministic, so writing a document
    again overwrites its chunks instead of adding copies. ``source_id`` is
    the document's id as Qdrant stores it (an int, or a UUID in canonical
    form): an int and a UUID never spell the same string.
    """
    return str(uuid.uuid5(CHUNK_ID_NAMESPACE, f"{source_id}#{chunk_index}"))


@dataclasses.dataclass
class ChunkBatch:
    """One batch's chunk points, and every source id it wrote (also those whose text gave no chunk)."""

    source_ids: list
    points: list


def check_id(point_id, where: str):
    """The id as Qdrant stores it: an unsigned 64-bit int, or a UUID in canonical form; else ValueError.

    Canonical because Qdrant answers with the canonical form ("{A1...}" and
    "a1..." without hyphens come back as "a1...-..."): the ids vecplug
    returns are then the ids the collection holds.
    """
    if isinstance(point_id, uuid.UUID):
        return str(point_id)
    if isinstance(point_id, numbers.Integral) and not isinstance(point_id, bool) and 0 <= point_id < 2**64:
        return int(point_id)  # numpy integers are not JSON
    if isinstance(point_id, str):
        try:
            return str(uuid.UUID(point_id))
        except ValueError:
            pass
    raise ValueError(
        f"{where} is {point_id!r}: Qdrant point ids are unsigned integers or UUIDs (integers from 0 to "
        "2**64 - 1; UUIDs as str or uuid.UUID). Map other keys to one (e.g. uuid.uuid5(namespace, key)) "
        "and keep the key in the payload."
    )


def check_payload(payload, index: int) -> dict:
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        raise TypeError(
            f"payload at index {index} is {type(payload).__name__} ({payload!r:.60}); "
            "each payload must be a dict (or None for none)"
        )
    return dict(payload)  # a copy: plugins may change it, the caller's dict stays as it was


def refuse_chunk_fields(payload: Mapping, where: str) -> None:
    """A chunked write sets ``CHUNK_FIELDS`` itself; a payload that has them would be overwritten."""
    taken = [key for key in CHUNK_FIELDS if key in payload]
    if taken:
        raise ValueError(
            f"{where} has {', '.join(map(repr, taken))}: chunk points keep their place in the document "
            f"under {', '.join(CHUNK_FIELDS)}; rename those payload keys"
        )


def check_inputs(documents, ids, payloads, *, allow_async: bool = False, chunking: ChunkSettings | None = None) -> None:
    """Check what can be checked before anything is embedded or written.

    Lists (any sized, re-iterable collection) are checked whole: lengths and
    every item, so a mistake at the end costs nothing. Generators can only be
    checked as they are read (see ``iter_records``). ``allow_async``: async
    iterables are accepted too (the async embedder reads them). With
    ``chunking``, payloads must leave the chunk fields to vecplug.
    """
    if documents is None:
        raise TypeError("documents must be a list or iterable of str, got None")
    for name, value in (("documents", documents), ("ids", ids), ("payloads", payloads)):
        if isinstance(value, (str, bytes, Mapping)):
            raise TypeError(
                f"{name} must be a list or iterable with one item per document, not a single "
                f"{type(value).__name__}; wrap it in a list"
            )
        readable = isinstance(value, Iterable) or (allow_async and isinstance(value, AsyncIterable))
        if value is not None and not readable:
            kinds = "list, iterable or async iterable" if allow_async else "list or iterable"
            raise TypeError(f"{name} must be a {kinds}, got {type(value).__name__}")
    if not isinstance(documents, Collection):
        return
    for name, value in (("ids", ids), ("payloads", payloads)):
        if isinstance(value, Collection) and len(value) != len(documents):
            raise ValueError(
                f"{len(documents)} documents but {len(value)} {name}: pass exactly one per document, or none"
            )
    for index, text in enumerate(documents):
        check_text(text, index)
    if isinstance(ids, Collection):
        for index, point_id in enumerate(ids):
            check_id(point_id, f"id at index {index}")
    if isinstance(payloads, Collection):
        for index, payload in enumerate(payloads):
            checked = check_payload(payload, index)
            if chunking is not None:
                refuse_chunk_fields(checked, f"payload at index {index}")


def _next_or_fail(stream: Iterator, name: str, index: int):
    value = next(stream, _MISSING)
    if value is _MISSING:
        raise _ran_out(name, index)
    return value


def make_record(index: int, text, point_id=_MISSING, payload=_MISSING) -> Record:
    """One checked record; ``_MISSING`` id: uuid5 of the text, ``_MISSING`` payload: none."""
    check_text(text, index)
    point_id = document_id(text) if point_id is _MISSING else check_id(point_id, f"id at index {index}")
    return Record(point_id, text, {} if payload is _MISSING else check_payload(payload, index))


def _ran_out(name: str, index: int) -> ValueError:
    return ValueError(f"{name} ran out at index {index} while documents go on: pass exactly one per document")


def _left_over(name: str, count: int) -> ValueError:
    return ValueError(f"{name} go on after the {count} documents ended: pass exactly one per document")


def iter_records(documents: Iterable, ids: Iterable | None, payloads: Iterable | None) -> Iterator[Record]:
    """Zip documents, ids and payloads lazily, failing as soon as one stream runs out before the others."""
    id_stream = None if ids is None else iter(ids)
    payload_stream = None if payloads is None else iter(payloads)
    count = 0
    for index, text in enumerate(documents):
        point_id = _MISSING if id_stream is None else _next_or_fail(id_stream, "ids", index)
        payload = _MISSING if payload_stream is None else _next_or_fail(payload_stream, "payloads", index)
        yield make_record(index, text, point_id, payload)
        count += 1
    for name, stream in (("ids", id_stream), ("payloads", payload_stream)):
        if stream is not None and next(stream, _MISSING) is not _MISSING:
            raise _left_over(name, count)


async def _read_in_loop(iterable: Iterable) -> AsyncIterator:
    """A sync iterable as an async one, read in the event loop's own thread (a cursor stays in its thread)."""
    for item in iterable:
        yield item


def _async_stream(value):
    return value.__aiter__() if isinstance(value, AsyncIterable) else _read_in_loop(value).__aiter__()


async def _anext_or_fail(stream: AsyncIterator, name: str, index: int):
    value = await anext(stream, _MISSING)
    if value is _MISSING:
        raise _ran_out(name, index)
    return value


async def aiter_records(documents, ids, payloads) -> AsyncIterator[Record]:
    """``iter_records`` for the async embedder: each input a sync or async iterable, read in the loop's thread."""
    id_stream = None if ids is None else _async_stream(ids)
    payload_stream = None if payloads is None else _async_stream(payloads)
    count = 0
    async for text in _async_stream(documents):
        check_text(text, count)
        point_id = _MISSING if id_stream is None else await _anext_or_fail(id_stream, "ids", count)
        payload = _MISSING if payload_stream is None else await _anext_or_fail(payload_stream, "payloads", count)
        yield make_record(count, text, point_id, payload)
        count += 1
    for name, stream in (("ids", id_stream), ("payloads", payload_stream)):
        if stream is not None and await anext(stream, _MISSING) is not _MISSING:
            raise _left_over(name, count)


async def abatched(records: AsyncIterator[Record], size: int) -> AsyncIterator[list[Record]]:
    """``batched`` for async record streams, with the same one-record look-ahead."""
    batch: list[Record] = []
    async for record in records:
        if len(batch) == size:
            yield batch
            batch = []
        batch.append(record)
    if batch:
        yield batch



def _finish(record, index: int, text_field: str | None) -> tuple:
    """Id and payload of a record as a plugin left it (plugins may add records without ids)."""
    if not isinstance(record.metadata, Mapping):
        raise TypeError(
            f"record {index} after vecplug_before_ingest has metadata {record.metadata!r:.60}; it must be a dict"
        )
    if record.id is None:
        point_id = document_id(record.text)
    else:
        point_id = check_id(record.id, f"the id of record {index} after vecplug_before_ingest")
    payload = dict(record.metadata)
    if text_field:
        payload[text_field] = record.text
    return point_id, payload


def points_of_batch(model, vector_name: str, text_field: str | None, batch: list[Record], target: Target) -> list:
    """One batch: plugins, then the document embedding of the texts they kept, as PointStructs."""
    from qdrant_client import models

    records = before_ingest(batch, target)
    if not records:
        return []
    vectors = model.embed_documents([record.text for record in records])
    points = []
    for index, (record, vector) in enumerate(zip(records, vectors)):
        point_id, payload = _finish(record, index, text_field)
        points.append(models.PointStruct(id=point_id, vector={vector_name: vector.tolist()}, payload=payload))
    return points


def iter_point_batches(model, vector_name: str, text_field: str | None, batches: Iterable[list[Record]],
                       target: Target) -> Iterator[list]:
    """``points_of_batch`` for each batch that keeps any record."""
    for batch in batches:
        points = points_of_batch(model, vector_name, text_field, batch, target)
        if points:
            yield points


def chunk_points_of_batch(model, vector_name: str, text_field: str | None, batch: list[Record], target: Target,
                          chunking: ChunkSettings) -> ChunkBatch:
    """One batch, chunked: plugins on the whole documents, then one point per chunk of each text they kept.

    A chunk's payload is its document's (after plugins) plus ``source_id``
    (the document's id), ``chunk_index`` (from 0), ``chunk_start`` and
    ``chunk_end`` (half-open character offsets into the text the plugins
    returned) and, under ``text_field``, the chunk's text. A text of
    whitespace only has no chunk, but its id is still in ``source_ids``, so
    its old chunks are deleted.
    """
    from qdrant_client import models

    records = before_ingest(batch, target)
    if not records:
        return ChunkBatch([], [])
    sources = {}  # source id -> (payload, text); a repeated id (equal texts without ids): the last one wins
    for index, record in enumerate(records):
        source_id, payload = _finish(record, index, None)
        refuse_chunk_fields(payload, f"the payload of record {index} after vecplug_before_ingest")
        sources.pop(source_id, None)
        sources[source_id] = (payload, record.text)
    chunked = chunking.embed(model, [text for _, text in sources.values()])
    points = []
    for (source_id, (payload, _)), chunks in zip(sources.items(), chunked):
        for chunk_index, ((start, end), text, vector) in enumerate(zip(chunks.spans, chunks.texts, chunks.vectors)):
            chunk_payload = {**payload, "source_id": source_id, "chunk_index": chunk_index,
                             "chunk_start": start, "chunk_end": end}
            if text_field:
                chunk_payload[text_field] = text
            points.append(models.PointStruct(id=chunk_id(source_id, chunk_index),
                                             vector={vector_name: vector.tolist()}, payload=chunk_payload))
    return ChunkBatch(list(sources), points)


def iter_chunk_batches(model, vector_name: str, text_field: str | None, batches: Iterable[list[Record]],
                       target: Target, chunking: ChunkSettings) -> Iterator[ChunkBatch]:
    """``chunk_points_of_batch`` for each batch that keeps any record."""
    for batch in batches:
        chunked = chunk_points_of_batch(model, vector_name, text_field, batch, target, chunking)
        if chunked.source_ids:
            yield chunked


def sources_filter(source_ids: list):
    """A filter matching every point whose payload ``source_id`` is one of ``source_ids`` (ints and UUIDs)."""
    from qdrant_client import models

    integers = [value for value in source_ids if isinstance(value, int)]
    strings = [value for value in source_ids if not isinstance(value, int)]
    conditions = [models.FieldCondition(key="source_id", match=models.MatchAny(any=values))
                  for values in (integers, strings) if values]
    return models.Filter(should=conditions)
