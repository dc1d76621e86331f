"""LanceDB's "vecplug" embedding function against real embedded LanceDB directories.

What a user of LanceDB's embedding registry relies on: rows embedded with
the document prompt, ``table.search(text)`` with the query prompt (checked
against numpy on the vectors LanceDB stores and the distances it returns),
the table's record of its model (a reopened table in a new process embeds
with the same model; a model whose weights changed is refused), and bad
input refused with nothing written.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

lancedb = pytest.importorskip("lancedb")

import vecplug  # noqa: E402
import vecplug_lancedb  # noqa: E402
from lancedb.embeddings import get_registry  # noqa: E402
from lancedb.pydantic import LanceModel, Vector  # noqa: E402
from vecplug.testing import stdlib_paragraphs, write_model  # noqa: E402

TEXTS = list(stdlib_paragraphs()[300:308])
TAGS = ["a", "b"] * 4
QUESTION = "what does the interpreter do with a module"


def docs_schema(function, tagged: bool):
    class Docs(LanceModel):
        text: str = function.SourceField()
        vector: Vector(function.ndims()) = function.VectorField()

    class TaggedDocs(Docs):
        tag: str

    return TaggedDocs if tagged else Docs


def new_table(path, function, name="docs", tagged=False):
    return lancedb.connect(str(path)).create_table(name, schema=docs_schema(function, tagged))


def stored_rows(table) -> dict:
    rows = table.to_arrow().to_pylist()
    return {row["text"]: np.asarray(row["vector"], dtype=np.float32) for row in rows}


def run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter with the test's (offline) environment."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})


@pytest.fixture
def function(tiny_model_dir):
    return get_registry().get("vecplug").create(name=str(tiny_model_dir), dtype="float32")


def test_rows_get_document_vectors_and_search_gets_the_query_vector(tmp_path, function, tiny_model):
    assert isinstance(function, vecplug_lancedb.VecplugEmbeddings) and function.ndims() == tiny_model.dimensions
    table = new_table(tmp_path / "db", function, tagged=True)
    table.add([{"text": text, "tag": tag} for text, tag in zip(TEXTS, TAGS)])

    stored = stored_rows(table)
    np.testing.assert_allclose(np.stack([stored[text] for text in TEXTS]), tiny_model.embed_documents(TEXTS),
                               atol=1e-6)
    query = tiny_model.embed_queries([QUESTION])[0]
    assert not np.allclose(query, tiny_model.embed_documents([QUESTION])[0], atol=1e-3)  # the prompts differ

    hits = table.search(QUESTION).limit(len(TEXTS)).to_list()
    expected = {text: float(((vector - query) ** 2).sum()) for text, vector in stored.items()}  # LanceDB's l2
    assert [hit["text"] for hit in hits] == sorted(expected, key=expected.get)
    for hit in hits:
        assert hit["_distance"] == pytest.approx(expected[hit["text"]], abs=1e-5)

    cosine = table.search(QUESTION).distance_type("cosine").where("tag = 'b'").limit(3).to_list()
    b_texts = [text for text, tag in zip(TEXTS, TAGS) if tag == "b"]
    by_cosine = sorted(b_texts, key=lambda text: 1 - float(stored[text] @ query))
    assert [hit["text"] for hit in cosine] == by_cosine[:3] and {hit["tag"] for hit in cosine} == {"b"}
    for hit in cosine:
        assert hit["_distance"] == pytest.approx(1 - float(stored[hit["text"]] @ query), abs=1e-5)


def test_the_table_records_the_vector_space_not_the_device(tmp_path, function, tiny_model):
    table = new_table(tmp_path / "db", function)
    [recorded] = json.loads(table.schema.metadata[b"embedding_functions"])
    assert recorded["name"] == "vecplug" and recorded["source_column"] == "text"
    assert recorded["model"] == {"name": tiny_model.name, "dimensions": tiny_model.dimensions,
                                 "fingerprint": tiny_model.fingerprint, "prompts": tiny_model.spec.prompts,
                                 "vecplug_version": vecplug.__version__}
    rebuilt = table.embedding_functions["vector"].function
    assert rebuilt.model.fingerprint == tiny_model.fingerprint
    assert rebuilt.model.describe()["dtype"] == "float32"  # this process chose float32 for that model


def test_dimensions_cut_matryoshka_vectors(tmp_path, tiny_model_dir):
    function = get_registry().get("vecplug").create(name=str(tiny_model_dir), dimensions=32, dtype="float32")
    assert function.ndims() == 32
    table = new_table(tmp_path / "db", function)
    assert table.schema.field("vector").type.list_size == 32
    table.add([{"text": text} for text in TEXTS[:3]])
    cut = vecplug.load_model(str(tiny_model_dir), dtype="float32", dimensions=32)
    stored = stored_rows(table)
    np.testing.assert_allclose(np.stack([stored[text] for text in TEXTS[:3]]), cut.embed_documents(TEXTS[:3]),
                               atol=1e-6)
    [recorded] = json.loads(table.schema.metadata[b"embedding_functions"])
    assert recorded["model"]["dimensions"] == 32 and recorded["model"]["fingerprint"] == cut.fingerprint


def test_create_refuses_bad_options_with_vecplugs_own_errors(tiny_model_dir):
    from pydantic import ValidationError

    registered = get_registry().get("vecplug")
    assert registered.create(name=tiny_model_dir).safe_model_dump()["name"] == str(tiny_model_dir)  # a Path works
    with pytest.raises(ValidationError, match="dimension"):  # a misspelt option is not silently ignored
        registered.create(name=str(tiny_model_dir), dimension=32)
    with pytest.raises(vecplug.InvalidSettingError, match="dimensions=1000"):
        registered.create(name=str(tiny_model_dir), dimensions=1000)
    with pytest.raises(vecplug.InvalidSettingError, match="dimensions must be a positive integer"):
        registered.create(name=str(tiny_model_dir), dimensions=True)
    with pytest.raises(vecplug.ModelMismatchError, match="fingerprint 0123456789ab"):  # a pinned fingerprint
        registered.create(name=str(tiny_model_dir), fingerprint="0123456789ab")
    prompts = vecplug.load_model(str(tiny_model_dir)).spec.prompts
    assert registered.create(name=str(tiny_model_dir), prompts=prompts).model.spec.prompts == prompts
    with pytest.raises(vecplug.ModelMismatchError, match="prompts"):  # a config recording other prompts
        registered.create(name=str(tiny_model_dir), prompts={"query": "question: ", "document": "passage: "})
    with pytest.raises(vecplug.UnknownModelError):
        registered.create(name="no-such-model-anywhere")
    with pytest.raises(vecplug.InvalidSettingError, match="dtype"):
        registered.create(name=str(tiny_model_dir), dtype="float8")


def test_bad_input_is_refused_and_nothing_is_written(tmp_path, function):
    table = new_table(tmp_path / "db", function)
    table.add([{"text": "kept"}])
    fine = [{"text": f"fine {i}"} for i in range(50)]
    cases = [(fine + [{"text": None}], "text at index 50 is NoneType"),  # ours, in LanceDB's RuntimeError
             ([{"text": 5}], "text at index 0 is int"),
             ([{"text": ["a", "b"]}], "text at index 0 is list"),
             (fine + [{"text": 5}], "Expected bytes, got a 'int'")]  # pyarrow refuses a mixed column first
    for rows, message in cases:
        with pytest.raises(Exception, match=re.escape(message)):
            table.add(rows)
        assert table.count_rows() == 1
    with pytest.raises(TypeError, match="takes one str, got int"):
        table.search(5).to_list()
    with pytest.raises(TypeError, match="text at index 2 is NoneType"):  # the helper keeps the error's type
        vecplug_lancedb.add(table, [{"text": "a"}, {"text": "b"}, {"text": None}])
    assert table.count_rows() == 1


@pytest.mark.slow  # fresh processes
def test_a_reopened_table_embeds_with_its_model_in_a_new_process(tmp_path, function, tiny_model):
    db = tmp_path / "db"
    new_table(db, function).add([{"text": text} for text in TEXTS[:4]])
    # the one line a reopening process needs: vecplug.load_plugins() (or import vecplug_lancedb), in any order.
    # The rebuilt function runs on the host's automatic dtype (bfloat16 on some CPUs) unless this process
    # chose one for the model: then the vectors are float32-exact and compared to this process's.
    code = f"""
