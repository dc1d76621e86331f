"""Texts, ids and metadata to Milvus rows: checked, through the plugins, embedded, in batches.

Lists are checked whole before anything is embedded; iterables are read
one batch at a time (with a one-record look-ahead, so an input error
surfaces before the batch it breaks is handed on). Each batch goes
through ``vecplug_before_ingest`` and what the plugins return is checked
the same way, then embedded as documents. Metadata becomes dynamic fields,
so it must be JSON (no NaN) with keys that are not the collection's own
fields. Import-light: nothing here imports pymilvus.
"""
from __future__ import annotations

import json
import numbers
from collections.abc import Collection, Iterable, Iterator, Mapping

from vecplug import Record, Target, before_ingest
from vecplug.model import check_text

from .collection import DOCUMENT_MAX_LENGTH, ID_FIELD, RESERVED_FIELDS, STR_ID_MAX_LENGTH, TEXT_FIELD, VECTOR_FIELD
from .ids import IdSource

DATABASE = "milvus"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_MISSING = object()


def check_document(text, index: int) -> str:
    check_text(text, index)
    if len(text) > DOCUMENT_MAX_LENGTH:
        raise ValueError(
            f"text at index {index} has {len(text):,} characters; the 'document' field holds at most "
            f"{DOCUMENT_MAX_LENGTH:,} (Milvus's VARCHAR limit): split it before inserting"
        )
    return text


def check_id(value, id_type: str, where: str):
    """The id as Milvus stores it: an int in INT64's range, or a non-empty str of at most 512 characters."""
    if id_type == "int":
        if isinstance(value, numbers.Integral) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX:
            return int(value)  # numpy integers become ints
        raise ValueError(f"{where} is {value!r}: this collection's ids are INT64 integers "
                         "(create it with id_type='str' for str ids)")
    if isinstance(value, str) and 0 < len(value) <= STR_ID_MAX_LENGTH:
        return value
    raise ValueError(f"{where} is {value!r}: this collection's ids are non-empty str of at most "
                     f"{STR_ID_MAX_LENGTH} characters")


