"""``QdrantEmbedder``: vecplug's ModernBERT vectors for a ``qdrant_client.QdrantClient``."""
from __future__ import annotations

from .base import EmbedderBase, best_of_groups, chunk_write_operations
from .collection import exists, model_from_collection, not_found
from .ingest import ChunkSettings, sources_filter
from .recommend import examples, missing_ids, query_arguments


def _collection_info(client, name: str):
    # get_collection on a missing name fails differently in local and server mode; say it once, plainly
    if not client.collection_exists(name):
        raise not_found(name)
    return client.get_collection(name)


class QdrantEmbedder(EmbedderBase):
    """Create, fill and query Qdrant collections with a vecplug model, in this process.

        client = QdrantClient(path="qdrant-data")
        embedder = QdrantEmbedder(client, "nomic-ai/modernbert-embed-base")
        embedder.create_collection("docs")
        client.upload_points("docs", embedder.points(texts, payloads=metadata))
        hits = embedder.query("docs", "how do I ...?", limit=5)
    """

    @classmethod
    def from_collection(cls, client, name: str, device=None, dtype=None, **options) -> "QdrantEmbedder":
        """An embedder with the model and vector a collection records (it refuses any other)."""
        model, vector_name = model_from_collection(name, _collection_info(client, name), device, dtype)
        return cls(client, model, vector_name=vector_name, **options)

    def create_collection(self, name: str, *, exist_ok: bool = False, **options) -> bool:
        """Create a collection sized for the model (named vector, cosine) that records the model.

        ``options`` go to ``client.create_collection`` (hnsw_config, more
        named vectors, your own metadata keys ...). An existing collection
        of another model or size is refused; of this model, it is an error
        unless ``exist_ok`` (then False is returned and nothing changes).
        """
        if self.client.collection_exists(name):
            self._check(name, self.client.get_collection(name))
            if exist_ok:
                return False
            raise exists(name)
        created = self.client.create_collection(name, **self._create_arguments(options))
        self._checked.add(name)
        return created

    def check_collection(self, name: str):
        """Its ``CollectionInfo``, once sure it holds this model's vectors (ModelMismatchError if not)."""
        info = _collection_info(self.client, name)
        self._check(name, info)
        return info

    def upsert(self, name: str, documents, ids=None, payloads=None, *, chunk_tokens: int | None = None,
               overlap_tokens: int = 0, late: bool = False, **options) -> list:
        """Embed and write finite input in one ``client.upsert``; return the ids written.

        All or nothing: every document, id and payload is checked, and every
        point built, before the single write. ``options`` go to
        ``client.upsert`` (``wait``, ``ordering`` ...). For streams, ``upload``.

        ``chunk_tokens``: each document becomes one point per chunk
        (``model.embed_chunks(texts, chunk_tokens, overlap_tokens, late)``),
        with point id ``ingest.chunk_id(source id, chunk index)`` (a uuid5)
        and payload ``source_id``, ``chunk_index``, ``chunk_start``,
        ``chunk_end`` (character offsets into the text, half-open), the
        chunk's text under ``text_field`` and the document's own payload.
        The write is one ``client.batch_update_points``: first every point
        whose ``source_id`` is one of these documents' ids is deleted, then
        the new chunks are written, so a shorter text leaves no stale chunk
        and a whitespace-only text leaves none at all. Returns the chunk ids;
        ``options`` go to ``batch_update_points`` (``wait``, ``ordering``).
        """
        chunking = ChunkSettings.of(chunk_tokens, overlap_tokens, late)  # bad settings fail before any work
        self.check_collection(name)
        if chunking is not None:
            chunked = self._all_chunks(name, documents, ids, payloads, chunking)
            if chunked.source_ids:
                self.client.batch_update_points(name, chunk_write_operations(chunked), **options)
            return [point.id for point in chunked.points]
        points = self._all_points(name, documents, ids, payloads)
        if points:
            self.client.upsert(name, points=points, **options)
        return [point.id for point in points]

    def upload(self, name: str, documents, ids=None, payloads=None, *, chunk_tokens: int | None = None,
               overlap_tokens: int = 0, late: bool = False, **options) -> int:
        """Stream input of any length, one ``client.upload_points`` per batch; return the number of points.

        A batch is written once it is embedded, so memory holds one batch
        whatever the client: local mode's ``upload_points`` collects every
        point it is given before writing, which for one call over the whole
        stream held it all. ``options`` go to ``upload_points`` (batch_size,
        max_retries, wait ...). See ``points`` for what an input error leaves written.

        ``chunk_tokens``: one point per chunk, as in ``upsert``; before each
        batch's ``upload_points``, a ``client.delete`` removes every point of
        that batch's documents (by ``source_id``), so no stale chunk is left.
        """
        chunking = ChunkSettings.of(chunk_tokens, overlap_tokens, late)
        self.check_collection(name)
        count = 0
        if chunking is not None:
            for chunked in self.chunk_batches(documents, ids, payloads, name, chunking):
                self.client.delete(name, points_selector=sources_filter(chunked.source_ids), wait=True)
                if chunked.points:
                    self.client.upload_points(name, chunked.points, **options)
                count += len(chunked.points)
            return count
        for batch in self.point_batches(documents, ids, payloads, collection_name=name):
            self.client.upload_points(name, batch, **options)
            count += len(batch)
        return count

    def query(self, name: str, text: str, limit: int = 10, query_filter=None, with_payload=True,
              group_by: str | None = None, **options) -> list:
        """The ``limit`` nearest points to ``text`` (embedded with the query prompt), best first.

        Returns ``client.query_points(...).points`` (ScoredPoint objects);
        ``options`` pass through (score_threshold, offset, search_params ...).
        The collection is checked on this embedder's first query of it (or
        any check before), not on every query: one client call per query.

        ``group_by="source_id"``: the best chunk of each of the ``limit``
        best documents, best first, through Qdrant's grouping API
        (``query_points_groups`` with ``group_size=1``; local mode has it
        too). Any payload key works; on a server, a payload index on it
        (``client.create_payload_index``) makes grouping fast.
        """
        if name not in self._checked:
            self.check_collection(name)
        arguments = self._query_arguments(text, limit, query_filter, with_payload, options, group_by)
        if group_by is not None:
            return best_of_groups(self.client.query_points_groups(name, **arguments))
        return self.client.query_points(name, **arguments).points

    def recommend(self, name: str, positive, negative=(), limit: int = 10, query_filter=None, with_payload=True,
                  **options) -> list:
        """Points like ``positive`` and unlike ``negative`` (point ids), from their stored vectors, best first.

        Qdrant's own recommend API (average-vector strategy); the examples are
        never returned. Returns ScoredPoint objects (``.id``, ``.score``:
        cosine similarity to the recommendation vector); an id that is not
        in the collection raises ``vecplug.stores.UnknownIdsError`` naming it.
        """
        positive, negative = examples(positive, negative)
        if name not in self._checked:
            self.check_collection(name)
        missing_ids([*positive, *negative], self.client.retrieve(name, [*positive, *negative], with_payload=False))
        arguments = query_arguments(positive, negative, self.vector_name, limit, query_filter, with_payload, **options)
        return self.client.query_points(name, **arguments).points
