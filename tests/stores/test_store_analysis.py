"""The store-independent algorithms: vecplug.cluster, the streaming k-means path, HDBSCAN, c-TF-IDF, id order."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

import store_corpus
import vecplug
from conftest import open_store
from vecplug.analysis import TopicTerms, cluster_store, default_k, id_order_key
from vecplug.errors import InvalidSettingError
from vecplug.stores import UnknownIdsError


def planted_blobs(per_topic: int = 50, topics: int = 5, dim: int = 32, seed: int = 3):
    """Unit vectors around ``topics`` random directions, and their true labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(topics, dim))
    truth = np.repeat(np.arange(topics), per_topic)
    vectors = centres[truth] + rng.normal(scale=0.3, size=(len(truth), dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32), truth


def test_cluster_labels_vectors_in_memory():
    from sklearn.metrics import adjusted_rand_score

    vectors, truth = planted_blobs()
    labels = vecplug.cluster(vectors, k=5)
    assert labels.shape == (250,) and set(labels.tolist()) == set(range(5))
    assert adjusted_rand_score(truth, labels) > 0.95
    assert np.array_equal(vecplug.cluster(vectors, k=5, seed=0), labels)  # the seed makes it repeatable
    noisy = vecplug.cluster(vectors, method="hdbscan")
    assert adjusted_rand_score(truth[noisy >= 0], noisy[noisy >= 0]) > 0.95 and (noisy >= 0).mean() > 0.8


def test_cluster_refuses_what_cannot_work():
    vectors, _ = planted_blobs(per_topic=2, topics=2)
    with pytest.raises(InvalidSettingError, match="only 4 items"):
        vecplug.cluster(vectors, k=5)
    with pytest.raises(InvalidSettingError, match="leave out k"):
        vecplug.cluster(vectors, k=2, method="hdbscan")
    with pytest.raises(InvalidSettingError, match="unknown clustering method 'dbscan'"):
        vecplug.cluster(vectors, method="dbscan")
    with pytest.raises(InvalidSettingError, match="2-d array"):
        vecplug.cluster(vectors[0])


def test_default_k_is_the_documented_rule():
    assert [default_k(n) for n in (2, 46, 800, 5000, 10**6)] == [2, 5, 20, 50, 50]


def test_the_streaming_path_clusters_a_store_from_a_sample_and_batches(qdrant_corpus):
    """Above in_memory_rows: a reservoir sample seeds MiniBatchKMeans, partial_fit over batches, a labelling pass."""
    from sklearn.metrics import adjusted_rand_score

    store = open_store(["--qdrant", str(qdrant_corpus), "--collection", "corpus"])
    try:
        seen = []
        clustering = cluster_store(store, k=4, batch_size=10, in_memory_rows=40, on_progress=seen.append)
        assert clustering.passes == 3 and sum(seen) == 2 * store.count()  # the sample's pass and partial_fit's
        labels = dict(clustering.labels())
    finally:
        store.close()
    topics = store_corpus.topic_labels()
    assert sorted(labels) == sorted(topics)
    assert adjusted_rand_score([topics[item] for item in labels], list(labels.values())) >= 0.7
    assert sum(summary.size for summary in clustering.summaries()) == len(topics)


def test_hdbscan_over_a_store_labels_every_item(chroma_corpus):
    store = open_store(["--chroma", str(chroma_corpus), "--collection", "corpus"])
    try:
        clustering = cluster_store(store, method="hdbscan")
        labels = dict(clustering.labels())
    finally:
        store.close()
    assert len(labels) == len(store_corpus.documents()) and min(labels.values()) >= -1
    summaries = clustering.summaries()
    assert [summary.label for summary in summaries if summary.label < 0] in ([], [-1])  # noise last if any
    assert summaries[-1].label == -1 or all(summary.label >= 0 for summary in summaries)


def test_class_based_tf_idf_names_each_cluster_by_its_own_words():
    terms = TopicTerms()
    for label, topic in enumerate(store_corpus.TOPICS):
        for text in store_corpus.TOPICS[topic]:
            terms.add(label, text)
    top = terms.top(5)
    assert "solar" in top[0] and "dough" in top[1] and "goal" in top[2] and "soil" in top[3]
    assert not {"the", "a", "and"} & {term for words in top.values() for term in words}


def test_ids_of_both_kinds_have_one_order():
    ids = ["b", 10, "a", 2, "10"]
    assert sorted(ids, key=id_order_key) == [2, 10, "10", "a", "b"]


def test_unknown_ids_are_named_by_both_recommends(qdrant_corpus, chroma_corpus):
    import chromadb

    import vecplug_chroma

    collection = chromadb.PersistentClient(str(chroma_corpus)).get_collection("corpus")
    with pytest.raises(UnknownIdsError, match="998, 999"):
        vecplug_chroma.recommend(collection, positive=["1", "999"], negative=["998"])
    with pytest.raises(InvalidSettingError, match="at least one positive"):
        vecplug_chroma.recommend(collection, positive=[], negative=["3"])


def test_async_qdrant_recommend_matches_the_sync_one(qdrant_corpus):
    from qdrant_client import AsyncQdrantClient, QdrantClient

    from vecplug_qdrant import AsyncQdrantEmbedder, QdrantEmbedder

    client = QdrantClient(path=str(qdrant_corpus))
    try:
        embedder = QdrantEmbedder.from_collection(client, "corpus")
        sync = [point.id for point in embedder.recommend("corpus", positive=[21, 22], negative=[1], limit=6)]
        with pytest.raises(UnknownIdsError, match="no point with id 500"):
            embedder.recommend("corpus", positive=[21, 500])
    finally:
        client.close()

    async def recommend():
        client = AsyncQdrantClient(path=str(qdrant_corpus))
        try:
            embedder = await AsyncQdrantEmbedder.from_collection(client, "corpus")
            return [point.id for point in await embedder.recommend("corpus", [21, 22], [1], limit=6)]
        finally:
            await client.close()

    assert asyncio.run(recommend()) == sync and not {21, 22, 1} & set(sync)


def test_labels_never_overwrite_what_the_store_keeps_itself(chroma_corpus, qdrant_corpus):
    for options, taken in ((["--chroma", str(chroma_corpus)], "chunk_index"), (["--qdrant", str(qdrant_corpus)],
                                                                               "document")):
        store = open_store([*options, "--collection", "corpus"])
        try:
            with pytest.raises(InvalidSettingError, match=f"--write {taken}: that field holds the store's own data"):
                store.write_labels(taken, iter([(1, 0)]))
        finally:
            store.close()
