"""Documents to Qdrant points, lazily: records in batches, through the plugins, then the model.

Input is read, and ``vecplug_before_ingest`` runs, in the caller's thread and
one batch at a time: a generator over a database cursor or a file works, and
memory holds a batch, never the stream.
"""
from __future__ import annotations

import numbers
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping

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
    """Qdrant takes unsigned integers and UUIDs only; say so here rather than at the server, late."""
    if isinstance(point_id, uuid.UUID):
        return str(point_id)
    if isinstance(point_id, numbers.Integral) and not isinstance(point_id, bool) and point_id >= 0:
        return int(point_id)  # numpy integers are not JSON
    if isinstance(point_id, str):
        try:
            uuid.UUID(point_id)
            return point_id
        except ValueError:
            pass
    raise ValueError(
        f"{where} is {point_id!r}: Qdrant point ids are unsigned integers or UUIDs (str or uuid.UUID). "
        "Map other keys to one (e.g. uuid.uuid5(namespace, key)) and keep the key in the payload."
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


def check_inputs(documents, ids, payloads) -> None:
    """Check what can be checked before anything is embedded or written.

    Lists (any sized, re-iterable collection) are checked whole: lengths and
    every item, so a mistake at the end costs nothing. Generators can only be
    checked as they are read (see ``iter_records``).
    """
    if documents is None:
        raise TypeError("documents must be a list or iterable of str, got None")
    for name, value in (("documents", documents), ("ids", ids), ("payloads", payloads)):
        if isinstance(value, (str, bytes, Mapping)):
            raise TypeError(
                f"{name} must be a list or iterable with one item per document, not a single "
                f"{type(value).__name__}; wrap it in a list"
            )
        if value is not None and not isinstance(value, Iterable):
            raise TypeError(f"{name} must be a list or iterable, got {type(value).__name__}")
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
        raise ValueError(f"{name} ran out at index {index} while documents go on: pass exactly one per document")
    return value


def iter_records(documents: Iterable, ids: Iterable | None, payloads: Iterable | None) -> Iterator[Record]:
    """Zip documents, ids and payloads lazily, failing as soon as one stream runs out before the others."""
    id_stream = None if ids is None else iter(ids)
    payload_stream = None if payloads is None else iter(payloads)
    count = 0
    for index, text in enumerate(documents):
        check_text(text, index)
        if id_stream is None:
            point_id = document_id(text)
        else:
            point_id = check_id(_next_or_fail(id_stream, "ids", index), f"id at index {index}")
        payload = {} if payload_stream is None else check_payload(_next_or_fail(payload_stream, "payloads", index), index)
        yield Record(point_id, text, payload)
        count += 1
    for name, stream in (("ids", id_stream), ("payloads", payload_stream)):
        if stream is not None and next(stream, _MISSING) is not _MISSING:
            raise ValueError(f"{name} go on after the {count} documents ended: pass exactly one per document")


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


def iter_point_batches(model, vector_name: str, text_field: str | None, batches: Iterable[list[Record]],
                       target: Target) -> Iterator[list]:
    """Each batch: plugins, then the document embedding of the texts they kept, as PointStructs."""
    from qdrant_client import models

    for batch in batches:
        records = before_ingest(batch, target)
        if not records:
            continue
        vectors = model.embed_documents([record.text for record in records])
        points = []
        for index, (record, vector) in enumerate(zip(records, vectors)):
            point_id, payload = _finish(record, index, text_field)
            points.append(models.PointStruct(id=point_id, vector={vector_name: vector.tolist()}, payload=payload))
        yield points
