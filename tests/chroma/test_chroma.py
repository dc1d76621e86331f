"""The Chroma adapter against real Chroma: an embedded PersistentClient and a ``chroma run`` server.

Every collection test runs on both clients; with the server, the collection
config lives server-side while the embedding function runs here.
"""
from __future__ import annotations

import json
import re
import shutil
import uuid

import numpy as np
import pytest

chromadb = pytest.importorskip("chromadb")

import vecplug  # noqa: E402
import vecplug_chroma  # noqa: E402
from chroma_helpers import HOST, assert_same_ranking, brute_force, chroma_server, run_python  # noqa: E402
from vecplug.testing import long_documents, stdlib_paragraphs  # noqa: E402
from vecplug_chroma import ModernBertEmbeddingFunction  # noqa: E402

DOCUMENTS = list(stdlib_paragraphs()[200:212])
QUERIES = ["how do I open a file", "exceptions raised by a generator"]


def no_telemetry():
    """A new Settings each time: clients write their own fields into the object they are given."""
    return chromadb.config.Settings(anonymized_telemetry=False)


@pytest.fixture(scope="module")
def chroma_port(tmp_path_factory):
    with chroma_server(tmp_path_factory.mktemp("chroma_server") / "db") as port:
        yield port


@pytest.fixture(params=["persistent", "http"])
def connect(request, tmp_path):
    """A function returning a new client on the same database; its ``.code`` does the same in a subprocess."""
    if request.param == "persistent":
        path = str(tmp_path / "chroma")

        def new_client():
            return chromadb.PersistentClient(path, settings=no_telemetry())

        new_client.code = f"chromadb.PersistentClient({path!r}, settings=Settings(anonymized_telemetry=False))"
    else:
        port = request.getfixturevalue("chroma_port")

        def new_client():
            return chromadb.HttpClient(host=HOST, port=port, settings=no_telemetry())

        new_client.code = f"chromadb.HttpClient(host={HOST!r}, port={port}, settings=Settings(anonymized_telemetry=False))"
    return new_client


@pytest.fixture(params=["in-process", "served"])
def function(request, tiny_model_dir):
    """The tiny model in this process, and the same model behind a real `vecplug serve` (a URL as the model)."""
    if request.param == "served":
        return ModernBertEmbeddingFunction(request.getfixturevalue("tiny_server").url)
    return ModernBertEmbeddingFunction(str(tiny_model_dir), dtype="float32")


@pytest.fixture
def collection(connect, function):
    return connect().create_collection(f"docs-{uuid.uuid4().hex[:12]}", embedding_function=function)


def stored(collection, ids=None):
    result = collection.get(ids=ids, include=["documents", "metadatas", "embeddings"])
    return {record_id: (document, metadata, np.asarray(vector))
            for record_id, document, metadata, vector in zip(result["ids"], result["documents"],
                                                             result["metadatas"], result["embeddings"])}


def test_documents_and_queries_take_their_own_path_and_match_brute_force(collection, tiny_model):
    ids = vecplug_chroma.add(collection, DOCUMENTS)
    document_vectors = tiny_model.embed_documents(DOCUMENTS)
    rows = stored(collection)
    vectors = np.stack([rows[record_id][2] for record_id in ids])
    np.testing.assert_allclose(vectors, document_vectors, atol=1e-5)  # __call__: document prompt
    assert not np.allclose(vectors, tiny_model.embed_queries(DOCUMENTS), atol=1e-3)

    result = collection.query(query_texts=QUERIES, n_results=len(DOCUMENTS), include=["distances"])
    for number, query_vector in enumerate(tiny_model.embed_queries(QUERIES)):  # embed_query: query prompt
        expected_ids, expected_distances = brute_force(query_vector, ids, document_vectors)
        assert_same_ranking(result["ids"][number], result["distances"][number], expected_ids, expected_distances)
        _, unprompted = brute_force(tiny_model.embed_documents([QUERIES[number]])[0], ids, document_vectors)
        assert not np.allclose(sorted(result["distances"][number]), unprompted, atol=1e-4)


