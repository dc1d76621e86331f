"""The Qdrant adapter against Qdrant's own engine: ``QdrantClient(path=...)`` local mode, no mocks.

One module-wide store holds 2,000 real sentences ingested through
``upload_points``; every query is checked against brute-force cosine over
vecplug's own document and query vectors.
"""
from __future__ import annotations

import asyncio
import json
import uuid

import numpy as np
import pytest

qdrant_client = pytest.importorskip("qdrant_client")

import vecplug  # noqa: E402
from qdrant_client import AsyncQdrantClient, QdrantClient, models  # noqa: E402
from qdrant_helpers import (  # noqa: E402
    REOPEN_AND_QUERY, assert_brute_force, make_corpus, run_python, sentences, short_documents,
    store_directory, stored,
)
from vecplug.client import RemoteModel  # noqa: E402
from vecplug_qdrant import (  # noqa: E402
    AsyncQdrantEmbedder, CollectionExistsError, CollectionNotFoundError, QdrantEmbedder,
    UnrecordedCollectionError, document_id,
)

QUERIES = ["how do I open a file", "exceptions raised by a generator", "the value of a local variable"]
TOPIC_ONE = models.Filter(must=[models.FieldCondition(key="topic", match=models.MatchValue(value=1))])


@pytest.fixture(params=["in-process", "served"])
def tiny_model(request, tiny_model_dir):
    """Every test that takes the model runs twice: in this process, and behind a real `vecplug serve`."""
    if request.param == "served":
        return vecplug.load_model(request.getfixturevalue("tiny_server").url)
    return vecplug.load_model(str(tiny_model_dir), dtype="float32")


@pytest.fixture(scope="module")
def corpus(tiny_model_dir):
    """2,000 documents streamed into collection "docs" through upload_points; the client is closed after."""
    with store_directory() as path:
        yield make_corpus(vecplug.load_model(str(tiny_model_dir), dtype="float32"), path, sentences()[:2000])


@pytest.fixture
def client(corpus):
    opened = QdrantClient(path=str(corpus.path))
    yield opened
    opened.close()


@pytest.fixture
def scratch():
    """An empty local store of its own."""
    with store_directory() as path:
        opened = QdrantClient(path=str(path))
        yield opened
        opened.close()


# -- collections and their record of the model ---------------------------------------------

def test_create_collection_records_the_model(scratch, tiny_model):
    embedder = QdrantEmbedder(scratch, tiny_model)
    assert embedder.create_collection("c", metadata={"owner": "tests"}) is True
    info = scratch.get_collection("c")
    vector = info.config.params.vectors["modernbert"]
    assert (vector.size, vector.distance) == (64, models.Distance.COSINE)
    record = info.config.metadata["vecplug"]
    assert record["vector_name"] == "modernbert"
    assert record["model"] == tiny_model.spec.to_dict()
    assert record["model"]["fingerprint"] == tiny_model.fingerprint
    assert record["model"]["prompts"] == {"query": "search_query: ", "document": "search_document: "}
    assert info.config.metadata["owner"] == "tests"
    with pytest.raises(CollectionExistsError, match="already exists"):
        embedder.create_collection("c")
    assert embedder.create_collection("c", exist_ok=True) is False


def test_from_collection_loads_the_recorded_model(client, tiny_model_dir):
    embedder = QdrantEmbedder.from_collection(client, "docs", dtype="float32")
    local = vecplug.load_model(str(tiny_model_dir), dtype="float32")
    assert embedder.model is local  # the same cached model: its name is the directory path
    assert embedder.vector_name == "modernbert"


def test_a_collection_filled_through_a_server_reopens_through_it(scratch, tiny_server, tiny_model_dir):
    embedder = QdrantEmbedder(scratch, tiny_server.url)
    embedder.create_collection("served")
    record = scratch.get_collection("served").config.metadata["vecplug"]
    assert record["url"] == tiny_server.url and "api_key" not in json.dumps(record)
    embedder.upsert("served", ["a served document"], ids=[1])
    reopened = QdrantEmbedder.from_collection(scratch, "served")
    assert isinstance(reopened.model, RemoteModel) and reopened.model.url == tiny_server.url
    local = vecplug.load_model(str(tiny_model_dir), dtype="float32")
    QdrantEmbedder(scratch, local).check_collection("served")  # the same space, in process or served
    hit = reopened.query("served", "a served document", limit=1)[0]
    assert hit.id == 1 and hit.score > 0.5


