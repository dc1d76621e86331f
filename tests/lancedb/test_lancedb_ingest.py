"""``vecplug_lancedb.add`` (plugins, checks, streaming) and meaning end to end, on real embedded LanceDB.

The helper runs ``vecplug_before_ingest`` as Chroma's and Qdrant's writes
do, streams any iterable to LanceDB in one write (so a failure anywhere
stores nothing), and keeps its errors' types. The MiniLM test checks that a
question finds its paragraph through LanceDB's own ``table.search``.
"""
from __future__ import annotations

import re
from typing import Optional

import numpy as np
import pytest

lancedb = pytest.importorskip("lancedb")

import vecplug  # noqa: E402
import vecplug_lancedb  # noqa: E402
from lancedb.embeddings import get_registry  # noqa: E402
from lancedb.pydantic import LanceModel, Vector  # noqa: E402
from vecplug.demo import corpus  # noqa: E402

EMAIL = re.compile(r"\S+@\S+")


def table_of(path, function):
    class Notes(LanceModel):
        note_id: int
        body: str = function.SourceField()
        embedding: Vector(function.ndims()) = function.VectorField()
        author: Optional[str] = None

    return lancedb.connect(str(path)).create_table("notes", schema=Notes)


@pytest.fixture
def function(tiny_model_dir):
    return get_registry().get("vecplug").create(name=str(tiny_model_dir), dtype="float32")


class RedactAndSplit:
    """Redacts e-mail addresses, drops records marked secret, and adds a summary record per batch."""

    def __init__(self):
        self.targets = []

    @vecplug.hookimpl
    def vecplug_before_ingest(self, records, target):
        self.targets.append(target)
        kept = [vecplug.Record(record.id, EMAIL.sub("[email]", record.text), record.metadata)
                for record in records if record.metadata.get("author") != "secret"]
        return kept + [vecplug.Record(10_000 + len(self.targets), f"{len(kept)} notes", {"author": "plugin"})]


def test_plugins_see_records_and_what_they_return_is_stored_and_embedded(tmp_path, function, tiny_model,
                                                                        register_plugin):
    plugin = register_plugin(RedactAndSplit())
    table = table_of(tmp_path / "db", function)
    rows = [{"note_id": 1, "body": "write to ada@example.org", "author": "ada"},
            {"note_id": 2, "body": "the launch code is 1234", "author": "secret"},
            {"note_id": 3, "body": "lunch at noon", "author": "bob"}]
    assert vecplug_lancedb.add(table, rows, id_field="note_id") == 3
    assert plugin.targets == [vecplug.Target("lancedb", "notes")]
    stored = {row["note_id"]: row for row in table.to_arrow().to_pylist()}
    assert {key: (row["body"], row["author"]) for key, row in stored.items()} == {
        1: ("write to [email]", "ada"), 3: ("lunch at noon", "bob"), 10_001: ("2 notes", "plugin")}
    for row in stored.values():  # vectors of the text the plugins returned, with the document prompt
        np.testing.assert_allclose(row["embedding"], tiny_model.embed_documents([row["body"]])[0], atol=1e-6)


def test_the_helper_refuses_bad_rows_before_anything_is_stored(tmp_path, function):
    table = table_of(tmp_path / "db", function)
    vecplug_lancedb.add(table, [{"note_id": 0, "body": "kept"}])
    cases = [
        ("a single dict", {"note_id": 1, "body": "x"}, TypeError, "not a single dict"),
        ("bytes text", [{"note_id": 1, "body": b"x"}], TypeError, "text at index 0 is bytes"),
        ("no text", [{"note_id": 1, "bdy": "x"}], ValueError, "row at index 0 has no 'body'"),
        ("lone surrogate", [{"note_id": 1, "body": "ok"}, {"note_id": 2, "body": "bad \udcff"}], ValueError,
         "text at index 1 has a lone surrogate"),
        ("misspelt field", [{"note_id": 1, "body": "x", "autor": "z"}], ValueError, r"\['autor'\]"),
        ("vector given", [{"note_id": 1, "body": "x", "embedding": [0.0] * function.ndims()}], ValueError,
         r"\['embedding'\]"),
        ("not a dict", [("body", "x")], TypeError, "row at index 0 is tuple"),
        ("no id", [{"body": "x"}], ValueError, r"has no value for \['note_id'\]"),
    ]
    for what, rows, error, message in cases:
        with pytest.raises(error, match=message):
            vecplug_lancedb.add(table, rows)
        assert table.count_rows() == 1, what
    with pytest.raises(ValueError, match="id field .id. is not a field"):
        vecplug_lancedb.add(table, [{"note_id": 1, "body": "x"}], id_field="id")
    with pytest.raises(ValueError, match="source column 'author'"):
        vecplug_lancedb.add(table, [{"note_id": 1, "body": "x"}], text_field="author")
    plain = lancedb.connect(str(tmp_path / "db")).create_table("plain", data=[{"body": "x"}])
    with pytest.raises(ValueError, match="has no vecplug embedding function"):
        vecplug_lancedb.add(plain, [{"body": "y"}])


def test_a_plugins_bad_output_stores_nothing(tmp_path, function, register_plugin):
    class Bad:
        @vecplug.hookimpl
        def vecplug_before_ingest(self, records, target):
            return [vecplug.Record(record.id, record.text, {**record.metadata, "sneaky": 1}) for record in records]

    register_plugin(Bad())
    table = table_of(tmp_path / "db", function)
    with pytest.raises(ValueError, match=r"after vecplug_before_ingest has fields the table does not have: \['sneaky'\]"):
        vecplug_lancedb.add(table, [{"note_id": 1, "body": "x"}])
    assert table.count_rows() == 0


