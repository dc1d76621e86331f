"""The attention back-end that works everywhere: grouped SDPA, and on bf16 CPUs batched matmuls.

Sequences of a packed batch (sorted by length) are cut into groups of
similar lengths; each group is padded to its longest member and attended in
one call, padding masked out as keys and dropped as queries. Short groups on
a bf16 CPU skip SDPA for `split_bf16_attention`; long sequences on local
layers go block by block. The default on CPUs; GPUs use it only when no
varlen kernel is installed.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .packed_batch import BLOCK_LOCAL_MIN_LENGTH, AttentionGroup, PackedBatch, band_mask
from .rotary import rotate_into_head_layout, rotate_queries_and_keys

# Queries per block of a local layer that goes block by block (groups from
# BLOCK_LOCAL_MIN_LENGTH tokens): 32 beat blocks of 64 or 128 (bf16 CPU, 12 heads).
LOCAL_QUERY_BLOCK = 32


# Up to this length a bfloat16 group on the CPU attends through
# `split_bf16_attention` (float32-exact scores from two bf16 matmuls, then
# softmax and P @ V as batched matmuls): 1.5-2.3x faster than PyTorch's CPU
# flash kernel on 12-191 tokens (ModernBERT-base heads, this project's
# 2-core CPU). From 192 tokens, with every head in one call, the flash
# kernel was as fast or faster (200-3,000 tokens), and local layers go block
# by block anyway; global layers of long sequences, a few heads a call: below.
SPLIT_ATTENTION_MAX_LENGTH = BLOCK_LOCAL_MIN_LENGTH - 1
# Global layers of long sequences (each its own group) also attend through
# `split_bf16_attention`, a few heads per call: 1.4-1.6x faster than the
# flash kernel from 320 to 1,200 tokens (ModernBERT-base heads, this
# project's CPU); from about 1,500 tokens one head's float32 scores outgrow
# the cache and the flash kernel wins. Local layers go block by block.
SPLIT_GLOBAL_MIN_LENGTH = 300
SPLIT_GLOBAL_MAX_LENGTH = 1280
# Scores per batched call: a group's (sequences x heads x L x L) float32 scores
# are computed a few sequences at a time so that they stay in cache (and
# below malloc's mmap threshold, whose fresh pages cost more than the
# arithmetic); 2-4 MiB beat 1 MiB, 8 MiB and unchunked, by up to 15% of the
# time outside the matmuls (ModernBERT-base paragraphs, this project's CPU).
SPLIT_SCORES_PER_CALL = 1 << 19


def _local_block_attention(q, k, v, window: int) -> torch.Tensor:
    """Exact sliding-window attention for long sequences, block by block.

    q, k, v: (n, heads, L, d). Queries in blocks of ``LOCAL_QUERY_BLOCK`` see
    keys from block_start - window to block_end + window, masked to |i - j| <= window.
    """
    length = q.shape[2]
    block = LOCAL_QUERY_BLOCK
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


def float32_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """q @ k^T in float32 from bfloat16 inputs, at bf16 matmul speed.

    A bf16 matmul accumulates in float32 but rounds its output to 8 bits of
    mantissa: an attention logit of 20 comes out up to 0.06 off, enough to
    move the softmax by several percent. A second matmul recovers what the
    rounding dropped: ``baddbmm(high, q, k^T, beta=-1)`` subtracts ``high``
    inside the float32 accumulator, so ``low`` is the rounding error (itself
    rounded, to 2^-18 of the logit), and ``high + low`` is as exact as a
    float32 matmul, which on this CPU is 4x slower. `split_scores_are_exact`
    checks that accumulator behaviour once per process before this is used.
    q, k: (batch, L, d) bfloat16; returns (batch, L, L) float32.
    """
    keys = k.transpose(1, 2)
    high = torch.bmm(q, keys)
    low = torch.baddbmm(high, q, keys, beta=-1)
    return high.float().add_(low)


@functools.lru_cache(maxsize=None)
def split_scores_are_exact() -> bool:
    """Does this torch keep ``baddbmm``'s input in the float32 accumulator (see `float32_scores`)?

    A build that rounded before subtracting would give ``low`` = 0 and
    bf16-accurate scores; bfloat16 groups then go through SDPA instead.
    """
    generator = torch.Generator().manual_seed(0)
    q = (torch.randn(4, 16, 64, generator=generator) * 3).bfloat16()
    k = (torch.randn(4, 16, 64, generator=generator) * 3).bfloat16()
    exact = torch.bmm(q.double(), k.double().transpose(1, 2))
    error = (float32_scores(q, k).double() - exact).abs().max().item()
    return error <= 1e-4 * exact.abs().max().item()


def split_bf16_attention(q, k, v, bias: torch.Tensor | None) -> torch.Tensor:
    """Attention as three batched matmuls: float32 scores and softmax, P @ V in bf16.

    The arithmetic of PyTorch's CPU flash kernel (float32 logits and softmax,
    probabilities rounded to bf16 for P @ V) without its per-(sequence, head)
    set-up, which dominates short sequences. q, k, v: contiguous
    (n, heads, L, d); ``bias``: float32, broadcastable to (n, heads, L, L),
    0 = attend, -inf = masked. Returns (n, heads, L, d).
    """
    n, heads, length, _ = q.shape
    out = torch.empty_like(q)
    per_sequence = bias is not None and bias.dim() == 4 and bias.shape[0] > 1
    sequences_per_call = SPLIT_SCORES_PER_CALL // (heads * length * length)
    if sequences_per_call == 0:  # a long sequence: a few of its heads per call
        heads_per_call = max(1, SPLIT_SCORES_PER_CALL // (length * length))
        for sequence in range(n):
            one = slice(sequence, sequence + 1)
            part_bias = bias[one] if per_sequence else bias
            for first in range(0, heads, heads_per_call):
                part = (one, slice(first, first + heads_per_call))
                _split_attention_into(q[part], k[part], v[part], part_bias, out[part])
        return out
    for first in range(0, n, sequences_per_call):
        part = slice(first, first + sequences_per_call)
        part_bias = bias[part] if per_sequence else bias  # key masks are per sequence, bands shared
        _split_attention_into(q[part], k[part], v[part], part_bias, out[part])
    return out


def _split_attention_into(q, k, v, bias: torch.Tensor | None, out: torch.Tensor) -> None:
    """One call's worth of `split_bf16_attention`, written into ``out`` (a slice of its result)."""
    n, heads, length, dim = q.shape
    scores = float32_scores(q.view(n * heads, length, dim), k.view(n * heads, length, dim))
    scores = scores.view(n, heads, length, length)
    if bias is None:
        scores.mul_(dim ** -0.5)
    else:  # scale and mask in one pass (5x faster than masked_fill on CPU)
        torch.add(bias, scores, alpha=dim ** -0.5, out=scores)
    probs = torch.softmax(scores, dim=-1).to(v.dtype).view(n * heads, length, length)
    torch.bmm(probs, v.view(n * heads, length, dim), out=out.view(n * heads, length, dim))


