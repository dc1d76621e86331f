"""The smaller edges of issue 14 (defect 9): bare strings, lone surrogates, Qdrant ids, calls and async input."""
from __future__ import annotations

import asyncio
import sqlite3
import uuid

import pytest

import vecplug

SURROGATE_TEXT = "caf\udcff au lait"  # what errors="surrogateescape" makes of b"caf\xff au lait"


def test_iter_embed_refuses_a_bare_string_or_bytes_at_the_call(tiny_model):
    """A str is an iterable of characters: embedding "hello" as five texts is never what was meant."""
    for bad in ("hello", b"hi", bytearray(b"hi")):
        for call in (tiny_model.iter_embed, tiny_model.iter_embed_chunks):
            with pytest.raises(TypeError, match=f"not a single {type(bad).__name__}; wrap it in a list"):
                call(bad)
    assert sum(1 for _ in tiny_model.iter_embed(iter(["hello"]))) == 1


def test_a_lone_surrogate_is_named_by_its_index(tiny_model):
    for embed in (tiny_model.embed_documents, lambda texts: list(tiny_model.iter_embed(iter(texts)))):
        with pytest.raises(ValueError, match=r"text at index 2 has a lone surrogate '\\udcff' at character 3"
                                             r".*errors='replace'"):
            embed(["fine", "also fine", SURROGATE_TEXT])
    repaired = SURROGATE_TEXT.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    assert tiny_model.embed_documents([repaired]).shape == (1, 64)


qdrant_client = pytest.importorskip("qdrant_client")

from qdrant_client import AsyncQdrantClient, QdrantClient  # noqa: E402
from vecplug_qdrant import AsyncQdrantEmbedder, QdrantEmbedder  # noqa: E402


@pytest.fixture
def qdrant(tiny_model):
    client = QdrantClient(location=":memory:")
    embedder = QdrantEmbedder(client, tiny_model)
    embedder.create_collection("c")
    yield client, embedder
    client.close()


def test_qdrant_refuses_a_lone_surrogate_before_writing(qdrant):
    client, embedder = qdrant
    with pytest.raises(ValueError, match="text at index 1 has a lone surrogate"):
        embedder.upsert("c", ["fine", SURROGATE_TEXT])
    with pytest.raises(ValueError, match="text at index 1 has a lone surrogate"):
        embedder.upload("c", iter(["fine", SURROGATE_TEXT]))
    assert client.count("c").count == 0


def test_qdrant_ids_are_64_bit_and_uuids_come_back_canonical(qdrant):
    client, embedder = qdrant
    with pytest.raises(ValueError, match=r"id at index 0 is 18446744073709551616.*0 to 2\*\*64 - 1"):
        embedder.upsert("c", ["too big"], ids=[2**64])
    known = uuid.UUID("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d")
    spellings = ["{A1B2C3D4-E5F6-4A7B-8C9D-0E1F2A3B4C5D}", "a1b2c3d4e5f64a7b8c9d0e1f2a3b4c5d",
                 "urn:uuid:a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"]
    for spelling in spellings:
        assert embedder.upsert("c", ["the same point"], ids=[spelling]) == [str(known)]
    assert embedder.upsert("c", ["largest id"], ids=[2**64 - 1]) == [2**64 - 1]
    stored = {point.id for point in client.scroll("c", limit=10)[0]}
    assert stored == {str(known), 2**64 - 1}


class CountingClient:
    """The real client, with a record of which of its methods were called (to count round trips)."""

    def __init__(self, client):
        self._client, self.calls = client, []

    def __getattr__(self, name):
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*arguments, **options):
            self.calls.append(name)
            return attribute(*arguments, **options)

        return call


def test_queries_check_the_collection_once_per_embedder(qdrant, tiny_model, tiny_model_no_prompts_dir):
    client, embedder = qdrant
    embedder.upsert("c", ["one document", "another"])
    counting = CountingClient(client)
    fresh = QdrantEmbedder(counting, tiny_model)
    for _ in range(5):
        assert len(fresh.query("c", "a question", limit=1)) == 1
    assert counting.calls.count("query_points") == 5
    assert counting.calls.count("get_collection") == 1 and len(counting.calls) <= 7, counting.calls
    other = QdrantEmbedder(counting, str(tiny_model_no_prompts_dir), dtype="float32")
    with pytest.raises(vecplug.ModelMismatchError):  # the first query of an embedder still checks
        other.query("c", "a question")


def test_async_upload_reads_input_in_the_callers_thread_and_takes_async_generators(tiny_model):
    """A sqlite3 cursor refuses other threads; async generators are input too."""
    database = sqlite3.connect(":memory:")
    database.execute("create table notes (id integer, body text)")
    database.executemany("insert into notes values (?, ?)", [(number, f"note {number}") for number in range(600)])

    async def numbers():
        for number in range(600, 900):
            await asyncio.sleep(0)
            yield number

    async def texts():
        for number in range(600, 900):
            yield f"note {number}"

    async def main():
        client = AsyncQdrantClient(location=":memory:")
        embedder = AsyncQdrantEmbedder(client, tiny_model, batch_size=128)
        await embedder.create_collection("c")
        bodies = (body for (body,) in database.execute("select body from notes order by id"))
        row_ids = (row_id for (row_id,) in database.execute("select id from notes order by id"))
        from_cursor = await embedder.upload("c", bodies, ids=row_ids)
        from_async = await embedder.upload("c", texts(), ids=numbers(), payloads=({"async": True} for _ in range(300)))
        listed = await embedder.upsert("c", texts(), ids=numbers())
        count = (await client.count("c")).count
        await client.close()
        return from_cursor, from_async, len(listed), count

    assert asyncio.run(main()) == (600, 300, 300, 900)


def test_async_inputs_that_do_not_line_up_are_refused(tiny_model):
    async def texts(count):
        for number in range(count):
            yield f"note {number}"

    async def main():
        client = AsyncQdrantClient(location=":memory:")
        embedder = AsyncQdrantEmbedder(client, tiny_model, batch_size=10)
        await embedder.create_collection("c")
        with pytest.raises(ValueError, match="ids ran out at index 5"):
            await embedder.upload("c", texts(8), ids=iter(range(5)))
        with pytest.raises(ValueError, match="payloads go on after the 3 documents ended"):
            await embedder.upload("c", texts(3), payloads=[{}] * 4)
        with pytest.raises(TypeError, match="text at index 1 is NoneType"):
            await embedder.upload("c", iter(["fine", None]))
        count = (await client.count("c")).count
        await client.close()
        return count

    assert asyncio.run(main()) == 0


chromadb = pytest.importorskip("chromadb")


def test_chroma_add_refuses_a_lone_surrogate_before_writing(tmp_path, tiny_model_dir):
    import vecplug_chroma

    client = chromadb.PersistentClient(str(tmp_path / "chroma"),
                                       settings=chromadb.config.Settings(anonymized_telemetry=False))
    function = vecplug_chroma.ModernBertEmbeddingFunction(str(tiny_model_dir), dtype="float32")
    collection = client.create_collection("edges", embedding_function=function)
    with pytest.raises(ValueError, match="text at index 1 has a lone surrogate"):
        vecplug_chroma.add(collection, ["fine", SURROGATE_TEXT])
    assert collection.count() == 0