def test_a_fresh_process_rebuilds_the_function_from_the_persisted_config(connect, collection, function,
                                                                          tiny_model_dir):
    vecplug_chroma.add(collection, DOCUMENTS, ids=[f"doc{number}" for number in range(len(DOCUMENTS))])
    here = collection.query(query_texts=QUERIES, n_results=5, include=["distances"])
    code = f"""
import json, vecplug_chroma, chromadb  # vecplug_chroma first: registration waits for chromadb
from chromadb.config import Settings
collection = {connect.code}.get_collection({collection.name!r})
result = collection.query(query_texts={QUERIES!r}, n_results=5, include=["distances"])
function = collection.configuration["embedding_function"]
print(json.dumps({{"ids": result["ids"], "distances": result["distances"], "model": repr(function.model),
                   "function": function.name(), "config": function.get_config()}}))
"""
    there = run_python(code)
    assert there["function"] == "vecplug_modernbert"
    url = getattr(function.model, "url", None)
    assert there["config"].get("url") == url  # a served collection finds the same server again
    assert there["model"].startswith("<RemoteModel" if url else "<ModernBertEmbedder")
    assert there["config"]["fingerprint"] == vecplug.load_model(str(tiny_model_dir)).fingerprint
    assert set(there["config"]) == {"model", "fingerprint", "prompts", "dimensions", "vecplug_version",
                                    *(["url"] if url else [])}
    # rebuilt with this host's own dtype (bf16 on a bf16 CPU), not the float32 the writer chose
    assert there["ids"] == here["ids"]
    np.testing.assert_allclose(there["distances"], here["distances"], atol=5e-3)


def test_config_is_plain_json_and_round_trips(function, tiny_model):
    config = function.get_config()
    assert json.loads(json.dumps(config)) == config
    assert config["fingerprint"] == tiny_model.fingerprint and config["dimensions"] == tiny_model.dimensions
    assert config["prompts"] == {"query": "search_query: ", "document": "search_document: "}
    rebuilt = ModernBertEmbeddingFunction.build_from_config(config)
    assert rebuilt.get_config() == config and not rebuilt.is_legacy()
    assert function.name() == "vecplug_modernbert" and function.default_space() == "cosine"
    with pytest.raises(ValueError, match="missing fingerprint"):
        ModernBertEmbeddingFunction.validate_config({k: v for k, v in config.items() if k != "fingerprint"})
    function.validate_config_update(config, {**config, "device": "cpu", "dtype": "bfloat16", "batch_size": 4})


def test_matryoshka_dimensions_are_part_of_the_vector_space(function, tiny_model_dir):
    cut = ModernBertEmbeddingFunction(str(tiny_model_dir), dtype="float32", dimensions=32)
    vectors = np.stack(cut(DOCUMENTS[:2]))
    assert vectors.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    config = cut.get_config()
    assert config["dimensions"] == 32 and config["fingerprint"] != function.fingerprint
    assert ModernBertEmbeddingFunction.build_from_config(config).get_config() == config
    with pytest.raises(vecplug.ModelMismatchError, match="dimensions: stored 64, now 32"):
        function.validate_config_update(function.get_config(), config)