def uses_split_attention(group: AttentionGroup, window: int | None, dtype: torch.dtype) -> bool:
    """bf16 on the CPU, short groups and long global layers: see the lengths' constants."""
    if not (dtype == torch.bfloat16 and group.device.startswith("cpu")):
        return False
    short = group.length <= SPLIT_ATTENTION_MAX_LENGTH
    long_global = window is None and SPLIT_GLOBAL_MIN_LENGTH <= group.length <= SPLIT_GLOBAL_MAX_LENGTH
    return (short or long_global) and split_scores_are_exact()


def _group_attention(members, group: AttentionGroup, window: int | None, rotary) -> torch.Tensor:
    """Attention for one group; ``members``: (n, L, 3, heads, d), padded slots masked out as keys.

    Returns (n, heads, L, d).
    """
    if uses_split_attention(group, window, members.dtype):
        q, k, v = rotate_into_head_layout(members, rotary)
        return split_bf16_attention(q, k, v, group.score_bias(window))
    if rotary is not None:  # rotated in place of layout: SDPA reads the (n, L, heads, d) views as they are
        cos, sin = (table[: group.length, None, None, :] for table in rotary)
        members = rotate_queries_and_keys(members, cos, sin)
    q, k, v = (members[:, :, part].transpose(1, 2) for part in range(3))
    if window is not None and group.length >= BLOCK_LOCAL_MIN_LENGTH:
        return _local_block_attention(q, k, v, window)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=group.mask(window))


def grouped_sdpa(qkv, batch: PackedBatch, window: int | None, rotary=None) -> torch.Tensor:
    """Attention over groups of similar-length sequences: few calls, little padding.

    Works on any device; the default on CPU. Each sequence attends only to
    itself: padding is masked out as keys and dropped as queries. Local layers
    skip the band mask when a whole sequence fits in the window and go block
    by block for long sequences, so they cost O(L * window), not O(L^2).
    ``rotary``: the layer's (cos, sin) tables by position, when q and k are
    still to be rotated (see `rotate_into_head_layout`).
    """
    tokens_total, _, heads, head_dim = qkv.shape
    # index_select is 5x faster on 2-D rows than on the 4-D view (CPU, bf16)
    rows = qkv.reshape(tokens_total, 3 * heads * head_dim)
    out = qkv.new_empty(tokens_total, heads * head_dim)
    for group in batch.groups:
        tokens = slice(group.first_token, group.first_token + group.token_count)
        members = rows[tokens]
        if group.gather is not None:  # one gather pads q, k and v together
            members = members.index_select(0, group.gather)
        members = members.view(group.sequences, group.length, 3, heads, head_dim)
        attended = _group_attention(members, group, window, rotary).transpose(1, 2).reshape(-1, heads * head_dim)
        if group.valid is None:
            out[tokens] = attended
        else:
            torch.index_select(attended, 0, group.valid, out=out[tokens])
    return out.view(tokens_total, heads, head_dim)
