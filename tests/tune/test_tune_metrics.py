"""The measure and the hard-negative miner, on the tiny model: what they count and what they skip."""
from __future__ import annotations

import numpy as np

from vecplug.tune.metrics import corpus_of, measure, mine_hard_negatives, near_duplicate_ceiling, top_k
from vecplug.tune.pairs import Pair, split_held_out
from vecplug.tune.synthetic import synthetic_pairs


def test_top_k_ranks_best_first():
    documents = np.eye(4, dtype=np.float32)
    queries = np.array([[0.1, 0.9, 0.5, 0.0]], dtype=np.float32)
    assert top_k(queries, documents, 3).tolist() == [[1, 2, 0]]


def test_recall_and_ndcg_of_a_query_that_finds_its_document_first_and_one_that_cannot(tiny_model):
    corpus = ["alpha beta", "gamma delta", "epsilon zeta"]
    perfect = measure(tiny_model, [Pair("alpha beta", "alpha beta")], corpus)
    assert perfect == {"recall@10": 1.0, "ndcg@10": 1.0, "queries": 1, "corpus": 3}
    # a corpus of 12 where the wanted document is identical to the query except for its prompt: ranked, and
    # nDCG below 1 exactly when it is not first
    result = measure(tiny_model, [Pair("gamma delta", "gamma delta")], corpus + [f"filler {i}" for i in range(9)])
    assert result["recall@10"] in (0.0, 1.0) and 0 <= result["ndcg@10"] <= 1


def test_the_held_out_split_is_by_query_and_seeded():
    pairs = [Pair(f"q{i % 30}", f"p{i}") for i in range(60)]  # each query twice
    train, held = split_held_out(pairs, 0.1, seed=4)
    assert {pair.query for pair in train}.isdisjoint({pair.query for pair in held})
    assert len({pair.query for pair in held}) == 3 and len(held) == 6
    assert split_held_out(pairs, 0.1, seed=4) == (train, held)
    assert split_held_out(pairs, 0.1, seed=5)[1] != held


def test_mined_negatives_skip_the_own_positive_and_its_near_duplicates(tiny_model):
    pairs = [Pair(pair["query"], pair["positive"]) for pair in synthetic_pairs(40)]
    duplicate = pairs[0].positive + "s"  # another pair whose positive is almost pair 0's ("... zephyrs")
    pairs.append(Pair("a different question", duplicate))
    negatives = mine_hard_negatives(tiny_model, pairs, 3)
    assert len(negatives) == len(pairs) and all(len(row) == 3 for row in negatives)
    corpus = set(corpus_of(pairs))
    for pair, row in zip(pairs, negatives):
        assert pair.positive not in row and set(row) <= corpus and len(set(row)) == 3
    vectors = tiny_model.embed_documents([pairs[0].positive, duplicate])
    query = tiny_model.embed_queries([pairs[0].query])[0]
    assert query @ vectors[1] >= near_duplicate_ceiling(float(query @ vectors[0]))  # a near-duplicate ...
    assert duplicate not in negatives[0]  # ... so never a negative
    # the hardest ones that stay clear of the positive: the 3 best-scoring documents below the ceiling
    others = sorted(corpus - {pairs[0].positive})
    scores = tiny_model.embed_documents(others) @ query
    ceiling = near_duplicate_ceiling(float(query @ vectors[0]))
    eligible = [others[index] for index in np.argsort(-scores) if scores[index] < ceiling]
    assert negatives[0] == eligible[:3]
