"""Long documents as one point per chunk in Qdrant's local mode (issue 21).

What the embedder stores is compared with ``model.embed_chunks`` computed
apart from Qdrant (the chunking rules themselves are tested in tests/core
and tests/engine); ``query(group_by=...)`` with a brute force over the
stored vectors. The model runs in this process (the tiny ModernBERT, float32).
"""
from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

qdrant_client = pytest.importorskip("qdrant_client")

import vecplug  # noqa: E402
from qdrant_client import AsyncQdrantClient, QdrantClient, models  # noqa: E402
from qdrant_helpers import store_directory  # noqa: E402
from vecplug.errors import InvalidSettingError  # noqa: E402
from vecplug.testing import stdlib_paragraphs  # noqa: E402
from vecplug_qdrant import AsyncQdrantEmbedder, QdrantEmbedder, chunk_id, document_id  # noqa: E402

CHUNK_TOKENS = 512
# About 21,000 tokens of real text, paragraphs apart: long enough for late chunking's overlapping windows.
LONG_TEXT = "\n\n".join(stdlib_paragraphs()[:400])
MULTI_BYTE = "Größe und Maß. " * 30 + "日本語のテキストです。" * 40 + " emoji 🙂🚀 end."
NEWLINES_ONLY = "\n\n\n"
SOURCE_UUID = "5f0c8a8e-2b0a-4a43-9d4e-0c7c3f7a4f11"


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return vecplug.load_model(str(tiny_model_dir), dtype="float32")


@pytest.fixture
def client():
    with store_directory() as path:
        opened = QdrantClient(path=str(path))
        yield opened
        opened.close()


@pytest.fixture
def embedder(client, model):
    made = QdrantEmbedder(client, model)
    made.create_collection("docs")
    return made


def points_of(client, source_id) -> dict:
    source = models.Filter(must=[models.FieldCondition(key="source_id", match=models.MatchValue(value=source_id))])
    points, _ = client.scroll("docs", scroll_filter=source, limit=100_000, with_payload=True, with_vectors=True)
    return {point.id: point for point in points}


def assert_chunks_stored(client, source_id, text, expected, payload, text_field="document"):
    """The points of ``source_id`` are exactly ``expected`` (a vecplug.Chunks of ``text``)."""
    points = points_of(client, source_id)
    assert sorted(points) == sorted(chunk_id(source_id, index) for index in range(len(expected)))
    for index, ((start, end), chunk_text, vector) in enumerate(zip(expected.spans, expected.texts, expected.vectors)):
        point_id = str(uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, "vecplug:qdrant:chunk"), f"{source_id}#{index}"))
        point = points[point_id]
        assert chunk_text == text[start:end]
        want = {**payload, "source_id": source_id, "chunk_index": index, "chunk_start": start, "chunk_end": end}
        if text_field:
            want[text_field] = chunk_text
        assert point.payload == want
        np.testing.assert_allclose(point.vector["modernbert"], vector, atol=1e-6)


@pytest.mark.parametrize("late", [False, True])
def test_upsert_stores_one_point_per_chunk_with_merged_payload(client, embedder, model, late):
    texts = [LONG_TEXT, MULTI_BYTE, NEWLINES_ONLY]
    assert len(model.token_offsets([LONG_TEXT])[0]) > 20_000
    payloads = [{"title": "stdlib", "year": 2024}, None, {"title": "nothing"}]
    written = embedder.upsert("docs", texts, ids=[7, SOURCE_UUID, 9], payloads=payloads,
                              chunk_tokens=CHUNK_TOKENS, overlap_tokens=16, late=late)

    expected = model.embed_chunks(texts, CHUNK_TOKENS, 16, late=late)
    assert len(expected[0]) > 40 and len(expected[1]) >= 1 and len(expected[2]) == 0
    assert written == [chunk_id(source, index) for source, chunks in zip([7, SOURCE_UUID], expected)
                       for index in range(len(chunks))]
    assert client.count("docs").count == len(written)
    assert_chunks_stored(client, 7, LONG_TEXT, expected[0], payloads[0])
    assert_chunks_stored(client, SOURCE_UUID, MULTI_BYTE, expected[1], {})
    assert points_of(client, 9) == {}


def test_generated_source_ids_and_no_text_field(client, model):
    embedder = QdrantEmbedder(client, model, text_field=None)
    embedder.create_collection("docs")
    text = LONG_TEXT[:5000]
    embedder.upsert("docs", [text], chunk_tokens=64)
    assert_chunks_stored(client, document_id(text), text, model.embed_chunks([text], 64)[0], {}, text_field=None)