def test_changing_the_model_is_refused_and_changing_the_device_is_accepted(
    connect, collection, tiny_model_dir, tiny_model_no_prompts_dir
):
    vecplug_chroma.add(collection, DOCUMENTS[:4], ids=["a", "b", "c", "d"])
    other_model = ModernBertEmbeddingFunction(str(tiny_model_no_prompts_dir), dtype="float32")
    fingerprint = collection.configuration_json["embedding_function"]["config"]["fingerprint"]

    with pytest.raises(vecplug.ModelMismatchError, match="refusing to switch this collection to .*tiny-no-prompts"):
        vecplug_chroma.update_embedding_function(collection, other_model)
    assert connect().get_collection(collection.name).configuration_json["embedding_function"]["config"][
        "fingerprint"] == fingerprint

    # opened with another model's function: Chroma compares names only, vecplug refuses the write
    reopened = connect().get_collection(collection.name, embedding_function=other_model)
    with pytest.raises(vecplug.ModelMismatchError, match="fingerprint"):
        vecplug_chroma.add(reopened, ["one more"])
    assert reopened.count() == 4

    config = collection.configuration_json["embedding_function"]["config"]
    on_cpu = ModernBertEmbeddingFunction(str(tiny_model_dir), device="cpu", dtype="bfloat16", batch_size=2)
    vecplug_chroma.update_embedding_function(collection, on_cpu)  # accepted; this host's choices are not stored
    reopened = connect().get_collection(collection.name)
    without_url = {key: value for key, value in config.items() if key != "url"}  # served -> in process: allowed
    assert reopened.configuration_json["embedding_function"]["config"] == without_url
    vecplug_chroma.add(reopened, ["added after the device change"], ids=["e"])
    vector = stored(reopened, ["e"])["e"][2]
    rebuilt = ModernBertEmbeddingFunction.build_from_config(config)  # what Chroma embeds with for `reopened`
    np.testing.assert_allclose(vector, rebuilt(["added after the device change"])[0], atol=1e-5)

    # Chroma's own modify refuses too, but (chromadb 1.5) only after storing the new config
    with pytest.raises(vecplug.ModelMismatchError, match="not comparable"):
        collection.modify(configuration={"embedding_function": other_model})


def test_weights_replaced_under_the_same_name_are_refused_on_reopen(
    connect, tmp_path, tiny_model_dir, tiny_model_no_prompts_dir
):
    """A fresh process finds other weights under the stored name: reads work, embedding is refused."""
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "my-model")
    function = ModernBertEmbeddingFunction(str(model_dir), dtype="float32")
    name = f"replaced-{uuid.uuid4().hex[:12]}"
    vecplug_chroma.add(connect().create_collection(name, embedding_function=function), DOCUMENTS[:3])
    shutil.copy(tiny_model_no_prompts_dir / "model.safetensors", model_dir / "model.safetensors")

    there = run_python(f"""
import json, vecplug, vecplug_chroma, chromadb
from chromadb.config import Settings
collection = {connect.code}.get_collection({name!r})
count = collection.count()
try:
    collection.query(query_texts=["anything"], n_results=1)
    error = None
except vecplug.ModelMismatchError as raised:
    error = str(raised)
print(json.dumps({{"count": count, "error": error}}))
""")
    assert there["count"] == 3 and there["error"] is not None
    assert function.fingerprint in there["error"] and "not comparable" in there["error"]
    assert "original model" in there["error"]


def test_before_ingest_plugin_changes_what_chroma_stores(collection, tiny_model, register_plugin):
    email = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
    targets = []

    class RedactEmails:
        @vecplug.hookimpl
        def vecplug_before_ingest(self, records, target):
            targets.append(target)
            return [vecplug.Record(record.id, email.sub("[email]", record.text),
                                   {**record.metadata, "redacted": True}) for record in records]

    register_plugin(RedactEmails())
    documents = ["write to ada@example.com for access", "no address here"]
    ids = vecplug_chroma.add(collection, documents, metadatas=[{"team": "ops"}, None])
    rows = stored(collection, ids)
    redacted = ["write to [email] for access", "no address here"]
    assert [rows[record_id][0] for record_id in ids] == redacted
    assert [rows[record_id][1] for record_id in ids] == [{"team": "ops", "redacted": True}, {"redacted": True}]
    np.testing.assert_allclose(np.stack([rows[record_id][2] for record_id in ids]),
                               tiny_model.embed_documents(redacted), atol=1e-5)
    assert targets == [vecplug.Target("chroma", collection.name)]

    vecplug_chroma.upsert(collection, ["reach bob@example.org instead"], ids=[ids[0]])
    assert stored(collection, [ids[0]])[ids[0]][0] == "reach [email] instead"
    assert collection.count() == 2


