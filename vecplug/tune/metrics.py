"""Recall@10 and nDCG@10 of held-out queries, and hard negatives mined with the base model.

The measure runs through ``vecplug.load_model`` on both the base and the
tuned directory: it scores the vectors vecplug will actually serve, with
the model's own prompts, not a training library's view of them.
"""
from __future__ import annotations

import math

import numpy as np

from .pairs import Pair

K = 10
NEAR_DUPLICATE_MARGIN = 0.05  # a candidate scoring within 5% of the positive is likely a positive too


def corpus_of(pairs: list[Pair]) -> list[str]:
    """Every distinct positive, in first-seen order: what each held-out query is searched against."""
    return list(dict.fromkeys(pair.positive for pair in pairs))


def measure(model, held_out: list[Pair], corpus: list[str], corpus_vectors=None) -> dict:
    """{"recall@10", "ndcg@10", "queries", "corpus"} of ``held_out`` against ``corpus`` (binary relevance)."""
    relevant: dict[str, set[int]] = {}
    position = {text: index for index, text in enumerate(corpus)}
    for pair in held_out:
        relevant.setdefault(pair.query, set()).add(position[pair.positive])
    queries = list(relevant)
    documents = model.embed_documents(corpus) if corpus_vectors is None else corpus_vectors
    ranked = top_k(model.embed_queries(queries), documents, K)
    recalls, gains = [], []
    for query, row in zip(queries, ranked):
        wanted = relevant[query]
        hits = [int(index) in wanted for index in row]
        recalls.append(sum(hits) / len(wanted))
        ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(wanted), K)))
        gains.append(sum(1 / math.log2(rank + 2) for rank, hit in enumerate(hits) if hit) / ideal)
    return {"recall@10": round(float(np.mean(recalls)), 4), "ndcg@10": round(float(np.mean(gains)), 4),
            "queries": len(queries), "corpus": len(corpus)}


def top_k(queries: np.ndarray, documents: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """The indices of each query's ``k`` best documents by dot product (unit vectors: cosine), best first."""
    k = min(k, len(documents))
    rows = []
    for start in range(0, len(queries), chunk):
        scores = queries[start:start + chunk] @ documents.T
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(scores, best, axis=1).argsort(axis=1)[:, ::-1]
        rows.append(np.take_along_axis(best, order, axis=1))
    return np.concatenate(rows) if rows else np.zeros((0, k), dtype=int)


def near_duplicate_ceiling(positive_score: float) -> float:
    """Candidates must score below this: 5% of the positive's score under it (an untrained model's may be negative)."""
    return positive_score - NEAR_DUPLICATE_MARGIN * abs(positive_score)


def mine_hard_negatives(model, pairs: list[Pair], count: int) -> list[list[str]]:
    """For each training pair, ``count`` training positives the base model ranks high for its query.

    Skipped: the query's own positives, and near-duplicates of its positive
    (a score within 5% of the positive's, which are usually unlabelled
    positives and would teach the model to push true answers away).
    """
    corpus = corpus_of(pairs)
    documents = model.embed_documents(corpus)
    position = {text: index for index, text in enumerate(corpus)}
    own: dict[str, set[int]] = {}
    for pair in pairs:
        own.setdefault(pair.query, set()).add(position[pair.positive])
    queries = list(own)
    query_vectors = dict(zip(queries, model.embed_queries(queries)))
    depth = min(len(corpus), count + 32)
    negatives = []
    for pair in pairs:
        vector = query_vectors[pair.query]
        ceiling = near_duplicate_ceiling(float(vector @ documents[position[pair.positive]]))
        candidates = top_k(vector[None, :], documents, depth)[0]
        chosen = [int(index) for index in candidates
                  if int(index) not in own[pair.query] and float(vector @ documents[index]) < ceiling][:count]
        if len(chosen) < count:  # a small corpus: fill from the rest, lowest scores last
            rest = [index for index in range(len(corpus)) if index not in own[pair.query] and index not in chosen]
            chosen += rest[:count - len(chosen)]
        negatives.append([corpus[index] for index in chosen])
    return negatives