def test_late_and_plain_chunks_have_the_same_spans_and_different_vectors(client, embedder):
    embedder.upsert("docs", [LONG_TEXT[:12000]], ids=[1], chunk_tokens=CHUNK_TOKENS)
    embedder.upsert("docs", [LONG_TEXT[:12000]], ids=[2], chunk_tokens=CHUNK_TOKENS, late=True)
    plain, late = points_of(client, 1), points_of(client, 2)
    assert len(plain) == len(late)
    by_index = {point.payload["chunk_index"]: point for point in late.values()}
    differences = []
    for point in plain.values():
        other = by_index[point.payload["chunk_index"]]
        assert point.payload["document"] == other.payload["document"]
        differences.append(np.abs(np.array(point.vector["modernbert"]) - other.vector["modernbert"]).max())
    assert max(differences) > 1e-3  # late chunks saw the whole document


@pytest.mark.parametrize("write", ["upsert", "upload"])
def test_rewriting_a_shorter_text_leaves_no_stale_chunk(client, embedder, model, write):
    embedder.upsert("docs", [LONG_TEXT, "another document"], ids=[1, 2], payloads=[{"version": 1}, None],
                    chunk_tokens=CHUNK_TOKENS)
    other = points_of(client, 2)
    shorter = "\n\n".join(stdlib_paragraphs()[:20])
    getattr(embedder, write)("docs", [shorter], ids=[1], payloads=[{"version": 2}], chunk_tokens=CHUNK_TOKENS)
    expected = model.embed_chunks([shorter], CHUNK_TOKENS)[0]
    assert 1 < len(expected) < 10
    assert_chunks_stored(client, 1, shorter, expected, {"version": 2})
    assert points_of(client, 2).keys() == other.keys()
    assert client.count("docs").count == len(expected) + len(other)

    # newlines only: no chunk, and the document's previous chunks go
    getattr(embedder, write)("docs", [NEWLINES_ONLY], ids=[1], chunk_tokens=CHUNK_TOKENS)
    assert points_of(client, 1) == {}
    assert client.count("docs").count == len(other)


def test_a_source_given_twice_keeps_the_last_text(client, embedder, model):
    embedder.batch_size = 2  # the repeats fall in one batch and across batches
    embedder.upsert("docs", [LONG_TEXT[:8000], "x", "short", "shorter", "y"], ids=[1, 2, 1, 1, 3], chunk_tokens=64)
    assert_chunks_stored(client, 1, "shorter", model.embed_chunks(["shorter"], 64)[0], {})


@pytest.mark.parametrize("settings, message", [
    ({"chunk_tokens": 0}, "chunk_tokens must be at least 1"),
    ({"chunk_tokens": 8, "overlap_tokens": 8}, "overlap_tokens must be at least 0 and less than"),
    ({"chunk_tokens": 8, "overlap_tokens": -1}, "overlap_tokens must be at least 0"),
    ({"chunk_tokens": 8.0}, "chunk_tokens must be an integer"),
    ({"chunk_tokens": 8, "late": 1}, "late must be True or False"),
    ({"late": True}, "need chunk_tokens"),
])
@pytest.mark.parametrize("write", ["upsert", "upload", "points"])
def test_bad_chunk_settings_fail_before_any_write(client, embedder, write, settings, message):
    embedder.upsert("docs", ["kept"], ids=[1], chunk_tokens=CHUNK_TOKENS)
    with pytest.raises(InvalidSettingError, match=message):
        if write == "points":
            embedder.points(["kept", "new"], ids=[1, 2], **settings)
        else:
            getattr(embedder, write)("docs", ["kept", "new"], ids=[1, 2], **settings)
    assert sorted(points_of(client, 1)) == [chunk_id(1, 0)] and client.count("docs").count == 1


def test_payloads_may_not_name_the_chunk_fields(client, embedder, register_plugin):
    with pytest.raises(ValueError, match="payload at index 1 has 'chunk_start'"):
        embedder.upsert("docs", ["a", "b"], ids=[1, 2], payloads=[None, {"chunk_start": 3}], chunk_tokens=8)
    embedder.upsert("docs", ["plain points may"], ids=[5], payloads=[{"chunk_start": 3}])

    class SetsSourceId:
        @vecplug.hookimpl
        def vecplug_before_ingest(self, records, target):
            return [vecplug.Record(record.id, record.text, {"source_id": 1}) for record in records]

    register_plugin(SetsSourceId())
    with pytest.raises(ValueError, match="after vecplug_before_ingest has 'source_id'"):
        embedder.upsert("docs", ["c"], ids=[3], chunk_tokens=8)
    assert client.count("docs").count == 1


