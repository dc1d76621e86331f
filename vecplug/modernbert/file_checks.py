"""Refuse broken model files at load time, naming the file and what to do.

Downloads fail in ordinary ways: a git-lfs pointer instead of the weights
(a clone without ``git lfs``), an HTML error page saved under the file's
name, a file cut short, files of two different models in one directory.
Left alone, each of them surfaces later as a bare ``MemoryError``,
``OverflowError``, a shape error at the first embedding, or NaN vectors.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import ModelFileError

# A safetensors header is JSON describing the tensors: kilobytes, not the gigabytes a wrong length reads as.
MAX_HEADER_BYTES = 100 * 1024 * 1024
REFETCH = "re-download the model directory (`hf download <model>`), or point vecplug at a complete copy"


def check_weights_file(path: Path) -> None:
    """``model.safetensors`` is a whole safetensors file, not a pointer, a web page or a fragment."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        start = handle.read(min(size, 512))
        if start.startswith(b"version https://git-lfs"):
            raise ModelFileError(
                f"{path} is a git-lfs pointer ({size} bytes), not the weights: run `git lfs install && "
                f"git lfs pull` in {path.parent}, or {REFETCH}"
            )
        if start.lstrip()[:1] == b"<" and b"html" in start.lower():
            raise ModelFileError(f"{path} is an HTML page ({size} bytes), not weights (a failed download?): {REFETCH}")
        header_length = int.from_bytes(start[:8], "little") if size >= 8 else 0
        if size < 8 or not 2 <= header_length <= min(MAX_HEADER_BYTES, size - 8):
            raise ModelFileError(f"{path} is not a safetensors file ({size} bytes, no valid header): {REFETCH}")
        handle.seek(8)
        try:
            header = json.loads(handle.read(header_length))
        except ValueError:
            header = None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path} is not a safetensors file (its header is not JSON): {REFETCH}")
    ends = [entry["data_offsets"][1] for name, entry in header.items()
            if name != "__metadata__" and isinstance(entry, dict) and len(entry.get("data_offsets") or ()) == 2]
    expected = 8 + header_length + max(ends, default=0)
    if size < expected:
        raise ModelFileError(
            f"{path} is truncated: its header describes {expected:,} bytes, the file has {size:,}: {REFETCH}"
        )


def read_json_file(path: Path) -> dict:
    """A model directory's JSON file as a dict ({} when absent); a broken one is named."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path} is not valid JSON ({error}): {REFETCH}") from error
    if not isinstance(data, dict):
        raise ModelFileError(f"{path} holds a JSON {type(data).__name__}, expected an object: {REFETCH}")
    return data


def load_tokenizer(path: Path):
    """``tokenizers.Tokenizer`` from ``tokenizer.json``; its bare errors ("Model missing") get the file's name."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises plain Exception
        raise ModelFileError(f"{path} cannot be read by tokenizers ({error}): {REFETCH}") from error


def check_weights_match_config(state: dict, arch, directory: Path) -> None:
    """The weights have the shapes ``config.json`` describes: two models' files in one directory fail here."""
    embeddings = state.get("embeddings.tok_embeddings.weight")
    wqkv = state.get("layers.0.attn.Wqkv.weight")
    wi = state.get("layers.0.mlp.Wi.weight")
    layers = 1 + max((int(key.split(".")[1]) for key in state if key.startswith("layers.")), default=-1)
    found = {
        "hidden_size": None if embeddings is None else embeddings.shape[1],
        "num_hidden_layers": layers,
        "intermediate_size": None if wi is None else wi.shape[0] // 2,
        "attention (3 x hidden_size)": None if wqkv is None else wqkv.shape[0],
    }
    expected = {
        "hidden_size": arch.hidden_size,
        "num_hidden_layers": arch.layers,
        "intermediate_size": arch.intermediate_size,
        "attention (3 x hidden_size)": 3 * arch.hidden_size,
    }
    wrong = [f"{name}: config.json says {expected[name]}, the weights have {found[name]}"
             for name in expected if found[name] != expected[name]]
    if wrong:
        raise ModelFileError(
            f"{directory}/config.json and model.safetensors describe different models ({'; '.join(wrong)}): "
            f"they come from two downloads; {REFETCH}"
        )


def check_finite(weights: dict, path: Path) -> None:
    """NaN or infinite weights make NaN vectors, silently; refuse them at load."""
    import torch

    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(
                f"{path}: tensor {name} holds NaN or infinite values (in the file, or after conversion to "
                f"{str(tensor.dtype).removeprefix('torch.')}); the file is damaged: {REFETCH}"
            )
