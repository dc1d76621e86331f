"""Attention over an unpadded token stream, one back-end per kind of hardware.

Every back-end takes q, k, v of shape (tokens, heads, head_dim) for a packed
batch and returns the same shape; each sequence attends only to itself.
``window`` is the half-width of ModernBERT's local attention (64 for a
128-token window: token i sees j where |i - j| <= 64), or None for global.
All back-ends give the same numbers; `choose_attention` picks the fastest
that this machine has, at run time.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Above this length a local layer computes attention block by block instead
# of one masked (L, L) product: local attention then costs O(L * window).
BLOCK_LOCAL_MIN_LENGTH = 512


@dataclass
class PackedBatch:
    """Sequences concatenated into one token stream.

    ``runs`` groups consecutive sequences of equal length as
    (first_token, count, length): the CPU back-end attends to a run with one
    batched call, with no padding.
    """

    lengths: list[int]
    cu_seqlens: torch.Tensor  # int32, on the model's device
    max_length: int
    runs: list[tuple[int, int, int]]

    @classmethod
    def from_lengths(cls, lengths: list[int], device) -> "PackedBatch":
        runs: list[tuple[int, int, int]] = []
        offset = 0
        for length in lengths:
            if runs and runs[-1][2] == length:
                start, count, _ = runs[-1]
                runs[-1] = (start, count + 1, length)
            else:
                runs.append((offset, 1, length))
            offset += length
        cumulative = [0]
        for length in lengths:
            cumulative.append(cumulative[-1] + length)
        cu_seqlens = torch.tensor(cumulative, dtype=torch.int32, device=device)
        return cls(list(lengths), cu_seqlens, max(lengths, default=0), runs)


@functools.lru_cache(maxsize=256)
def band_mask(query_length: int, key_length: int, key_offset: int, window: int, device: str) -> torch.Tensor:
    """True where key (key_offset + j) is within ``window`` of query i."""
    queries = torch.arange(query_length, device=device)[:, None]
    keys = torch.arange(key_length, device=device)[None, :] + key_offset
    return (queries - keys).abs() <= window


def _local_block_attention(q, k, v, window: int) -> torch.Tensor:
    """Exact sliding-window attention for long sequences, block by block.

    q, k, v: (n, heads, L, d). Queries in blocks of 2*window see keys from
    block_start - window to block_end + window, masked to |i - j| <= window.
    """
    length = q.shape[2]
    block = 2 * window
    out = torch.empty_like(q)
    device = str(q.device)
    for start in range(0, length, block):
        stop = min(start + block, length)
        key_start, key_stop = max(0, start - window), min(length, stop + window)
        mask = band_mask(stop - start, key_stop - key_start, key_start - start, window, device)
        out[:, :, start:stop] = F.scaled_dot_product_attention(
            q[:, :, start:stop], k[:, :, key_start:key_stop], v[:, :, key_start:key_stop], attn_mask=mask
        )
    return out


def grouped_sdpa(q, k, v, batch: PackedBatch, window: int | None) -> torch.Tensor:
    """PyTorch SDPA per run of equal-length sequences: no padding, no wasted FLOPs.

    Works on any device; the default on CPU. Local layers skip the mask when
    the whole sequence fits in the window, use one band mask for medium
    lengths and block-local attention for long ones.
    """
    heads, head_dim = q.shape[1], q.shape[2]
    out = torch.empty_like(q)
    for first, count, length in batch.runs:
        tokens = slice(first, first + count * length)

        def as_batch(x):
            return x[tokens].view(count, length, heads, head_dim).transpose(1, 2)

        qs, ks, vs = as_batch(q), as_batch(k), as_batch(v)
        if window is None or length <= window + 1:
            attended = F.scaled_dot_product_attention(qs, ks, vs)
        elif length < BLOCK_LOCAL_MIN_LENGTH:
            mask = band_mask(length, length, 0, window, str(q.device))
            attended = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask)
        else:
            attended = _local_block_attention(qs, ks, vs, window)
        out[tokens] = attended.transpose(1, 2).reshape(count * length, heads, head_dim)
    return out


def torch_varlen(q, k, v, batch: PackedBatch, window: int | None) -> torch.Tensor:
    """``torch.nn.attention.varlen.varlen_attn`` (CUDA; sliding windows since torch 2.11)."""
    from torch.nn.attention.varlen import varlen_attn

    window_size = (window, window) if window is not None else (-1, -1)
    return varlen_attn(
        q, k, v, batch.cu_seqlens, batch.cu_seqlens, batch.max_length, batch.max_length, window_size=window_size
    )


def flash_attn_varlen(q, k, v, batch: PackedBatch, window: int | None) -> torch.Tensor:
    """flash-attn's ``flash_attn_varlen_func`` (the ``gpu`` extra)."""
    from flash_attn import flash_attn_varlen_func

    window_size = (window, window) if window is not None else (-1, -1)
    return flash_attn_varlen_func(
        q, k, v, batch.cu_seqlens, batch.cu_seqlens, batch.max_length, batch.max_length, window_size=window_size
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
