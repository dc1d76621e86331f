"""search, recommend, cluster and dedup on the synthetic corpus in every real store (MiniLM vectors).

The commands run through click's CliRunner in this process (the model loads
once); tests/stores/test_store_errors.py runs real processes for the
one-line failures.
"""
from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from click.testing import CliRunner

import store_corpus
import vecplug
from conftest import forbid_model_loads, open_store
from vecplug.cli import cli


def run(*args: str) -> list[dict]:
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@contextlib.contextmanager
def milvus_client(path: str):
    """A client of the Milvus Lite file, let go after (other tests' processes open it too)."""
    from pymilvus import MilvusClient

    import vecplug_milvus

    client = MilvusClient(path)
    try:
        client.load_collection("corpus")  # a reopened Milvus Lite file starts with its collections released
        yield client
    finally:
        client.close()
        vecplug_milvus.release(path)


def same_ids(found) -> list[int]:
    return [int(item) for item in found]


def test_search_finds_a_stored_text_first_with_numpy_scores(store):
    text = store_corpus.TOPICS["cooking"][3]
    hits = run("search", text, *store, "-k", "8")
    assert len(hits) == 8
    assert int(hits[0]["id"]) == store_corpus.id_of(text) and hits[0]["text"] == text
    scores = [hit["score"] for hit in hits]
    assert scores == sorted(scores, reverse=True)
    opened = open_store(store)
    try:
        stored = opened.vectors([hit["id"] for hit in hits])
    finally:
        opened.close()
    query = vecplug.load_model(store_corpus.MODEL).embed_queries([text])[0]
    expected = [float(stored[hit["id"]] @ query) for hit in hits]
    np.testing.assert_allclose(scores, expected, atol=2e-5)


def test_the_store_works_on_stored_vectors_without_a_model(store, monkeypatch):
    """count, items (unit vectors, every id once), nearest (itself first, score 1; excluded ids left out) and
    vectors agree with each other, and none of them loads a model."""
    forbid_model_loads(monkeypatch)
    documents = store_corpus.documents()
    opened = open_store(store)
    try:
        assert opened.count() == len(documents)
        assert opened.recorded_model()["name"].endswith("all-MiniLM-L6-v2")
        items = [item for batch in opened.items(batch_size=10) for item in batch]
        assert sorted(int(item.id) for item in items) == [document.id for document in documents]
        assert all(abs(float(np.linalg.norm(item.vector)) - 1.0) < 1e-5 for item in items)
        first = next(item for item in items if int(item.id) == 1)
        [best, *_] = opened.nearest(first.vector, 3)
        assert int(best.id) == 1 and best.text == documents[0].text and best.score == pytest.approx(1.0, abs=1e-4)
        assert 1 not in same_ids(hit.id for hit in opened.nearest(first.vector, 3, exclude=["1"]))
        stored = opened.vectors(["1"] if "--chroma" in store else [1])
        assert float(next(iter(stored.values())) @ first.vector) == pytest.approx(1.0, abs=1e-4)
    finally:
        opened.close()


def test_search_answers_a_question_with_the_right_sentence(store):
    [best] = run("search", store_corpus.QUESTION, *store, "-k", "1")
    assert best["text"] == store_corpus.ANSWER


def test_search_where_filters_in_the_store_own_syntax(store):
    where = {"--chroma": '{"topic": "football"}', "--dsn": "topic = 'football'", "--lancedb": "topic = 'football'",
             "--milvus": 'topic == "football"',
             "--qdrant": '{"must": [{"key": "topic", "match": {"value": "football"}}]}'}[store[0]]
    hits = run("search", "a planet and its moons", *store, "-k", "5", "--where", where)
    topics = store_corpus.topic_labels()
    assert len(hits) == 5 and {topics[int(hit["id"])] for hit in hits} == {"football"}


def test_recommend_prefers_the_positives_topic_and_never_returns_the_examples(store):
    ids = {topic: [store_corpus.id_of(text) for text in texts] for topic, texts in store_corpus.TOPICS.items()}
    positive, negative = ids["astronomy"][4:6], ids["cooking"][:1]
    args = [f"--positive={item}" for item in positive] + [f"--negative={item}" for item in negative]
    hits = run("recommend", *store, *args, "-k", "8")
    found = same_ids(hit["id"] for hit in hits)
    topics = store_corpus.topic_labels()
    assert len(found) == 8 and not set(found) & {*positive, *negative}
    assert [topics[item] for item in found[:6]] == ["astronomy"] * 6
    assert "cooking" not in {topics[item] for item in found}
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)


