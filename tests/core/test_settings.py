"""load_model refuses settings that cannot work, before any work, and accepts their harmless spellings (issue 14)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vecplug
import vecplug.modernbert.embedder


@pytest.fixture
def no_loading(monkeypatch):
    """Any attempt to load weights fails the test: refusals must come first."""
    def load_modernbert(*arguments, **options):
        raise AssertionError("the model was loaded before the bad setting was refused")

    monkeypatch.setattr(vecplug.modernbert.embedder, "load_modernbert", load_modernbert)


@pytest.mark.parametrize("settings, message", [
    ({"device": "tpu"}, "device must be 'cpu', 'cuda' or 'cuda:N'.*got 'tpu'"),
    ({"device": "cpu:x"}, "device must be.*got 'cpu:x'"),
    ({"device": 3}, "device must be.*got 3"),
    ({"dtype": "float64"}, "dtype must be one of float32, bfloat16, float16.*got 'float64'"),
    ({"dtype": "int8"}, "dtype must be one of"),
    ({"dimensions": 0}, "dimensions must be a positive integer.*got 0"),
    ({"dimensions": -5}, "dimensions must be a positive integer.*got -5"),
    ({"dimensions": 16.0}, "dimensions must be a positive integer.*got 16.0"),
    ({"dimensions": True}, "dimensions must be a positive integer.*got True"),
    ({"dimensions": "16"}, "dimensions must be a positive integer.*got '16'"),
    ({"dimensions": 65}, "makes 64-dimensional vectors; dimensions=65 asks for more than it has: pass 64 or fewer"),
    ({"dimensions": np.int64(1000)}, "dimensions=1000 asks for more"),
])
def test_bad_settings_are_refused_before_loading(tiny_model_dir, no_loading, settings, message):
    vecplug.clear_cache()
    with pytest.raises(vecplug.InvalidSettingError, match=message) as raised:
        vecplug.load_model(str(tiny_model_dir), **settings)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, vecplug.VecplugError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_without_a_gpu_is_refused_before_loading(tiny_model_dir, no_loading, device):
    with pytest.raises(vecplug.InvalidSettingError, match=r"torch sees no CUDA GPU.*use device='cpu'"):
        vecplug.load_model(str(tiny_model_dir), device=device)


def test_spellings_of_one_setting_share_one_model(tiny_model_dir):
    """"CPU", "cpu:0", torch.device("cpu") and "cpu" are one device: one copy of the weights."""
    model = vecplug.load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    for device in ("CPU", " cpu ", "cpu:0", torch.device("cpu"), torch.device("cpu", 0)):
        assert vecplug.load_model(str(tiny_model_dir), device=device, dtype="float32") is model, device
    for dtype in ("FLOAT32", "fp32", torch.float32):
        assert vecplug.load_model(str(tiny_model_dir), device="cpu", dtype=dtype) is model, dtype
    bf16 = vecplug.load_model(str(tiny_model_dir), device="cpu", dtype="bfloat16")
    assert vecplug.load_model(str(tiny_model_dir), device="cpu", dtype="bf16") is bf16


def test_numpy_integer_dimensions_are_accepted(tiny_model_dir, tiny_model):
    """dimensions often comes from an array or a config read by numpy: np.int64(16) is 16."""
    for dimensions in (np.int64(16), np.int32(16), np.uint16(16)):
        cut = vecplug.load_model(str(tiny_model_dir), dtype="float32", dimensions=dimensions)
        assert cut.dimensions == 16 and type(cut.dimensions) is int
        assert cut.embed_documents(["matryoshka"]).shape == (1, 16)
    assert tiny_model.with_dimensions(np.int64(64)) is tiny_model
    assert vecplug.embed(["x"], model=str(tiny_model_dir), dimensions=np.int64(8)).shape == (1, 8)
