"""What the LanceDB store adds to the shared store tests: no model for stored-vector work, and its mistakes.

The shared tests (test_store_commands.py) run every command on the corpus
in LanceDB too; here: opening, streaming, searching by vector and writing
labels never build the table's embedding function (which would load the
model), and each mistake is one line with exit status 2.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import store_corpus
import vecplug
from conftest import open_store
from vecplug.cli import main


@pytest.fixture
def corpus_copy(lancedb_corpus, tmp_path):
    """A copy of the session's LanceDB corpus that a test may write to."""
    return str(shutil.copytree(lancedb_corpus, tmp_path / "lancedb"))


def test_stored_vector_work_loads_no_model(corpus_copy, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded for work on stored vectors")

    monkeypatch.setattr(vecplug, "load_model", no_model)
    store = open_store(["--lancedb", corpus_copy, "--table", "corpus"])
    documents = store_corpus.documents()
    assert store.count() == len(documents) and store.recorded_model()["name"].endswith("all-MiniLM-L6-v2")
    items = [item for batch in store.items(batch_size=10) for item in batch]
    assert sorted(item.id for item in items) == [document.id for document in documents]
    assert all(abs(float(np.linalg.norm(item.vector)) - 1.0) < 1e-5 for item in items)
    first = next(item for item in items if item.id == 1)
    [best, *_] = store.nearest(first.vector, 3)
    assert best.id == 1 and best.text == documents[0].text and best.score == pytest.approx(1.0, abs=1e-5)
    assert 1 not in [hit.id for hit in store.nearest(first.vector, 3, exclude=["1"])]
    assert store.write_labels("group", ((item.id, item.id % 3) for item in items)) == len(items)
    rows = store.table.search().select(["id", "group", "text"]).limit(None).to_list()
    assert {row["id"]: row["group"] for row in rows} == {document.id: document.id % 3 for document in documents}
    assert {row["id"]: row["text"] for row in rows} == {document.id: document.text for document in documents}
    assert store.count() == len(documents)  # labels rewrote rows: none lost, none doubled


def test_string_ids_and_quotes_in_them(tmp_path):
    """Ids of a str column are compared as str, a quote in one cannot end the SQL literal."""
    import lancedb
    import pyarrow as pa

    vectors = np.eye(3, 4, dtype=np.float32)
    data = pa.table({"id": ["a", "it's", "c"], "text": ["x", "y", "z"],
                     "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 4)})
    lancedb.connect(str(tmp_path)).create_table("plain", data=data)
    store = open_store(["--lancedb", str(tmp_path), "--table", "plain", "--text-column", "text"])
    assert store.recorded_model() is None
    assert set(store.vectors(["it's", "a"])) == {"it's", "a"}
    hits = store.nearest(vectors[1], 2, exclude=["a"])
    assert [hit.id for hit in hits] == ["it's", "c"] and hits[0].text == "y"
    with pytest.raises(vecplug.stores.UnknownIdsError, match="no row with id x' OR 1=1"):
        store.vectors(["x' OR 1=1 --"])


@pytest.mark.parametrize("arguments, expected", [
    (["search", "x", "--lancedb", "{missing}", "--table", "t"], "there is no LanceDB database in"),
    (["search", "x", "--lancedb", "{corpus}", "--table", "missing"], "there is no LanceDB table 'missing' in"),
    (["search", "x", "--lancedb", "{corpus}"], "--lancedb needs --table"),
    (["search", "x", "--lancedb", "{corpus}", "--table", "corpus", "--collection", "c"], "LanceDB takes --table"),
    (["search", "x", "--lancedb", "{corpus}", "--table", "corpus", "--where", "topic = = 'a'"],
     "--where is not a LanceDB filter"),
    (["recommend", "--lancedb", "{corpus}", "--table", "corpus", "--positive", "1", "--negative", "9999"],
     "no row with id 9999 in LanceDB table 'corpus'"),
    (["dedup", "--lancedb", "{corpus}", "--table", "corpus", "--text-column", "body"],
     "has no column 'body' (--text-column)"),
    (["cluster", "--lancedb", "{corpus}", "--table", "corpus", "--write", "text"], "holds the store's own data"),
    (["cluster", "--lancedb", "{corpus}", "--table", "corpus", "--write", "topic"], "holds string, not integers"),
    (["dedup", "--lancedb", "{corpus}", "--qdrant", "{corpus}", "--table", "corpus"],
     "name one store, not --qdrant and --lancedb"),
])
def test_lancedb_mistakes_are_one_line_and_exit_2(corpus_copy, tmp_path, capsys, arguments, expected):
    """Through the command line's entry point, in this process (test_store_errors.py runs real ones)."""
    arguments = [argument.format(corpus=corpus_copy, missing=tmp_path / "none") for argument in arguments]
    with pytest.raises(SystemExit) as exited:
        main(arguments)
    error = capsys.readouterr().err
    assert exited.value.code == 2, error
    assert len(error.strip().splitlines()) == 1 and expected in error, error
