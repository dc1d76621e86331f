"""The Milvus adapter against Milvus Lite (``MilvusClient("path/milvus.db")``, in process), no mocks.

One module-wide store holds 1,000 real sentences inserted with metadata;
every search is checked against brute-force cosine over vecplug's own
document and query vectors.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pymilvus = pytest.importorskip("pymilvus")

import vecplug  # noqa: E402
from milvus_helpers import (  # noqa: E402
    REOPEN_AND_SEARCH, assert_brute_force, lite_file, row_count, run_python, sentences, stored_rows,
)
from pymilvus import DataType, MilvusClient  # noqa: E402
from vecplug.client import RemoteModel  # noqa: E402
from vecplug_milvus import (  # noqa: E402
    CollectionExistsError, CollectionNotFoundError, MilvusEmbedder, ModernBertEmbeddingFunction,
    UnrecordedCollectionError, release,
)

QUERIES = ["how do I open a file", "exceptions raised by a generator", "the value of a local variable"]
COUNT = 1000


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return vecplug.load_model(str(tiny_model_dir), dtype="float32")


@pytest.fixture(scope="module")
def corpus(model):
    """Collection "docs": 1,000 sentences with metadata ``n`` and ``topic`` (n % 3), inserted in one call."""
    with lite_file() as path:
        client = MilvusClient(str(path))
        documents = list(sentences()[:COUNT])
        embedder = MilvusEmbedder(client, model)
        embedder.create_collection("docs")
        ids = embedder.insert("docs", documents, metadata=[{"n": n, "topic": n % 3} for n in range(COUNT)])
        yield {"client": client, "documents": documents, "ids": ids, "vectors": model.embed_documents(documents),
               "topics": np.arange(COUNT) % 3}
        client.close()


@pytest.fixture
def scratch():
    """An empty Milvus Lite file of its own."""
    with lite_file() as path:
        client = MilvusClient(str(path))
        yield client
        client.close()


# -- collections and their record of the model ---------------------------------------------

def test_create_collection_lays_out_and_records_the_model(scratch, model):
    embedder = MilvusEmbedder(scratch, model)
    assert embedder.create_collection("c") is True
    description = scratch.describe_collection("c")
    fields = {field["name"]: field for field in description["fields"]}
    assert fields["id"]["type"] == DataType.INT64 and fields["id"]["is_primary"]
    assert fields["vector"]["type"] == DataType.FLOAT_VECTOR and int(fields["vector"]["params"]["dim"]) == 64
    assert fields["document"]["type"] == DataType.VARCHAR and description["enable_dynamic_field"]
    assert scratch.describe_index("c", "vector")["metric_type"] == "COSINE"
    record = json.loads(description["properties"]["vecplug"])
    assert record["model"] == model.spec.to_dict() and record["model"]["fingerprint"] == model.fingerprint
    assert record["model"]["prompts"] == {"query": "search_query: ", "document": "search_document: "}
    with pytest.raises(CollectionExistsError, match="already exists"):
        embedder.create_collection("c")
    assert embedder.create_collection("c", exist_ok=True) is False
    assert embedder.create_collection("s", id_type="str") is True
    assert {field["name"]: field["type"] for field in scratch.describe_collection("s")["fields"]}["id"] == \
        DataType.VARCHAR
    with pytest.raises(ValueError, match="id_type must be 'int'.*or 'str'"):
        embedder.create_collection("u", id_type="uuid")
    assert not scratch.has_collection("u")


def test_from_collection_loads_the_recorded_model_and_a_changed_one_is_refused(corpus, model):
    client = corpus["client"]
    assert MilvusEmbedder.from_collection(client, "docs", dtype="float32").model is model  # the cached copy
    MilvusEmbedder(client, model).create_collection("changed")
    record = json.loads(client.describe_collection("changed")["properties"]["vecplug"])
    record["model"]["fingerprint"] = "0" * 24  # what a model whose weights changed since looks like
    client.alter_collection_properties("changed", properties={"vecplug": json.dumps(record)})
    with pytest.raises(vecplug.ModelMismatchError, match="collection 'changed' was made with.*weights or prompts"):
        MilvusEmbedder.from_collection(client, "changed", dtype="float32")
    client.drop_collection("changed")


def test_an_embedder_of_another_model_is_refused_and_writes_nothing(corpus, model, tiny_model_no_prompts_dir):
    client = corpus["client"]
    other = MilvusEmbedder(client, str(tiny_model_no_prompts_dir), dtype="float32")
    assert other.model.dimensions == model.dimensions  # same size: only the record tells them apart
    for attempt in (lambda: other.insert("docs", ["a"]), lambda: other.upload("docs", iter(["a"])),
                    lambda: other.search("docs", "a"), lambda: other.create_collection("docs", exist_ok=True),
                    lambda: other.upsert("docs", ["a"], ids=[1])):
        with pytest.raises(vecplug.ModelMismatchError, match=f"made with {model.name}.*from_collection"):
            attempt()
    assert row_count(client, "docs") == COUNT


def test_collections_vecplug_did_not_make(scratch, model):
    schema = scratch.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=32)
    schema.add_field("document", DataType.VARCHAR, max_length=100)
    index = scratch.prepare_index_params()
    index.add_index("vector", index_type="AUTOINDEX", metric_type="COSINE")
    scratch.create_collection("small", schema=schema, index_params=index)
    embedder = MilvusEmbedder(scratch, model)
    with pytest.raises(vecplug.ModelMismatchError, match="holds 32-dimensional vectors.*64-dimensional"):
        embedder.insert("small", ["a"])
    with pytest.raises(UnrecordedCollectionError, match="not created by vecplug"):
        MilvusEmbedder.from_collection(scratch, "small")
    scratch.create_collection("quick", dimension=64)  # MilvusClient's quick setup: no 'document' field
    with pytest.raises(vecplug.ModelMismatchError, match="not laid out as vecplug_milvus writes.*'document'"):
        embedder.search("quick", "a")
    with pytest.raises(CollectionNotFoundError, match="no collection 'nope'.*create_collection"):
        embedder.insert("nope", ["a"])
    with pytest.raises(CollectionNotFoundError):
        MilvusEmbedder.from_collection(scratch, "nope")


# -- vectors, searches, filters ------------------------------------------------------------

def test_stored_vectors_are_document_vectors_and_search_embeds_a_query(corpus, model):
    client = corpus["client"]
    rows = stored_rows(client, "docs")
    assert sorted(rows) == sorted(corpus["ids"])
    got = np.array([rows[row_id]["vector"] for row_id in corpus["ids"]])
    np.testing.assert_allclose(got, corpus["vectors"], atol=1e-5)
    first = rows[corpus["ids"][1]]
    assert (first["document"], first["n"], first["topic"]) == (corpus["documents"][1], 1, 1)
    embedder = MilvusEmbedder(client, model)
    query = np.array(embedder.query_vector(QUERIES[0]))
    np.testing.assert_allclose(query, model.embed_queries([QUERIES[0]])[0], atol=1e-5)
    assert np.abs(query - model.embed_documents([QUERIES[0]])[0]).max() > 1e-2  # the prompts matter
    for text in QUERIES:
        hits = embedder.search("docs", text, limit=10)
        assert_brute_force(hits, corpus["ids"], corpus["vectors"], model.embed_queries([text])[0], 10)
    best = hits[0]
    position = corpus["ids"].index(best["id"])
    assert best["entity"] == {"document": corpus["documents"][position], "n": position, "topic": position % 3}


def test_filters_and_output_fields(corpus, model):
    embedder = MilvusEmbedder(corpus["client"], model)
    hits = embedder.search("docs", QUERIES[1], limit=7, filter="topic == 1", output_fields=["topic"])
    assert len(hits) == 7 and all(hit["entity"] == {"topic": 1} for hit in hits)
    query = model.embed_queries([QUERIES[1]])[0]
    assert_brute_force(hits, corpus["ids"], corpus["vectors"], query, 7, allowed=corpus["topics"] == 1)
    narrow = embedder.search("docs", QUERIES[1], limit=50, filter="n >= 10 and n < 20 and topic != 0")
    assert sorted(hit["entity"]["n"] for hit in narrow) == [n for n in range(10, 20) if n % 3]
    assert all(hit["entity"] == {} for hit in embedder.search("docs", QUERIES[1], limit=3, output_fields=[]))
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        embedder.search("docs", "a", limit=0)
    with pytest.raises(TypeError, match="search text must be str"):
        embedder.search("docs", None)


# -- ids -----------------------------------------------------------------------------------

def test_generated_ids_are_distinct_across_calls_and_skip_rows_already_there(scratch, model):
    from vecplug_milvus.ids import int_ids

    embedder = MilvusEmbedder(scratch, model, batch_size=4)
    embedder.create_collection("c")
    first = embedder.insert("c", list(sentences()[:10]))
    second = embedder.insert("c", list(sentences()[10:20]))
    assert embedder.upload("c", iter(sentences()[20:30])) == 10
    everything = sorted(stored_rows(scratch, "c"))
    assert len(set(first + second)) == 20 and len(everything) == 30
    assert all(0 <= row_id < 2**63 for row_id in everything)
    # a row where this process's run of ids goes next (another writer's, say): the run moves elsewhere
    upcoming = int_ids.take(1)[0] + 1
    embedder.insert("c", ["someone else's row"], ids=[upcoming + 2])
    third = embedder.insert("c", list(sentences()[30:35]))
    assert not set(third) & set(range(upcoming, upcoming + 5)) and row_count(scratch, "c") == 36
    embedder.create_collection("s", id_type="str")
    named = embedder.insert("s", ["one", "two"]) + embedder.insert("s", ["three"])
    assert len(set(named)) == 3 and all(isinstance(value, str) and len(value) == 32 for value in named)


def test_insert_refuses_ids_already_there_and_upsert_replaces(scratch, model):
    embedder = MilvusEmbedder(scratch, model)
    embedder.create_collection("c")
    assert embedder.insert("c", ["first", "second"], ids=[1, np.int64(2)]) == [1, 2]
    with pytest.raises(ValueError, match="ids already in collection 'c': 2; insert never replaces"):
        embedder.insert("c", ["new", "again"], ids=[3, 2])
    with pytest.raises(ValueError, match="ids repeat 4"):
        embedder.insert("c", ["x", "y"], ids=[4, 4])
    with pytest.raises(TypeError, match="upsert replaces rows by id: pass ids"):
        embedder.upsert("c", ["x"], None)
    assert row_count(scratch, "c") == 2
    assert embedder.upsert("c", ["second, replaced"], ids=[2], metadata=[{"v": 2}]) == [2]
    rows = stored_rows(scratch, "c")
    assert rows[2]["document"] == "second, replaced" and rows[2]["v"] == 2 and len(rows) == 2
    np.testing.assert_allclose(rows[2]["vector"], model.embed_documents(["second, replaced"])[0], atol=1e-5)


# -- bad input: clear errors, nothing written ----------------------------------------------

def test_lists_of_unequal_length_are_refused_before_anything_is_written(scratch, model):
    embedder = MilvusEmbedder(scratch, model)
    embedder.create_collection("c")
    with pytest.raises(ValueError, match="3 texts but 2 ids"):
        embedder.insert("c", ["a", "b", "c"], ids=[1, 2])
    with pytest.raises(ValueError, match="3 texts but 4 metadata"):
        embedder.insert("c", ["a", "b", "c"], metadata=[{}, {}, {}, {}])
    with pytest.raises(ValueError, match="3 texts but 2 ids"):
        embedder.insert("c", iter(["a", "b", "c"]), ids=iter([1, 2]))  # insert reads iterators whole first
    with pytest.raises(ValueError, match="3 texts but 2 ids"):
        embedder.upload("c", ["a", "b", "c"], ids=[1, 2])  # lists given to upload are checked whole too
    with pytest.raises(TypeError, match="texts must be a list.*not a single str"):
        embedder.insert("c", "one string")
    with pytest.raises(TypeError, match="text at index 300 is NoneType"):
        embedder.insert("c", list(sentences()[:300]) + [None])
    assert row_count(scratch, "c") == 0


@pytest.mark.parametrize("bad, message", [
    ({"topic": float("nan")}, "metadata at index 1 cannot be stored.*NaN"),
    ({"when": {1, 2}}, "metadata at index 1 cannot be stored"),
    ({"vector": 1}, "metadata at index 1 has key 'vector', one of the collection's own fields"),
    ({"$meta": 1}, "metadata at index 1 has key '\\$meta'.*not starting with"),
    (["topic"], "metadata at index 1 is list"),
])
def test_bad_metadata_is_refused_before_anything_is_written(scratch, model, bad, message):
    embedder = MilvusEmbedder(scratch, model)
    embedder.create_collection("c")
    with pytest.raises((TypeError, ValueError), match=message):
        embedder.insert("c", ["a", "b"], metadata=[{"fine": [1, {"nested": "ok"}]}, bad])
    assert row_count(scratch, "c") == 0


def test_bad_ids_and_long_texts_are_refused(scratch, model):
    embedder = MilvusEmbedder(scratch, model)
    embedder.create_collection("c")
    embedder.create_collection("s", id_type="str")
    for ids, message in (([1, "2"], "id at index 1 is '2': this collection's ids are INT64"),
                         ([1, 2**63], "id at index 1 is 9223372036854775808"),
                         ([1, True], "id at index 1 is True")):
        with pytest.raises(ValueError, match=message):
            embedder.insert("c", ["a", "b"], ids=ids)
    with pytest.raises(ValueError, match="id at index 0 is 1: this collection's ids are non-empty str"):
        embedder.insert("s", ["a"], ids=[1])
    with pytest.raises(ValueError, match="text at index 1 has 70,000 characters.*65,535"):
        embedder.insert("c", ["a", "x" * 70_000])
    assert row_count(scratch, "c") == row_count(scratch, "s") == 0


def test_upload_fails_before_the_batch_it_breaks_and_says_what_was_written(scratch, model):
    embedder = MilvusEmbedder(scratch, model, batch_size=100)
    embedder.create_collection("c")
    metadata = ({"n": n} if n != 250 else {"n": float("inf")} for n in range(400))
    with pytest.raises(ValueError, match="metadata at index 250 cannot be stored") as raised:
        embedder.upload("c", iter(sentences()[:400]), metadata=metadata)
    assert "200 rows were written before this failed" in "".join(getattr(raised.value, "__notes__", []))
    assert row_count(scratch, "c") == 200
    with pytest.raises(ValueError, match="ids ran out at index 3"):
        embedder.upload("c", iter(["a", "b", "c", "d"]), ids=iter([7, 8, 9]))
    assert row_count(scratch, "c") == 200


# -- vecplug_before_ingest -----------------------------------------------------------------

class DropAndShout:
    """Drops records that mention "drop", upper-cases the rest, adds one record without an id."""

    def __init__(self):
        self.batches = []

    @vecplug.hookimpl
    def vecplug_before_ingest(self, records, target):
        self.batches.append((target, [record.id for record in records]))
        kept = [vecplug.Record(r.id, r.text.upper(), {**r.metadata, "shouted": True})
                for r in records if "drop" not in r.text]
        return kept + [vecplug.Record(None, f"added after {len(records)} records")]


def test_before_ingest_sees_each_batch_and_what_it_returns_is_stored(scratch, model, register_plugin):
    plugin = register_plugin(DropAndShout())
    embedder = MilvusEmbedder(scratch, model, batch_size=4)
    embedder.create_collection("plugged")
    written = embedder.insert("plugged", ["keep this", "please drop this", "keep that too"], ids=[1, 2, 3],
                              metadata=[{"k": 1}, {"k": 2}, {"k": 3}])
    assert written[:2] == [1, 3] and len(written) == 3
    assert plugin.batches == [(vecplug.Target("milvus", "plugged"), [1, 2, 3])]
    rows = stored_rows(scratch, "plugged")
    assert rows[3]["document"] == "KEEP THAT TOO" and rows[3]["k"] == 3 and rows[3]["shouted"] is True
    assert rows[written[2]]["document"] == "added after 3 records"
    texts = ["KEEP THIS", "KEEP THAT TOO", "added after 3 records"]
    np.testing.assert_allclose([rows[row_id]["vector"] for row_id in written], model.embed_documents(texts),
                               atol=1e-5)
    plugin.batches.clear()
    assert embedder.upload("plugged", (f"text number {i}" for i in range(10)), ids=iter(range(100, 110))) == 13
    assert [ids for _, ids in plugin.batches] == [[100, 101, 102, 103], [104, 105, 106, 107], [108, 109]]
    assert row_count(scratch, "plugged") == 16


# -- other processes, servers, the embedding function --------------------------------------

@pytest.mark.slow  # a fresh interpreter loading torch and Milvus Lite: over 10 s on a shared 2-core machine
def test_a_new_process_reopens_the_file_finds_the_model_and_searches(model):
    with lite_file() as path:
        client = MilvusClient(str(path))
        documents = list(sentences()[:200])
        embedder = MilvusEmbedder(client, model)
        embedder.create_collection("docs")
        ids = embedder.insert("docs", documents)
        client.close()
        release(path)  # close() alone would keep the file locked to this process
        result = run_python(REOPEN_AND_SEARCH, str(path), "docs", json.dumps(QUERIES))
    assert result["state_on_open"] != "Loaded"  # Milvus Lite reopens collections released
    assert result["model"] == model.spec.to_dict()
    vectors = model.embed_documents(documents)
    for hits, query in zip(result["hits"], model.embed_queries(QUERIES)):
        assert_brute_force(hits, ids, vectors, query, 5)


def test_through_a_server_url(scratch, tiny_server, model):
    embedder = MilvusEmbedder(scratch, tiny_server.url)
    assert isinstance(embedder.model, RemoteModel)
    embedder.create_collection("served")
    record = json.loads(scratch.describe_collection("served")["properties"]["vecplug"])
    assert record["url"] == tiny_server.url and "api_key" not in json.dumps(record)
    documents = list(sentences()[:20])
    ids = embedder.insert("served", documents)
    rows = stored_rows(scratch, "served")
    np.testing.assert_allclose([rows[row_id]["vector"] for row_id in ids], model.embed_documents(documents),
                               atol=1e-4)
    reopened = MilvusEmbedder.from_collection(scratch, "served")
    assert isinstance(reopened.model, RemoteModel) and reopened.model.url == tiny_server.url
    hits = MilvusEmbedder(scratch, model).search("served", documents[3], limit=3)  # same space, in process
    assert hits[0]["id"] == ids[3]
    assert reopened.search("served", documents[3], limit=1)[0]["id"] == ids[3]


def test_embedding_function_follows_milvus_models_interface(model, tiny_model_dir):
    function = ModernBertEmbeddingFunction(str(tiny_model_dir), dtype="float32")
    assert function.dim == 64 and function.model is model
    documents = function.encode_documents(["a kettle", "a tree"])
    assert isinstance(documents, list) and len(documents) == 2 and documents[0].shape == (64,)
    np.testing.assert_allclose(np.array(documents), model.embed_documents(["a kettle", "a tree"]), atol=1e-6)
    np.testing.assert_allclose(np.array(function.encode_queries(["a kettle"])), model.embed_queries(["a kettle"]),
                               atol=1e-6)
    np.testing.assert_allclose(np.array(function(["a tree"])), np.array(documents[1:]), atol=1e-6)
    assert ModernBertEmbeddingFunction(str(tiny_model_dir), dimensions=32, dtype="float32").dim == 32
    with pytest.raises(TypeError, match="text at index 1"):
        function.encode_documents(["a", None])


def test_package_and_plugin_import_light():
    result = run_python("""
        import json, sys
        import vecplug_milvus, vecplug_milvus.plugin
        print(json.dumps({"heavy": [name for name in ("pymilvus", "milvus_lite", "torch", "numpy")
                                    if name in sys.modules]}))
    """)
    assert result == {"heavy": []}