@pytest.mark.parametrize(
    "documents, error, message",
    [
        ([], ValueError, "documents is empty; nothing to add"),
        (["fine", None], TypeError, "index 1 is NoneType"),
        (["fine", b"bytes"], TypeError, "index 1 is bytes"),
        (["fine", "also fine", 42], TypeError, "index 2 is int"),
        ("a single string", TypeError, "not a single str"),
        (None, TypeError, "documents is None"),
    ],
)
def test_bad_documents_are_refused_and_leave_the_collection_unchanged(collection, documents, error, message):
    vecplug_chroma.add(collection, ["already there"], ids=["kept"])
    with pytest.raises(error, match=re.escape(message)):
        vecplug_chroma.add(collection, documents)
    assert collection.get()["ids"] == ["kept"]


def test_bad_ids_metadata_and_late_chroma_errors_leave_the_collection_unchanged(collection):
    vecplug_chroma.add(collection, ["already there"], ids=["kept"])
    with pytest.raises(ValueError, match="ids has 1 items but there are 2 documents"):
        vecplug_chroma.add(collection, ["a", "b"], ids=["x"])
    with pytest.raises(ValueError, match="repeat 'x'"):
        vecplug_chroma.add(collection, ["a", "b"], ids=["x", "x"])
    with pytest.raises(ValueError, match="metadatas has 1 items"):
        vecplug_chroma.add(collection, ["a", "b"], metadatas=[{"k": 1}])
    with pytest.raises(Exception):  # Chroma refuses nested metadata after embedding, before writing
        vecplug_chroma.add(collection, ["a", "b"], metadatas=[{"k": 1}, {"nested": {"no": "dicts"}}])
    assert collection.get()["ids"] == ["kept"]


def test_embedding_function_errors_are_clear(function):
    with pytest.raises(ValueError, match="no documents to embed"):
        function([])
    with pytest.raises(ValueError, match="no queries to embed"):
        function.embed_query([])
    with pytest.raises(TypeError, match="index 1 is NoneType"):
        function(["fine", None])
    batched = ModernBertEmbeddingFunction(function.model.name, dtype="float32", batch_size=2)
    with pytest.raises(TypeError, match="index 3 is int"):
        batched(["a", "b", "c", 7])  # the whole list is checked before any batch runs
    np.testing.assert_allclose(np.stack(batched(DOCUMENTS[:5])), np.stack(function(DOCUMENTS[:5])), atol=1e-5)


@pytest.fixture(scope="module")
def short_model_dir(tmp_path_factory, tiny_model_dir):
    """The tiny model with max_tokens 128: truncation without embedding 8192-token texts on a CPU."""
    directory = shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("models") / "short-modernbert")
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))
    return directory


def test_very_long_documents_are_truncated_counted_and_stored_whole(connect, short_model_dir):
    function = ModernBertEmbeddingFunction(str(short_model_dir), dtype="float32")
    model = function.model
    collection = connect().create_collection(f"long-{uuid.uuid4().hex[:12]}", embedding_function=function)
    long_document = " ".join(long_documents(count=3))  # ~1500 tokens
    assert len(model.tokenize([long_document])[0]) == model.max_tokens == 128
    before = model.truncated_count
    (record_id,) = vecplug_chroma.add(collection, [long_document])
    assert model.truncated_count == before + 1
    document, _, vector = stored(collection, [record_id])[record_id]
    assert document == long_document
    np.testing.assert_allclose(vector, model.embed_documents([long_document])[0], atol=1e-5)
    # only the first 128 tokens count: a different ending leaves the vector as it was
    np.testing.assert_allclose(vector, model.embed_documents([long_document + " and more words"])[0], atol=1e-5)


def test_importing_the_adapter_stays_light_and_registers_with_chroma():
    result = run_python("""
import json, sys, vecplug
vecplug.load_plugins()
light = {"chromadb": "chromadb" in sys.modules, "torch": "torch" in sys.modules}
import vecplug_chroma
light_after_import = "chromadb" in sys.modules
import chromadb
from chromadb.utils.embedding_functions import known_embedding_functions
print(json.dumps({**light, "after_import": light_after_import,
                  "registered": "vecplug_modernbert" in known_embedding_functions}))
""")
    assert result == {"chromadb": False, "torch": False, "after_import": False, "registered": True}


