"""What the LanceDB store adds to the shared store tests: string ids, and its mistakes.

The shared tests (test_store_commands.py) run every command on the corpus
in LanceDB too, and check that no model is loaded to open, stream, search
by vector or label it (reading the table's embedding function through
LanceDB would load one); here: ids of a str column, and each mistake is
one line with exit status 2.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import vecplug
from conftest import open_store, usage_error_line


@pytest.fixture
def corpus_copy(lancedb_corpus, tmp_path):
    """A copy of the session's LanceDB corpus that a test may write to."""
    return str(shutil.copytree(lancedb_corpus, tmp_path / "lancedb"))


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
    arguments = [argument.format(corpus=corpus_copy, missing=tmp_path / "none") for argument in arguments]
    assert expected in usage_error_line(arguments, capsys)
