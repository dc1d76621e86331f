"""Qdrant test helpers: real-English documents, a brute-force reference, scripts run in fresh processes."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from vecplug.testing import stdlib_paragraphs
from vecplug_qdrant import QdrantEmbedder, document_id


@functools.lru_cache(maxsize=1)
def sentences() -> tuple[str, ...]:
    """Distinct real sentences from Python's documentation (about 2,900)."""
    found = (part.strip() for paragraph in stdlib_paragraphs() for part in paragraph.split(". "))
    return tuple(dict.fromkeys(part for part in found if len(part) > 20))


@contextlib.contextmanager
def store_directory(prefix: str = "qdrant-"):
    """A folder for a local Qdrant store, in RAM where /dev/shm exists; removed afterwards.

    Local mode commits every point to SQLite on its own: on this disk, 2,000
    fsyncs take 15 s, longer than everything else the tests do with them.
    """
    shm = "/dev/shm"
    path = tempfile.mkdtemp(prefix=prefix, dir=shm if os.access(shm, os.W_OK) else None)
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def short_documents(count: int):
    """A generator of ``count`` short, distinct real texts (six words and an index)."""
    words = " ".join(stdlib_paragraphs()).split()
    for index in range(count):
        start = (index * 7) % (len(words) - 6)
        yield " ".join(words[start:start + 6]) + f" #{index}"


def assert_brute_force(hits, ids, document_vectors, query_vector, limit, allowed=None):
    """``hits`` are the ``limit`` best points by cosine over vecplug's own vectors, best first.

    Scores must match within 1e-5; ids must be in the reference order, except
    where two reference scores tie within that tolerance.
    """
    scores = document_vectors.astype(np.float64) @ np.asarray(query_vector, dtype=np.float64)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    order = np.argsort(-scores, kind="stable")[:limit]
    expected_ids = [ids[index] for index in order]
    got_ids = [hit.id for hit in hits]
    got_scores = np.array([hit.score for hit in hits])
    assert len(hits) == min(limit, int(np.isfinite(scores).sum()))
    np.testing.assert_allclose(got_scores, scores[order], atol=1e-5)
    score_of = dict(zip(ids, scores))
    np.testing.assert_allclose([score_of[point_id] for point_id in got_ids], got_scores, atol=1e-5)
    for position, (got, expected) in enumerate(zip(got_ids, expected_ids)):
        if got != expected:
            assert abs(score_of[got] - score_of[expected]) < 1e-5, f"rank {position}: {got} instead of {expected}"


@dataclasses.dataclass
class Corpus:
    path: Path
    documents: list[str]
    ids: list[str]
    vectors: np.ndarray  # embed_documents, computed apart from the store
    topics: np.ndarray


def make_corpus(model, path: Path, documents) -> Corpus:
    """Stream ``documents`` (payloads ``n``, ``topic``) into collection "docs" through upload_points; close."""
    from qdrant_client import QdrantClient

    documents = list(documents)
    client = QdrantClient(path=str(path))
    embedder = QdrantEmbedder(client, model)
    embedder.create_collection("docs")
    payloads = ({"n": index, "topic": index % 3} for index in range(len(documents)))
    client.upload_points("docs", embedder.points(iter(documents), payloads=payloads, collection_name="docs"))
    client.close()
    ids = [document_id(text) for text in documents]
    return Corpus(path, documents, ids, model.embed_documents(documents), np.arange(len(documents)) % 3)


def stored(client, name: str) -> dict:
    """Every point of a collection, with payload and vectors, by id."""
    points, _ = client.scroll(name, limit=100_000, with_payload=True, with_vectors=True)
    return {point.id: point for point in points}


def run_python(code: str, *args: str, timeout: float = 300) -> dict:
    """Run ``code`` in a fresh interpreter (the test's environment); it prints one JSON object last.

    One torch thread: on a shared 2-core machine, two OpenMP threads waiting
    on each other made the 100,000-document run 14 times slower, and what
    these runs measure (results, peak memory) does not depend on threads.
    """
    environment = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=timeout, env=environment,
    )
    assert result.returncode == 0, f"subprocess failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


REOPEN_AND_QUERY = """
    import json, sys
    from qdrant_client import QdrantClient
    from vecplug_qdrant import QdrantEmbedder

    path, name, queries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    client = QdrantClient(path=path)
    embedder = QdrantEmbedder.from_collection(client, name, dtype="float32")
    hits = [[(hit.id, hit.score) for hit in embedder.query(name, text, limit=10)] for text in queries]
    client.close()
    print(json.dumps({"model": embedder.model.spec.to_dict(), "hits": hits}))
"""

