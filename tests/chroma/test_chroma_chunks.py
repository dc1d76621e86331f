"""Long documents as chunk records in a real Chroma PersistentClient (issue 21).

What the adapter stores is compared with ``model.embed_chunks`` computed
apart from Chroma (the chunking rules themselves are tested in tests/core
and tests/engine); the best-chunk query with a brute force over the stored
vectors. The model runs in this process (the tiny ModernBERT, float32).
"""
from __future__ import annotations

import uuid

import numpy as np
import pytest

chromadb = pytest.importorskip("chromadb")

import vecplug  # noqa: E402
import vecplug_chroma  # noqa: E402
from vecplug.errors import InvalidSettingError  # noqa: E402
from vecplug.testing import stdlib_paragraphs  # noqa: E402
from vecplug_chroma import ModernBertEmbeddingFunction  # noqa: E402

CHUNK_TOKENS = 512
# About 21,000 tokens of real text, paragraphs apart: long enough for late chunking's overlapping windows.
LONG_TEXT = "\n\n".join(stdlib_paragraphs()[:400])
MULTI_BYTE = "Größe und Maß. " * 30 + "日本語のテキストです。" * 40 + " emoji 🙂🚀 end."
NEWLINES_ONLY = "\n\n\n"


@pytest.fixture(scope="module")
def function(tiny_model_dir):
    return ModernBertEmbeddingFunction(str(tiny_model_dir), dtype="float32")


@pytest.fixture(scope="module")
def model(function):
    return function.model


@pytest.fixture
def collection(tmp_path, function):
    client = chromadb.PersistentClient(str(tmp_path / "chroma"),
                                       settings=chromadb.config.Settings(anonymized_telemetry=False))
    return client.create_collection(f"chunks-{uuid.uuid4().hex[:12]}", embedding_function=function)


def stored(collection, where=None) -> dict:
    result = collection.get(where=where, include=["documents", "metadatas", "embeddings"])
    return {record_id: (document, metadata, np.asarray(vector))
            for record_id, document, metadata, vector in zip(result["ids"], result["documents"],
                                                             result["metadatas"], result["embeddings"])}


def assert_chunks_stored(collection, source_id, text, expected, metadata):
    """The records of ``source_id`` are exactly ``expected`` (a vecplug.Chunks of ``text``)."""
    rows = stored(collection, where={"source_id": source_id})
    assert sorted(rows) == sorted(f"{source_id}#{index}" for index in range(len(expected)))
    for index, ((start, end), chunk_text, vector) in enumerate(zip(expected.spans, expected.texts, expected.vectors)):
        document, stored_metadata, stored_vector = rows[f"{source_id}#{index}"]
        assert document == chunk_text == text[start:end]
        assert stored_metadata == {**metadata, "source_id": source_id, "chunk_index": index,
                                   "chunk_start": start, "chunk_end": end}
        np.testing.assert_allclose(stored_vector, vector, atol=1e-6)


@pytest.mark.parametrize("late", [False, True])
def test_add_stores_one_record_per_chunk_with_merged_metadata(collection, model, late):
    texts = [LONG_TEXT, MULTI_BYTE, NEWLINES_ONLY]
    assert len(model.token_offsets([LONG_TEXT])[0]) > 20_000
    metadatas = [{"title": "stdlib", "year": 2024}, None, {"title": "nothing"}]
    written = vecplug_chroma.add(collection, texts, ids=["long", "bytes", "blank"], metadatas=metadatas,
                                 chunk_tokens=CHUNK_TOKENS, overlap_tokens=16, late=late)

    expected = model.embed_chunks(texts, CHUNK_TOKENS, 16, late=late)
    assert len(expected[0]) > 40 and len(expected[1]) >= 1 and len(expected[2]) == 0
    assert written == [f"{source}#{index}" for source, chunks in zip(["long", "bytes"], expected)
                       for index in range(len(chunks))]
    assert collection.count() == len(written)
    assert_chunks_stored(collection, "long", LONG_TEXT, expected[0], metadatas[0])
    assert_chunks_stored(collection, "bytes", MULTI_BYTE, expected[1], {})
    assert stored(collection, where={"source_id": "blank"}) == {}


