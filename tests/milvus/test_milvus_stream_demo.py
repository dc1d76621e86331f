"""The Milvus adapter at length and in use: a 10,000-text stream, MiniLM's meaning, the demo's store and the lock."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import tracemalloc

import pytest

pytest.importorskip("pymilvus")

import vecplug  # noqa: E402
from milvus_helpers import HOLD_LOCK, lite_file, row_count, run_python  # noqa: E402
from pymilvus import MilvusClient  # noqa: E402
from vecplug.demo import corpus  # noqa: E402
from vecplug_milvus import MilvusEmbedder, release  # noqa: E402

QUESTION = "How do I open a file and read what is in it?"


class CountingClient(MilvusClient):
    """The real client, noting how many texts had been read when each insert was sent."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.inserts: list[tuple[int, int]] = []
        self.read = 0

    def insert(self, collection_name, data, *args, **kwargs):
        self.inserts.append((len(data), self.read))
        return super().insert(collection_name, data, *args, **kwargs)


def upload_measured(client, embedder, name: str, count: int) -> int:
    """Stream ``count`` texts into ``name``; the peak of Python allocations during it, in bytes."""
    def texts():
        for number in range(count):
            client.read += 1
            yield f"note {number} on page {number % 97}"

    embedder.create_collection(name)
    tracemalloc.start()
    try:
        assert embedder.upload(name, texts(), metadata=({"n": n} for n in range(count)), quiet=True) == count
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow  # 10,000 texts embedded and written: 10-20 s on a shared 2-core machine
def test_upload_streams_ten_thousand_texts_holding_one_batch(tiny_model_dir):
    model = vecplug.load_model(str(tiny_model_dir), dtype="float32")
    with lite_file() as path:
        client = CountingClient(str(path))
        embedder = MilvusEmbedder(client, model, batch_size=256)
        small = upload_measured(client, embedder, "small", 1_000)
        client.inserts.clear()
        client.read = 0
        large = upload_measured(client, embedder, "large", 10_000)
        assert row_count(client, "large") == 10_000
        written = 0
        for rows, read in client.inserts:  # never more than one batch (and the look-ahead text) ahead of Milvus
            assert rows <= 256 and read - written <= 257, (rows, read, written)
            written += rows
        assert written == 10_000 and len(client.inserts) == 40
        client.close()
    # Holding the 9,000 more rows' vectors alone would take 9,000 x 64 Python floats (> 18 MB); the Milvus
    # Lite store's own bookkeeping grows about 1 MB over those rows (measured with fixed vectors, no model).
    assert large - small < 4 * 2**20, (small, large)


def test_minilm_question_finds_the_paragraph_that_answers_it(tmp_path):
    pytest.importorskip("vecplug_minilm")
    with lite_file() as path:
        client = MilvusClient(str(path))
        embedder = MilvusEmbedder(client, "minilm")
        embedder.create_collection("demo")
        embedder.insert("demo", corpus.texts(), ids=[document.id for document in corpus.DOCUMENTS],
                        metadata=[{"title": document.title} for document in corpus.DOCUMENTS])
        hits = embedder.search("demo", QUESTION, limit=3)
        client.close()
    assert hits[0]["id"] == 1 and hits[0]["entity"]["document"] == corpus.by_id(1).text
    assert hits[0]["entity"]["title"] == corpus.by_id(1).title


def test_demo_store_releases_its_file_and_steps_around_a_locked_one(tiny_model_dir, tmp_path):
    from vecplug_milvus.demo import MilvusDemoStore

    model = vecplug.load_model(str(tiny_model_dir), dtype="float32")
    store = MilvusDemoStore(tmp_path, model)
    try:
        assert store.path == tmp_path / "milvus.db" and store.name == f"Milvus Lite ({tmp_path / 'milvus.db'})"
        store.add([1, 2], ["the kettle boils water", "a tree grows leaves"])
        assert [hit for hit, _ in store.search("the kettle boils water", 2)] == [1, 2]
    finally:
        store.close()
    # closed: another process can open the file (Milvus Lite would hold it until this process exits)
    opened = run_python("""
        import json, sys
        from pymilvus import MilvusClient
        client = MilvusClient(sys.argv[1])
        print(json.dumps({"rows": client.query("vecplug_demo", filter="", output_fields=["count(*)"])[0]["count(*)"]}))
    """, str(tmp_path / "milvus.db"))
    assert opened == {"rows": 2}
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLD_LOCK), str(tmp_path / "milvus.db")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        store = MilvusDemoStore(tmp_path, model)  # a demo still running on the same folder holds milvus.db
        try:
            assert store.path.name.startswith("milvus-") and store.path.parent == tmp_path
            store.add([3], ["a served document"])
            assert store.search("a served document", 1)[0][0] == 3
        finally:
            store.close()
    finally:
        holder.communicate("", timeout=60)
    release(tmp_path / "milvus.db")
