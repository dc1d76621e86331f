"""``ModernBertEmbedder``: the EmbeddingModel the built-in plugin loads."""
from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..model import EmbeddingModel, ModelSpec
from ..token_budget import plan_batches
from .batching import pipelined, windows
from .files import ModelFiles
from ..devices import dtype_name

# Real tokens per forward pass. CPU: enough rows to fill the matmuls without
# leaving cache (2,048 beat 4,096 and 8,192 by 5-10% on this 2-core CPU,
# ModernBERT-base, bf16); GPU: enough to saturate the tensor cores.
CPU_TOKEN_BUDGET = 2048
GPU_TOKEN_BUDGET = 65536
# Texts read, sorted and packed at a time. A window should hold several
# budgets of tokens, or its last, partly filled batch is a large share of the
# work: on a GPU 2,048 short paragraphs (~46 tokens) fill one 65,536-token
# batch and a third of another; 8,192 fill five and part of a sixth.
WINDOW_TEXTS = 2048
GPU_WINDOW_TEXTS = 8192


class ModernBertEmbedder(EmbeddingModel):
    """A ModernBERT embedding model run by vecplug's own unpadded forward pass.

    Texts longer than ``max_tokens`` are truncated (never an error);
    ``truncated_count`` counts them since the model was loaded.
    """

    def __init__(
        self,
        spec: ModelSpec,
        files: ModelFiles,
        device: str,
        dtype,
        attention: str | None = None,
        token_budget: int | None = None,
        window_texts: int | None = None,
    ):
        super().__init__(spec)
        from .encoder import UnpaddedModernBert
        from .file_checks import load_tokenizer

        self.files = files
        self.tokenizer = load_tokenizer(files.directory / "tokenizer.json")  # cheap, so first: a bad file fails fast
        self.encoder = UnpaddedModernBert(files.directory, device, dtype, attention)
        self.device, self.dtype = device, dtype
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=spec.max_tokens)
        on_gpu = device.startswith("cuda")
        self.token_budget = token_budget or (GPU_TOKEN_BUDGET if on_gpu else CPU_TOKEN_BUDGET)
        self.window_texts = window_texts or (GPU_WINDOW_TEXTS if on_gpu else WINDOW_TEXTS)
        self._lock = threading.Lock()
        self._counters = {"truncated": 0, "texts": 0, "tokens": 0}

    @property
    def truncated_count(self) -> int:
        """Texts cut to ``max_tokens`` since load (also in ``stats()``)."""
        return self._counters["truncated"]

    def stats(self) -> dict:
        return dict(self._counters)

    def describe(self) -> dict:
        """The spec, plus how this model runs here and why: device, dtype, attention, compilation, threads, budgets."""
        from .report import engine_report

        return {
            **super().describe(),
            **engine_report(self.device, dtype_name(self.dtype), self.encoder.attention_name, self.encoder.compiled),
            "pooling": self.files.pooling,
            "token_budget": self.token_budget,
            "window_texts": self.window_texts,
        }

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        encodings = self.tokenizer.encode_batch(texts)
        truncated = sum(1 for encoding in encodings if encoding.overflowing)
        with self._lock:
            self._counters["truncated"] += truncated
        return [encoding.ids for encoding in encodings]

    def embed_token_ids(self, token_ids: list[list[int]]) -> np.ndarray:
        """Embed pre-tokenized sequences in exactly one forward pass, rows in input order.

        The caller has planned the pass (``TokenPath``): the server with its
        ``--max-batch-tokens``, ``embed_tokenized`` with ``token_budget``.
        Sequences run shortest first, so equal lengths sit together for the
        attention back-end, whatever order they come in.
        """
        out = np.empty((len(token_ids), self._full_spec.dimensions), dtype=np.float32)
        if not token_ids:
            return out
        order = sorted(range(len(token_ids)), key=lambda index: len(token_ids[index]))
        out[order] = self.encoder.forward([token_ids[index] for index in order], self.files.pooling).cpu().numpy()
        self._count_pass(token_ids)
        return out

    def _count_pass(self, token_ids: list[list[int]]) -> None:
        with self._lock:
            self._counters["texts"] += len(token_ids)
            self._counters["tokens"] += sum(len(ids) for ids in token_ids)

    def embed_tokenized(self, token_ids: list[list[int]]) -> np.ndarray:
        """Any number of sequences, in forward passes of ``token_budget`` real tokens (``plan_batches``)."""
        out = np.empty((len(token_ids), self._full_spec.dimensions), dtype=np.float32)
        for rows in plan_batches([len(ids) for ids in token_ids], self.token_budget):
            out[rows] = self.embed_token_ids([token_ids[row] for row in rows])
        return out

    # -- chunking (contracts.ChunkPath): where tokens are, and their states for late chunking
    def token_offsets(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        """Each bare text's own tokens as character offsets: no special tokens, never cut."""
        encodings = self._whole_text_tokenizer.encode_batch(texts, add_special_tokens=False)
        return [encoding.offsets for encoding in encodings]

    def encode_with_offsets(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]], list[int]]]:
        """``(ids, offsets, special_tokens_mask)`` per text, special tokens included, never cut."""
        encodings = self._whole_text_tokenizer.encode_batch(texts)
        return [(encoding.ids, encoding.offsets, encoding.special_tokens_mask) for encoding in encodings]

    @functools.cached_property
    def _whole_text_tokenizer(self):
        """The model's tokenizer without the cut to ``max_tokens``: chunking needs every token's place."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(self.tokenizer.to_str())
        tokenizer.no_truncation()
        return tokenizer

    def token_states(self, token_ids: list[list[int]]) -> np.ndarray:
        """Every token's final hidden state for exactly these sequences, one pass, rows in input order."""
        if not token_ids:
            return np.empty((0, self._full_spec.dimensions), dtype=np.float32)
        states, _ = self.encoder.hidden_states(token_ids)
        self._count_pass(token_ids)
        return states.cpu().numpy()

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        return self.embed_tokenized(self.tokenize(texts))

    def token_counts(self, texts: list[str], kind: str = "document") -> list[int]:
        return [len(ids) for ids in self.tokenize([self.spec.apply_prompt(text, kind) for text in texts])]

    def forward_flops(self, token_counts: list[int]) -> float:
        return model_flops(self.encoder.arch, token_counts)

    def _iter_full(self, prompted_texts: Iterator[str]) -> Iterator[np.ndarray]:
        # tokenize window n+1 in a thread while window n runs through the model
        yield from pipelined(windows(prompted_texts, self.window_texts), self.tokenize, self.embed_tokenized)


