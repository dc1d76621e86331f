"""Long documents as one row per chunk in Milvus Lite (issue 24, second priority; decision 0079's order).

What the embedder stores is compared with ``model.embed_chunks`` computed
apart from Milvus (the chunking rules themselves are tested in tests/core
and tests/engine). The tiny ModernBERT runs in this process, float32.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pymilvus")

import vecplug  # noqa: E402
from milvus_helpers import lite_file, row_count  # noqa: E402
from pymilvus import MilvusClient  # noqa: E402
from vecplug.errors import InvalidSettingError  # noqa: E402
from vecplug.testing import stdlib_paragraphs  # noqa: E402
from vecplug_milvus import MilvusEmbedder  # noqa: E402

LONG_TEXT = "\n\n".join(stdlib_paragraphs()[:40])
SHORT_TEXT = "A short text makes one chunk."


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return vecplug.load_model(str(tiny_model_dir), dtype="float32")


@pytest.fixture
def client():
    with lite_file() as path:
        opened = MilvusClient(str(path))
        yield opened
        opened.close()


def chunks_of(client, name: str, source_id) -> list[dict]:
    literal = f'"{source_id}"' if isinstance(source_id, str) else source_id
    rows = client.query(name, filter=f"source_id == {literal}", output_fields=["*"], limit=16_384)
    return sorted(rows, key=lambda row: row["chunk_index"])


def assert_chunks_stored(rows: list[dict], text: str, expected, metadata: dict) -> None:
    assert [row["chunk_index"] for row in rows] == list(range(len(expected.texts)))
    assert [(row["chunk_start"], row["chunk_end"]) for row in rows] == [tuple(span) for span in expected.spans]
    assert [row["document"] for row in rows] == [text[start:end] for start, end in expected.spans]
    np.testing.assert_allclose(np.array([row["vector"] for row in rows]), expected.vectors, atol=1e-5)
    assert all(row[key] == value for row in rows for key, value in metadata.items())


def test_insert_stores_each_chunk_with_its_place_in_the_document(client, model):
    embedder = MilvusEmbedder(client, model)
    embedder.create_collection("docs", id_type="str")
    written = embedder.insert("docs", [LONG_TEXT, SHORT_TEXT], ids=["long", "short"],
                              metadata=[{"lang": "en"}, {"lang": "fr"}], chunk_tokens=128, overlap_tokens=16)
    expected_long, expected_short = model.embed_chunks([LONG_TEXT, SHORT_TEXT], 128, 16)
    assert len(expected_long.texts) > 5 and len(expected_short.texts) == 1
    assert written == [f"long#{i}" for i in range(len(expected_long.texts))] + ["short#0"]
    assert_chunks_stored(chunks_of(client, "docs", "long"), LONG_TEXT, expected_long, {"lang": "en"})
    assert_chunks_stored(chunks_of(client, "docs", "short"), SHORT_TEXT, expected_short, {"lang": "fr"})
    hit = embedder.search("docs", SHORT_TEXT, limit=1, filter='lang == "fr"')[0]
    assert hit["id"] == "short#0" and hit["entity"]["source_id"] == "short"


def test_late_chunking_and_generated_ids_in_an_int64_collection(client, model):
    embedder = MilvusEmbedder(client, model, batch_size=1)
    embedder.create_collection("docs")
    written = embedder.insert("docs", [LONG_TEXT, SHORT_TEXT], chunk_tokens=128, late=True)
    expected_long, expected_short = model.embed_chunks([LONG_TEXT, SHORT_TEXT], 128, late=True)
    assert len(set(written)) == len(written) == len(expected_long.texts) + 1
    sources = {row["source_id"] for row in client.query("docs", filter="chunk_index >= 0", output_fields=["*"],
                                                        limit=1000)}
    assert len(sources) == 2 and not sources & set(written)  # documents and chunk rows have ids of their own
    long_source, short_source = sorted(sources, key=lambda source: -len(chunks_of(client, "docs", source)))
    assert_chunks_stored(chunks_of(client, "docs", long_source), LONG_TEXT, expected_long, {})
    assert_chunks_stored(chunks_of(client, "docs", short_source), SHORT_TEXT, expected_short, {})


def test_upsert_replaces_every_old_chunk_and_insert_refuses_a_stored_document(client, model):
    embedder = MilvusEmbedder(client, model)
    embedder.create_collection("docs", id_type="str")
    embedder.insert("docs", [LONG_TEXT], ids=["doc"], chunk_tokens=128)
    before = row_count(client, "docs")
    with pytest.raises(ValueError, match="ids already in collection 'docs': 'doc'.*upsert"):
        embedder.insert("docs", [SHORT_TEXT], ids=["doc"], chunk_tokens=64)
    with pytest.raises(ValueError, match="ids already in collection 'docs': 'doc'"):
        embedder.upload("docs", iter([SHORT_TEXT]), ids=iter(["doc"]), chunk_tokens=64)
    assert row_count(client, "docs") == before > 1
    assert embedder.upsert("docs", [SHORT_TEXT], ids=["doc"], chunk_tokens=64) == ["doc#0"]
    [row] = chunks_of(client, "docs", "doc")  # a shorter text leaves no stale chunk
    assert row["document"] == SHORT_TEXT and row_count(client, "docs") == 1
    assert embedder.upsert("docs", ["   \n  "], ids=["doc"], chunk_tokens=64) == []  # whitespace: no chunks at all
    assert row_count(client, "docs") == 0


def test_upload_streams_chunks(client, model):
    embedder = MilvusEmbedder(client, model, batch_size=2)
    embedder.create_collection("docs", id_type="str")
    texts = [LONG_TEXT, SHORT_TEXT, SHORT_TEXT + " Another.", SHORT_TEXT + " A third."]
    count = embedder.upload("docs", iter(texts), ids=iter("abcd"), chunk_tokens=128)
    expected = model.embed_chunks(texts, 128)
    assert count == sum(len(chunks.texts) for chunks in expected) == row_count(client, "docs")
    assert_chunks_stored(chunks_of(client, "docs", "d"), texts[3], expected[3], {})


def test_chunk_settings_and_fields_are_checked_before_anything_is_written(client, model):
    embedder = MilvusEmbedder(client, model)
    embedder.create_collection("docs", id_type="str")
    with pytest.raises(InvalidSettingError, match="overlap_tokens and late need chunk_tokens"):
        embedder.insert("docs", [SHORT_TEXT], ids=["a"], late=True)
    with pytest.raises(InvalidSettingError):
        embedder.insert("docs", [SHORT_TEXT], ids=["a"], chunk_tokens=0)
    with pytest.raises(ValueError, match="metadata at index 1 has 'chunk_index'.*rename"):
        embedder.insert("docs", [SHORT_TEXT, SHORT_TEXT], ids=["a", "b"], metadata=[{}, {"chunk_index": 3}],
                        chunk_tokens=64)
    assert row_count(client, "docs") == 0