def check_metadata(value, where: str) -> dict:
    """A copy of one record's metadata, refused unless Milvus can store it as dynamic fields unchanged."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{where} is {type(value).__name__} ({value!r:.60}); metadata must be a dict (or None)")
    for key in value:
        if not isinstance(key, str) or not key or key.startswith("$"):
            raise ValueError(f"{where} has key {key!r}: metadata keys must be non-empty str not starting with '$'")
        if key in RESERVED_FIELDS:
            raise ValueError(f"{where} has key {key!r}, one of the collection's own fields "
                             f"({', '.join(RESERVED_FIELDS)}); rename it")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where} cannot be stored as Milvus dynamic fields (JSON without NaN or "
                         f"infinity): {error}") from None
    return dict(value)


def check_inputs(texts, ids, metadata, id_type: str, reserved: tuple = ()) -> None:
    """What can be checked before anything is embedded: shapes, and every item of the lists."""
    if texts is None:
        raise TypeError("texts must be a list or iterable of str, got None")
    for name, value in (("texts", texts), ("ids", ids), ("metadata", metadata)):
        if isinstance(value, (str, bytes, Mapping)):
            raise TypeError(f"{name} must be a list or iterable with one item per text, not a single "
                            f"{type(value).__name__}; wrap it in a list")
        if value is not None and not isinstance(value, Iterable):
            raise TypeError(f"{name} must be a list or iterable, got {type(value).__name__}")
    if not isinstance(texts, Collection):
        return
    for name, value in (("ids", ids), ("metadata", metadata)):
        if isinstance(value, Collection) and len(value) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(value)} {name}: pass exactly one per text, or none")
    for index, text in enumerate(texts):
        check_document(text, index)
    if isinstance(ids, Collection):
        refuse_repeats([check_id(value, id_type, f"id at index {index}") for index, value in enumerate(ids)], "ids")
    if isinstance(metadata, Collection):
        for index, value in enumerate(metadata):
            refuse_keys(check_metadata(value, f"metadata at index {index}"), reserved, f"metadata at index {index}")


def refuse_keys(metadata: Mapping, reserved: tuple, where: str) -> None:
    """Metadata keys the write sets itself (a chunk's place in its document) would be overwritten: refuse them."""
    taken = [key for key in reserved if key in metadata]
    if taken:
        raise ValueError(f"{where} has {', '.join(map(repr, taken))}: chunk rows keep their place in the document "
                         f"under {', '.join(reserved)}; rename those metadata keys")


def json_list(values: list) -> str:
    """A list of ids as a Milvus expression literal (JSON: double-quoted, escaped str)."""
    return json.dumps(list(values), ensure_ascii=False)


def refuse_repeats(ids: list, where: str) -> None:
    seen: set = set()
    repeated = list(dict.fromkeys(value for value in ids if value in seen or seen.add(value)))
    if repeated:
        raise ValueError(f"{where} repeat {', '.join(map(repr, repeated[:5]))}; each id must be unique")


def _next_or_fail(stream: Iterator, name: str, index: int):
    value = next(stream, _MISSING)
    if value is _MISSING:
        raise ValueError(f"{name} ran out at index {index} while texts go on: pass exactly one per text")
    return value


def iter_records(texts: Iterable, ids: Iterable | None, metadata: Iterable | None, id_type: str) -> Iterator[Record]:
    """Zip texts, ids and metadata lazily, each item checked; ``Record.id`` None where no ids were given."""
    id_stream = None if ids is None else iter(ids)
    metadata_stream = None if metadata is None else iter(metadata)
    count = 0
    for index, text in enumerate(texts):
        check_document(text, index)
        record_id = None if id_stream is None else check_id(_next_or_fail(id_stream, "ids", index), id_type,
                                                            f"id at index {index}")
        values = {} if metadata_stream is None else check_metadata(
            _next_or_fail(metadata_stream, "metadata", index), f"metadata at index {index}")
        yield Record(record_id, text, values)
        count += 1
    for name, stream in (("ids", id_stream), ("metadata", metadata_stream)):
        if stream is not None and next(stream, _MISSING) is not _MISSING:
            raise ValueError(f"{name} go on after the {count} texts ended: pass exactly one per text")



class RowBuilder:
    """Turns batches of checked records into Milvus rows for one collection and model."""

    def __init__(self, client, name: str, model, id_type: str):
        self.client, self.name, self.model, self.id_type = client, name, model, id_type
        self.target = Target(DATABASE, name)
        self.ids = IdSource(client, name, id_type)

    def rows(self, batch: list[Record], refuse_stored: bool = True) -> list[dict]:
        """One batch: ids for records without, plugins, their output checked, then the document vectors."""
        checked = self.checked_records(batch, refuse_stored)
        if not checked:
            return []
        vectors = self.model.embed_documents([record.text for record in checked])
        return [{**record.metadata, ID_FIELD: record.id, VECTOR_FIELD: vector.tolist(), TEXT_FIELD: record.text}
                for record, vector in zip(checked, vectors)]

    def checked_records(self, batch: list[Record], refuse_stored: bool, reserved: tuple = ()) -> list[Record]:
        """One batch with ids, through the plugins, what they returned checked like the input was.

        ``refuse_stored``: ids the collection has are refused (as rows, or
        as chunks' ``source_id``); ``reserved``: metadata keys the caller sets.
        """
        fresh = set()  # generated here: IdSource made sure the collection has none of them
        batch = self._with_ids(batch, fresh)
        records = before_ingest(batch, self.target)
        if not records:
            return []
        records = self._with_ids(records, fresh)  # records a plugin added without an id
        checked = []
        for index, record in enumerate(records):
            where = f"record {index} after vecplug_before_ingest"
            metadata = check_metadata(record.metadata, f"the metadata of {where}")
            refuse_keys(metadata, reserved, f"the metadata of {where}")
            checked.append(Record(check_id(record.id, self.id_type, f"the id of {where}"),
                                  check_document(record.text, index), metadata))
        ids = [record.id for record in checked]
        refuse_repeats(ids, "ids after vecplug_before_ingest")
        if refuse_stored:
            self.refuse_stored([value for value in ids if value not in fresh])
        return checked

    def _with_ids(self, records: list[Record], fresh: set) -> list[Record]:
        """``records`` with a new id wherever theirs is None (noted in ``fresh``)."""
        missing = sum(record.id is None for record in records)
        if not missing:
            return records
        generated = self.ids.take(missing)
        fresh.update(generated)
        stream = iter(generated)
        return [Record(next(stream), record.text, record.metadata) if record.id is None else record
                for record in records]

    def refuse_stored(self, ids: list) -> None:
        """``insert`` of an id the collection has would keep two rows (a server) or replace one (Milvus Lite)."""
        if not ids:
            return
        literal = json_list(ids)
        found = self.client.query(self.name, filter=f"{ID_FIELD} in {literal} or source_id in {literal}",
                                  output_fields=[ID_FIELD, "source_id"], limit=16)
        if found:
            shown = ", ".join(sorted({repr(row.get("source_id", row[ID_FIELD])) for row in found})[:5])
            raise ValueError(
                f"ids already in collection {self.name!r}: {shown}; insert never replaces a row. Use "
                "embedder.upsert to replace them, or pass new ids. Nothing of this batch was written."
            )
