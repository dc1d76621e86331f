"""What the sync and async embedders share: everything except talking to the client.

The two subclasses only make the client calls (plain or awaited); model
choice, checks, points and query vectors live here once.
"""
from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Iterator

from vecplug import EmbeddingModel, Target, load_model
from vecplug.records import batched

from . import collection, ingest

DEFAULT_VECTOR_NAME = "modernbert"
DEFAULT_TEXT_FIELD = "document"
DEFAULT_BATCH_SIZE = 256


def resolve_model(model, device, dtype) -> EmbeddingModel:
    if isinstance(model, EmbeddingModel):
        if device is not None or dtype is not None:
            raise TypeError(
                "device and dtype choose how a model is loaded, and this one is loaded already; "
                "pass its name instead, or drop device/dtype"
            )
        return model
    return load_model(model, device=device, dtype=dtype)


class EmbedderBase:
    """A vecplug model bound to a Qdrant client, writing and querying one named vector.

    ``model``: a name, alias, local directory or loaded ``EmbeddingModel``
    (None: ``$VECPLUG_MODEL`` or the default), run in this process; or a
    ``vecplug serve`` URL, run there (``create_collection`` records the URL,
    so ``from_collection`` finds the server again).
    ``text_field``: the payload key that keeps each document's text (what
    was embedded, after plugins), or None to keep no text; like the old
    ``QdrantClient.add``, which kept it under "document".
    ``batch_size``: records read, passed through ``vecplug_before_ingest``
    and embedded together; the model packs each batch by tokens.
    """

    def __init__(self, client, model=None, vector_name: str = DEFAULT_VECTOR_NAME, device=None, dtype=None, *,
                 text_field: str | None = DEFAULT_TEXT_FIELD, batch_size: int = DEFAULT_BATCH_SIZE):
        if not isinstance(vector_name, str) or not vector_name:
            raise ValueError(f"vector_name must be a non-empty str, got {vector_name!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if text_field is not None and (not isinstance(text_field, str) or not text_field):
            raise ValueError(f"text_field must be a payload key (non-empty str) or None, got {text_field!r}")
        self.client = client
        self.model = resolve_model(model, device, dtype)
        self.vector_name = vector_name
        self.text_field = text_field
        self.batch_size = batch_size
        # Collections this embedder has checked: queries check a collection once, not three client calls each.
        self._checked: set[str] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model.name} dim={self.model.dimensions} vector={self.vector_name!r}>"

    # -- collections ------------------------------------------------------
    def _create_arguments(self, options: dict) -> dict:
        return collection.create_arguments(self.model, self.vector_name, options)

    def _check(self, name: str, info) -> None:
        collection.check_collection(name, info, self.model, self.vector_name)
        self._checked.add(name)

    # -- ingestion --------------------------------------------------------
    def point_batches(self, documents, ids=None, payloads=None, *, collection_name: str | None = None,
                      chunk_tokens: int | None = None, overlap_tokens: int = 0, late: bool = False) -> Iterator[list]:
        """Like ``points``, one list per batch (what ``upsert`` calls take)."""
        chunking = ingest.ChunkSettings.of(chunk_tokens, overlap_tokens, late)
        if chunking is not None:
            batches = self.chunk_batches(documents, ids, payloads, collection_name, chunking)
            return (batch.points for batch in batches if batch.points)
        ingest.check_inputs(documents, ids, payloads)
        records = ingest.iter_records(documents, ids, payloads)
        target = Target(ingest.DATABASE, collection_name or "")
        return ingest.iter_point_batches(
            self.model, self.vector_name, self.text_field, batched(records, self.batch_size), target
        )

    def chunk_batches(self, documents, ids, payloads, collection_name: str | None,
                      chunking: "ingest.ChunkSettings") -> Iterator["ingest.ChunkBatch"]:
        """Each batch's chunk points and source ids (the writers delete those sources' old points first)."""
        ingest.check_inputs(documents, ids, payloads, chunking=chunking)
        records = ingest.iter_records(documents, ids, payloads)
        target = Target(ingest.DATABASE, collection_name or "")
        return ingest.iter_chunk_batches(self.model, self.vector_name, self.text_field,
                                         batched(records, self.batch_size), target, chunking)

    def points(self, documents, ids=None, payloads=None, *, collection_name: str | None = None,
               chunk_tokens: int | None = None, overlap_tokens: int = 0, late: bool = False) -> Iterator:
        """A lazy iterator of ``PointStruct`` for ``client.upload_points`` (or ``upsert``).

        Reads ``documents`` (str), ``ids`` (unsigned int or UUID; None: uuid5
        of the text, see ``ingest.document_id``) and ``payloads`` (dicts)
        ``batch_size`` at a time, so a generator of any length streams in
        flat memory. ``collection_name`` tells ``vecplug_before_ingest``
        plugins where the points go (``Target("qdrant", name)``).

        ``chunk_tokens``: one point per chunk instead of one per document
        (see ``QdrantEmbedder.upsert``). Points alone cannot delete a
        document's old chunks: to replace documents that were written
        before, use ``upsert`` or ``upload``, which do.

        Lists are checked whole here, before anything is embedded. Lazy
        iterators are checked as they are read; an error (a None document,
        ids that run out) is raised before the batch it falls in is yielded,
        but earlier batches have been: ``upload_points`` to a server may have
        written them (local mode writes nothing, it collects all points
        first). Write lists with ``upsert`` for all-or-nothing.

        This writes unchecked: call ``check_collection(name)`` first, or use
        ``upload``, to refuse a collection of another model.
        """
        return itertools.chain.from_iterable(
            self.point_batches(documents, ids, payloads, collection_name=collection_name,
                               chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens, late=late)
        )

    def _points_of_batch(self, records: list, name: str) -> list:
        """Plugins, embedding and PointStructs for one batch of checked records."""
        return ingest.points_of_batch(self.model, self.vector_name, self.text_field, records,
                                      Target(ingest.DATABASE, name))

    def _chunk_points_of_batch(self, records: list, name: str, chunking: "ingest.ChunkSettings") -> "ingest.ChunkBatch":
        """``_points_of_batch``, chunked."""
        return ingest.chunk_points_of_batch(self.model, self.vector_name, self.text_field, records,
                                            Target(ingest.DATABASE, name), chunking)

    def _all_points(self, name: str, documents, ids, payloads) -> list:
        """Every point of a finite input, built (and so checked) before anything is written."""
        documents, ids, payloads = (_as_list(value) for value in (documents, ids, payloads))
        return list(self.points(documents, ids, payloads, collection_name=name))

    def _all_chunks(self, name: str, documents, ids, payloads, chunking: "ingest.ChunkSettings") -> "ingest.ChunkBatch":
        """Every chunk point of a finite input and its source ids, built before anything is written."""
        documents, ids, payloads = (_as_list(value) for value in (documents, ids, payloads))
        batches = list(self.chunk_batches(documents, ids, payloads, name, chunking))
        sources: dict = {}  # source id -> its points; a source written again in a later batch: the last one wins
        for batch in batches:
            for source_id in batch.source_ids:
                sources[source_id] = []
            for point in batch.points:
                sources[point.payload["source_id"]].append(point)
        return ingest.ChunkBatch(list(sources), [point for points in sources.values() for point in points])

    # -- queries ----------------------------------------------------------
    def query_vector(self, text: str) -> list[float]:
        """The vector of a search text, with the model's query prompt (for ``query_points`` yourself)."""
        if not isinstance(text, str):
            raise TypeError(f"the query text must be str, got {type(text).__name__} ({text!r:.60})")
        return self.model.embed_queries([text])[0].tolist()

    def _query_arguments(self, text: str, limit: int, query_filter, with_payload, options: dict,
                         group_by: str | None = None) -> dict:
        if group_by is not None:
            if not isinstance(group_by, str) or not group_by:
                raise ValueError(f"group_by must be a payload key (non-empty str) or None, got {group_by!r}")
            if "group_size" in options:
                raise TypeError("query(group_by=...) returns each group's best point (group_size=1); "
                                "call client.query_points_groups yourself for more per group")
            options = {**options, "group_by": group_by, "group_size": 1}
        return {
            "query": self.query_vector(text), "using": self.vector_name, "limit": limit,
            "query_filter": query_filter, "with_payload": with_payload, **options,
        }


def chunk_write_operations(batch: "ingest.ChunkBatch") -> list:
    """Delete every point of the batch's sources, then upsert its chunk points: one ``batch_update_points``.

    Qdrant applies the operations in order: a source's old chunks are gone
    before its new ones are written, so a shorter text leaves no stale
    chunk, and a write that fails half-way leaves a source without chunks
    (absent, never old and new chunks mixed); the same call again finishes it.
    """
    from qdrant_client import models

    operations = [models.DeleteOperation(delete=models.FilterSelector(filter=ingest.sources_filter(batch.source_ids)))]
    if batch.points:
        operations.append(models.UpsertOperation(upsert=models.PointsList(points=batch.points)))
    return operations


def best_of_groups(result) -> list:
    """``query_points_groups``' answer as one ScoredPoint per group, best group first (Qdrant's order)."""
    return [group.hits[0] for group in result.groups if group.hits]


def _as_list(value):
    if value is None or isinstance(value, (Collection, str, bytes)):
        return value  # a str is refused with a clear message by check_inputs
    if isinstance(value, Iterable):
        return list(value)
    return value
