"""The plugin core: hooks, registry, third-party plugins, the ingest hook."""
from __future__ import annotations

import numpy as np
import pytest

import vecplug
from vecplug import hookspecs

from fake_plugin import FAKE_SPEC, FakePlugin


def test_every_hook_is_documented_in_design():
    """Like datasette's test_docs: a hook missing from docs/design.md fails."""
    from pathlib import Path

    design = (Path(__file__).parents[2] / "docs" / "design.md").read_text()
    hooks = [name for name in dir(hookspecs) if name.startswith("vecplug_")]
    assert len(hooks) == 10
    for hook in hooks:
        assert f"`{hook}(" in design, f"{hook} is not documented in docs/design.md"
        assert getattr(hookspecs, hook).__doc__, f"{hook} has no docstring"


def test_builtin_models_are_registered():
    models = vecplug.registered_models()
    base = models["nomic-ai/modernbert-embed-base"].spec
    assert base.dimensions == 768 and base.matryoshka_dims == (768, 256)
    assert base.prompts == {"query": "search_query: ", "document": "search_document: "}
    large = models["lightonai/modernbert-embed-large"].spec
    assert large.dimensions == 1024 and large.prompts == base.prompts


def test_unknown_model_lists_known_ones():
    with pytest.raises(vecplug.UnknownModelError) as error:
        vecplug.load_model("no-such-model")
    assert "nomic-ai/modernbert-embed-base" in str(error.value)
    assert "vecplug models" in str(error.value)


def test_third_party_plugin_reached_through_load_model_and_embed(register_plugin, tiny_model_dir):
    plugin = register_plugin(FakePlugin(), name="fake")
    model = vecplug.load_model("fake-hash")
    assert model.spec == FAKE_SPEC and model.dimensions == 8
    direct = model.embed_documents(["alpha", "beta"])
    through_hook = vecplug.embed(["alpha", "beta"], kind="document", model="fake/hash-embedder")
    np.testing.assert_array_equal(direct, through_hook)
    assert plugin.embed_calls == [(["alpha", "beta"], "document")]
    # a model without prompts: query and document vectors are identical
    np.testing.assert_array_equal(model.embed_queries(["alpha"]), model.embed_documents(["alpha"]))
    # the ModernBERT plugin still serves its own models alongside
    ours = vecplug.embed(["alpha"], model=str(tiny_model_dir))
    assert ours.shape == (1, 64)
    assert plugin.embed_calls == [(["alpha", "beta"], "document")]


def test_model_registered_without_embed_hook_still_embeds(register_plugin):
    class RegisterOnly:
        @vecplug.hookimpl
        def vecplug_register_models(self, register):
            from fake_plugin import HashModel

            spec = vecplug.ModelSpec(name="fake/register-only", dimensions=8, max_tokens=16, fingerprint="x")
            register(spec, lambda spec, device, dtype: HashModel(spec))

    register_plugin(RegisterOnly(), name="register-only")
    vectors = vecplug.embed(["a", "b"], model="fake/register-only")
    assert vectors.shape == (2, 8)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


def test_register_rejects_non_spec(register_plugin):
    class Broken:
        @vecplug.hookimpl
        def vecplug_register_models(self, register):
            register({"name": "dict"}, None)

    register_plugin(Broken(), name="broken")
    with pytest.raises(TypeError, match="ModelSpec"):
        vecplug.registered_models()


def test_models_are_cached_and_dimension_views_share_weights(tiny_model_dir):
    first = vecplug.load_model(str(tiny_model_dir), dtype="float32")
    again = vecplug.load_model(str(tiny_model_dir), dtype="float32")
    cut = vecplug.load_model(str(tiny_model_dir), dtype="float32", dimensions=16)
    assert first is again
    assert cut.encoder is first.encoder and cut.dimensions == 16
    assert cut.fingerprint != first.fingerprint and first.fingerprint


def test_auto_and_explicit_placement_share_one_copy(tiny_model_dir):
    """device=None and the device it means here load the weights once, not twice."""
    from vecplug.devices import dtype_name
    from vecplug.modernbert.hardware import choose_dtype

    auto = vecplug.load_model(str(tiny_model_dir))
    auto_dtype = dtype_name(choose_dtype(None, "cpu"))
    assert vecplug.load_model(str(tiny_model_dir), device="cpu") is auto
    assert vecplug.load_model(str(tiny_model_dir), device="cpu", dtype=auto_dtype) is auto
    other = "float32" if auto_dtype != "float32" else "bfloat16"
    assert vecplug.load_model(str(tiny_model_dir), dtype=other) is not auto


def test_before_ingest_plugins_chain_change_and_drop(register_plugin):
    class Redact:
        @vecplug.hookimpl
        def vecplug_before_ingest(self, records, target):
            return [vecplug.Record(r.id, r.text.replace("secret", "[redacted]"), {**r.metadata, "target": str(target)})
                    for r in records]

    class DropEmpty:
        @vecplug.hookimpl
        def vecplug_before_ingest(self, records):  # a subset of the arguments is fine
            return [r for r in records if r.text.strip()]

    class LeaveAlone:
        @vecplug.hookimpl
        def vecplug_before_ingest(self, records, target):
            return None

    register_plugin(Redact(), name="redact")
    register_plugin(DropEmpty(), name="drop-empty")
    register_plugin(LeaveAlone(), name="leave-alone")
    records = [vecplug.Record(1, "my secret"), vecplug.Record(2, "   "), vecplug.Record(3, "public", {"a": 1})]
    out = vecplug.before_ingest(records, vecplug.Target("postgres", "public.docs"))
    assert [(r.id, r.text) for r in out] == [(1, "my [redacted]"), (3, "public")]
    assert out[1].metadata == {"a": 1, "target": "postgres:public.docs"}
    assert records[0].text == "my secret"  # the caller's records are not mutated