def model_flops(arch, lengths: list[int]) -> float:
    """Forward FLOPs on real tokens: projections + MLP per token, attention per pair actually computed."""
    hidden, layers = arch.hidden_size, arch.layers
    intermediate = arch.intermediate_size
    per_token = 2 * layers * (hidden * 3 * hidden + hidden * hidden + hidden * 2 * intermediate + intermediate * hidden)
    flops = per_token * sum(lengths)
    for is_global in arch.layer_is_global:
        for length in lengths:
            span = length if is_global else min(length, 2 * arch.window + 1)
            flops += 4 * length * span * hidden
    return float(flops)


def load_modernbert(spec: ModelSpec, files: ModelFiles, device: str | None, dtype: str | None, **options):
    """Build the embedder: pick device and dtype, compute the fingerprint."""
    import dataclasses

    from ..devices import dtype_name
    from ..model import compute_fingerprint
    from ..runtime import choose_threads, refuse_crashing_cache_setting
    from .files import weights_digest
    from .hardware import choose_device, choose_dtype

    choose_threads()
    device = choose_device(device)
    torch_dtype = choose_dtype(dtype, device)
    refuse_crashing_cache_setting(device, dtype_name(torch_dtype))
    fingerprint = compute_fingerprint(
        weights_digest(Path(files.directory) / "model.safetensors"),
        prompts=dict(spec.prompts),
        pooling=files.pooling,
        dimensions=spec.dimensions,
    )
    spec = dataclasses.replace(spec, fingerprint=fingerprint)
    return ModernBertEmbedder(spec, files, device, torch_dtype, **options)