import json, lancedb, vecplug
vecplug.load_plugins()
table = lancedb.connect({str(db)!r}).open_table("docs")
automatic = table.embedding_functions["vector"].function.model
first = table.search({QUESTION!r}).limit(1).to_list()[0]["text"]
from lancedb.embeddings import get_registry
get_registry().get("vecplug").create(name={str(function.model.name)!r}, dtype="float32")
table = lancedb.connect({str(db)!r}).open_table("docs")
table.add([{{"text": "added in another process"}}])
hits = table.search({QUESTION!r}).limit(10).to_list()
added = table.search().where("text = 'added in another process'").to_list()[0]
print(json.dumps({{"fingerprint": automatic.fingerprint, "first": first,
                   "dtype": table.embedding_functions["vector"].function.model.describe()["dtype"],
                   "hits": [[hit["text"], hit["_distance"]] for hit in hits],
                   "vector": [float(x) for x in added["vector"]]}}))
"""
    process = run_python(code)
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    assert result["fingerprint"] == tiny_model.fingerprint and result["dtype"] == "float32"
    np.testing.assert_allclose(result["vector"], tiny_model.embed_documents(["added in another process"])[0],
                               atol=1e-5)
    query = tiny_model.embed_queries([QUESTION])[0]
    for text, distance in result["hits"]:
        vector = tiny_model.embed_documents([text])[0]
        assert distance == pytest.approx(float(((vector - query) ** 2).sum()), abs=1e-4)
    assert len(result["hits"]) == 5 and result["first"] in TEXTS[:4]


@pytest.mark.slow  # fresh processes
def test_registration_is_lazy_and_follows_lancedb_in_either_order(tmp_path, tiny_model_dir):
    """load_plugins never imports lancedb; the function is registered once lancedb is, whichever came first."""
    lazy = run_python("import sys, vecplug; vecplug.load_plugins(); "
                      "assert 'vecplug_lancedb' in sys.modules, 'the plugin did not load'; "
                      "assert 'lancedb' not in sys.modules, sorted(sys.modules); "
                      "import lancedb; from lancedb.embeddings import get_registry; "
                      "print(get_registry().get('vecplug').__name__)")
    assert lazy.returncode == 0 and lazy.stdout.split() == ["VecplugEmbeddings"], lazy.stderr[-3000:]
    # LanceDB alone opens and reads the table but cannot rebuild its function; one import fixes that
    db = tmp_path / "db"
    new_table(db, get_registry().get("vecplug").create(name=str(tiny_model_dir)))
    bare = run_python(f"""
