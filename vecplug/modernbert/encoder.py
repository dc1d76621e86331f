"""ModernBERT's forward pass over an unpadded token stream.

All sequences of a batch are concatenated into one (tokens, hidden) matrix:
embeddings, norms, projections and the GeGLU MLP run on real tokens only,
and attention runs per sequence through a back-end from ``attention``.
Weights are plain tensors, read straight from ``model.safetensors``; the
numbers match transformers' ``ModernBertModel`` (tests prove it).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .attention import choose_attention
from .cpu_kernels import FusedLayerKernels, use_packed_linears
from .file_checks import check_finite, check_weights_match_config
from .packed_batch import PackedBatch
from .rotary import RotaryTables, rotate_queries_and_keys


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


def attention_inputs(hidden, norm_weight, norm_bias, qkv_weight, qkv_bias, cos, sin, eps: float, heads: int):
    """Norm -> Wqkv -> rotary: everything a layer does before attention.

    A pure function of tensors so that one compiled graph serves every layer
    (the first layer has no norm: ``norm_weight`` None). ``cos`` None: the
    attention back-end rotates q and k itself.
    """
    normed = hidden if norm_weight is None else F.layer_norm(hidden, hidden.shape[-1:], norm_weight, norm_bias, eps)
    qkv = F.linear(normed, qkv_weight, qkv_bias).view(hidden.shape[0], 3, heads, -1)
    return qkv if cos is None else rotate_queries_and_keys(qkv, cos, sin)


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
        # grouped SDPA rotates q and k while laying out each group (one pass, not two), except
        # when compiled: there the rotation fuses into the compiled graph before attention
        self.rotary_in_attention = self.attention_name == "sdpa" and not self.compiled
        self.fused = None
        if self.rotary_in_attention and use_packed_linears(device, dtype):  # its layer halves leave rotary to SDPA
            self.fused = FusedLayerKernels(self.layers, self.arch.activation, self.activation, self.arch.norm_eps,
                                           self.arch.heads)
            self._drop_unpacked_linear_weights()
        if self.compiled:
            self._before_attention = torch.compile(attention_inputs, dynamic=True)
            self._after_attention = torch.compile(attention_output_and_mlp, dynamic=True)

    def _norm(self, hidden: torch.Tensor, prefix: str) -> torch.Tensor:
        return F.layer_norm(
            hidden, hidden.shape[-1:], self.weights[prefix + ".weight"], self.weights.get(prefix + ".bias"),
            self.arch.norm_eps,
        )

    def _drop_unpacked_linear_weights(self) -> None:
        """The fused path holds its own packed copies: keeping the plain ones would double the memory."""
        for key in [key for key in self.weights if key.startswith("layers.") and ".W" in key]:
            del self.weights[key]
        self.layers = None

    def _layer(self, index: int, hidden: torch.Tensor, batch: PackedBatch, rotary) -> torch.Tensor:
        arch = self.arch
        is_global = arch.layer_is_global[index]
        tables = rotary[is_global]
        if self.fused is not None:
            qkv = self.fused.before_attention(index, hidden)
            return self.fused.after_attention(index, hidden, self._attend(qkv, batch, is_global, tables))
        layer = self.layers[index]
        cos, sin = (None, None) if self.rotary_in_attention else tables
        qkv = self._before_attention(hidden, *layer.attn_norm, *layer.qkv, cos, sin, arch.norm_eps, arch.heads)
        return self._after_attention(hidden, self._attend(qkv, batch, is_global, tables), *layer.attn_out,
                                     *layer.mlp_norm, *layer.mlp_in, *layer.mlp_out, arch.norm_eps, self.activation)

    def _attend(self, qkv, batch: PackedBatch, is_global: bool, tables) -> torch.Tensor:
        """Attention for one layer, (tokens, hidden); the back-end rotates q and k where it does so itself."""
        window = None if is_global else self.arch.window
        if self.rotary_in_attention:
            attended = self.attention(qkv, batch, window, rotary=tables)
        else:
            attended = self.attention(qkv, batch, window)
        return attended.view(-1, self.arch.hidden_size)

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
            is_global: tuple(table.to(self.dtype) for table in self._rotary_tables(tables, batch))
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

    def _rotary_tables(self, tables: RotaryTables, batch: PackedBatch):
        """By position when the back-end rotates per group, else one row per token of the stream."""
        if self.rotary_in_attention:
            return tables.up_to(batch.max_length)
        return tables.lookup(batch.positions, batch.max_length)

    def _fall_back_to_eager(self, error: Exception) -> None:
        """A machine without a working compiler still embeds, just slower."""
        import warnings

        warnings.warn(f"vecplug: torch.compile failed ({type(error).__name__}: {error}); running eager. "
                      "Set VECPLUG_COMPILE=0 to skip compiling.", RuntimeWarning, stacklevel=3)
        self.compiled = False
        self._before_attention, self._after_attention = attention_inputs, attention_output_and_mlp