# -- issue 14: batch limits, per-host settings, cached functions, existing ids ------------------------------

@pytest.mark.slow  # 10,000 documents
def test_add_more_than_chromas_batch_limit_stores_everything(tmp_path, tiny_model_dir):
    """10,000 documents, above the 5,461 a local Chroma takes per call: written in batches, all stored."""
    client = chromadb.PersistentClient(str(tmp_path / "chroma"), settings=no_telemetry())
    assert client.get_max_batch_size() < 10_000
    function = ModernBertEmbeddingFunction(str(tiny_model_dir), dtype="float32")
    collection = client.create_collection("many", embedding_function=function)
    documents = [f"note {number}" for number in range(10_000)]
    ids = vecplug_chroma.add(collection, documents, ids=[f"n{number}" for number in range(10_000)])
    assert ids[-1] == "n9999" and collection.count() == 10_000
    rows = stored(collection, ["n0", "n9999"])
    np.testing.assert_allclose(np.stack([rows["n0"][2], rows["n9999"][2]]),
                               function.model.embed_documents(["note 0", "note 9999"]), atol=1e-5)
    assert vecplug_chroma.upsert(collection, documents[:6000], ids=ids[:6000]) == ids[:6000]
    assert collection.count() == 10_000


def test_add_refuses_ids_already_stored_before_embedding(collection, function, monkeypatch):
    """Chroma keeps the old record and ignores an add of its id: vecplug says so, and writes nothing."""
    vecplug_chroma.add(collection, ["the original text"], ids=["b"])
    embedded = []
    monkeypatch.setattr(function.model, "embed", lambda texts, kind="document": embedded.append(texts))
    with pytest.raises(ValueError, match=r"1 of these ids are already in collection .*\('b'\).*upsert"):
        vecplug_chroma.add(collection, ["new a", "new b", "new c"], ids=["a", "b", "c"])
    assert embedded == []  # refused before any embedding
    monkeypatch.undo()
    assert sorted(collection.get()["ids"]) == ["b"]
    assert stored(collection, ["b"])["b"][0] == "the original text"
    assert vecplug_chroma.upsert(collection, ["new b"], ids=["b"]) == ["b"]
    assert stored(collection, ["b"])["b"][0] == "new b"


def test_the_collection_config_holds_the_vector_space_only(connect, tiny_model_dir, tiny_model_no_prompts_dir):
    """Device, dtype and batch size are each host's choice: a GPU writer must not leave 'cuda' to CPU readers."""
    writer = ModernBertEmbeddingFunction(str(tiny_model_dir), device="cpu", dtype="bfloat16", batch_size=3)
    collection = connect().create_collection(f"space-{uuid.uuid4().hex[:12]}", embedding_function=writer)
    vecplug_chroma.add(collection, DOCUMENTS[:3], ids=["a", "b", "c"])
    config = connect().get_collection(collection.name).configuration_json["embedding_function"]["config"]
    assert set(config) == {"model", "fingerprint", "prompts", "dimensions", "vecplug_version"}
    assert config["fingerprint"] == writer.fingerprint and config["dimensions"] == 64
    vecplug_chroma.update_embedding_function(
        collection, ModernBertEmbeddingFunction(str(tiny_model_dir), dtype="float32", batch_size=1))
    assert connect().get_collection(collection.name).configuration_json["embedding_function"]["config"] == config


class OldStyleFunction(ModernBertEmbeddingFunction):
    """Writes the config vecplug wrote before issue 14: with the writer's device, dtype and batch size."""

    def get_config(self):
        return {**super().get_config(), "device": "cuda", "dtype": "bfloat16", "batch_size": 4}


