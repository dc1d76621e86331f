"""Attention over an unpadded token stream, one back-end per kind of hardware.

Every back-end takes ``qkv`` of shape (tokens, 3, heads, head_dim) for a
packed batch (rotary already applied) and returns (tokens, heads, head_dim);
each sequence attends only to itself.
``window`` is the half-width of ModernBERT's local attention (64 for a
128-token window: token i sees j where |i - j| <= 64), or None for global.
All back-ends give the same numbers; `choose_attention` picks the fastest
that this machine has, at run time: flash-attn or PyTorch's varlen kernel on
CUDA, else grouped SDPA (`grouped_attention`).
"""
from __future__ import annotations

import torch

from .grouped_attention import grouped_sdpa
from .packed_batch import PackedBatch


def varlen_window(window: int | None) -> tuple[int, int]:
    """ModernBERT's half-width as the varlen kernels' (left, right); (-1, -1) is global."""
    return (window, window) if window is not None else (-1, -1)


def torch_varlen(qkv, batch: PackedBatch, window: int | None) -> torch.Tensor:
    """``torch.nn.attention.varlen.varlen_attn`` (CUDA; sliding windows since torch 2.11)."""
    from torch.nn.attention.varlen import varlen_attn

    return varlen_attn(
        qkv[:, 0], qkv[:, 1], qkv[:, 2], batch.cu_seqlens, batch.cu_seqlens, batch.max_length, batch.max_length,
        window_size=varlen_window(window),
    )


def flash_attn_varlen(qkv, batch: PackedBatch, window: int | None) -> torch.Tensor:
    """flash-attn's packed-QKV varlen kernel (the ``gpu`` extra)."""
    from flash_attn import flash_attn_varlen_qkvpacked_func

    return flash_attn_varlen_qkvpacked_func(
        qkv, batch.cu_seqlens, batch.cu_seqlens, batch.max_length, batch.max_length, window_size=varlen_window(window)
    )


BACKENDS = {"flash_attn": flash_attn_varlen, "torch_varlen": torch_varlen, "sdpa": grouped_sdpa}


def _has_flash_attn() -> bool:
    try:
        import flash_attn  # noqa: F401
    except Exception:
        return False
    return True


def _has_torch_varlen_window() -> bool:
    """Feature-detect, not version-check: torch 2.11 added ``window_size``."""
    try:
        import inspect

        from torch.nn.attention.varlen import varlen_attn
    except Exception:
        return False
    return "window_size" in inspect.signature(varlen_attn).parameters


def available_backends(device: str, dtype: torch.dtype) -> list[str]:
    """Back-ends usable here, fastest first."""
    names = []
    if device.startswith("cuda") and dtype in (torch.float16, torch.bfloat16):
        if _has_flash_attn():
            names.append("flash_attn")
        if _has_torch_varlen_window():
            names.append("torch_varlen")
    names.append("sdpa")
    return names


def choose_attention(device: str, dtype: torch.dtype, name: str | None = None):
    """The named back-end, or the fastest available one."""
    names = available_backends(device, dtype)
    if name is None:
        name = names[0]
    elif name not in BACKENDS:
        raise ValueError(f"unknown attention back-end {name!r}; choose one of {', '.join(BACKENDS)}")
    elif name not in names:
        raise ValueError(f"attention back-end {name!r} is not available on {device} ({dtype}); available: {names}")
    return name, BACKENDS[name]
