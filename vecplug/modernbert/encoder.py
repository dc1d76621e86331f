"""ModernBERT's forward pass over an unpadded token stream.

All sequences of a batch are concatenated into one (tokens, hidden) matrix:
embeddings, norms, projections and the GeGLU MLP run on real tokens only,
and attention runs per sequence through a back-end from ``attention``.
Weights are plain tensors, read straight from ``model.safetensors``; the
numbers match transformers' ``ModernBertModel`` (tests prove it).
"""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .attention import choose_attention
from .file_checks import check_finite, check_weights_match_config
from .packed_batch import PackedBatch


@dataclass(frozen=True)
class Architecture:
    """The few config values the forward pass needs, from any transformers version's config.json."""

    hidden_size: int
    intermediate_size: int
    heads: int
    layers: int
    norm_eps: float
    layer_is_global: tuple[bool, ...]
    window: int  # half-width: token i sees j with |i - j| <= window on local layers
    global_theta: float
    local_theta: float
    activation: str

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.heads

    @classmethod
    def from_config(cls, config) -> "Architecture":
        layers = config.num_hidden_layers
        layer_types = getattr(config, "layer_types", None)
        if layer_types:
            is_global = tuple(kind == "full_attention" for kind in layer_types)
        else:
            every = config.global_attn_every_n_layers
            is_global = tuple(index % every == 0 for index in range(layers))
        rope = getattr(config, "rope_parameters", None) or {}
        global_theta = (rope.get("full_attention") or {}).get("rope_theta") or config.global_rope_theta
        local_theta = (rope.get("sliding_attention") or {}).get("rope_theta") or config.local_rope_theta
        return cls(
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            heads=config.num_attention_heads,
            layers=layers,
            norm_eps=config.norm_eps,
            layer_is_global=is_global,
            window=config.local_attention // 2,
            global_theta=float(global_theta),
            local_theta=float(local_theta),
            activation=config.hidden_activation,
        )


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    """Weights keyed without a "model." prefix (MaskedLM checkpoints have one; heads are dropped)."""
    from safetensors.torch import load_file

    state = {}
    for key, tensor in load_file(str(path)).items():
        if key.startswith("model."):
            key = key[len("model."):]
        if key.startswith(("embeddings.", "layers.", "final_norm.")):
            state[key] = tensor
    return state