def test_matryoshka_view_is_recorded_and_reloaded(scratch, tiny_model_dir):
    cut = vecplug.load_model(str(tiny_model_dir), dtype="float32", dimensions=32)
    QdrantEmbedder(scratch, cut).create_collection("cut")
    assert scratch.get_collection("cut").config.params.vectors["modernbert"].size == 32
    reloaded = QdrantEmbedder.from_collection(scratch, "cut", dtype="float32")
    assert (reloaded.model.dimensions, reloaded.model.fingerprint) == (32, cut.fingerprint)


# -- ingestion and queries -----------------------------------------------------------------

def test_upload_points_then_queries_match_brute_force(client, corpus, tiny_model):
    assert client.count("docs").count == 2000
    embedder = QdrantEmbedder(client, tiny_model)
    for text in QUERIES:
        hits = embedder.query("docs", text, limit=10)
        assert_brute_force(hits, corpus.ids, corpus.vectors, tiny_model.embed_queries([text])[0], 10)
        assert hits[0].payload["document"] == corpus.documents[corpus.ids.index(hits[0].id)]


def test_stored_vectors_are_document_vectors_and_query_vector_is_a_query(client, corpus, tiny_model):
    points = stored(client, "docs")
    got = np.array([points[point_id].vector["modernbert"] for point_id in corpus.ids])
    np.testing.assert_allclose(got, corpus.vectors, atol=1e-5)
    assert [points[point_id].payload for point_id in corpus.ids[:2]] == [
        {"n": 0, "topic": 0, "document": corpus.documents[0]},
        {"n": 1, "topic": 1, "document": corpus.documents[1]},
    ]
    embedder = QdrantEmbedder(client, tiny_model)
    query = np.array(embedder.query_vector(QUERIES[0]))
    np.testing.assert_allclose(query, tiny_model.embed_queries([QUERIES[0]])[0], atol=1e-5)
    # the prompts matter: the same text as a document is another vector
    assert np.abs(query - tiny_model.embed_documents([QUERIES[0]])[0]).max() > 1e-2


def test_payload_filter_with_text_query(client, corpus, tiny_model):
    embedder = QdrantEmbedder(client, tiny_model)
    hits = embedder.query("docs", QUERIES[1], limit=7, query_filter=TOPIC_ONE, with_payload=["topic"])
    assert {hit.payload["topic"] for hit in hits} == {1} and all(set(hit.payload) == {"topic"} for hit in hits)
    query = tiny_model.embed_queries([QUERIES[1]])[0]
    assert_brute_force(hits, corpus.ids, corpus.vectors, query, 7, allowed=corpus.topics == 1)
    assert all(hit.payload is None for hit in embedder.query("docs", QUERIES[1], limit=3, with_payload=False))


def test_reopened_in_a_fresh_process_queries_still_agree(corpus, tiny_model):
    result = run_python(REOPEN_AND_QUERY, str(corpus.path), "docs", json.dumps(QUERIES))
    assert result["model"] == tiny_model.spec.to_dict()
    queries = tiny_model.embed_queries(QUERIES)
    for hits, query in zip(result["hits"], queries):
        scored = [models.ScoredPoint(id=point_id, version=0, score=score) for point_id, score in hits]
        assert_brute_force(scored, corpus.ids, corpus.vectors, query, 10)


def test_upsert_lists_with_ids_returns_them(scratch, tiny_model):
    embedder = QdrantEmbedder(scratch, tiny_model, text_field=None)
    embedder.create_collection("c")
    documents = list(sentences()[:5])
    ids = [3, 1, str(uuid.UUID(int=7)), uuid.UUID(int=8), np.int64(9)]
    written = embedder.upsert("c", documents, ids=ids, payloads=[{"i": i} for i in range(5)])
    assert written == [3, 1, str(uuid.UUID(int=7)), str(uuid.UUID(int=8)), 9]
    points = stored(scratch, "c")
    assert points[9].payload == {"i": 4}  # no text kept with text_field=None
    got = np.array([points[point_id].vector["modernbert"] for point_id in written])
    np.testing.assert_allclose(got, tiny_model.embed_documents(documents), atol=1e-5)


