"""The built-in ModernBERT plugin: parity with transformers, prompts, input rules, files."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import vecplug
from vecplug.modernbert.encoder import UnpaddedModernBert

from parity import min_cosine, reference_embeddings, texts_of_lengths

PROMPT = "search_document: "
# crosses the tiny model's local window (±16) and the block-local threshold (192)
TOKEN_COUNTS = [1, 3, 16, 17, 18, 33, 34, 60, 200, 511, 700, 1500]


def test_float32_matches_transformers_reference(tiny_model, tiny_model_dir):
    texts = [""] + texts_of_lengths(tiny_model, TOKEN_COUNTS)
    ids = tiny_model.tokenize([PROMPT + text for text in texts])
    assert max(len(i) for i in ids) > 1000 and min(len(i) for i in ids) <= 12  # the prompt alone is ~9
    ours = tiny_model.embed_documents(texts)
    reference = reference_embeddings(tiny_model_dir, ids)
    assert min_cosine(ours, reference) >= 0.9999
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    # the check can fail: distinct texts are far apart, so agreement is not an accident
    assert float((reference[1:] @ reference[1:].T)[np.triu_indices(len(texts) - 1, 1)].max()) < 0.99


def test_sequences_of_one_and_two_tokens_match(tiny_model, tiny_model_dir):
    ids = [[1], [1, 2], [5, 6, 7], list(range(40, 140))]
    ours = tiny_model.encoder.forward(ids).numpy()
    np.testing.assert_allclose(ours, reference_embeddings(tiny_model_dir, ids), atol=1e-5)


def test_bfloat16_matches_reference(tiny_model_dir):
    model = vecplug.load_model(str(tiny_model_dir), dtype="bfloat16")
    texts = texts_of_lengths(model, TOKEN_COUNTS)
    reference = reference_embeddings(tiny_model_dir, model.tokenize([PROMPT + t for t in texts]))
    assert min_cosine(model.embed_documents(texts), reference) >= 0.999


def test_wrong_window_would_be_caught(tiny_model, tiny_model_dir, monkeypatch):
    """A one-token error in the local window breaks parity: the test has teeth."""
    texts = texts_of_lengths(tiny_model, [60, 300])
    ids = tiny_model.tokenize([PROMPT + t for t in texts])
    reference = reference_embeddings(tiny_model_dir, ids)
    encoder = UnpaddedModernBert(tiny_model_dir, "cpu", __import__("torch").float32)
    object.__setattr__(encoder.arch, "window", encoder.arch.window - 1)
    broken = encoder.forward(ids).numpy()
    np.testing.assert_allclose(tiny_model.encoder.forward(ids).numpy(), reference, atol=1e-5)
    assert np.abs(broken - reference).max() > 1e-4  # what the parity test's atol=1e-5 would reject


def test_queries_and_documents_get_their_prompts(tiny_model):
    text = "how do generators work"
    document, query = tiny_model.embed_documents([text])[0], tiny_model.embed_queries([text])[0]
    assert float(document @ query) < 0.9999
    explicit = tiny_model.embed_batch(["search_query: " + text])[0]
    np.testing.assert_allclose(query, explicit, atol=1e-6)
    assert tiny_model.spec.prompts == {"query": "search_query: ", "document": "search_document: "}


def test_model_without_prompts_gives_identical_kinds(tiny_model_no_prompts_dir):
    model = vecplug.load_model(str(tiny_model_no_prompts_dir), dtype="float32")
    assert model.spec.prompts == {}
    np.testing.assert_array_equal(model.embed_documents(["same"]), model.embed_queries(["same"]))


def test_known_model_copy_keeps_its_prompts(tmp_path, tiny_model_no_prompts_dir):
    """A local copy of nomic-ai/modernbert-embed-base gets the prompts even if its files lack them."""
    copy = tmp_path / "modernbert-embed-base"
    shutil.copytree(tiny_model_no_prompts_dir, copy)
    model = vecplug.load_model(str(copy), dtype="float32")
    assert model.spec.prompts["query"] == "search_query: "


def test_bad_input(tiny_model):
    empty = tiny_model.embed_documents([])
    assert empty.shape == (0, 64) and empty.dtype == np.float32
    assert tiny_model.embed_documents([""]).shape == (1, 64)
    for bad, index in ([["ok", None], 1], [[b"bytes"], 0], [["a", "b", 3], 2]):
        with pytest.raises(TypeError, match=f"index {index}"):
            tiny_model.embed_documents(bad)
    with pytest.raises(TypeError, match="list of str"):
        tiny_model.embed_documents("a bare string")
    with pytest.raises(ValueError, match="kind"):
        tiny_model.embed(["x"], kind="passage")


def test_long_texts_are_truncated_and_counted(tiny_model_dir, tmp_path):
    short_dir = vecplug.testing.write_model(tmp_path / "short", shape="tiny", max_tokens=32)
    model = vecplug.load_model(str(short_dir), dtype="float32")
    long_text = "word " * 500
    before = model.truncated_count
    vectors = model.embed_documents([long_text, "short"])
    assert vectors.shape == (2, 64)
    assert model.truncated_count == before + 1
    assert len(model.tokenize([long_text])[0]) == 32
    # the truncated text embeds as its first 32 tokens
    np.testing.assert_allclose(vectors[0], model.embed_documents(["word " * 40])[0], atol=1e-5)


def test_dimensions_truncate_and_renormalise(tiny_model_dir, tiny_model):
    cut = vecplug.load_model(str(tiny_model_dir), dtype="float32", dimensions=16)
    full = tiny_model.embed_documents(["matryoshka"])[0]
    vector = cut.embed_documents(["matryoshka"])[0]
    assert vector.shape == (16,)
    np.testing.assert_allclose(vector, full[:16] / np.linalg.norm(full[:16]), atol=1e-6)
    assert np.isclose(np.linalg.norm(vector), 1.0)
    with pytest.raises(ValueError, match="asks for more"):
        vecplug.load_model(str(tiny_model_dir), dtype="float32", dimensions=65)


def test_fingerprint_identifies_weights_prompts_and_dimensions(tiny_model, tiny_model_dir, tmp_path):
    same_copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, same_copy)
    assert vecplug.load_model(str(same_copy), dtype="float32").fingerprint == tiny_model.fingerprint
    other_prompts = tmp_path / "other-prompts"
    shutil.copytree(tiny_model_dir, other_prompts)
    config = json.loads((other_prompts / "config_sentence_transformers.json").read_text())
    config["prompts"] = {"query": "q: ", "document": "d: "}
    (other_prompts / "config_sentence_transformers.json").write_text(json.dumps(config))
    assert vecplug.load_model(str(other_prompts), dtype="float32").fingerprint != tiny_model.fingerprint
    other_weights = vecplug.testing.write_model(tmp_path / "other-weights", shape="tiny", seed=7)
    assert vecplug.load_model(str(other_weights), dtype="float32").fingerprint != tiny_model.fingerprint


def test_missing_model_offline_says_what_to_do():
    with pytest.raises(vecplug.ModelNotAvailableError) as error:
        vecplug.load_model("nomic-ai/modernbert-embed-base")
    message = str(error.value)
    assert "nomic-ai/modernbert-embed-base" in message and "HF_HUB_OFFLINE" in message
    assert "load_model('/path/to/model-dir')" in message


def test_hub_cache_layout_is_used_offline(tiny_model_dir, hf_home):
    """A model in the HF cache loads offline through huggingface_hub, under its hub name."""
    snapshot = hf_home / "hub" / "models--lightonai--modernbert-embed-large" / "snapshots" / ("0" * 40)
    try:
        shutil.copytree(tiny_model_dir, snapshot)
        refs = snapshot.parent.parent / "refs"
        refs.mkdir(exist_ok=True)
        (refs / "main").write_text("0" * 40)
        model = vecplug.load_model("modernbert-embed-large", dtype="float32")
        assert model.name == "lightonai/modernbert-embed-large"
        assert model.spec.prompts["document"] == "search_document: "
        assert model.embed_queries(["q"]).shape == (1, 64)
    finally:
        shutil.rmtree(snapshot.parent.parent, ignore_errors=True)
        vecplug.clear_cache()


def test_directory_of_another_architecture_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(vecplug.UnknownModelError, match="modernbert"):
        vecplug.load_model(str(tmp_path))


def test_cls_pooling_reads_pooling_config(tmp_path):
    directory = vecplug.testing.write_model(tmp_path / "cls", shape="tiny", pooling="cls")
    model = vecplug.load_model(str(directory), dtype="float32")
    assert model.files.pooling == "cls"
    assert model.embed_documents(["pooled by the first token"]).shape == (1, 64)
