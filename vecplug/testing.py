"""Write random-weight ModernBERT models in the exact hub / sentence-transformers layout.

Tests, ``vecplug demo`` and ``vecplug bench`` use these instead of the hub:
nothing here touches the network. The tokenizer is a byte-level BPE trained
on text that ships with Python (pydoc topics, stdlib docstrings), so token
counts behave like a real English tokenizer's.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

SHAPES = {
    # local_attention 32 (±16) makes short test texts cross local windows; a wider
    # init than transformers' 0.02 makes attention peaky enough that an
    # off-by-one window changes the output 100x more than float32 noise.
    "tiny": dict(hidden_size=64, num_hidden_layers=6, num_attention_heads=4, intermediate_size=96,
                 local_attention=32, vocab_size=2048, initializer_range=0.1),
    # README examples: wide enough for Matryoshka dimensions=256, still fast
    "small": dict(hidden_size=384, num_hidden_layers=3, num_attention_heads=6, intermediate_size=576,
                  local_attention=128, vocab_size=4096),
    "base": dict(hidden_size=768, num_hidden_layers=22, num_attention_heads=12, intermediate_size=1152,
                 local_attention=128, vocab_size=50368),
    "large": dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, intermediate_size=2624,
                  local_attention=128, vocab_size=50368),
}
SPECIAL_TOKENS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
NOMIC_PROMPTS = {"query": "search_query: ", "document": "search_document: "}
POOLING_FLAGS = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token",
                 "lasttoken": "pooling_mode_lasttoken"}


@functools.lru_cache(maxsize=1)
def stdlib_paragraphs() -> tuple[str, ...]:
    """Real English paragraphs from Python's own documentation, in a fixed order."""
    import pydoc_data.topics

    paragraphs = []
    for _, text in sorted(pydoc_data.topics.topics.items()):
        for paragraph in text.split("\n\n"):
            paragraph = " ".join(paragraph.split())
            if len(paragraph) >= 40:
                paragraphs.append(paragraph)
    return tuple(paragraphs)


def long_documents(target_words: int = 380, count: int = 256) -> list[str]:
    """~512-token documents made of consecutive real paragraphs."""
    documents, current = [], []
    for paragraph in stdlib_paragraphs():
        current.append(paragraph)
        if sum(len(part.split()) for part in current) >= target_words:
            documents.append(" ".join(current))
            current = []
            if len(documents) == count:
                break
    return documents