def test_points_are_lazy(tiny_model):
    embedder = QdrantEmbedder(None, tiny_model, batch_size=8)
    pulled = []

    def documents():
        for index, text in enumerate(sentences()):
            pulled.append(index)
            yield text

    stream = embedder.points(documents())
    assert pulled == []
    first = next(stream)
    assert len(pulled) == 9  # one batch and the one-record look-ahead, out of ~2,900
    np.testing.assert_allclose(first.vector["modernbert"], tiny_model.embed_documents([sentences()[0]])[0], atol=1e-5)


# -- the async client ------------------------------------------------------------------------

def test_async_client_gives_the_same_results(corpus, tiny_model):
    async def read():
        client = AsyncQdrantClient(path=str(corpus.path))
        try:
            embedder = await AsyncQdrantEmbedder.from_collection(client, "docs", dtype="float32")
            hits = [await embedder.query("docs", text, limit=10) for text in QUERIES]
            filtered = await embedder.query("docs", QUERIES[1], limit=7, query_filter=TOPIC_ONE)
            return embedder.model, hits, filtered
        finally:
            await client.close()

    model, hits, filtered = asyncio.run(read())
    assert model.fingerprint == tiny_model.fingerprint  # the corpus was filled in process: reopened in process
    for text, found in zip(QUERIES, hits):
        assert_brute_force(found, corpus.ids, corpus.vectors, tiny_model.embed_queries([text])[0], 10)
    query = tiny_model.embed_queries([QUERIES[1]])[0]
    assert_brute_force(filtered, corpus.ids, corpus.vectors, query, 7, allowed=corpus.topics == 1)


def test_async_writes_store_document_vectors(corpus, tiny_model):
    async def write(client):
        try:
            embedder = AsyncQdrantEmbedder(client, tiny_model, batch_size=16)
            await embedder.create_collection("a")
            with pytest.raises(CollectionExistsError):
                await embedder.create_collection("a")
            ids = await embedder.upsert("a", corpus.documents[:20], ids=range(20))
            count = await embedder.upload("a", iter(corpus.documents[20:60]), ids=iter(range(20, 60)))
            points, _ = await client.scroll("a", limit=100, with_vectors=True)
            return ids, count, points
        finally:
            await client.close()

    with store_directory() as path:
        ids, count, points = asyncio.run(write(AsyncQdrantClient(path=str(path))))
    assert (ids, count) == (list(range(20)), 40)
    got = np.array([point.vector["modernbert"] for point in sorted(points, key=lambda point: point.id)])
    np.testing.assert_allclose(got, corpus.vectors[:60], atol=1e-5)


# -- vecplug_before_ingest -----------------------------------------------------------------

class DropAndShout:
    """Drops records that mention "drop", upper-cases the rest, adds one record without an id."""

    def __init__(self):
        self.targets = []

    @vecplug.hookimpl
    def vecplug_before_ingest(self, records, target):
        self.targets.append(target)
        kept = [vecplug.Record(r.id, r.text.upper(), {**r.metadata, "shouted": True})
                for r in records if "drop" not in r.text]
        return kept + [vecplug.Record(None, f"added after {len(records)} records")]


def test_before_ingest_plugin_changes_what_is_stored(scratch, tiny_model, register_plugin):
    plugin = register_plugin(DropAndShout())
    embedder = QdrantEmbedder(scratch, tiny_model)
    embedder.create_collection("plugged")
    documents = ["keep this sentence", "please drop this one", "and keep this too"]
    written = embedder.upsert("plugged", documents, ids=[1, 2, 3], payloads=[{"k": 1}, {"k": 2}, {"k": 3}])
    added = document_id("added after 3 records")
    assert written == [1, 3, added]
    assert plugin.targets == [vecplug.Target("qdrant", "plugged")]
    points = stored(scratch, "plugged")
    assert set(points) == {1, 3, added}
    assert points[3].payload == {"k": 3, "shouted": True, "document": "AND KEEP THIS TOO"}
    assert points[added].payload == {"document": "added after 3 records"}
    texts = ["KEEP THIS SENTENCE", "AND KEEP THIS TOO", "added after 3 records"]
    got = np.array([points[point_id].vector["modernbert"] for point_id in written])
    np.testing.assert_allclose(got, tiny_model.embed_documents(texts), atol=1e-5)


