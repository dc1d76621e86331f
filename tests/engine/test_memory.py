"""Streaming 100,000 texts peaks within 1.2x of 1,000, in the default dtype (issue 14, defect 3).

Each run is a fresh process that reports its peak RSS, with vecplug's
defaults: the default dtype (bf16 on a CPU with AVX512-BF16/AMX) and
default threads. Three paths: ``iter_embed`` over a generator, Qdrant's
``upload`` and the Chroma ``add`` helper. Before, bf16 grew without bound
(oneDNN caches), Qdrant's local mode held every point of an upload, and the
Chroma helper held every record and vector of a call.

A store keeps what it stores: Qdrant's local mode holds every vector and
payload in this process, so its own growth (measured by writing the same
points with fixed vectors and no model) is set aside; Chroma runs as a
``chroma run`` server, so its index lives in another process.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

if not sys.platform.startswith("linux"):
    pytest.skip("peak memory is read from /proc/self/status", allow_module_level=True)

from chroma_helpers import chroma_server, offline_environment

SMALL, LARGE = 1_000, 100_000
pytestmark = pytest.mark.slow  # 100,000 texts per path in fresh processes: minutes

STREAM = textwrap.dedent("""
    import json, sys, time, uuid

    def peak_mb():
        # VmHWM: this process's own high-water mark. (getrusage's ru_maxrss carries over the parent's
        # peak through fork and exec: from a 470 MB pytest, every child reported 470 MB at least.)
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    target, model_dir, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def texts():
        for number in range(count):
            yield f"note {number} on page {number % 97}"

    started = time.perf_counter()
    if target == "iter_embed":
        import vecplug
        model = vecplug.load_model(model_dir)
        done = sum(len(chunk) for chunk in model.iter_embed_chunks(texts()))
    elif target in ("qdrant", "qdrant-store"):
        from qdrant_client import QdrantClient, models
        client = QdrantClient(location=":memory:")
        if target == "qdrant":
            from vecplug_qdrant import QdrantEmbedder
            embedder = QdrantEmbedder(client, model_dir)
            embedder.create_collection("notes")
            done = embedder.upload("notes", texts())
        else:  # the store alone: the same ids and payloads, a fixed vector, no model
            from vecplug_qdrant import document_id
            client.create_collection("notes", vectors_config={"modernbert": models.VectorParams(
                size=int(sys.argv[4]), distance=models.Distance.COSINE)})
            vector, batch, done = [1.0] + [0.0] * (int(sys.argv[4]) - 1), [], 0
            for text in texts():
                batch.append(models.PointStruct(id=document_id(text), vector={"modernbert": vector},
                                                payload={"document": text}))
                if len(batch) == 256:
                    client.upload_points("notes", batch)
                    done, batch = done + len(batch), []
            client.upload_points("notes", batch)
            done += len(batch)
    elif target == "chroma":
        import chromadb, vecplug_chroma
        client = chromadb.HttpClient(host="127.0.0.1", port=int(sys.argv[4]),
                                     settings=chromadb.config.Settings(anonymized_telemetry=False))
        function = vecplug_chroma.ModernBertEmbeddingFunction(model_dir)
        collection = client.create_collection(f"notes-{uuid.uuid4().hex[:12]}", embedding_function=function)
        done = len(vecplug_chroma.add(collection, list(texts()), ids=[f"n{number}" for number in range(count)]))
    print(json.dumps({"count": done, "seconds": round(time.perf_counter() - started, 1),
                      "peak_mb": peak_mb()}))
""")


def peak(target: str, model_dir, count: int, *extra) -> dict:
    completed = subprocess.run([sys.executable, "-c", STREAM, target, str(model_dir), str(count), *map(str, extra)],
                               capture_output=True, text=True, timeout=1200, env=offline_environment())
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["count"] == count, result
    return result


def report(name: str, small: dict, large: dict, set_aside: float = 0.0) -> float:
    ratio = (large["peak_mb"] - set_aside) / small["peak_mb"]
    print(f"{name}: peak {small['peak_mb']:.0f} MB for {SMALL:,}, {large['peak_mb']:.0f} MB for {LARGE:,} "
          f"({large['seconds']} s); store's own growth set aside {set_aside:.0f} MB: x{ratio:.3f}")
    return ratio


def test_iter_embed_streams_in_flat_memory(tiny_model_dir):
    small, large = peak("iter_embed", tiny_model_dir, SMALL), peak("iter_embed", tiny_model_dir, LARGE)
    assert report("iter_embed", small, large) <= 1.2


def test_qdrant_upload_streams_in_flat_memory(tiny_model_dir):
    small, large = peak("qdrant", tiny_model_dir, SMALL), peak("qdrant", tiny_model_dir, LARGE)
    store_small, store_large = peak("qdrant-store", tiny_model_dir, SMALL, 64), peak("qdrant-store", tiny_model_dir,
                                                                                     LARGE, 64)
    store_growth = store_large["peak_mb"] - store_small["peak_mb"]
    assert report("qdrant upload", small, large, set_aside=store_growth) <= 1.2


@pytest.fixture(scope="module")
def chroma_port(tmp_path_factory):
    with chroma_server(tmp_path_factory.mktemp("chroma_memory") / "db") as port:
        yield port


def test_chroma_add_streams_in_flat_memory(tiny_model_dir, chroma_port):
    small = peak("chroma", tiny_model_dir, SMALL, chroma_port)
    large = peak("chroma", tiny_model_dir, LARGE, chroma_port)
    assert report("chroma add (client process)", small, large) <= 1.2