def test_late_and_plain_chunks_have_the_same_spans_and_different_vectors(collection, model):
    vecplug_chroma.add(collection, [LONG_TEXT[:12000]], ids=["plain"], chunk_tokens=CHUNK_TOKENS)
    vecplug_chroma.add(collection, [LONG_TEXT[:12000]], ids=["late"], chunk_tokens=CHUNK_TOKENS, late=True)
    plain, late = stored(collection, where={"source_id": "plain"}), stored(collection, where={"source_id": "late"})
    assert len(plain) == len(late)
    for index in range(len(plain)):
        assert plain[f"plain#{index}"][0] == late[f"late#{index}"][0]
    differences = [np.abs(plain[f"plain#{index}"][2] - late[f"late#{index}"][2]).max() for index in range(len(plain))]
    assert max(differences) > 1e-3  # late chunks saw the whole document


def test_upsert_of_a_shorter_text_leaves_no_stale_chunk(collection, model):
    vecplug_chroma.add(collection, [LONG_TEXT, "another document"], ids=["doc", "other"],
                       metadatas=[{"version": 1}, None], chunk_tokens=CHUNK_TOKENS)
    other_before = stored(collection, where={"source_id": "other"})
    shorter = "\n\n".join(stdlib_paragraphs()[:20])
    written = vecplug_chroma.upsert(collection, [shorter], ids=["doc"], metadatas=[{"version": 2}],
                                    chunk_tokens=CHUNK_TOKENS)
    expected = model.embed_chunks([shorter], CHUNK_TOKENS)[0]
    assert 1 < len(expected) < 10 and written == [f"doc#{index}" for index in range(len(expected))]
    assert_chunks_stored(collection, "doc", shorter, expected, {"version": 2})
    assert stored(collection, where={"source_id": "other"}).keys() == other_before.keys()
    assert collection.count() == len(expected) + len(other_before)

    # newlines only: no chunk, and the document's previous chunks go
    assert vecplug_chroma.upsert(collection, [NEWLINES_ONLY], ids=["doc"], chunk_tokens=CHUNK_TOKENS) == []
    assert stored(collection, where={"source_id": "doc"}) == {}
    assert collection.count() == len(other_before)


def test_chunked_upsert_replaces_a_whole_document_record_of_the_same_id(collection):
    vecplug_chroma.add(collection, ["stored whole"], ids=["doc"])
    vecplug_chroma.upsert(collection, ["now in chunks"], ids=["doc"], chunk_tokens=CHUNK_TOKENS)
    assert sorted(stored(collection)) == ["doc#0"]


def test_add_refuses_a_document_whose_chunks_are_stored(collection):
    vecplug_chroma.add(collection, ["first version"], ids=["doc"], chunk_tokens=CHUNK_TOKENS)
    before = stored(collection)
    with pytest.raises(ValueError, match="already in collection .*'doc'.*upsert"):
        vecplug_chroma.add(collection, ["second version", "new"], ids=["doc", "new"], chunk_tokens=CHUNK_TOKENS)
    assert stored(collection).keys() == before.keys() and stored(collection)["doc#0"][0] == "first version"


@pytest.mark.parametrize("settings, message", [
    ({"chunk_tokens": 0}, "chunk_tokens must be at least 1"),
    ({"chunk_tokens": 8, "overlap_tokens": 8}, "overlap_tokens must be at least 0 and less than"),
    ({"chunk_tokens": 8, "overlap_tokens": -1}, "overlap_tokens must be at least 0"),
    ({"chunk_tokens": "512"}, "chunk_tokens must be an integer"),
    ({"chunk_tokens": 8, "late": "yes"}, "late must be True or False"),
    ({"late": True}, "need chunk_tokens"),
    ({"overlap_tokens": 4}, "need chunk_tokens"),
])
@pytest.mark.parametrize("write", [vecplug_chroma.add, vecplug_chroma.upsert])
def test_bad_chunk_settings_fail_before_any_write(collection, write, settings, message):
    vecplug_chroma.add(collection, ["kept"], ids=["kept"], chunk_tokens=CHUNK_TOKENS)
    with pytest.raises(InvalidSettingError, match=message):
        write(collection, ["kept", "new"], ids=["kept", "new"], **settings)
    assert sorted(stored(collection)) == ["kept#0"]