def build_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(stdlib_paragraphs(), trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tokenizer


def write_model(
    directory,
    shape: str = "tiny",
    prompts: dict | None = None,
    seed: int = 0,
    max_tokens: int = 8192,
    pooling: str = "mean",
    normalize: bool = True,
) -> Path:
    """Write a random-weight ModernBERT to ``directory`` and return its path.

    ``shape``: "tiny" or "small" (tests), "base" or "large" (real sizes, for benchmarks).
    ``prompts``: sentence-transformers prompts; the default is the nomic pair,
    pass ``{}`` for a model without prompts.
    ``pooling``: "mean", "cls" or "lasttoken", written to ``1_Pooling/config.json``
    as sentence-transformers does (``Alibaba-NLP/gte-modernbert-base`` is a
    CLS model without prompts); ``normalize=False`` leaves ``2_Normalize`` out.
    """
    import torch
    from transformers import ModernBertConfig, ModernBertModel

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dims = dict(SHAPES[shape])
    tokenizer = build_tokenizer(min(dims["vocab_size"], 16384))
    tokenizer.save(str(directory / "tokenizer.json"))
    token_id = tokenizer.token_to_id
    config = ModernBertConfig(
        **dims,
        max_position_embeddings=8192,
        global_attn_every_n_layers=3,
        pad_token_id=token_id("[PAD]"), cls_token_id=token_id("[CLS]"), sep_token_id=token_id("[SEP]"),
        bos_token_id=token_id("[CLS]"), eos_token_id=token_id("[SEP]"),
    )
    torch.manual_seed(seed)
    ModernBertModel(config).save_pretrained(directory, safe_serialization=True)
    _write_sentence_transformers_files(directory, config.hidden_size, prompts, max_tokens, pooling, normalize)
    return directory


def cached_model(kind: str, shape: str) -> Path:
    """A random-weight model of ``shape`` in ``$VECPLUG_CACHE/<kind>/`` (default ~/.cache/vecplug), written once."""
    import os

    folder = Path(os.environ.get("VECPLUG_CACHE", Path.home() / ".cache" / "vecplug")) / kind / shape
    if not (folder / "model.safetensors").exists():
        write_model(folder, shape=shape)
    return folder


def _write_sentence_transformers_files(directory: Path, hidden_size: int, prompts, max_tokens: int, pooling: str,
                                       normalize: bool = True):
    def dump(name: str, data) -> None:
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")

    if pooling not in POOLING_FLAGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLING_FLAGS)}, got {pooling!r}")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    dump("modules.json", modules)
    dump("sentence_bert_config.json", {"max_seq_length": max_tokens, "do_lower_case": False})
    dump("config_sentence_transformers.json", {
        "prompts": NOMIC_PROMPTS if prompts is None else prompts,
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })
    dump("1_Pooling/config.json", {
        "word_embedding_dimension": hidden_size,
        **{flag: name == pooling for name, flag in POOLING_FLAGS.items()},
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "include_prompt": True,
    })
    if normalize:
        (directory / "2_Normalize").mkdir(exist_ok=True)
    special = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "mask_token": "[MASK]",
               "unk_token": "[UNK]"}
    dump("special_tokens_map.json", special)
    # model_input_names as ModernBERT's hub files have it: no token_type_ids, which
    # ModernBertModel.forward does not take (sentence-transformers 3 passes them on)
    dump("tokenizer_config.json", {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_tokens,
                                   "clean_up_tokenization_spaces": False,
                                   "model_input_names": ["input_ids", "attention_mask"], **special})


class ServerProcess:
    """A ``vecplug serve`` subprocess started by ``running_server``: its URL, process and log."""

    def __init__(self, process, log_path: Path):
        self.process = process
        self.log_path = log_path
        self.url = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait for the drain, return the exit status (SIGKILL after ``timeout``)."""
        import subprocess

        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def running_server(model, *args: str, env: dict | None = None, timeout: float = 180.0, launcher=None):
    """Start ``vecplug serve`` on a free port of 127.0.0.1 for ``model``; stop it on exit.

    A context manager yielding a ``ServerProcess`` once ``/health`` answers
    200. Extra ``args`` go to the command line (``"--dimensions", "32"``);
    ``env`` replaces the environment (an API key goes in
    ``VECPLUG_API_KEY``). ``launcher`` is the command that runs the vecplug
    CLI (default ``python -m vecplug``; a script that registers a plugin
    first serves that plugin's model). Used by vecplug's tests; handy for your own.
    """
    import contextlib

    @contextlib.contextmanager
    def manage():
        import os
        import re
        import subprocess
        import sys
        import tempfile
        import time
        import urllib.error
        import urllib.request

        log_fd, log_name = tempfile.mkstemp(prefix="vecplug-serve-", suffix=".log")
        command = [*(launcher or [sys.executable, "-m", "vecplug"]), "serve", "--model", str(model), "--port", "0", *args]
        process = subprocess.Popen(command, stdout=log_fd, stderr=log_fd, env=env if env is not None else os.environ,
                                   stdin=subprocess.DEVNULL)
        os.close(log_fd)
        server = ServerProcess(process, Path(log_name))
        try:
            deadline = time.monotonic() + timeout
            while True:
                found = re.search(r"listening on (http://\S+)", server.log())
                if found and not server.url:
                    server.url = found.group(1)
                if server.url:
                    try:
                        with urllib.request.urlopen(server.url + "/health", timeout=5) as response:
                            if response.status == 200:
                                break
                    except (urllib.error.URLError, OSError):
                        pass
                if process.poll() is not None:
                    raise RuntimeError(f"vecplug serve exited with {process.returncode}:\n{server.log()[-3000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"vecplug serve was not ready after {timeout:g} s:\n{server.log()[-3000:]}")
                time.sleep(0.1)
            yield server
        finally:
            server.stop()
            server.log_path.unlink(missing_ok=True)

    return manage()
