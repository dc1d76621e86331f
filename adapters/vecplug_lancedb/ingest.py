"""``add`` / ``upsert``: write rows to a LanceDB table through ``vecplug_before_ingest``, streamed, all or nothing.

LanceDB's embedding function only sees the source column's texts, and
LanceDB stores the rows it was handed, so a plugin that redacts or enriches
records must run before LanceDB is called; this helper does that. Each
batch of rows becomes ``vecplug.Record`` objects (the source column is the
text, ``id_field`` the id, the other fields the metadata), goes through the
plugins, is checked again, and is embedded here with the table's own
function (document prompt), so LanceDB finds the vector column filled.

The rows go to LanceDB as one stream, in one ``table.add``: LanceDB
commits a write once, at its end, so memory holds one batch and a failure
anywhere (a bad row in batch 90, a plugin's bad output, the model) leaves
the table as it was. LanceDB reports an exception raised while it reads
the stream as a ``RuntimeError`` ("Arrow error: C Data interface error:
...") whatever it was; the helper re-raises the original one, so a
``TypeError`` stays a ``TypeError``.
Import-light: lancedb is only touched through the table passed in (pyarrow,
which LanceDB needs, is imported when a write starts).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import vecplug
from vecplug.model import check_text, check_texts

# Rows per batch: embedded and handed to LanceDB together; one batch of rows and vectors in memory at a time.
BATCH_ROWS = 1000


def add(table, rows: Iterable[Mapping], *, id_field: str | None = None, text_field: str | None = None,
        batch_rows: int = BATCH_ROWS, quiet: bool = False) -> int:
    """Add ``rows`` (dicts) to ``table`` after the ingest plugins; return how many rows were stored.

    ``text_field``: the source column of the table's vecplug function
    (found in the table when it has one). ``id_field``: the field plugins
    see as ``Record.id`` (they see the row's position in ``rows`` without
    one). Plugins may change a record's text and metadata, drop records and
    add records (target ``vecplug.Target("lancedb", table.name)``); what
    they return is what is stored. A row with a field the table does not
    have, a missing or non-str text, or a plugin's output of that kind
    raises before anything is stored. ``rows`` may be any iterable, read
    ``batch_rows`` at a time; a progress bar shows on a terminal unless ``quiet``.
    """
    return _write(table, rows, id_field, text_field, batch_rows, quiet, table.add, "adding to")


def upsert(table, rows: Iterable[Mapping], *, on: str, text_field: str | None = None,
           batch_rows: int = BATCH_ROWS, quiet: bool = False) -> int:
    """Insert rows, or replace the stored row with the same ``on`` value, after the ingest plugins.

    LanceDB's ``merge_insert(on)`` (update all matched, insert the rest),
    fed like ``add``: ``on`` is the field plugins see as ``Record.id``, each
    id may appear once per call, and a failure anywhere stores nothing.
    Replaced rows get vectors of their new text. (LanceDB's own
    ``table.update(values={text: ...})`` changes a text without
    re-embedding it; use this, or ``merge_insert``, which embeds.)
    """
    if not isinstance(on, str):
        raise TypeError(f"on must name the table's id field (a str), got {on!r}")

    def merge(reader):
        table.merge_insert(on).when_matched_update_all().when_not_matched_insert_all().execute(reader)

    return _write(table, rows, on, text_field, batch_rows, quiet, merge, "upserting into", unique_ids=True)


def _write(table, rows, id_field, text_field, batch_rows, quiet, write, verb: str, unique_ids=False) -> int:
    """Check, run the plugins on and embed ``rows`` a batch at a time, and ``write`` them as one stream."""
    if isinstance(rows, (str, bytes, bytearray, Mapping)):
        raise TypeError(f"rows must be a list (or any iterable) of dicts, not a single {type(rows).__name__}; "
                        "wrap it in a list")
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ValueError(f"batch_rows must be a positive integer, got {batch_rows!r}")
    function, text_field, vector_field = _vecplug_column(table, text_field)
    import pyarrow as pa

    schema = table.schema
    if id_field is not None and id_field not in schema.names:
        raise ValueError(f"id field {id_field!r} is not a field of table {table.name!r} (fields: {schema.names})")
    fields = [name for name in schema.names if name != vector_field]  # the helper fills the vectors
    required = [field.name for field in schema if not field.nullable and field.name != vector_field]
    target = vecplug.Target("lancedb", table.name)
    failures: list[BaseException] = []
    seen_ids: set = set()
    stored = 0

    def batches():
        nonlocal stored
        try:
            with vecplug.progress(desc=f"{verb} {table.name}", unit="row", quiet=quiet) as bar:
                for start, batch in _batched(rows, batch_rows):
                    records = [_record(row, start + offset, text_field, id_field, fields, required)
                               for offset, row in enumerate(batch)]
                    records = vecplug.before_ingest(records, target)
                    bar.update(len(batch))
                    if not records:
                        continue
                    out = [_row(record, text_field, id_field, fields, required) for record in records]
                    if unique_ids:
                        _refuse_repeated_ids(records, seen_ids, id_field)
                    vectors = function.compute_source_embeddings([row[text_field] for row in out])
                    for row, vector in zip(out, vectors):
                        row[vector_field] = vector
                    stored += len(out)
                    yield pa.RecordBatch.from_pylist(out, schema=schema)
        except BaseException as error:  # LanceDB turns it into an Arrow RuntimeError: keep the original
            failures.append(error)
            raise

    try:
        write(pa.RecordBatchReader.from_batches(schema, batches()))
    except Exception:
        if failures:
            raise failures[0] from None
        raise
    return stored


def _refuse_repeated_ids(records, seen_ids: set, id_field: str) -> None:
    """merge_insert cannot say which of two rows with one id should win: the caller must."""
    for record in records:
        if record.id in seen_ids:
            raise ValueError(f"{id_field} {record.id!r} appears twice in one upsert; pass each id once")
        seen_ids.add(record.id)


def _vecplug_column(table, text_field: str | None):
    """The table's vecplug function, its source column and its vector column."""
    from .embedding_function import VecplugEmbeddings

    found = [(config.function, config.source_column, config.vector_column)
             for config in table.embedding_functions.values() if isinstance(config.function, VecplugEmbeddings)]
    if text_field is not None:
        found = [entry for entry in found if entry[1] == text_field]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError(
            f"table {table.name!r} has no vecplug embedding function"
            + (f" with source column {text_field!r}" if text_field else "")
            + "; create it from a LanceModel whose fields come from get_registry().get('vecplug').create(...)"
            " (SourceField() and VectorField())"
        )
    raise ValueError(f"table {table.name!r} has vecplug functions on source columns "
                     f"{[entry[1] for entry in found]}: pass text_field= to say which one to write")


