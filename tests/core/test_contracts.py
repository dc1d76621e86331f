"""Every model, loader and token path vecplug ships honours the Protocols in ``vecplug.contracts``.

``isinstance`` against a runtime-checkable Protocol only sees that the names
exist; ``conforms`` also holds each method's parameters to the contract's,
so a model whose ``embed`` lost its ``kind`` fails here, not in an adapter.
The core's own settings checks (device, dtype) and the ``before_ingest``
policy are tested here too: they are the contract's other half.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import vecplug
from vecplug.contracts import ChunkPath, Embedder, Loader, TokenPath


def protocol_members(protocol) -> list[str]:
    names = set()
    for klass in protocol.__mro__:
        if klass in (object,) or klass.__name__ in ("Protocol", "Generic"):
            continue
        names |= {name for name in vars(klass) if not name.startswith("_") or name == "__call__"}
        names |= set(getattr(klass, "__annotations__", {}))
    return sorted(names - {"__call__"} if protocol is not Loader else names)


def conforms(instance, protocol) -> list[str]:
    """What ``instance`` lacks or takes differently from ``protocol``, as readable lines; empty when it conforms."""
    problems = []
    for name in protocol_members(protocol):
        if not hasattr(instance, name):
            problems.append(f"{type(instance).__name__} has no {name}")
            continue
        wanted = inspect.getattr_static(protocol, name, None)
        if not inspect.isfunction(wanted):
            continue
        expected = [p for p in inspect.signature(wanted).parameters.values() if p.name != "self"]
        actual = inspect.signature(getattr(instance, name)).parameters
        for parameter in expected:
            if parameter.name not in actual and not any(
                    p.kind == p.VAR_KEYWORD for p in actual.values()):
                problems.append(f"{type(instance).__name__}.{name} does not take {parameter.name}")
        for extra in actual.values():
            if extra.name not in {p.name for p in expected} and extra.default is inspect.Parameter.empty \
                    and extra.kind not in (extra.VAR_POSITIONAL, extra.VAR_KEYWORD):
                problems.append(f"{type(instance).__name__}.{name} requires {extra.name}, which the contract never passes")
    return problems


def test_the_built_in_modernbert_conforms(tiny_model_dir):
    from vecplug.registry import resolve

    model = vecplug.load_model(tiny_model_dir)
    assert isinstance(model, Embedder) and isinstance(model, TokenPath)
    assert conforms(model, Embedder) == [] and conforms(model, TokenPath) == []
    assert isinstance(model, ChunkPath) and conforms(model, ChunkPath) == []
    loader = resolve(tiny_model_dir).loader
    assert isinstance(loader, Loader) and conforms(loader, Loader) == []
    view = model.with_dimensions(16)
    assert isinstance(view, Embedder) and conforms(view, Embedder) == []


def test_remote_model_conforms(tiny_server):
    model = vecplug.load_model(tiny_server.url)
    assert isinstance(model, vecplug.RemoteModel)
    assert isinstance(model, Embedder) and conforms(model, Embedder) == []
    assert not isinstance(model, TokenPath)  # the server tokenizes; a client sends text
    assert model.describe()["server"] == model.url and model.served_name


def test_the_minilm_plugin_conforms():
    vecplug_minilm = pytest.importorskip("vecplug_minilm")
    from vecplug.registry import resolve

    loader = resolve("minilm").loader
    assert isinstance(loader, vecplug_minilm.model.MiniLMLoader)
    assert isinstance(loader, Loader) and conforms(loader, Loader) == []
    model = vecplug.load_model("minilm", device="cpu")
    assert isinstance(model, Embedder) and isinstance(model, TokenPath)
    assert conforms(model, Embedder) == [] and conforms(model, TokenPath) == []
    assert isinstance(model, ChunkPath) and conforms(model, ChunkPath) == []


@pytest.mark.parametrize("name", ["tiny", "minilm"])
def test_every_shipped_model_counts_the_texts_it_cuts(name, tiny_model_dir):
    """``truncated_count`` is the contract's: a text past ``max_tokens`` counts once, on both embedding paths."""
    if name == "minilm":
        pytest.importorskip("vecplug_minilm")
    model = vecplug.load_model(tiny_model_dir if name == "tiny" else "minilm", device="cpu")
    too_long = "word " * (4 * model.max_tokens)
    before = model.truncated_count
    model.embed_documents([too_long, "short"])
    assert model.truncated_count == before + 1
    assert isinstance(model, TokenPath)
    assert len(model.tokenize([too_long])[0]) == model.max_tokens and model.truncated_count == before + 2


def test_a_model_that_cannot_chunk_says_so(register_plugin):
    """A plugin model without token offsets still embeds; embed_chunks names what it lacks."""
    from fake_plugin import FakePlugin

    register_plugin(FakePlugin())
    model = vecplug.load_model("fake/hash-embedder")
    assert not isinstance(model, ChunkPath)
    with pytest.raises(vecplug.InvalidSettingError, match="cannot chunk.*token_offsets"):
        model.embed_chunks(["a text"], chunk_tokens=8)


def test_the_conformance_check_can_fail():
    class Broken(vecplug.EmbeddingModel):
        def embed(self, texts):  # lost ``kind``
            return np.zeros((0, 1))

        def tokenize(self, texts, strict):  # needs an argument the contract never passes
            return []

    broken = Broken(vecplug.ModelSpec("broken", 4, 8))
    assert conforms(broken, Embedder) == ["Broken.embed does not take kind"]
    assert "Broken has no embed_token_ids" in conforms(broken, TokenPath)
    assert "Broken.tokenize requires strict, which the contract never passes" in conforms(broken, TokenPath)