def test_configs_written_by_old_versions_open_on_any_host(connect, tiny_model_dir):
    """An old config says device 'cuda': a CPU-only process reopens and queries it all the same."""
    old = OldStyleFunction(str(tiny_model_dir), dtype="float32")
    collection = connect().create_collection(f"old-{uuid.uuid4().hex[:12]}", embedding_function=old)
    vecplug_chroma.add(collection, DOCUMENTS[:4], ids=["a", "b", "c", "d"])
    assert collection.configuration_json["embedding_function"]["config"]["device"] == "cuda"
    there = run_python(f"""
import json, vecplug_chroma, chromadb
from chromadb.config import Settings
collection = {connect.code}.get_collection({collection.name!r})
result = collection.query(query_texts=["how do I open a file"], n_results=2)
print(json.dumps({{"ids": result["ids"][0]}}))
""")
    assert len(there["ids"]) == 2


def test_switching_a_collection_to_its_moved_model_stores_and_works(connect, tmp_path, tiny_model_dir):
    """The stored model directory is gone: reads still work, queries say why, and the switch to its new place
    (same weights) is stored once, without the error chromadb raised after storing it."""
    original = shutil.copytree(tiny_model_dir, tmp_path / "model-here")
    name = f"moved-{uuid.uuid4().hex[:12]}"
    collection = connect().create_collection(
        name, embedding_function=ModernBertEmbeddingFunction(str(original), dtype="float32"))
    vecplug_chroma.add(collection, DOCUMENTS[:4], ids=["a", "b", "c", "d"])
    moved = shutil.move(str(original), str(tmp_path / "model-there"))
    there = run_python(f"""
import json, vecplug, vecplug_chroma, chromadb
from chromadb.config import Settings
collection = {connect.code}.get_collection({name!r})
count = collection.count()
try:
    collection.query(query_texts=["x"], n_results=1)
    before = None
except vecplug.VecplugError as error:
    before = str(error)
vecplug_chroma.update_embedding_function(collection, vecplug_chroma.ModernBertEmbeddingFunction({moved!r}))
stored = {connect.code}.get_collection({name!r}).configuration_json["embedding_function"]["config"]["model"]
after = {connect.code}.get_collection({name!r}).query(query_texts=["how do I open a file"], n_results=2)["ids"][0]
print(json.dumps({{"count": count, "before": before, "stored": stored, "after": after}}))
""")
    assert there["count"] == 4 and "model-here" in there["before"]
    assert there["stored"] == moved and len(there["after"]) == 2


def test_a_process_reopens_collections_with_its_own_function(tiny_model_dir, monkeypatch):
    """The function a process made for a model is what Chroma's rebuild gets: its dtype, no second copy."""
    mine = ModernBertEmbeddingFunction(str(tiny_model_dir), dtype="float32", dimensions=48)  # a space of its own
    loads = []
    monkeypatch.setattr(vecplug, "load_model", lambda *arguments, **options: loads.append(arguments))
    assert ModernBertEmbeddingFunction.build_from_config(mine.get_config()) is mine
    assert ModernBertEmbeddingFunction.build_from_config({**mine.get_config(), "dtype": "bfloat16"}) is mine
    assert loads == []


def test_a_reopened_collection_builds_its_function_once(connect, collection):
    """Chroma asks for the function on every call; vecplug builds it once per config, not per query."""
    vecplug_chroma.add(collection, DOCUMENTS[:4], ids=["a", "b", "c", "d"])
    there = run_python(f"""
import json, time, vecplug, vecplug_chroma, chromadb
from chromadb.config import Settings
loads = []
load_model = vecplug.load_model
vecplug.load_model = lambda *arguments, **options: loads.append(arguments) or load_model(*arguments, **options)
collection = {connect.code}.get_collection({collection.name!r})
collection.add(ids=["e"], documents=["one more"])
started = time.perf_counter()
for _ in range(50):
    collection.query(query_texts=["how do I open a file"], n_results=2)
print(json.dumps({{"loads": len(loads), "seconds": time.perf_counter() - started}}))
""")
    assert there["loads"] == 1, there