def test_before_ingest_runs_once_per_batch(scratch, tiny_model, register_plugin):
    plugin = register_plugin(DropAndShout())
    embedder = QdrantEmbedder(scratch, tiny_model, batch_size=4)
    embedder.create_collection("batched")
    assert embedder.upload("batched", (f"text number {i}" for i in range(10))) == 10 + 3
    assert plugin.targets == [vecplug.Target("qdrant", "batched")] * 3
    # the two "added after 4 records" share their uuid5 id: the second overwrote the first
    assert scratch.count("batched").count == 12


# -- bad input: clear errors, nothing half-written -----------------------------------------

def test_lengths_that_differ_are_refused_before_anything_is_written(scratch, tiny_model):
    embedder = QdrantEmbedder(scratch, tiny_model)
    embedder.create_collection("c")
    with pytest.raises(ValueError, match="3 documents but 2 ids"):
        embedder.upsert("c", ["a", "b", "c"], ids=[1, 2])
    with pytest.raises(ValueError, match="3 documents but 4 payloads"):
        embedder.points(["a", "b", "c"], payloads=[{}, {}, {}, {}])  # refused at the call, not when read
    with pytest.raises(ValueError, match="3 documents but 2 ids"):
        embedder.upsert("c", iter(["a", "b", "c"]), ids=iter([1, 2]))  # upsert reads iterators whole first
    assert scratch.count("c").count == 0


def test_lazy_inputs_fail_before_the_batch_they_break(tiny_model):
    embedder = QdrantEmbedder(None, tiny_model, batch_size=4)
    taken = []
    with pytest.raises(ValueError, match="ids ran out at index 9"):
        for point in embedder.points((f"doc {i}" for i in range(12)), ids=iter(range(9))):
            taken.append(point.id)
    assert taken == list(range(8))  # batches 0-3 and 4-7; the one with index 9 never came out
    taken.clear()
    with pytest.raises(ValueError, match="payloads go on after the 8 documents ended"):
        for point in embedder.points((f"doc {i}" for i in range(8)), payloads=({} for _ in range(9))):
            taken.append(point.id)
    assert len(taken) == 4  # the last batch is held until the end is known to be clean


def test_none_documents_are_refused_naming_the_index(scratch, tiny_model):
    embedder = QdrantEmbedder(scratch, tiny_model, batch_size=100)
    embedder.create_collection("c")
    documents = list(sentences()[:400])
    documents[300] = None
    with pytest.raises(TypeError, match="text at index 300 is NoneType"):
        embedder.upsert("c", documents)
    with pytest.raises(TypeError, match="text at index 300 is NoneType"):
        embedder.points(documents)
    with pytest.raises(TypeError, match="text at index 300"):
        embedder.upload("c", iter(documents))
    # one write per batch, in local mode as on a server: the two batches before the bad one are stored,
    # the one it falls in is not (its error comes before it is handed on)
    assert scratch.count("c").count == 200


@pytest.mark.parametrize("bad, message", [
    ("not-a-uuid", "id at index 1 is 'not-a-uuid'"),
    (-1, "id at index 1 is -1"),
    (1.5, "id at index 1 is 1.5"),
    (None, "id at index 1 is None"),
])
def test_bad_ids_are_refused(scratch, tiny_model, bad, message):
    embedder = QdrantEmbedder(scratch, tiny_model)
    embedder.create_collection("c")
    with pytest.raises(ValueError, match=message + ".*unsigned integers or UUIDs"):
        embedder.upsert("c", ["a", "b"], ids=[1, bad])
    assert scratch.count("c").count == 0


