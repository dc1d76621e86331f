"""Milvus test helpers: Milvus Lite stores in RAM, a brute-force reference, scripts in fresh processes."""
from __future__ import annotations

import contextlib
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


@functools.lru_cache(maxsize=1)
def sentences() -> tuple[str, ...]:
    """Distinct real sentences from Python's documentation (about 2,900)."""
    found = (part.strip() for paragraph in stdlib_paragraphs() for part in paragraph.split(". "))
    return tuple(dict.fromkeys(part for part in found if 20 < len(part) < 2000))


@contextlib.contextmanager
def lite_file(name: str = "milvus.db"):
    """A path for a Milvus Lite ``.db`` in a fresh folder (in RAM where /dev/shm exists); released and removed after.

    Milvus Lite keeps the file locked to this process until it exits unless
    it is released; the folder is removed either way.
    """
    from vecplug_milvus import release

    shm = "/dev/shm"
    folder = tempfile.mkdtemp(prefix="milvus-", dir=shm if os.access(shm, os.W_OK) else None)
    path = Path(folder) / name
    try:
        yield path
    finally:
        release(path)
        shutil.rmtree(folder, ignore_errors=True)


def row_count(client, name: str) -> int:
    return int(client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"])


def stored_rows(client, name: str) -> dict:
    """Every row of a collection, vector included, by id."""
    rows = client.query(name, filter="", output_fields=["*"], limit=16_384)
    return {row["id"]: row for row in rows}


def assert_brute_force(hits, ids, document_vectors, query_vector, limit, allowed=None):
    """``hits`` are the ``limit`` best rows by cosine over vecplug's own vectors, best first (ties aside)."""
    scores = np.asarray(document_vectors, dtype=np.float64) @ np.asarray(query_vector, dtype=np.float64)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    order = np.argsort(-scores, kind="stable")[:limit]
    assert len(hits) == min(limit, int(np.isfinite(scores).sum()))
    np.testing.assert_allclose([hit["distance"] for hit in hits], scores[order], atol=1e-5)
    score_of = dict(zip(ids, scores))
    for position, (hit, expected) in enumerate(zip(hits, order)):
        assert abs(score_of[hit["id"]] - hit["distance"]) < 1e-5, f"rank {position}: {hit['id']} scored otherwise"
        if hit["id"] != ids[expected]:
            assert abs(score_of[hit["id"]] - scores[expected]) < 1e-5, f"rank {position}: {hit['id']}"


def run_python(code: str, *args: str, timeout: float = 300) -> dict:
    """Run ``code`` in a fresh interpreter (one torch thread); it prints one JSON object last."""
    environment = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                            timeout=timeout, env=environment)
    assert result.returncode == 0, f"subprocess failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


REOPEN_AND_SEARCH = """
    import json, sys
    from pymilvus import MilvusClient
    from vecplug_milvus import MilvusEmbedder

    path, name, queries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    client = MilvusClient(path)
    state = str(client.get_load_state(name)["state"])
    embedder = MilvusEmbedder.from_collection(client, name, dtype="float32")
    hits = [embedder.search(name, text, limit=5) for text in queries]
    print(json.dumps({"state_on_open": state, "model": embedder.model.spec.to_dict(), "hits": hits}))
"""

HOLD_LOCK = """
    import sys
    from pymilvus import MilvusClient
    client = MilvusClient(sys.argv[1])
    client.close()  # close() alone keeps the file locked until this process exits
    print("open", flush=True)
    sys.stdin.read()
"""