@pytest.mark.slow  # 11,500 texts through the model
def test_ten_thousand_rows_stream_in_batches_and_a_late_failure_stores_nothing(tmp_path, function, register_plugin):
    """Rows are read a batch at a time (memory holds one batch), and LanceDB commits once, at the end."""
    read = {"rows": 0, "ahead": 0}

    class Watch:
        @vecplug.hookimpl
        def vecplug_before_ingest(self, records, target):
            read["ahead"] = max(read["ahead"], read["rows"] - records[-1].id - 1)  # rows read beyond this batch

    register_plugin(Watch())

    def rows(bad_at=None):
        for index in range(10_000):
            read["rows"] += 1
            yield {"note_id": index, "body": None if index == bad_at else f"note number {index}"}

    table = table_of(tmp_path / "db", function)
    with pytest.raises(TypeError, match="text at index 1250 is NoneType"):
        vecplug_lancedb.add(table, rows(bad_at=1250), batch_rows=500)
    assert read["rows"] == 1500  # 2 batches embedded and handed over, the 3rd refused, nothing read after it
    assert table.count_rows() == 0
    read.update(rows=0, ahead=0)
    assert vecplug_lancedb.add(table, rows(), batch_rows=500) == 10_000
    assert table.count_rows() == 10_000 and read["ahead"] == 0
    sample = table.search().where("note_id = 7777").to_list()[0]
    np.testing.assert_allclose(sample["embedding"], function.model.embed_documents(["note number 7777"])[0],
                               atol=1e-6)


def test_a_question_finds_its_paragraph_with_minilm(tmp_path):
    pytest.importorskip("vecplug_minilm")  # plugins/vecplug-minilm; ./scripts/test.sh installs it
    function = get_registry().get("vecplug").create(name="minilm")

    class Paragraphs(LanceModel):
        title: str
        text: str = function.SourceField()
        vector: Vector(function.ndims()) = function.VectorField()

    table = lancedb.connect(str(tmp_path / "db")).create_table("paragraphs", schema=Paragraphs)
    table.add([{"title": document.title, "text": document.text} for document in corpus.DOCUMENTS])
    hits = table.search("How do I open a file and read what is in it?").distance_type("cosine").limit(3).to_list()
    assert hits[0]["title"] == "open()" and hits[0]["text"] == corpus.by_id(1).text, [hit["title"] for hit in hits]


def test_upsert_replaces_by_id_and_re_embeds_all_or_nothing(tmp_path, function, tiny_model):
    table = table_of(tmp_path / "db", function)
    vecplug_lancedb.add(table, [{"note_id": 1, "body": "first"}, {"note_id": 2, "body": "second"}], id_field="note_id")
    assert vecplug_lancedb.upsert(table, [{"note_id": 2, "body": "second, changed", "author": "ada"},
                                          {"note_id": 3, "body": "third"}], on="note_id") == 2
    stored = {row["note_id"]: row for row in table.to_arrow().to_pylist()}
    assert {key: (row["body"], row["author"]) for key, row in stored.items()} == {
        1: ("first", None), 2: ("second, changed", "ada"), 3: ("third", None)}
    for row in stored.values():
        np.testing.assert_allclose(row["embedding"], tiny_model.embed_documents([row["body"]])[0], atol=1e-6)
    for rows, error, message in (([{"note_id": 1, "body": "x"}, {"note_id": 1, "body": "y"}], ValueError,
                                  "note_id 1 appears twice"),
                                 ([{"note_id": 1, "body": "x"}, {"note_id": 4, "body": None}], TypeError,
                                  "text at index 1 is NoneType")):
        with pytest.raises(error, match=message):
            vecplug_lancedb.upsert(table, rows, on="note_id", batch_rows=1)  # the bad row in a later batch
        assert {row["note_id"]: row["body"] for row in table.to_arrow().to_pylist()} == {
            1: "first", 2: "second, changed", 3: "third"}
    # what the docs warn about: LanceDB's update() changes a text without re-embedding it
    table.update(where="note_id = 1", values={"body": "first, edited in place"})
    edited = table.search().where("note_id = 1").to_list()[0]
    assert not np.allclose(edited["embedding"], tiny_model.embed_documents([edited["body"]])[0], atol=1e-3)
    np.testing.assert_allclose(edited["embedding"], tiny_model.embed_documents(["first"])[0], atol=1e-6)


def test_lancedbs_own_add_of_record_batches_embeds_each_batch_and_commits_once(tmp_path, function, tiny_model):
    import pyarrow as pa

    table = table_of(tmp_path / "db", function)
    schema = pa.schema([("note_id", pa.int64()), ("body", pa.string())])
    handed_over = []

    def batches(bad_batch=None):
        for number in range(4):
            handed_over.append(number)
            bodies = [f"batch {number} note {i}" for i in range(100)]
            if number == bad_batch:
                bodies[7] = None
            yield pa.RecordBatch.from_pylist([{"note_id": number * 100 + i, "body": body}
                                              for i, body in enumerate(bodies)], schema=schema)

    with pytest.raises(Exception, match="text at index 7 is NoneType"):
        table.add(batches(bad_batch=2))
    assert table.count_rows() == 0 and handed_over == [0, 1, 2]  # read lazily, nothing committed
    table.add(batches())
    assert table.count_rows() == 400
    row = table.search().where("note_id = 321").to_list()[0]
    np.testing.assert_allclose(row["embedding"], tiny_model.embed_documents(["batch 3 note 21"])[0], atol=1e-6)
