"""Long documents as chunk rows: one row per passage, the document's id kept as ``source_id``.

With ``chunk_tokens``, each record the plugins return is a source
document; ``model.embed_chunks`` cuts and embeds it, and each chunk becomes
a row: ``document`` the chunk's text, the document's metadata plus
``source_id`` (the document's id), ``chunk_index`` (from 0),
``chunk_start`` and ``chunk_end`` (half-open character offsets into the
text the plugins returned). Row ids: ``f"{source_id}#{i}"`` in a VARCHAR
collection, generated ids in an INT64 one. As in Chroma and Qdrant
(decision 0079), a write that replaces documents embeds first, then deletes
everything stored under their ids (rows and chunks), then inserts.
"""
from __future__ import annotations

import dataclasses

from vecplug import Record

from .collection import ID_FIELD, STR_ID_MAX_LENGTH, TEXT_FIELD, VECTOR_FIELD
from .ingest import RowBuilder, json_list

CHUNK_FIELDS = ("source_id", "chunk_index", "chunk_start", "chunk_end")


@dataclasses.dataclass
class ChunkBatch:
    """One batch's chunk rows, and every source id it wrote (also those whose text gave no chunk)."""

    source_ids: list
    rows: list


def chunk_rows(builder: RowBuilder, batch: list[Record], chunking, refuse_stored: bool) -> ChunkBatch:
    """Plugins on the whole documents, then one embedded row per chunk of each text they kept."""
    records = builder.checked_records(batch, refuse_stored, reserved=CHUNK_FIELDS)
    if not records:
        return ChunkBatch([], [])
    chunked = chunking.embed(builder.model, [record.text for record in records])
    count = sum(len(chunks.texts) for chunks in chunked)
    generated = iter(builder.ids.take(count)) if builder.id_type == "int" else None
    rows = []
    for record, chunks in zip(records, chunked):
        for index, ((start, end), text, vector) in enumerate(zip(chunks.spans, chunks.texts, chunks.vectors)):
            row_id = chunk_id(record.id, index) if generated is None else next(generated)
            rows.append({**record.metadata, ID_FIELD: row_id,
                         VECTOR_FIELD: vector.tolist(), TEXT_FIELD: text, "source_id": record.id,
                         "chunk_index": index, "chunk_start": start, "chunk_end": end})
    return ChunkBatch([record.id for record in records], rows)


def chunk_id(source_id: str, chunk_index: int) -> str:
    """The row id of chunk ``chunk_index`` of document ``source_id`` in a VARCHAR collection."""
    value = f"{source_id}#{chunk_index}"
    if len(value) > STR_ID_MAX_LENGTH:
        raise ValueError(f"chunk id {value[:40]!r}... is over {STR_ID_MAX_LENGTH} characters; use shorter ids")
    return value


def delete_sources(client, name: str, source_ids: list) -> None:
    """Every row stored under these documents' ids: their chunks and a whole-document row."""
    literal = json_list(source_ids)
    client.delete(name, filter=f"source_id in {literal} or {ID_FIELD} in {literal}")
