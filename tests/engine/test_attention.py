"""The CPU attention back-end: exact float32 scores from bf16 matmuls, same numbers as SDPA."""
from __future__ import annotations

import pytest
import torch

from vecplug.modernbert import attention, grouped_attention
from vecplug.modernbert.grouped_attention import float32_scores, grouped_sdpa, split_scores_are_exact
from vecplug.modernbert.hardware import cpu_has_native_bf16
from vecplug.modernbert.packed_batch import PackedBatch

# Where vecplug runs bf16 by default (a CPU with native bf16) the fast path must be
# there; elsewhere a torch build may lack it, and bf16 then falls back to SDPA.
fast_path_expected = pytest.mark.skipif(
    not cpu_has_native_bf16() and not split_scores_are_exact(),
    reason="no native bf16 and this build rounds baddbmm's input: bf16 attention uses SDPA here",
)

# lengths across the local window (65 tokens), padded groups, the block-local threshold
# and block edges (multiples of 32, one over, one under)
LENGTHS = [1, 2, 17, 40, 41, 44, 64, 65, 66, 90, 129, 150, 191, 192, 224, 300, 545]


def large_logit_qkv(lengths, seed=0) -> torch.Tensor:
    """(tokens, 3, heads, head_dim) bf16 with logits in the tens, where bf16 score rounding shows."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(sum(lengths), 3, 4, 64, generator=generator) * 2.5).bfloat16()


@fast_path_expected
def test_split_scores_are_as_exact_as_float32():
    generator = torch.Generator().manual_seed(1)
    q = (torch.randn(6, 50, 64, generator=generator) * 3).bfloat16()
    k = (torch.randn(6, 50, 64, generator=generator) * 3).bfloat16()
    exact = torch.bmm(q.double(), k.double().transpose(1, 2))
    split_error = (float32_scores(q, k).double() - exact).abs().max().item()
    bf16_error = (torch.bmm(q, k.transpose(1, 2)).double() - exact).abs().max().item()
    assert split_error <= 1e-5 * exact.abs().max().item()
    assert bf16_error > 100 * split_error  # what the second matmul buys
    assert split_scores_are_exact()  # so this torch takes the fast path


@fast_path_expected
@pytest.mark.parametrize("window", [None, 64])
@pytest.mark.parametrize("scores_per_call", [grouped_attention.SPLIT_SCORES_PER_CALL, 1])  # 1: a sequence per call
def test_split_path_is_as_accurate_as_sdpa(window, scores_per_call, monkeypatch):
    """bf16 through the split path vs through PyTorch SDPA: same error against float32."""
    monkeypatch.setattr(grouped_attention, "SPLIT_SCORES_PER_CALL", scores_per_call)
    qkv = large_logit_qkv(LENGTHS)
    batch = PackedBatch(LENGTHS, "cpu")
    reference = grouped_sdpa(qkv.float(), batch, window)
    assert any(grouped_attention.uses_split_attention(group, window, torch.bfloat16) for group in batch.groups)

    split_error = (grouped_sdpa(qkv, batch, window).float() - reference).abs().max().item()
    monkeypatch.setattr(grouped_attention, "SPLIT_ATTENTION_MAX_LENGTH", 0)  # every group through SDPA
    monkeypatch.setattr(grouped_attention, "SPLIT_GLOBAL_MAX_LENGTH", 0)
    sdpa_error = (grouped_sdpa(qkv, PackedBatch(LENGTHS, "cpu"), window).float() - reference).abs().max().item()
    # Both round probabilities and outputs to bf16 (errors ~0.03-0.05 on outputs up to ~10);
    # bf16-rounded scores would be eight times worse (0.24 here).
    assert split_error <= 2 * sdpa_error


@pytest.mark.parametrize("scores_per_call", [grouped_attention.SPLIT_SCORES_PER_CALL, 1])
def test_each_sequence_attends_only_to_itself(scores_per_call, monkeypatch):
    """Changing one sequence leaves its padded neighbours' outputs exactly as they were."""
    monkeypatch.setattr(grouped_attention, "SPLIT_SCORES_PER_CALL", scores_per_call)
    lengths = [30, 33, 35]
    qkv = large_logit_qkv(lengths)
    batch = PackedBatch(lengths, "cpu")
    assert len(batch.groups) == 1 and batch.groups[0].gather is not None  # one padded group
    before = grouped_sdpa(qkv, batch, None)
    changed = qkv.clone()
    changed[30:63] = -changed[30:63]
    after = grouped_sdpa(changed, batch, None)
    assert torch.equal(before[:30], after[:30]) and torch.equal(before[63:], after[63:])
    assert not torch.equal(before[30:63], after[30:63])


