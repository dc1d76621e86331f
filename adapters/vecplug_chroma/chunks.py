"""Chunk records in Chroma: one record per passage of a long document, and the best passage per document.

A chunked write stores chunk ``i`` of document ``id`` as record
``f"{id}#{i}"``: the chunk's text as the record's document, its vector
from ``model.embed_chunks`` (the collection's own vecplug model), and the
document's metadata plus ``source_id``, ``chunk_index`` (from 0),
``chunk_start`` and ``chunk_end`` (half-open character offsets into the
text the ingest plugins returned). Chroma cannot group query results, so
``best_chunks`` over-fetches chunks and keeps each document's best.
Import-light: chromadb is only touched through the collection passed in.
"""
from __future__ import annotations

import dataclasses

from vecplug.chunking import ChunkSettings
from vecplug.errors import InvalidSettingError

# The metadata keys a chunk record carries about its place in its document.
CHUNK_FIELDS = ("source_id", "chunk_index", "chunk_start", "chunk_end")
# best_chunks asks Chroma for this many chunks per document wanted, and four times more each round it must.
OVER_FETCH = 4


@dataclasses.dataclass
class ChunkRecords:
    """What one batch of documents becomes: chunk records, ready for ``collection.add``/``upsert``."""

    ids: list = dataclasses.field(default_factory=list)
    documents: list = dataclasses.field(default_factory=list)
    metadatas: list = dataclasses.field(default_factory=list)
    embeddings: list = dataclasses.field(default_factory=list)

    def slices(self, size: int):
        """Chroma write arguments, at most ``size`` records each."""
        for start in range(0, len(self.ids), size):
            part = slice(start, start + size)
            yield {"ids": self.ids[part], "documents": self.documents[part],
                   "metadatas": self.metadatas[part], "embeddings": self.embeddings[part]}


def chunk_id(source_id: str, chunk_index: int) -> str:
    """The record id of chunk ``chunk_index`` of document ``source_id``."""
    return f"{source_id}#{chunk_index}"


def refuse_chunk_fields(metadata, where: str) -> None:
    """A chunked write sets ``CHUNK_FIELDS`` itself; metadata that has them would be overwritten."""
    taken = [key for key in CHUNK_FIELDS if key in (metadata or {})]
    if taken:
        raise ValueError(
            f"{where} has {', '.join(map(repr, taken))}: chunk records keep their place in the document "
            f"under {', '.join(CHUNK_FIELDS)}; rename those metadata keys"
        )


def chunking_model(collection):
    """The model of the collection's vecplug function: chunk plans need its tokenizer, vectors its weights."""
    from .embedding_function import ModernBertEmbeddingFunction

    function = getattr(collection, "_embedding_function", None)  # Chroma keeps no public handle on it
    if not isinstance(function, ModernBertEmbeddingFunction):
        raise InvalidSettingError(
            f"collection {collection.name!r} embeds with {type(function).__name__}, not vecplug's "
            "ModernBertEmbeddingFunction: chunk_tokens needs the vecplug model's tokenizer to cut texts"
        )
    return function.model  # an unavailable model raises its reason here, before anything is written


def chunk_records(model, records: list, chunking: ChunkSettings) -> ChunkRecords:
    """Every chunk of every record (after plugins), embedded as documents by ``model.embed_chunks``."""
    built = ChunkRecords()
    chunked = chunking.embed(model, [record.text for record in records])
    for record, chunks in zip(records, chunked):
        for index, ((start, end), text, vector) in enumerate(zip(chunks.spans, chunks.texts, chunks.vectors)):
            built.ids.append(chunk_id(record.id, index))
            built.documents.append(text)
            built.metadatas.append({**(record.metadata or {}), "source_id": record.id, "chunk_index": index,
                                    "chunk_start": start, "chunk_end": end})
            built.embeddings.append(vector)
    return built


def sources_where(source_ids: list) -> dict:
    """A ``where`` matching every chunk record of these documents."""
    return {"source_id": {"$in": list(source_ids)}}


def existing_sources(collection, source_ids: list, batch_size: int) -> list:
    """Which of ``source_ids`` have chunk records in ``collection`` already."""
    found: list = []
    for start in range(0, len(source_ids), batch_size):
        part = source_ids[start:start + batch_size]
        result = collection.get(where=sources_where(part), include=["metadatas"])
        found += [metadata["source_id"] for metadata in result["metadatas"] or []]
    return list(dict.fromkeys(found))


def best_chunks(collection, query_text: str, n_results: int = 10, where: dict | None = None) -> list[dict]:
    """The best chunk of each of the ``n_results`` documents nearest to ``query_text``, best first.

    Chroma has no grouping, so this asks for ``OVER_FETCH`` chunks per
    document wanted, keeps each ``source_id``'s first (best) chunk, and asks
    for four times more while it has found fewer documents than wanted and
    the collection has more chunks. The documents found are the true best
    ones (each document's rank is its best chunk's), as exact as Chroma's
    own ranking. The query is embedded once, with the query prompt.
    ``where`` filters chunk metadata (yours and the chunk fields).

    Each hit: ``{"id", "source_id", "chunk_index", "document", "metadata", "distance"}``.
    """
    from .checks import check_collection

    if not isinstance(n_results, int) or isinstance(n_results, bool) or n_results < 1:
        raise ValueError(f"n_results must be a positive integer, got {n_results!r}")
    if not isinstance(query_text, str):
        raise TypeError(f"the query text must be str, got {type(query_text).__name__}")
    check_collection(collection)
    query_embedding = collection._embedding_function.embed_query([query_text])
    chunks_only = {"chunk_index": {"$gte": 0}}
    where = {"$and": [where, chunks_only]} if where else chunks_only
    total = collection.count()
    fetch = n_results * OVER_FETCH
    while True:
        fetch = min(fetch, total)
        if fetch == 0:
            return []
        result = collection.query(query_embeddings=query_embedding, n_results=fetch, where=where,
                                  include=["documents", "metadatas", "distances"])
        best: dict = {}
        for record_id, document, metadata, distance in zip(result["ids"][0], result["documents"][0],
                                                           result["metadatas"][0], result["distances"][0]):
            source_id = metadata["source_id"]
            if source_id not in best:
                best[source_id] = {"id": record_id, "source_id": source_id, "chunk_index": metadata["chunk_index"],
                                   "document": document, "metadata": metadata, "distance": distance}
        if len(best) >= n_results or fetch >= total or len(result["ids"][0]) < fetch:
            return list(best.values())[:n_results]
        fetch *= OVER_FETCH