def test_metadata_may_not_name_the_chunk_fields(collection, register_plugin):
    with pytest.raises(ValueError, match="metadata at index 1 has 'chunk_index'"):
        vecplug_chroma.add(collection, ["a", "b"], ids=["a", "b"], metadatas=[None, {"chunk_index": 3}],
                           chunk_tokens=CHUNK_TOKENS)
    vecplug_chroma.add(collection, ["plain records may"], ids=["plain"], metadatas=[{"chunk_index": 3}])

    class SetsSourceId:
        @vecplug.hookimpl
        def vecplug_before_ingest(self, records, target):
            return [vecplug.Record(record.id, record.text, {"source_id": "x"}) for record in records]

    register_plugin(SetsSourceId())
    with pytest.raises(ValueError, match="after vecplug_before_ingest has 'source_id'"):
        vecplug_chroma.add(collection, ["c"], ids=["c"], chunk_tokens=CHUNK_TOKENS)
    assert sorted(stored(collection)) == ["plain"]


def test_plugins_see_whole_documents_and_chunks_are_cut_from_what_they_return(collection, model, register_plugin):
    seen = []

    class Redact:
        @vecplug.hookimpl
        def vecplug_before_ingest(self, records, target):
            seen.extend(record.text for record in records)
            return [vecplug.Record(record.id, record.text.replace("SECRET", "[x]"), {**record.metadata, "redacted": 1})
                    for record in records]

    register_plugin(Redact())
    text = "SECRET " + LONG_TEXT[:6000]
    vecplug_chroma.add(collection, [text], ids=["doc"], chunk_tokens=64)
    assert seen == [text]
    redacted = text.replace("SECRET", "[x]")
    assert_chunks_stored(collection, "doc", redacted, model.embed_chunks([redacted], 64)[0], {"redacted": 1})


def test_chunking_needs_the_collections_vecplug_model(tmp_path):
    client = chromadb.PersistentClient(str(tmp_path / "other"),
                                       settings=chromadb.config.Settings(anonymized_telemetry=False))
    collection = client.create_collection("no-function", embedding_function=None)
    with pytest.raises(InvalidSettingError, match="needs the vecplug model's tokenizer"):
        vecplug_chroma.add(collection, ["text"], ids=["a"], chunk_tokens=CHUNK_TOKENS)
    assert collection.count() == 0


def test_best_chunks_gives_each_documents_best_chunk_and_matches_brute_force(collection, model):
    documents = [" ".join(stdlib_paragraphs()[start:start + 6]) for start in range(0, 120, 6)]
    ids = [f"doc-{index}" for index in range(len(documents))]
    vecplug_chroma.add(collection, documents, ids=ids, metadatas=[{"half": index % 2} for index in range(len(ids))],
                       chunk_tokens=32)
    rows = stored(collection)
    assert len(rows) > 8 * len(documents)  # many chunks per document: one round of over-fetching is not enough

    query = "how do I read a file line by line"
    query_vector = model.embed_queries([query])[0]
    best_per_source: dict = {}
    for record_id, (_, metadata, vector) in rows.items():
        distance = 1.0 - float(vector @ query_vector)
        source = metadata["source_id"]
        if source not in best_per_source or distance < best_per_source[source][1]:
            best_per_source[source] = (record_id, distance)
    ranking = sorted(best_per_source.items(), key=lambda item: item[1][1])

    hits = vecplug_chroma.best_chunks(collection, query, n_results=15)
    assert len(hits) == 15 and len({hit["source_id"] for hit in hits}) == 15
    np.testing.assert_allclose([hit["distance"] for hit in hits], [distance for _, (_, distance) in ranking[:15]],
                               atol=1e-5)
    for hit in hits:
        assert hit["id"] == best_per_source[hit["source_id"]][0] or \
            abs(hit["distance"] - best_per_source[hit["source_id"]][1]) < 1e-5
        assert hit["document"] == rows[hit["id"]][0] and hit["metadata"] == rows[hit["id"]][1]
        assert hit["id"] == f"{hit['source_id']}#{hit['chunk_index']}"

    odd = vecplug_chroma.best_chunks(collection, query, n_results=50, where={"half": 1})
    assert len(odd) == len(documents) // 2 and all(hit["metadata"]["half"] == 1 for hit in odd)