class RotaryTables:
    """cos/sin per position for one theta, grown on demand, kept in float32.

    One model serves many threads (the server, ``asyncio.to_thread``), so the
    tables grow under a lock, never shrink, and live in one (cos, sin) tuple
    that a lookup reads once: a thread that grew them for a short text can
    no longer replace the longer tables another thread has just checked,
    and cos and sin always come from the same growth.
    """

    def __init__(self, head_dim: int, theta: float, device):
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
        empty = torch.empty(0, head_dim // 2, device=device)
        self._tables = (empty, empty)
        self._grow_lock = threading.Lock()

    def _tables_for(self, max_position: int) -> tuple[torch.Tensor, torch.Tensor]:
        tables = self._tables
        if max_position < tables[0].shape[0]:
            return tables
        with self._grow_lock:
            tables = self._tables  # another thread may have grown them while this one waited
            if max_position >= tables[0].shape[0]:
                length = max(2 * tables[0].shape[0], max_position + 1, 512)
                positions = torch.arange(length, dtype=torch.float32, device=self.inv_freq.device)
                angles = positions[:, None] * self.inv_freq
                tables = self._tables = (angles.cos(), angles.sin())
        return tables

    def lookup(self, positions: torch.Tensor, max_position: int):
        """(tokens, 1, 1, head_dim / 2) tables: both halves of a rotary pair share an angle."""
        cos, sin = self._tables_for(max_position)
        return cos[positions][:, None, None, :], sin[positions][:, None, None, :]


def rotate_queries_and_keys(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on q and k of a (tokens, 3, heads, head_dim) tensor, v copied as is.

    Written as the two half-rotations (x1 c - x2 s, x2 c + x1 s) over q and k
    together, each a multiply and an addcmul into the output, in the compute
    dtype: transformers' cat/neg form in float32 costs 2x the time on CPU in
    bf16 (a sixth of a layer), and this form 30% less than four multiplies
    and two adds, at the same accuracy. ``cos``/``sin``: (tokens, 1, 1,
    head_dim / 2), already in the compute dtype (``forward`` casts them once
    per batch).
    """
    half = qkv.shape[-1] // 2
    first, second = qkv[:, :2, :, :half], qkv[:, :2, :, half:]
    if torch.compiler.is_compiling():  # inductor fuses the plain form (and cannot trace out=)
        rotated = torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)
        return torch.cat([rotated, qkv[:, 2:]], dim=1)
    out = torch.empty_like(qkv)
    out[:, 2] = qkv[:, 2]
    rotated_first, rotated_second = out[:, :2, :, :half], out[:, :2, :, half:]
    torch.mul(first, cos, out=rotated_first).addcmul_(second, sin, value=-1)
    torch.mul(second, cos, out=rotated_second).addcmul_(first, sin)
    return out


def attention_inputs(hidden, norm_weight, norm_bias, qkv_weight, qkv_bias, cos, sin, eps: float, heads: int):
    """Norm -> Wqkv -> rotary: everything a layer does before attention.

    A pure function of tensors so that one compiled graph serves every layer
    (the first layer has no norm: ``norm_weight`` None).
    """
    normed = hidden if norm_weight is None else F.layer_norm(hidden, hidden.shape[-1:], norm_weight, norm_bias, eps)
    qkv = F.linear(normed, qkv_weight, qkv_bias).view(hidden.shape[0], 3, heads, -1)
    return rotate_queries_and_keys(qkv, cos, sin)


def attention_output_and_mlp(hidden, attended, out_weight, out_bias, norm_weight, norm_bias, in_weight, in_bias,
                             mlp_out_weight, mlp_out_bias, eps: float, activation):
    """Wo + residual, norm, GeGLU MLP + residual: everything a layer does after attention."""
    hidden = hidden + F.linear(attended, out_weight, out_bias)
    normed = F.layer_norm(hidden, hidden.shape[-1:], norm_weight, norm_bias, eps)
    gate_input, gate = F.linear(normed, in_weight, in_bias).chunk(2, dim=-1)
    return hidden + F.linear(activation(gate_input) * gate, mlp_out_weight, mlp_out_bias)


def activation_function(name: str):
    """Plain functions for the activations ModernBERT configs use (compile-friendly)."""
    import functools

    known = {
        "gelu": F.gelu,
        "gelu_new": functools.partial(F.gelu, approximate="tanh"),
        "gelu_pytorch_tanh": functools.partial(F.gelu, approximate="tanh"),
        "silu": F.silu,
        "relu": F.relu,
    }
    if name in known:
        return known[name]
    from transformers.activations import ACT2FN

    return ACT2FN[name]


@dataclass(frozen=True)
class LayerWeights:
    """One encoder layer's tensors; biases are None in the released ModernBERTs."""

    attn_norm: tuple
    qkv: tuple
    attn_out: tuple
    mlp_norm: tuple
    mlp_in: tuple
    mlp_out: tuple

    @classmethod
    def from_state(cls, weights: dict, index: int) -> "LayerWeights":
        def pair(name):
            prefix = f"layers.{index}.{name}"
            return weights.get(prefix + ".weight"), weights.get(prefix + ".bias")

        return cls(pair("attn_norm"), pair("attn.Wqkv"), pair("attn.Wo"), pair("mlp_norm"), pair("mlp.Wi"),
                   pair("mlp.Wo"))


def should_compile(device: str, requested: bool | None) -> bool:
    """torch.compile fuses the element-wise work around the matmuls, on GPUs.

    On this project's CPU (torch 2.13, bf16) the compiled layers ran 3x
    slower than eager, so CPUs run eager; on CUDA the fused graphs are worth
    their one-off compile time. VECPLUG_COMPILE=0/1 overrides.
    """
    from ..environment import env_flag

    if requested is not None:
        return requested
    setting = env_flag("VECPLUG_COMPILE")
    return device.startswith("cuda") if setting is None else setting


class UnpaddedModernBert:
    """Embeddings -> layers -> final norm -> pooling, on a packed token stream."""

    def __init__(self, directory: Path, device: str, dtype: torch.dtype, attention: str | None = None,
                 compile: bool | None = None):
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(directory))
        self.arch = Architecture.from_config(config)
        self.device, self.dtype = device, dtype
        state = _load_state(directory / "model.safetensors")
        check_weights_match_config(state, self.arch, directory)
        self.weights = {key: tensor.to(device=device, dtype=dtype) for key, tensor in state.items()}
        del state
        check_finite(self.weights, directory / "model.safetensors")
        self.layers = [LayerWeights.from_state(self.weights, index) for index in range(self.arch.layers)]
        self.attention_name, self.attention = choose_attention(device, dtype, attention)
        self.rotary = {
            True: RotaryTables(self.arch.head_dim, self.arch.global_theta, device),
            False: RotaryTables(self.arch.head_dim, self.arch.local_theta, device),
        }
        self.activation = activation_function(self.arch.activation)
        self.compiled = should_compile(device, compile)
        self._before_attention, self._after_attention = attention_inputs, attention_output_and_mlp
        if self.compiled:
            self._before_attention = torch.compile(attention_inputs, dynamic=True)
            self._after_attention = torch.compile(attention_output_and_mlp, dynamic=True)

    def _norm(self, hidden: torch.Tensor, prefix: str) -> torch.Tensor:
        return F.layer_norm(
            hidden, hidden.shape[-1:], self.weights[prefix + ".weight"], self.weights.get(prefix + ".bias"),
            self.arch.norm_eps,
        )

    def _layer(self, index: int, hidden: torch.Tensor, batch: PackedBatch, rotary) -> torch.Tensor:
        arch, layer = self.arch, self.layers[index]
        is_global = arch.layer_is_global[index]
        qkv = self._before_attention(hidden, *layer.attn_norm, *layer.qkv, *rotary[is_global], arch.norm_eps,
                                     arch.heads)
        attended = self.attention(qkv, batch, None if is_global else arch.window).view(-1, arch.hidden_size)
        return self._after_attention(hidden, attended, *layer.attn_out, *layer.mlp_norm, *layer.mlp_in,
                                     *layer.mlp_out, arch.norm_eps, self.activation)

    def _run_layers(self, hidden, batch, rotary):
        for index in range(self.arch.layers):
            hidden = self._layer(index, hidden, batch, rotary)
        return hidden

    @torch.inference_mode()
    def forward(self, token_ids: list[list[int]], pooling: str = "mean") -> torch.Tensor:
        """Pooled, L2-normalised float32 embeddings, one row per sequence.

        ``pooling``: "mean" over every token of a sequence, "cls" its first
        token's state, "lasttoken" its last one's (the packed stream's
        ``cu_seqlens`` say where each sequence starts and ends).
        """
        hidden, batch = self.hidden_states(token_ids)
        if pooling == "cls":
            pooled = hidden[batch.cu_seqlens[:-1].long()]
        elif pooling == "lasttoken":
            pooled = hidden[batch.cu_seqlens[1:].long() - 1]
        else:
            sums = hidden.new_zeros(len(batch.lengths), hidden.shape[1]).index_add_(0, batch.sequence_of_token, hidden)
            pooled = sums / batch.lengths_tensor[:, None]
        return F.normalize(pooled, dim=-1)

    @torch.inference_mode()
    def hidden_states(self, token_ids: list[list[int]]) -> tuple[torch.Tensor, PackedBatch]:
        """Every token's final state (after the final norm), float32, sequences one after another."""
        batch = PackedBatch([len(ids) for ids in token_ids], self.device)
        flat = np.fromiter(itertools.chain.from_iterable(token_ids), dtype=np.int64, count=batch.total)
        flat = torch.from_numpy(flat).to(self.device)
        rotary = {  # looked up and cast once per batch, shared by every layer
            is_global: tuple(table.to(self.dtype) for table in tables.lookup(batch.positions, batch.max_length))
            for is_global, tables in self.rotary.items()
        }
        hidden = self._norm(F.embedding(flat, self.weights["embeddings.tok_embeddings.weight"]), "embeddings.norm")
        try:
            hidden = self._run_layers(hidden, batch, rotary)
        except Exception as error:
            if not self.compiled:
                raise
            self._fall_back_to_eager(error)
            hidden = self._run_layers(hidden, batch, rotary)
        return self._norm(hidden, "final_norm").float(), batch

    def _fall_back_to_eager(self, error: Exception) -> None:
        """A machine without a working compiler still embeds, just slower."""
        import warnings

        warnings.warn(f"vecplug: torch.compile failed ({type(error).__name__}: {error}); running eager. "
                      "Set VECPLUG_COMPILE=0 to skip compiling.", RuntimeWarning, stacklevel=3)
        self.compiled = False
        self._before_attention, self._after_attention = attention_inputs, attention_output_and_mlp