def test_misshapen_arguments_are_refused(scratch, tiny_model):
    embedder = QdrantEmbedder(scratch, tiny_model)
    with pytest.raises(TypeError, match="documents must be a list.*not a single str"):
        embedder.points("one string")
    with pytest.raises(TypeError, match="payload at index 0 is list"):
        embedder.points(["a"], payloads=[["x"]])
    with pytest.raises(TypeError, match="payloads must be a list.*not a single dict"):
        embedder.points(["a"], payloads={"x": 1})
    with pytest.raises(TypeError, match="query text must be str"):
        embedder.query_vector(None)
    with pytest.raises(TypeError, match="already"):
        QdrantEmbedder(scratch, tiny_model, dtype="float32")
    with pytest.raises(TypeError, match="vectors_config must be a dict"):
        embedder.create_collection("c", vectors_config=models.VectorParams(size=3, distance=models.Distance.DOT))
    with pytest.raises(ValueError, match="'vecplug' is where vecplug records"):
        embedder.create_collection("c", metadata={"vecplug": 1})
    assert not scratch.collection_exists("c")


def test_collection_of_another_dimension_is_refused(scratch, tiny_model):
    scratch.create_collection("small", vectors_config={"modernbert": models.VectorParams(
        size=32, distance=models.Distance.COSINE)})
    embedder = QdrantEmbedder(scratch, tiny_model)
    for attempt in (lambda: embedder.upsert("small", ["a"]), lambda: embedder.upload("small", ["a"]),
                    lambda: embedder.query("small", "a"), lambda: embedder.create_collection("small")):
        with pytest.raises(vecplug.ModelMismatchError, match="32-dimensional 'modernbert' vectors.*64-dimensional"):
            attempt()
    assert scratch.count("small").count == 0
    with pytest.raises(UnrecordedCollectionError, match="not created by vecplug"):
        QdrantEmbedder.from_collection(scratch, "small")
    with pytest.raises(vecplug.ModelMismatchError, match="no vector named 'text'"):
        QdrantEmbedder(scratch, tiny_model, vector_name="text").upsert("small", ["a"])


def test_collection_of_another_model_is_refused(scratch, tiny_model, tiny_model_no_prompts_dir):
    QdrantEmbedder(scratch, tiny_model).create_collection("c")
    other = QdrantEmbedder(scratch, str(tiny_model_no_prompts_dir), dtype="float32")
    assert other.model.dimensions == tiny_model.dimensions  # same size: only the record tells them apart
    for attempt in (lambda: other.upsert("c", ["a"]), lambda: other.upload("c", iter(["a"])),
                    lambda: other.query("c", "a"), lambda: other.create_collection("c", exist_ok=True),
                    lambda: other.check_collection("c")):
        with pytest.raises(vecplug.ModelMismatchError, match=f"made with {tiny_model.name}.*from_collection"):
            attempt()
    assert scratch.count("c").count == 0
    served = isinstance(tiny_model, RemoteModel)  # then the record names the server, which picks its dtype
    reopened = QdrantEmbedder.from_collection(scratch, "c", **({} if served else {"dtype": "float32"})).model
    assert reopened.fingerprint == tiny_model.fingerprint and (served or reopened is tiny_model)


def test_clients_without_collection_metadata_are_refused_clearly():
    from vecplug_qdrant.collection import check_client_version

    check_client_version("1.16.0")
    with pytest.raises(vecplug.VecplugError, match="qdrant-client 1.15.2 cannot store collection metadata.*>=1.16"):
        check_client_version("1.15.2")


def test_missing_collection(scratch, tiny_model):
    embedder = QdrantEmbedder(scratch, tiny_model)
    with pytest.raises(CollectionNotFoundError, match="no collection 'nope'.*create_collection"):
        embedder.upsert("nope", ["a"])
    with pytest.raises(CollectionNotFoundError):
        QdrantEmbedder.from_collection(scratch, "nope")


def test_package_and_plugin_import_light():
    result = run_python("""
        import json, sys
        import vecplug_qdrant, vecplug_qdrant.plugin
        print(json.dumps({"heavy": [name for name in ("qdrant_client", "torch", "numpy") if name in sys.modules]}))
    """)
    assert result == {"heavy": []}


def test_short_documents_are_distinct():
    documents = list(short_documents(5000))
    assert len(set(documents)) == 5000 and max(len(text.split()) for text in documents) == 7
