"""The loader reads what sentence-transformers 5 and 6 write: a model saved by 6.x loads back with the base's settings.

sentence-transformers 6 writes ``1_Pooling/config.json`` as ``{"pooling_mode": "mean"}``
(5: one boolean flag per mode), moves ``max_seq_length`` out of
``sentence_bert_config.json`` into the tokenizer's ``model_max_length``, and
names modules by their full path. Before, vecplug refused such a model or
silently read 8,192 tokens.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import vecplug
from vecplug.testing import write_model


def saved_by_sentence_transformers(source, target):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(source), device="cpu")
    model.save(str(target))
    return model


@pytest.mark.parametrize("pooling", ["mean", "cls", "lasttoken"])
def test_a_model_saved_by_sentence_transformers_loads_with_the_same_settings_and_vectors(tmp_path, pooling):
    import sentence_transformers

    base = write_model(tmp_path / "base", shape="tiny", max_tokens=384, pooling=pooling,
                       prompts={"query": "q: ", "document": "d: "}, seed=5)
    st_model = saved_by_sentence_transformers(base, tmp_path / "saved")
    if int(sentence_transformers.__version__.split(".")[0]) >= 6:  # the layout this test is about
        assert "pooling_mode" in json.loads((tmp_path / "saved" / "1_Pooling" / "config.json").read_text())
        assert "max_seq_length" not in json.loads((tmp_path / "saved" / "sentence_bert_config.json").read_text())
    original = vecplug.load_model(str(base), dtype="float32")
    saved = vecplug.load_model(str(tmp_path / "saved"), dtype="float32")
    assert saved.spec.max_tokens == original.spec.max_tokens == 384
    assert saved.spec.prompts == original.spec.prompts == {"query": "q: ", "document": "d: "}
    assert saved.describe()["pooling"] == pooling and saved.files.normalized
    assert saved.fingerprint == original.fingerprint  # same weights, prompts, pooling: the same space
    texts = ["one", "two words here", "a longer text about layouts " * 20]
    np.testing.assert_allclose(saved.embed_queries(texts), st_model.encode_query(texts), atol=1e-5)
    np.testing.assert_allclose(saved.embed_documents(texts), original.embed_documents(texts), atol=1e-6)


@pytest.mark.parametrize("mode, message", [
    ("max", "pooling mode max"),
    (["mean", "max"], "pooling mode max, mean"),
    ("weightedmean", "pooling mode weightedmean"),
])
def test_new_style_poolings_vecplug_cannot_compute_are_refused_by_name(tmp_path, tiny_model_dir, mode, message):
    directory = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, directory)
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(
        {"embedding_dimension": 64, "pooling_mode": mode, "include_prompt": True}))
    with pytest.raises(vecplug.ModelFileError, match=message):
        vecplug.load_model(str(directory))


def test_max_tokens_comes_from_the_tokenizer_capped_by_the_position_limit(tmp_path, tiny_model_dir):
    directory = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, directory)
    (directory / "sentence_bert_config.json").write_text(json.dumps({"module_output_name": "token_embeddings"}))
    tokenizer_config = directory / "tokenizer_config.json"
    settings = json.loads(tokenizer_config.read_text())
    tokenizer_config.write_text(json.dumps({**settings, "model_max_length": 1000}))
    assert vecplug.registry.resolve(str(directory)).spec.max_tokens == 1000
    tokenizer_config.write_text(json.dumps({**settings, "model_max_length": int(1e30)}))  # "no limit" sentinel
    assert vecplug.registry.resolve(str(directory)).spec.max_tokens == 8192  # max_position_embeddings