def test_before_ingest_rejects_bad_plugin_output(register_plugin):
    class Bad:
        @vecplug.hookimpl
        def vecplug_before_ingest(self, records, target):
            return ["not a record"]

    register_plugin(Bad(), name="bad")
    with pytest.raises(TypeError, match="vecplug.Record"):
        vecplug.before_ingest([vecplug.Record(1, "x")], vecplug.Target("chroma", "c"))


def test_load_plugins_honours_allow_and_block_lists(monkeypatch):
    import subprocess
    import sys

    code = "import vecplug; vecplug.load_plugins(); print(sorted(vecplug.pm.get_name(p) for p in vecplug.pm.get_plugins()))"
    def plugins_with(**env):
        import os

        full_env = {**os.environ, **env}
        return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True,
                              check=True).stdout.strip()

    everything = plugins_with()
    assert "'chroma'" in everything and "'qdrant'" in everything and "vecplug.modernbert.plugin" in everything
    only_chroma = plugins_with(VECPLUG_LOAD_PLUGINS="chroma")
    assert "'chroma'" in only_chroma and "'qdrant'" not in only_chroma
    assert "vecplug.modernbert.plugin" in only_chroma  # built-ins always load
    blocked = plugins_with(VECPLUG_BLOCK_PLUGINS="qdrant,pgvector")
    assert "'qdrant'" not in blocked and "'pgvector'" not in blocked and "'chroma'" in blocked


def test_env_flag_reads_switches_one_way(monkeypatch):
    from vecplug.environment import env_flag

    for value, expected in (("1", True), ("Yes", True), (" on ", True), ("0", False), ("off", False),
                            ("", False), ("maybe", None)):
        monkeypatch.setenv("VECPLUG_TEST_FLAG", value)
        assert env_flag("VECPLUG_TEST_FLAG") is expected, value
    monkeypatch.delenv("VECPLUG_TEST_FLAG")
    assert env_flag("VECPLUG_TEST_FLAG") is None


def test_one_same_space_rule_for_every_adapter(tiny_model, tiny_model_dir, tiny_model_no_prompts_dir, tmp_path):
    """vecplug.check_same_space: the fingerprint decides; specs, models and both stored dict shapes compare."""
    import shutil

    spec = tiny_model.spec
    moved = vecplug.load_model(str(shutil.copytree(tiny_model_dir, tmp_path / "moved")), dtype="float32")
    other = vecplug.load_model(str(tiny_model_no_prompts_dir), dtype="float32")
    chroma_config = {"model": spec.name, "fingerprint": spec.fingerprint, "prompts": dict(spec.prompts),
                     "dimensions": spec.dimensions, "device": "cuda"}
    for stored in (spec, tiny_model, spec.to_dict(), chroma_config):
        vecplug.check_same_space(stored, tiny_model, where="x")
        vecplug.check_same_space(stored, moved, where="x")  # same weights under another name
        assert vecplug.same_space(stored, moved.spec.to_dict())
        assert not vecplug.same_space(stored, other)
    with pytest.raises(vecplug.ModelMismatchError) as raised:
        vecplug.check_same_space(spec.to_dict(), other, where="column public.docs.embedding",
                                 action="write to it with")
    message = str(raised.value)
    assert message.startswith(f"column public.docs.embedding was made with {spec.name} (64 dims, fingerprint "
                              f"{spec.fingerprint}); refusing to write to it with {other.name} (64 dims")
    assert "not comparable" in message and "prompts: stored" in message and "new collection or column" in message
    cut = tiny_model.with_dimensions(16)
    with pytest.raises(vecplug.ModelMismatchError, match="dimensions: stored 64, now 16.*do this instead"):
        vecplug.check_same_space(spec, cut, where="here", hint="do this instead")
    # hand-edited records: a dimension or prompt disagreement counts even with equal fingerprints
    assert not vecplug.same_space({**chroma_config, "dimensions": 32}, spec)
    assert not vecplug.same_space({**chroma_config, "prompts": {}}, spec)
    # models without fingerprints (third-party plugins) compare by name, and never match one with a fingerprint
    plain = vecplug.ModelSpec(name="fake/plain", dimensions=8, max_tokens=16)
    assert vecplug.same_space(plain, plain.to_dict())
    assert not vecplug.same_space(plain, vecplug.ModelSpec(name="fake/other", dimensions=8, max_tokens=16))
    assert not vecplug.same_space(plain, vecplug.ModelSpec(name="fake/plain", dimensions=8, max_tokens=16,
                                                          fingerprint="abc"))
    with pytest.raises(TypeError, match="vector space of 42"):
        vecplug.same_space(42, spec)