@fast_path_expected
def test_split_path_only_where_it_is_exact_and_faster(monkeypatch):
    short, long = PackedBatch([40, 41], "cpu").groups[0], PackedBatch([300], "cpu").groups[0]
    middle, very_long = PackedBatch([250], "cpu").groups[0], PackedBatch([2000], "cpu").groups[0]
    assert grouped_attention.uses_split_attention(short, None, torch.bfloat16)
    assert not grouped_attention.uses_split_attention(short, None, torch.float32)  # float32 has its own exact kernel
    assert not grouped_attention.uses_split_attention(long, 64, torch.bfloat16)  # block-local SDPA instead
    assert grouped_attention.uses_split_attention(long, None, torch.bfloat16)  # a global layer, a few heads a call
    assert not grouped_attention.uses_split_attention(middle, None, torch.bfloat16)  # flash kernel as fast here
    assert not grouped_attention.uses_split_attention(very_long, None, torch.bfloat16)  # scores outgrow the cache
    monkeypatch.setattr(grouped_attention, "split_scores_are_exact", lambda: False)
    assert not grouped_attention.uses_split_attention(short, None, torch.bfloat16)


@pytest.mark.parametrize("length", [192, 200, 255, 256, 257, 700])
def test_block_local_matches_dense_band(length):
    """Query blocks of 32 with their key spans: the same numbers as one dense band-masked product."""
    generator = torch.Generator().manual_seed(length)
    q, k, v = [(torch.randn(1, 3, length, 64, generator=generator) * 2.5).bfloat16() for _ in range(3)]
    band = grouped_attention.band_mask(length, length, 0, 64, "cpu")
    dense = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=band)
    blocked = grouped_attention._local_block_attention(q, k, v, 64).float()
    assert blocked.shape == dense.shape
    assert (blocked - dense).abs().max().item() < 0.07  # bf16 outputs up to ~10: one rounding step


def reference_varlen_attn(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, *, window_size=(-1, -1), **_):
    """The documented semantics of varlen_attn and flash-attn's varlen kernels, on the CPU.

    Tokens (T, heads, d); each sequence between consecutive cu_seq offsets
    attends to itself; window_size (left, right): query i sees keys i - left
    to i + right, (-1, -1) = everything.
    """
    assert cu_seq_q.dtype == torch.int32 and torch.equal(cu_seq_q, cu_seq_k)
    bounds = cu_seq_q.tolist()
    assert max_q == max_k == max(b - a for a, b in zip(bounds, bounds[1:]))
    out = torch.empty_like(q)
    for start, stop in zip(bounds, bounds[1:]):
        mask = None
        if tuple(window_size) != (-1, -1):
            left, right = window_size
            query, key = torch.arange(stop - start)[:, None], torch.arange(stop - start)[None, :]
            mask = (key >= query - left) & (key <= query + right)
        q_, k_, v_ = (x[start:stop].transpose(0, 1) for x in (q, k, v))
        out[start:stop] = torch.nn.functional.scaled_dot_product_attention(q_, k_, v_, attn_mask=mask).transpose(0, 1)
    return out


@pytest.fixture
def cuda_kernels_on_cpu(monkeypatch):
    """Stand-ins with the CUDA kernels' documented semantics, so our calls into them run here."""
    import sys
    import types

    import torch.nn.attention.varlen as varlen

    monkeypatch.setattr(varlen, "varlen_attn", reference_varlen_attn)
    fake_flash_attn = types.ModuleType("flash_attn")
    fake_flash_attn.flash_attn_varlen_qkvpacked_func = lambda qkv, cu, cu_k, max_q, max_k, window_size: (
        reference_varlen_attn(qkv[:, 0], qkv[:, 1], qkv[:, 2], cu, cu_k, max_q, max_k, window_size=window_size))
    monkeypatch.setitem(sys.modules, "flash_attn", fake_flash_attn)


@pytest.mark.parametrize("backend", ["torch_varlen", "flash_attn"])
@pytest.mark.parametrize("window", [None, 64])
def test_gpu_backends_pass_what_the_kernels_expect(backend, window, cuda_kernels_on_cpu):
    """The CUDA back-ends' cu_seqlens, max lengths and (left, right) windows give grouped SDPA's numbers."""
    qkv = large_logit_qkv(LENGTHS).float()
    batch = PackedBatch(LENGTHS, "cpu")
    expected = grouped_sdpa(qkv, batch, window)
    got = attention.BACKENDS[backend](qkv, batch, window)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_model_runs_through_a_varlen_backend(tiny_model_dir, tiny_model, cuda_kernels_on_cpu, monkeypatch):
    """The encoder's hand-off to a varlen back-end (qkv layout, windows per layer), checked end to end."""
    from vecplug.modernbert.encoder import UnpaddedModernBert

    monkeypatch.setattr(attention, "available_backends", lambda device, dtype: ["torch_varlen", "sdpa"])
    encoder = UnpaddedModernBert(tiny_model_dir, "cpu", torch.float32, compile=False)
    assert encoder.attention_name == "torch_varlen"
    ids = tiny_model.tokenize(["search_document: " + "a longer text for the local window " * 20, "short one"])
    torch.testing.assert_close(encoder.forward(ids), tiny_model.encoder.forward(ids), atol=1e-5, rtol=1e-5)