class _Recorded(vecplug.EmbeddingModel):
    def embed_batch(self, texts):
        vectors = np.ones((len(texts), self.dimensions), dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class _PlainFunctionPlugin:
    """Registers a model whose loader is a plain function (no ModelLoader): the core checks its settings."""

    def __init__(self):
        self.calls = []

    @vecplug.hookimpl
    def vecplug_register_models(self, register):
        def load(spec, device, dtype):
            self.calls.append((device, dtype))
            return _Recorded(spec)

        register(vecplug.ModelSpec("plain-function-model", 4, 16), load)


def test_device_and_dtype_are_checked_by_the_core_for_every_plugin(register_plugin):
    plugin = register_plugin(_PlainFunctionPlugin())
    vecplug.clear_cache()
    try:
        with pytest.raises(vecplug.InvalidSettingError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
            vecplug.load_model("plain-function-model", device="tpu")
        with pytest.raises(vecplug.InvalidSettingError, match="dtype must be one of float32, bfloat16, float16"):
            vecplug.load_model("plain-function-model", dtype="int8")
        assert plugin.calls == []  # refused before the plugin's loader ran
        first = vecplug.load_model("plain-function-model", device="CPU", dtype="bf16")
        again = vecplug.load_model("plain-function-model", device="cpu:0", dtype="bfloat16")
        assert first is again and plugin.calls == [("cpu", "bfloat16")]  # one spelling, one copy
    finally:
        vecplug.clear_cache()


def test_a_plain_function_loader_gets_the_defaults(register_plugin):
    from vecplug.registry import resolve

    register_plugin(_PlainFunctionPlugin())
    loader = resolve("plain-function-model").loader
    assert isinstance(loader, Loader) and isinstance(loader, vecplug.ModelLoader)
    assert loader.placement("cpu", None) == ("cpu", None)
    with pytest.raises(NotImplementedError, match="cannot tell"):
        loader.locate(resolve("plain-function-model").spec)


# -- vecplug_before_ingest: one policy for every adapter --------------------------------------------
class _Adds:
    @vecplug.hookimpl
    def vecplug_before_ingest(self, records, target):
        return records + [vecplug.Record(f"{records[0].id}-extra", "added text")]


class _Duplicates:
    @vecplug.hookimpl
    def vecplug_before_ingest(self, records, target):
        return records + [vecplug.Record(records[0].id, "same id again")]


def test_added_records_go_to_stores_that_take_new_ids(register_plugin):
    register_plugin(_Adds(), name="adds")
    records = vecplug.before_ingest([vecplug.Record("a", "text")], vecplug.Target("chroma", "docs"))
    assert [record.id for record in records] == ["a", "a-extra"]


def test_added_records_are_refused_where_records_are_existing_rows(register_plugin):
    register_plugin(_Adds(), name="adds")
    target = vecplug.Target("postgres", "public.docs", accepts_new_ids=False)
    with pytest.raises(ValueError, match=r"plugin adds returned a record with id 'a-extra' that was not in the batch; "
                                         r"postgres:public.docs stores vectors in existing rows"):
        vecplug.before_ingest([vecplug.Record("a", "text")], target)


def test_duplicate_ids_are_refused_for_every_target(register_plugin):
    register_plugin(_Duplicates(), name="duplicates")
    for target in (vecplug.Target("qdrant", "docs"), vecplug.Target("postgres", "t", accepts_new_ids=False)):
        with pytest.raises(ValueError, match="plugin duplicates returned two records with id 'a'"):
            vecplug.before_ingest([vecplug.Record("a", "text")], target)


# -- vecplug demo's stores (the shipped ones pass open_stores' check in tests of `vecplug demo`) -------
class _StoreWithoutSearch:
    name, uses_dsn = "half a store", False

    def add(self, ids, texts):
        pass

    def close(self):
        pass


class _HalfStorePlugin:
    @vecplug.hookimpl
    def vecplug_demo_store(self, folder, dsn, model):
        return _StoreWithoutSearch()


def test_a_demo_store_that_breaks_the_contract_is_named(tmp_path, tiny_model, register_plugin):
    import click

    from vecplug.demo.run import open_stores

    register_plugin(_HalfStorePlugin(), name="half-store")
    with pytest.raises(click.ClickException, match=r"half-store: its demo store .* lacks what "
                                                   r"vecplug.contracts.DemoStore asks for"):
        open_stores(tmp_path, None, tiny_model, say=lambda line: None)


def test_one_report_the_hook_and_a_loaded_model_say_the_same_things(tiny_model_dir):
    """describe() carries every key the vecplug_engine_report hook gives before a load, with the same values."""
    from vecplug.modernbert.report import engine_report

    model = vecplug.load_model(tiny_model_dir, device="cpu")
    report = model.describe()
    before_loading = engine_report(device="cpu", dtype=report["dtype"])
    assert set(before_loading) <= set(report)
    for key in ("engine", "device", "dtype", "threads", "threads_reason", "openmp_wait", "attention"):
        assert report[key] == before_loading[key], key
    assert report["name"] == model.name and report["fingerprint"] == model.fingerprint
    assert not hasattr(model, "engine_report")