import lancedb
table = lancedb.connect({str(db)!r}).open_table("docs")
print(table.count_rows())
try:
    table.search("a question").to_list()
except KeyError as error:
    print("KeyError", error)
import vecplug_lancedb  # after lancedb: registers at once
from lancedb.embeddings import get_registry
print(get_registry().get("vecplug").__name__)
""")
    assert bare.returncode == 0, bare.stderr[-3000:]
    assert bare.stdout.splitlines() == ["0", "KeyError 'vecplug'", "VecplugEmbeddings"]


def test_a_model_whose_weights_changed_is_refused(tmp_path):
    model_dir = write_model(tmp_path / "model", shape="tiny", seed=0)
    function = get_registry().get("vecplug").create(name=str(model_dir), dtype="float32")
    table = new_table(tmp_path / "db", function)
    table.add([{"text": text} for text in TEXTS[:3]])
    shutil.rmtree(model_dir)
    write_model(model_dir, shape="tiny", seed=2)  # same name, other weights
    vecplug.clear_cache()
    reopened = lancedb.connect(str(tmp_path / "db")).open_table("docs")
    assert reopened.count_rows() == 3  # still readable
    with pytest.raises(vecplug.ModelMismatchError, match="this LanceDB table was made with") as refused:
        reopened.search(QUESTION).to_list()
    assert function.model.fingerprint in str(refused.value)
    with pytest.raises(vecplug.ModelMismatchError):
        reopened.add([{"text": "would be another model's vector"}])
    with pytest.raises(vecplug.ModelMismatchError):
        vecplug_lancedb.add(reopened, [{"text": "would be another model's vector"}])
    assert reopened.count_rows() == 3


def test_a_served_model_is_recorded_by_url(tmp_path, tiny_server, tiny_model):
    function = get_registry().get("vecplug").create(name=tiny_server.url)
    assert isinstance(function.model, vecplug.RemoteModel) and function.ndims() == tiny_model.dimensions
    table = new_table(tmp_path / "db", function)
    table.add([{"text": text} for text in TEXTS[:3]])
    stored = stored_rows(table)
    np.testing.assert_allclose(np.stack([stored[text] for text in TEXTS[:3]]), tiny_model.embed_documents(TEXTS[:3]),
                               atol=1e-5)
    [recorded] = json.loads(table.schema.metadata[b"embedding_functions"])
    assert recorded["model"]["name"] == tiny_server.url
    assert recorded["model"]["fingerprint"] == tiny_model.fingerprint
    hit = lancedb.connect(str(tmp_path / "db")).open_table("docs").search(QUESTION).limit(1).to_list()[0]
    query = tiny_model.embed_queries([QUESTION])[0]
    assert hit["_distance"] == pytest.approx(float(((stored[hit["text"]] - query) ** 2).sum()), abs=1e-4)


def test_lancedbs_async_api_uses_the_same_function(tmp_path, function, tiny_model):
    import asyncio

    async def run():
        table = await (await lancedb.connect_async(str(tmp_path / "db"))).create_table(
            "docs", schema=docs_schema(function, tagged=False))
        await table.add([{"text": text} for text in TEXTS[:3]])
        rows = (await table.query().to_arrow()).to_pylist()
        hits = await (await table.search(QUESTION)).limit(3).to_list()
        return rows, hits

    rows, hits = asyncio.run(run())
    stored = {row["text"]: np.asarray(row["vector"]) for row in rows}
    np.testing.assert_allclose(np.stack([stored[text] for text in TEXTS[:3]]), tiny_model.embed_documents(TEXTS[:3]),
                               atol=1e-6)
    query = tiny_model.embed_queries([QUESTION])[0]
    for hit in hits:
        assert hit["_distance"] == pytest.approx(float(((stored[hit["text"]] - query) ** 2).sum()), abs=1e-5)
