"""The layer's matrix products on bfloat16 CPUs: weights packed once, element-wise work in their epilogues.

``F.linear`` on a bf16 CPU hands oneDNN a plain weight matrix, which it
reorders into its blocked (VNNI / AMX tile) layout on every call, and then
writes a bf16 result that the next element-wise op reads back. Here each
weight is reordered once at load (``mkldnn._reorder_linear_weight``) and
the work right after a product runs inside it, on the float32 accumulator,
before the single rounding to bf16 (``mkldnn._linear_pointwise``):

- the residual adds (``hidden + Wo(attended)``, ``hidden + Wo_mlp(glu)``),
- GeGLU: ``Wi`` is split in its two halves, the first product applies the
  activation, the second multiplies by it.

Rounding once instead of twice also makes these steps slightly more exact.
Used only where a self-check passes (`packed_linears_work`); the plain
functions in ``encoder`` stay for every other device and dtype.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Activations oneDNN can apply in a product's epilogue: (attr, scalars, algorithm).
_EPILOGUE_ACTIVATIONS = {
    "gelu": ("gelu", [], "none"),
    "gelu_new": ("gelu", [], "tanh"),
    "gelu_pytorch_tanh": ("gelu", [], "tanh"),
    "relu": ("relu", [], ""),
    "silu": ("swish", [], ""),
}


def _ops():
    return torch.ops.mkldnn


def pack(weight: torch.Tensor) -> torch.Tensor:
    """A (out, in) weight in oneDNN's blocked layout: reordered once, not per call."""
    return _ops()._reorder_linear_weight(weight.contiguous(), None)


def linear(x, packed, bias):
    return _ops()._linear_pointwise(x, packed, bias, "none", [], "")


def linear_plus(x, packed, bias, residual):
    """``residual + x @ W^T (+ b)``, added to the float32 accumulator."""
    return _ops()._linear_pointwise(x, residual, packed, bias, "add")


def linear_times(x, packed, bias, factor):
    """``factor * (x @ W^T (+ b))``, multiplied on the float32 accumulator."""
    return _ops()._linear_pointwise(x, factor, packed, bias, "mul")


@functools.lru_cache(maxsize=None)
def packed_linears_work() -> bool:
    """Do oneDNN's packed bf16 products run here and match ``F.linear``? Checked once per process.

    A torch built without oneDNN, or a CPU oneDNN cannot run bf16 on, falls
    back to the plain path instead of failing at the first batch.
    """
    try:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(8, 32, generator=generator).bfloat16()
        weight = torch.randn(16, 32, generator=generator).bfloat16()
        residual = torch.randn(8, 16, generator=generator).bfloat16()
        packed = pack(weight)
        expected = (F.linear(x.double(), weight.double()) + residual.double())
        fused = linear_plus(x, packed, None, residual).double()
        plain = linear(x, packed, None).double()
    except Exception:  # no oneDNN, no bf16 kernel on this CPU, an op renamed in this torch
        return False
    scale = expected.abs().max().item()
    return ((fused - expected).abs().max().item() <= 0.02 * scale
            and (plain - (expected - residual.double())).abs().max().item() <= 0.02 * scale)


def use_packed_linears(device: str, dtype: torch.dtype) -> bool:
    return device.startswith("cpu") and dtype == torch.bfloat16 and packed_linears_work()


@dataclass(frozen=True)
class PackedLayer:
    """One encoder layer's weights for the fused path; norms as in ``LayerWeights``."""

    attn_norm: tuple
    qkv: tuple          # (packed, bias)
    attn_out: tuple     # (packed, bias)
    mlp_norm: tuple
    mlp_act: tuple      # first half of Wi: goes through the activation
    mlp_gate: tuple     # second half of Wi: multiplies the activation
    mlp_out: tuple      # (packed, bias)

    @classmethod
    def from_layer(cls, layer) -> "PackedLayer":
        wi, wi_bias = layer.mlp_in
        half = wi.shape[0] // 2
        act_bias, gate_bias = (None, None) if wi_bias is None else (wi_bias[:half], wi_bias[half:])
        return cls(
            attn_norm=layer.attn_norm,
            qkv=(pack(layer.qkv[0]), layer.qkv[1]),
            attn_out=(pack(layer.attn_out[0]), layer.attn_out[1]),
            mlp_norm=layer.mlp_norm,
            mlp_act=(pack(wi[:half]), act_bias),
            mlp_gate=(pack(wi[half:]), gate_bias),
            mlp_out=(pack(layer.mlp_out[0]), layer.mlp_out[1]),
        )


class FusedLayerKernels:
    """The two halves of a layer around attention, as ``encoder`` calls them, on packed weights."""

    def __init__(self, layers, activation_name: str, activation, eps: float, heads: int):
        self.layers = [PackedLayer.from_layer(layer) for layer in layers]
        self.epilogue = _EPILOGUE_ACTIVATIONS.get(activation_name)
        self.activation, self.eps, self.heads = activation, eps, heads

    def _norm(self, hidden, weights):
        weight, bias = weights
        return hidden if weight is None else F.layer_norm(hidden, hidden.shape[-1:], weight, bias, self.eps)

    def before_attention(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        """Norm -> Wqkv: (tokens, 3, heads, head_dim), rotary left to grouped SDPA (the only back-end used
        with these kernels: see ``UnpaddedModernBert``)."""
        layer = self.layers[index]
        return linear(self._norm(hidden, layer.attn_norm), *layer.qkv).view(hidden.shape[0], 3, self.heads, -1)

    def after_attention(self, index: int, hidden: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Wo + residual, norm, GeGLU MLP + residual, each step in a product's epilogue."""
        layer = self.layers[index]
        hidden = linear_plus(attended, *layer.attn_out, hidden)
        normed = self._norm(hidden, layer.mlp_norm)
        if self.epilogue is not None:
            attr, scalars, algorithm = self.epilogue
            activated = _ops()._linear_pointwise(normed, *layer.mlp_act, attr, scalars, algorithm)
        else:
            activated = self.activation(linear(normed, *layer.mlp_act))
        glu = linear_times(normed, *layer.mlp_gate, activated)
        return linear_plus(glu, *layer.mlp_out, hidden)
