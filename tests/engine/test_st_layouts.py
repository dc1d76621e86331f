"""Any ModernBERT in the sentence-transformers layout: its own pooling and prompts (issue 23, item 9).

``Alibaba-NLP/gte-modernbert-base`` pools the CLS token and has no prompts;
a generated model of that kind is checked against transformers' own
computation (AutoModel, the pooled token's state, L2 norm), one text at a
time, while vecplug runs the texts packed together.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import vecplug
from vecplug.testing import write_model

from parity import texts_of_lengths

TOKEN_COUNTS = [1, 3, 17, 34, 60, 200, 700]


@pytest.fixture(scope="module")
def cls_model_dir(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("models") / "tiny-cls", pooling="cls", prompts={}, seed=3)


@pytest.fixture(scope="module")
def cls_model(cls_model_dir):
    return vecplug.load_model(str(cls_model_dir), dtype="float32")


def pooled_reference(model_dir, token_ids: list[list[int]], pooling: str) -> np.ndarray:
    """transformers' AutoModel, eager float32, one text at a time: the CLS (first) or last token's state, normalised."""
    import torch
    from transformers import AutoModel

    reference = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager", dtype=torch.float32).eval()
    rows = []
    with torch.no_grad():
        for ids in token_ids:
            hidden = reference(input_ids=torch.tensor([ids])).last_hidden_state[0]
            rows.append(torch.nn.functional.normalize(hidden[0 if pooling == "cls" else -1], dim=0).numpy())
    return np.stack(rows)


def test_a_cls_model_matches_transformers_in_packed_batches(cls_model, cls_model_dir):
    texts = texts_of_lengths(cls_model, TOKEN_COUNTS)
    ids = cls_model.tokenize(texts)  # no prompts: the texts as they are
    reference = pooled_reference(cls_model_dir, ids, "cls")
    packed = cls_model.embed_documents(texts)  # one pass, texts of 1 to 700 tokens side by side
    np.testing.assert_allclose(packed, reference, atol=1e-5)
    np.testing.assert_allclose(cls_model.embed_queries(texts), packed, atol=1e-6)  # no prompts: same vectors
    # the check can fail: mean pooling of the same states gives other vectors
    mean = vecplug.load_model(str(write_model(cls_model_dir.parent / "tiny-mean", prompts={}, seed=3)),
                              dtype="float32")
    assert float((mean.embed_documents(texts) * reference).sum(axis=1).min()) < 0.99


def test_a_last_token_model_matches_transformers(tmp_path):
    directory = write_model(tmp_path / "tiny-last", pooling="lasttoken", prompts={"query": "q: "}, seed=4)
    model = vecplug.load_model(str(directory), dtype="float32")
    texts = ["one", "a longer text about pooling the last token of each sequence " * 5, "two words"]
    reference = pooled_reference(directory, model.tokenize(["q: " + text for text in texts]), "lasttoken")
    np.testing.assert_allclose(model.embed_queries(texts), reference, atol=1e-5)
    assert model.describe()["pooling"] == "lasttoken"


def test_pooling_and_prompts_are_reported_and_fingerprinted(cls_model, cls_model_dir, tmp_path):
    assert cls_model.spec.prompts == {} and cls_model.describe()["prompts"] == {}
    assert cls_model.describe()["pooling"] == "cls"
    # the same weights read as mean-pooled make another vector space
    mean_copy = tmp_path / "same-weights-mean"
    shutil.copytree(cls_model_dir, mean_copy)
    pooling_file = mean_copy / "1_Pooling" / "config.json"
    config = json.loads(pooling_file.read_text())
    pooling_file.write_text(json.dumps({**config, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}))
    as_mean = vecplug.load_model(str(mean_copy), dtype="float32")
    assert as_mean.describe()["pooling"] == "mean" and as_mean.fingerprint != cls_model.fingerprint
    with pytest.raises(vecplug.ModelMismatchError, match="not comparable"):
        vecplug.check_same_space(cls_model, as_mean, where="collection 'docs'")


def with_st_config(source, target, **config):
    shutil.copytree(source, target)
    path = target / "config_sentence_transformers.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return target


@pytest.mark.parametrize("config, expected", [
    ({"prompts": {}}, {}),
    ({"prompts": {"query": "", "document": ""}}, {}),
    ({"prompts": {"query": "Q: ", "passage": "P: "}}, {"query": "Q: ", "document": "P: "}),
    ({"prompts": {"query": "Represent this question: "}}, {"query": "Represent this question: "}),
    ({"prompts": {"s2p_query": "find: ", "corpus": "doc: "}}, {"query": "find: ", "document": "doc: "}),
    ({"prompts": {"retrieval": "R: ", "query": "Q: "}, "default_prompt_name": "retrieval"},
     {"query": "Q: ", "document": "R: "}),
])
def test_prompts_come_from_config_sentence_transformers(cls_model_dir, tmp_path, config, expected):
    directory = with_st_config(cls_model_dir, tmp_path / "copy", **config)
    spec = vecplug.registry.resolve(str(directory)).spec
    assert spec.prompts == expected


@pytest.mark.parametrize("change, message", [
    ({"pooling_mode_cls_token": False, "pooling_mode_max_tokens": True}, "pooling mode max_tokens"),
    ({"pooling_mode_cls_token": False, "pooling_mode_weightedmean_tokens": True}, "pooling mode weightedmean_tokens"),
    ({"pooling_mode_mean_tokens": True}, "pooling mode mean, cls"),
    ({"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True, "include_prompt": False}, "include_prompt"),
])
def test_poolings_vecplug_cannot_compute_are_refused_by_name(cls_model_dir, tmp_path, change, message):
    directory = tmp_path / "copy"
    shutil.copytree(cls_model_dir, directory)
    path = directory / "1_Pooling" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(vecplug.ModelFileError, match=message):
        vecplug.load_model(str(directory))


def test_a_dense_module_is_refused(cls_model_dir, tmp_path):
    directory = tmp_path / "copy"
    shutil.copytree(cls_model_dir, directory)
    modules = json.loads((directory / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (directory / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(vecplug.ModelFileError, match="lists a Dense module"):
        vecplug.load_model(str(directory))


def test_a_model_without_normalize_still_gives_unit_vectors(tmp_path):
    directory = write_model(tmp_path / "no-normalize", pooling="cls", prompts={}, normalize=False, seed=3)
    model = vecplug.load_model(str(directory), dtype="float32")
    assert model.files.normalized is False
    np.testing.assert_allclose(np.linalg.norm(model.embed_documents(["x", "y z"]), axis=1), 1, atol=1e-5)


def test_late_chunking_is_refused_for_a_cls_model_plain_chunking_works(cls_model):
    text = " ".join(texts_of_lengths(cls_model, [300]))
    [plain] = cls_model.embed_chunks([text], chunk_tokens=64)
    np.testing.assert_allclose(plain.vectors, cls_model.embed_documents(plain.texts), atol=1e-5)
    with pytest.raises(vecplug.InvalidSettingError, match="pools with its cls token, and late chunking needs a "
                                                          "mean-pooled model.*without late=True"):
        cls_model.embed_chunks([text], chunk_tokens=64, late=True)


def test_a_hub_id_no_plugin_registered_loads_from_the_cache(cls_model_dir, hf_home):
    """`vecplug.load_model("<owner>/<name>")` for any ModernBERT on the hub: here from the (offline) HF cache."""
    repo = hf_home / "hub" / "models--acme--gte-like-modernbert"
    snapshot = repo / "snapshots" / ("1" * 40)
    try:
        shutil.copytree(cls_model_dir, snapshot)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("1" * 40)
        model = vecplug.load_model("acme/gte-like-modernbert", dtype="float32")
        assert model.name == "acme/gte-like-modernbert" and model.describe()["pooling"] == "cls"
        assert model.spec.prompts == {}
        local = vecplug.load_model(str(cls_model_dir), dtype="float32")
        assert model.fingerprint == local.fingerprint
        np.testing.assert_allclose(model.embed_documents(["a text"]), local.embed_documents(["a text"]), atol=1e-6)
    finally:
        shutil.rmtree(repo, ignore_errors=True)
        vecplug.clear_cache()
    with pytest.raises(vecplug.ModelNotAvailableError, match="HF_HUB_OFFLINE"):
        vecplug.load_model("acme/not-in-the-cache")
