"""Documents to Qdrant points, lazily: records in batches, through the plugins, then the model.

Input is read, and ``vecplug_before_ingest`` runs, in the caller's thread and
one batch at a time: a generator over a database cursor or a file works, and
memory holds a batch, never the stream.
"""
from __future__ import annotations

import numbers
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Collection, Iterable, Iterator, Mapping

from vecplug import Record, Target, before_ingest
from vecplug.model import check_text

DATABASE = "qdrant"
# uuid5 namespace of generated point ids; changing it would change every generated id
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "vecplug:qdrant:document")
_MISSING = object()


def document_id(text: str) -> str:
    """The id a document gets when none is given: uuid5 of its text.

    Deterministic, so that running an interrupted ingestion again overwrites
    the points it already wrote instead of adding copies. The price: equal
    texts share one point (the last payload wins); pass ids to keep them apart.
    """
    return str(uuid.uuid5(ID_NAMESPACE, text))


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


def check_inputs(documents, ids, payloads, *, allow_async: bool = False) -> None:
    """Check what can be checked before anything is embedded or written.

    Lists (any sized, re-iterable collection) are checked whole: lengths and
    every item, so a mistake at the end costs nothing. Generators can only be
    checked as they are read (see ``iter_records``). ``allow_async``: async
    iterables are accepted too (the async embedder reads them).
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
            check_payload(payload, index)


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
