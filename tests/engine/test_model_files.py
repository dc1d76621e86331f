"""Broken model files are refused at load_model, naming the file and what to do (issue 14, defect 8).

Each case is an ordinary way for a download to go wrong; before, they gave
a bare MemoryError or OverflowError, safetensors' or tokenizers' own
message, NaN vectors, or a shape error at the first embedding.
"""
from __future__ import annotations

import json
import shutil

import pytest

import vecplug


@pytest.fixture
def model_copy(tmp_path, tiny_model_dir):
    """A fresh copy of the tiny model to break."""
    vecplug.clear_cache()
    yield shutil.copytree(tiny_model_dir, tmp_path / "broken-model")
    vecplug.clear_cache()


def load_refused(directory, *messages: str) -> str:
    """load_model(directory) raises ModelFileError whose message contains every one of ``messages``."""
    with pytest.raises(vecplug.ModelFileError) as raised:
        vecplug.load_model(str(directory))
    message = str(raised.value)
    for expected in messages:
        assert expected in message, message
    assert isinstance(raised.value, vecplug.VecplugError)
    return message


def test_git_lfs_pointer_says_git_lfs_pull(model_copy):
    weights = model_copy / "model.safetensors"
    weights.write_text("version https://git-lfs.github.com/spec/v1\n"
                       "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 596070136\n")
    load_refused(model_copy, str(weights), "git-lfs pointer", "git lfs pull")


def test_html_page_saved_as_weights(model_copy):
    weights = model_copy / "model.safetensors"
    weights.write_text("<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>gone</body></html>\n")
    load_refused(model_copy, str(weights), "HTML page", "re-download")


def test_random_bytes_are_not_safetensors(model_copy):
    weights = model_copy / "model.safetensors"
    weights.write_bytes(bytes(range(256)) * 64)
    load_refused(model_copy, str(weights), "not a safetensors file", "re-download")


def test_truncated_weights(model_copy):
    weights = model_copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    load_refused(model_copy, str(weights), "is truncated", f"the file has {len(data) // 2:,}")


def test_nan_weights_are_refused_not_embedded(model_copy):
    from safetensors.torch import load_file, save_file

    weights = model_copy / "model.safetensors"
    state = load_file(str(weights))
    name = next(key for key in state if key.endswith("mlp.Wi.weight"))
    state[name][0, 0] = float("nan")
    save_file(state, str(weights))
    load_refused(model_copy, str(weights), name, "NaN or infinite")


def test_config_that_disagrees_with_the_weights_fails_at_load(model_copy):
    config_path = model_copy / "config.json"
    config = json.loads(config_path.read_text())
    config["hidden_size"] = 128
    config_path.write_text(json.dumps(config))
    load_refused(model_copy, "config.json says 128, the weights have 64", "different models")


def test_tokenizer_without_a_model_names_tokenizer_json(model_copy):
    (model_copy / "tokenizer.json").write_text("{}")
    load_refused(model_copy, str(model_copy / "tokenizer.json"), "cannot be read by tokenizers")


def test_config_json_that_is_not_json_is_named(model_copy):
    (model_copy / "config.json").write_text("<html>oops</html>")
    load_refused(model_copy, str(model_copy / "config.json"), "is not valid JSON")


def test_a_sound_copy_still_loads(model_copy):
    assert vecplug.load_model(str(model_copy), dtype="float32").embed_documents(["fine"]).shape == (1, 64)
