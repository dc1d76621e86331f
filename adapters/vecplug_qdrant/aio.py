"""``AsyncQdrantEmbedder``: the same, for ``qdrant_client.AsyncQdrantClient``.

The model is CPU- or GPU-bound work that would stall the event loop for the
whole embedding, so it runs in ``asyncio.to_thread``, with the
``vecplug_before_ingest`` plugins, one batch at a time; the client calls are
awaited on the loop (the local-mode client must stay on its own thread).
Input is read on the loop's thread, the caller's: a generator over a
``sqlite3`` cursor (which refuses other threads) works, and so do async
generators.
"""
from __future__ import annotations

import asyncio

from collections.abc import AsyncIterable, Collection

from .base import EmbedderBase, best_of_groups, chunk_write_operations
from .collection import exists, model_from_collection, not_found
from .ingest import ChunkSettings, abatched, aiter_records, check_inputs
from .recommend import examples, missing_ids, query_arguments


async def _as_list(value):
    """A list of what a sync or async iterable yields, read here (None, lists and str pass as they are)."""
    if value is None or isinstance(value, (Collection, str, bytes)):
        return value
    if isinstance(value, AsyncIterable):
        return [item async for item in value]
    return list(value)


async def _collection_info(client, name: str):
    if not await client.collection_exists(name):
        raise not_found(name)
    return await client.get_collection(name)


class AsyncQdrantEmbedder(EmbedderBase):
    """Create, fill and query Qdrant collections with a vecplug model, from async code.

        client = AsyncQdrantClient(url="http://localhost:6333")
        embedder = AsyncQdrantEmbedder(client, "nomic-ai/modernbert-embed-base")
        await embedder.create_collection("docs")
        await embedder.upload("docs", texts, payloads=metadata)
        hits = await embedder.query("docs", "how do I ...?", limit=5)

    Constructing it with a model name loads the model right away (blocking);
    ``await AsyncQdrantEmbedder.from_collection(...)`` loads in a thread.
    ``points()`` is the same lazy, synchronous iterator as the sync class's
    (``AsyncQdrantClient.upload_points`` takes a plain iterable).
    """

    @classmethod
    async def from_collection(cls, client, name: str, device=None, dtype=None, **options) -> "AsyncQdrantEmbedder":
        """An embedder with the model and vector a collection records (it refuses any other)."""
        info = await _collection_info(client, name)
        model, vector_name = await asyncio.to_thread(model_from_collection, name, info, device, dtype)
        return cls(client, model, vector_name=vector_name, **options)

    async def create_collection(self, name: str, *, exist_ok: bool = False, **options) -> bool:
        """See ``QdrantEmbedder.create_collection``."""
        if await self.client.collection_exists(name):
            self._check(name, await self.client.get_collection(name))
            if exist_ok:
                return False
            raise exists(name)
        created = await self.client.create_collection(name, **self._create_arguments(options))
        self._checked.add(name)
        return created

    async def check_collection(self, name: str):
        """See ``QdrantEmbedder.check_collection``."""
        info = await _collection_info(self.client, name)
        self._check(name, info)
        return info

    async def upsert(self, name: str, documents, ids=None, payloads=None, *, chunk_tokens: int | None = None,
                     overlap_tokens: int = 0, late: bool = False, **options) -> list:
        """All or nothing, like ``QdrantEmbedder.upsert``; return the ids written.

        Iterables (sync or async) are read into lists here, on the loop's thread, first.
        ``chunk_tokens``: one point per chunk, each document's old points deleted
        first, in one ``batch_update_points`` (see ``QdrantEmbedder.upsert``).
        """
        chunking = ChunkSettings.of(chunk_tokens, overlap_tokens, late)  # bad settings fail before any work
        await self.check_collection(name)
        check_inputs(documents, ids, payloads, allow_async=True, chunking=chunking)
        documents, ids, payloads = [await _as_list(value) for value in (documents, ids, payloads)]
        if chunking is not None:
            chunked = await asyncio.to_thread(self._all_chunks, name, documents, ids, payloads, chunking)
            if chunked.source_ids:
                await self.client.batch_update_points(name, chunk_write_operations(chunked), **options)
            return [point.id for point in chunked.points]
        points = await asyncio.to_thread(self._all_points, name, documents, ids, payloads)
        if points:
            await self.client.upsert(name, points=points, **options)
        return [point.id for point in points]

    async def upload(self, name: str, documents, ids=None, payloads=None, *, chunk_tokens: int | None = None,
                     overlap_tokens: int = 0, late: bool = False, **options) -> int:
        """Stream input of any length, one awaited ``client.upsert`` per batch; return the number of points.

        ``documents``, ``ids`` and ``payloads``: lists, iterables or async
        iterables, read on the loop's thread ``batch_size`` records at a
        time; each batch goes through the plugins and the model in a worker
        thread. Not ``upload_points``, which blocks the loop while it reads
        the points. A batch is written once it is embedded, so an input
        error leaves the earlier batches written (see ``points``).
        ``options`` go to ``client.upsert``; with ``chunk_tokens``, to
        ``client.batch_update_points``, one per batch, which deletes the
        batch's documents' old points before writing their chunks.
        """
        chunking = ChunkSettings.of(chunk_tokens, overlap_tokens, late)
        await self.check_collection(name)
        check_inputs(documents, ids, payloads, allow_async=True, chunking=chunking)
        count = 0
        async for records in abatched(aiter_records(documents, ids, payloads), self.batch_size):
            if chunking is not None:
                chunked = await asyncio.to_thread(self._chunk_points_of_batch, records, name, chunking)
                if chunked.source_ids:
                    await self.client.batch_update_points(name, chunk_write_operations(chunked), **options)
                count += len(chunked.points)
                continue
            batch = await asyncio.to_thread(self._points_of_batch, records, name)
            if batch:
                await self.client.upsert(name, points=batch, **options)
                count += len(batch)
        return count

    async def query(self, name: str, text: str, limit: int = 10, query_filter=None, with_payload=True,
                    group_by: str | None = None, **options) -> list:
        """See ``QdrantEmbedder.query`` (the collection is checked on the first query, not every one)."""
        if name not in self._checked:
            await self.check_collection(name)
        arguments = await asyncio.to_thread(self._query_arguments, text, limit, query_filter, with_payload, options,
                                            group_by)
        if group_by is not None:
            return best_of_groups(await self.client.query_points_groups(name, **arguments))
        return (await self.client.query_points(name, **arguments)).points

    async def recommend(self, name: str, positive, negative=(), limit: int = 10, query_filter=None,
                        with_payload=True, **options) -> list:
        """``QdrantEmbedder.recommend``, awaited."""
        positive, negative = examples(positive, negative)
        if name not in self._checked:
            await self.check_collection(name)
        found = await self.client.retrieve(name, [*positive, *negative], with_payload=False)
        missing_ids([*positive, *negative], found)
        arguments = query_arguments(positive, negative, self.vector_name, limit, query_filter, with_payload, **options)
        return (await self.client.query_points(name, **arguments)).points