def test_points_yields_chunk_points_for_upload_points(client, embedder, model):
    text = LONG_TEXT[:6000]
    client.upload_points("docs", embedder.points([text], ids=[4], collection_name="docs", chunk_tokens=64))
    assert_chunks_stored(client, 4, text, model.embed_chunks([text], 64)[0], {})


def best_per_source(client, query_vector) -> dict:
    points, _ = client.scroll("docs", limit=100_000, with_payload=True, with_vectors=True)
    best: dict = {}
    for point in points:
        score = float(np.dot(point.vector["modernbert"], query_vector))
        source = point.payload["source_id"]
        if source not in best or score > best[source][1]:
            best[source] = (point.id, score)
    return best


def test_query_group_by_source_id_gives_each_documents_best_chunk(client, embedder, model):
    documents = [" ".join(stdlib_paragraphs()[start:start + 6]) for start in range(0, 120, 6)]
    embedder.upsert("docs", documents, ids=range(len(documents)),
                    payloads=[{"half": index % 2} for index in range(len(documents))], chunk_tokens=32)
    query = "how do I read a file line by line"
    best = best_per_source(client, model.embed_queries([query])[0])
    ranking = sorted(best.values(), key=lambda item: -item[1])

    hits = embedder.query("docs", query, limit=8, group_by="source_id")
    assert len(hits) == 8 and len({hit.payload["source_id"] for hit in hits}) == 8
    np.testing.assert_allclose([hit.score for hit in hits], [score for _, score in ranking[:8]], atol=1e-5)
    for hit in hits:
        point_id, score = best[hit.payload["source_id"]]
        assert hit.id == point_id or abs(hit.score - score) < 1e-5
        assert hit.id == chunk_id(hit.payload["source_id"], hit.payload["chunk_index"])

    odd = models.Filter(must=[models.FieldCondition(key="half", match=models.MatchValue(value=1))])
    filtered = embedder.query("docs", query, limit=50, query_filter=odd, group_by="source_id")
    assert len(filtered) == len(documents) // 2 and all(hit.payload["half"] == 1 for hit in filtered)
    with pytest.raises(TypeError, match="group_size"):
        embedder.query("docs", query, group_by="source_id", group_size=3)


def test_async_embedder_chunks_replaces_and_groups(model):
    shorter = "\n\n".join(stdlib_paragraphs()[:20])

    async def run(client):
        try:
            embedder = AsyncQdrantEmbedder(client, model, batch_size=2)
            await embedder.create_collection("docs")
            written = await embedder.upsert("docs", [LONG_TEXT[:20000], "other"], ids=[1, 2], chunk_tokens=128)
            await embedder.upload("docs", iter([shorter]), ids=iter([1]), chunk_tokens=128, late=True)
            points, _ = await client.scroll("docs", limit=10_000, with_payload=True, with_vectors=True)
            hits = await embedder.query("docs", "a file", limit=5, group_by="source_id")
            with pytest.raises(InvalidSettingError):
                await embedder.upload("docs", ["x"], ids=[2], chunk_tokens=-1)
            return written, points, hits
        finally:
            await client.close()

    with store_directory() as path:
        written, points, hits = asyncio.run(run(AsyncQdrantClient(path=str(path))))
    assert len(written) > 5
    expected = model.embed_chunks([shorter, "other"], 128, late=False)
    expected_late = model.embed_chunks([shorter], 128, late=True)[0]
    assert sorted(point.id for point in points) == sorted(
        [chunk_id(1, index) for index in range(len(expected_late))] + [chunk_id(2, 0)])
    by_id = {point.id: point for point in points}
    for index, vector in enumerate(expected_late.vectors):
        np.testing.assert_allclose(by_id[chunk_id(1, index)].vector["modernbert"], vector, atol=1e-6)
    np.testing.assert_allclose(by_id[chunk_id(2, 0)].vector["modernbert"], expected[1].vectors[0], atol=1e-6)
    assert sorted(hit.payload["source_id"] for hit in hits) == [1, 2]
