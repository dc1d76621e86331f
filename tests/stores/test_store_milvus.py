"""What the Milvus store adds to the shared store tests: string ids, Milvus Lite's lock, and its mistakes
(Milvus Lite, real, in process).

The shared tests (test_store_commands.py) run every command on the corpus
in Milvus Lite too, and check that no model is loaded to open, stream,
search by vector or label it.
"""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

import vecplug
from conftest import open_store, usage_error_line


@pytest.fixture
def corpus_copy(milvus_corpus, tmp_path):
    """A copy of the session's Milvus Lite corpus that a test may write to."""
    return str(shutil.copytree(milvus_corpus, tmp_path / "corpus.db"))


def test_a_file_another_process_holds_is_named(corpus_copy):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pymilvus import MilvusClient\n"
                               "MilvusClient(sys.argv[1]); print('open', flush=True); time.sleep(120)", corpus_copy],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(vecplug.stores.StoreNotFoundError, match="another process holds the Milvus Lite"):
            open_store(["--milvus", corpus_copy, "--collection", "corpus"])
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("arguments, expected", [
    (["search", "x", "--milvus", "{missing}", "--collection", "c"], "there is no Milvus Lite database at"),
    (["search", "x", "--milvus", "{corpus}", "--collection", "missing"], "there is no Milvus collection 'missing'"),
    (["search", "x", "--milvus", "{corpus}"], "--milvus needs --collection"),
    (["search", "x", "--milvus", "{corpus}", "--collection", "corpus", "--where", "topic = = 'a'"],
     "--where is not a Milvus filter"),
    (["recommend", "--milvus", "{corpus}", "--collection", "corpus", "--positive", "1", "--negative", "9999"],
     "no row with id 9999 in Milvus collection 'corpus'"),
    (["cluster", "--milvus", "{corpus}", "--collection", "corpus", "--write", "document"],
     "holds the store's own data"),
    (["dedup", "--milvus", "{corpus}", "--collection", "corpus", "--id-column", "key"],
     "--id-column only apply to --dsn/--table and --lancedb"),
])
def test_milvus_mistakes_are_one_line_and_exit_2(corpus_copy, tmp_path, capsys, arguments, expected):
    arguments = [argument.format(corpus=corpus_copy, missing=tmp_path / "none.db") for argument in arguments]
    assert expected in usage_error_line(arguments, capsys)


def test_string_ids_and_quotes_in_them(tmp_path):
    """Ids of a VARCHAR key are compared as str, and a quote in one cannot end the filter's literal."""
    from pymilvus import DataType, MilvusClient

    import vecplug_milvus

    path = str(tmp_path / "plain.db")
    client = MilvusClient(path)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=4)
    schema.add_field("document", DataType.VARCHAR, max_length=64)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="AUTOINDEX", metric_type="COSINE")
    client.create_collection("plain", schema=schema, index_params=index)
    vectors = np.eye(3, 4, dtype=np.float32)
    client.insert("plain", [{"id": item, "vector": vector.tolist(), "document": text}
                            for item, vector, text in zip(['a', 'it"s', "c"], vectors, "xyz")])
    client.close()
    vecplug_milvus.release(path)
    store = open_store(["--milvus", path, "--collection", "plain"])
    try:
        assert store.recorded_model() is None
        assert set(store.vectors(['it"s', "a"])) == {'it"s', "a"}
        hits = store.nearest(vectors[1], 2, exclude=["a"])
        assert [hit.id for hit in hits] == ['it"s', "c"] and hits[0].text == "y"
        with pytest.raises(vecplug.stores.UnknownIdsError, match='no row with id x" or id != "'):
            store.vectors(['x" or id != "'])
    finally:
        store.close()