def _batched(rows: Iterable, size: int):
    """(index of the first row, list of rows) for each run of ``size`` rows."""
    batch, start = [], 0
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield start, batch
            start, batch = start + size, []
    if batch:
        yield start, batch


def _record(row, index: int, text_field: str, id_field: str | None, fields: list[str],
            required: list[str]) -> vecplug.Record:
    if not isinstance(row, Mapping):
        raise TypeError(f"row at index {index} is {type(row).__name__} ({row!r:.60}), expected a dict")
    if text_field not in row:
        raise ValueError(f"row at index {index} has no {text_field!r} (the text to embed): {row!r:.80}")
    text = check_text(row[text_field], index)
    _check_fields(row, fields, required, f"row at index {index}")
    record_id = row.get(id_field) if id_field is not None else index
    metadata = {key: value for key, value in row.items() if key not in (text_field, id_field)}
    return vecplug.Record(id=record_id, text=text, metadata=metadata)


def _row(record: vecplug.Record, text_field: str, id_field: str | None, fields: list[str],
         required: list[str]) -> dict:
    """A record the plugins returned, back as a row, held to the same checks as the input."""
    row = {**record.metadata, text_field: record.text}
    if id_field is not None:
        row[id_field] = record.id
    _check_fields(row, fields, required, f"record {record.id!r} after vecplug_before_ingest")
    check_texts([record.text])
    return row


def _check_fields(row: Mapping, fields: list[str], required: list[str], what: str) -> None:
    """pyarrow would drop a field the schema lacks without a word (a misspelt field loses its value),
    and LanceDB refuses a whole write for one row without a field that cannot be null."""
    unknown = [key for key in row if key not in fields]
    if unknown:
        raise ValueError(f"{what} has fields the table does not have: {unknown} (its fields: {fields})")
    missing = [name for name in required if row.get(name) is None]
    if missing:
        raise ValueError(f"{what} has no value for {missing}, which the table's schema says cannot be null")