def test_recommend_in_python_matches_the_command(store, tmp_path):
    positive, negative = [3, 5], [12]
    command = same_ids(hit["id"] for hit in run("recommend", *store, "--positive=3", "--positive=5",
                                                "--negative=12", "-k", "5"))
    if "--dsn" in store:
        import vecplug_pgvector

        found = vecplug_pgvector.recommend(store[1], "corpus", positive=positive, negative=negative, k=5)
        assert [hit.id for hit in found] == command
        return
    if "--chroma" in store:
        import chromadb

        import vecplug_chroma

        collection = chromadb.PersistentClient(store[1]).get_collection("corpus")
        found = vecplug_chroma.recommend(collection, positive=[str(item) for item in positive],
                                         negative=[str(item) for item in negative], n_results=5)
        assert same_ids(hit.id for hit in found) == command
        return
    if "--milvus" in store:
        import vecplug_milvus

        with milvus_client(store[1]) as client:
            found = vecplug_milvus.recommend(client, "corpus", positive=positive, negative=negative, limit=5)
        assert [hit.id for hit in found] == command
        return
    if "--lancedb" in store:
        import lancedb

        import vecplug_lancedb

        table = lancedb.connect(store[1]).open_table("corpus")
        found = vecplug_lancedb.recommend(table, positive=positive, negative=negative, limit=5)
        assert [hit.id for hit in found] == command
        return
    from qdrant_client import QdrantClient

    from vecplug_qdrant import QdrantEmbedder

    client = QdrantClient(path=store[1])
    try:
        embedder = QdrantEmbedder.from_collection(client, "corpus")
        found = embedder.recommend("corpus", positive=positive, negative=negative, limit=5)
        assert [point.id for point in found] == command
    finally:
        client.close()


def test_cluster_recovers_the_planted_topics_and_writes_labels(store, monkeypatch):
    """From the stored vectors alone: no model is loaded to open, stream or label a store."""
    from sklearn.metrics import adjusted_rand_score

    forbid_model_loads(monkeypatch)
    rows = run("cluster", *store, "-k", "4", "--write", "label")
    topics = store_corpus.topic_labels()
    assert sorted(int(row["id"]) for row in rows) == sorted(topics)
    truth = [topics[int(row["id"])] for row in rows]
    assert adjusted_rand_score(truth, [row["cluster"] for row in rows]) >= 0.85
    written = labels_in_store(store)
    assert written == {int(row["id"]): row["cluster"] for row in rows}


def labels_in_store(store) -> dict[int, int]:
    if "--dsn" in store:
        import psycopg

        with psycopg.connect(store[1]) as conn:
            return dict(conn.execute("SELECT id, label FROM corpus").fetchall())
    if "--chroma" in store:
        import chromadb

        got = chromadb.PersistentClient(store[1]).get_collection("corpus").get(include=["metadatas"])
        return {int(item): metadata["label"] for item, metadata in zip(got["ids"], got["metadatas"])}
    if "--milvus" in store:
        with milvus_client(store[1]) as client:
            return {row["id"]: row["label"] for row in client.query("corpus", filter="id >= 0",
                                                                     output_fields=["label"])}
    if "--lancedb" in store:
        import lancedb

        rows = lancedb.connect(store[1]).open_table("corpus").search().select(["id", "label"]).limit(None).to_list()
        return {row["id"]: row["label"] for row in rows}
    from qdrant_client import QdrantClient

    client = QdrantClient(path=store[1])
    try:
        points, _ = client.scroll("corpus", limit=1000, with_payload=["label"])
        return {point.id: point.payload["label"] for point in points}
    finally:
        client.close()


def test_cluster_prints_sizes_terms_and_central_texts(store):
    result = CliRunner().invoke(cli, ["cluster", *store, "-k", "4"])
    assert result.exit_code == 0, result.output
    headers = [line for line in result.stdout.splitlines() if line.startswith("cluster ")]
    assert len(headers) == 4
    assert sum(int(line.split(": ")[1].split()[0]) for line in headers) == len(store_corpus.documents())
    topic_of = {doc.text: doc.topic for doc in store_corpus.documents()}
    blocks = result.stdout.split("cluster ")[1:]
    for block in blocks:  # the three texts nearest a centre (shortened to a line) share one topic
        central = [line.strip().rstrip("…") for line in block.splitlines()[1:]]
        topics = {topic for text, topic in topic_of.items() for shown in central if text.startswith(shown)}
        assert len(central) == 3 and len(topics) == 1, block
    assert any("football" in line or "referee" in line or "goal" in line for line in headers)


def test_dedup_finds_every_planted_pair_and_nothing_else(store):
    pairs = run("dedup", *store, "--threshold", "0.95")
    found = [(int(pair["a"]), int(pair["b"])) for pair in pairs]
    assert len(found) == len(set(found))
    assert set(found) == store_corpus.planted_pairs()
    assert all(pair["score"] >= 0.95 for pair in pairs)


def test_dedup_with_no_pair_exits_zero(store):
    result = CliRunner().invoke(cli, ["dedup", *store, "--threshold", "1.0"])
    assert result.exit_code == 0 and result.stdout.count("\n") <= 3, result.output
