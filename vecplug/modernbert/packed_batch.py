"""A packed batch: sequences as one token stream, and the plan every attention back-end reads.

``PackedBatch`` holds what the varlen kernels need (cumulative lengths) and
what grouped SDPA needs (``AttentionGroup``s of similar lengths, padded and
masked once per batch, shared by every layer). Its own module so that the
back-ends (``attention``, ``grouped_attention``) and the encoder import it
without importing each other.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch

# From this length a local layer computes attention block by block instead of
# one masked (L, L) product, so it costs O(L * window). Measured on this
# project's CPU (bf16, 12 heads): blocks of 32 queries beat the dense masked
# call from about 200 tokens (2.3 ms vs 6.3 ms at 555 tokens) and beat
# blocks of 64 or 128.
BLOCK_LOCAL_MIN_LENGTH = 192


# A group of neighbouring sequences is padded to its longest member for one
# batched attention call when that wastes at most this fraction of its slots:
# small CPU attention calls are slower than a little padding.
MAX_PADDING_WASTE = 0.25


@dataclass
class AttentionGroup:
    """Consecutive sequences attended to in one call, padded to ``length`` when they differ.

    ``gather`` picks each padded slot's token from the packed stream (padding
    slots repeat a real token; the key mask hides them), ``valid`` lists the
    slots that hold real tokens. Both are None when no padding is needed.
    """

    first_token: int
    token_count: int
    sequences: int
    length: int
    device: str
    gather: torch.Tensor | None = None
    valid: torch.Tensor | None = None
    key_mask: torch.Tensor | None = None  # (sequences, 1, 1, length), True = attend
    _local_masks: dict = field(default_factory=dict)  # by window
    _score_biases: dict = field(default_factory=dict)  # by window (None = global)

    def mask(self, window: int | None) -> torch.Tensor | None:
        """The attention mask for a global (None) or local layer, built once per batch."""
        if window is None or self.length <= window + 1:
            return self.key_mask
        if window not in self._local_masks:
            band = band_mask(self.length, self.length, 0, window, self.device)
            self._local_masks[window] = band if self.key_mask is None else (self.key_mask & band)
        return self._local_masks[window]

    def score_bias(self, window: int | None) -> torch.Tensor | None:
        """`mask` as an additive float32 bias (0 or -inf): adding it is 5x faster than masked_fill on CPU."""
        mask = self.mask(window)
        if mask is None:
            return None
        if window not in self._score_biases:
            bias = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device).masked_fill_(~mask, float("-inf"))
            self._score_biases[window] = bias
        return self._score_biases[window]

    @classmethod
    def build(cls, first_token: int, lengths: list[int], device) -> "AttentionGroup":
        longest, count = max(lengths), len(lengths)
        group = cls(first_token, sum(lengths), count, longest, str(device))
        if all(length == longest for length in lengths):
            return group
        slots = torch.arange(longest)[None, :]
        valid = slots < torch.tensor(lengths)[:, None]
        starts = torch.tensor([0] + lengths[:-1]).cumsum(0)[:, None]
        gather = torch.where(valid, starts + slots, starts)
        group.gather = gather.reshape(-1).to(device)
        group.valid = valid.reshape(-1).nonzero().squeeze(1).to(device)
        group.key_mask = valid[:, None, None, :].to(device)
        return group


def plan_groups(lengths: list[int], device) -> list[AttentionGroup]:
    """Cut a batch (sorted by length for best results) into cheaply padded groups."""
    groups: list[AttentionGroup] = []
    first, members, tokens, longest = 0, [], 0, 0
    for length in lengths:
        grown_longest, grown_tokens = max(longest, length), tokens + length
        too_padded = (len(members) + 1) * grown_longest > (1 + MAX_PADDING_WASTE) * grown_tokens
        if members and (too_padded or grown_longest >= BLOCK_LOCAL_MIN_LENGTH):
            groups.append(AttentionGroup.build(first, members, device))
            first += tokens
            members, tokens, longest = [length], length, length
        else:
            members.append(length)
            tokens, longest = grown_tokens, grown_longest
    if members:
        groups.append(AttentionGroup.build(first, members, device))
    return groups


@functools.lru_cache(maxsize=256)
def band_mask(query_length: int, key_length: int, key_offset: int, window: int, device: str) -> torch.Tensor:
    """True where key (key_offset + j) is within ``window`` of query i."""
    queries = torch.arange(query_length, device=device)[:, None]
    keys = torch.arange(key_length, device=device)[None, :] + key_offset
    return (queries - keys).abs() <= window


class PackedBatch:
    """Sequences concatenated into one token stream, with what each back-end needs."""

    def __init__(self, lengths: list[int], device):
        self.lengths = list(lengths)
        self.device = device
        self.max_length = max(self.lengths, default=0)
        cumulative = [0]
        for length in self.lengths:
            cumulative.append(cumulative[-1] + length)
        self.total = cumulative[-1]
        self.cu_seqlens = torch.tensor(cumulative, dtype=torch.int32, device=device)  # varlen back-ends
        self.lengths_tensor = torch.tensor(self.lengths, device=device)

    @functools.cached_property
    def sequence_of_token(self) -> torch.Tensor:
        """Each token's sequence index (mean pooling), built in one op: Python loops
        over the 1,400 sequences of a 65k-token GPU batch took 13 ms, on the critical path."""
        sequences = torch.arange(len(self.lengths), device=self.device)
        return torch.repeat_interleave(sequences, self.lengths_tensor, output_size=self.total)

    @functools.cached_property
    def positions(self) -> torch.Tensor:
        """Each token's position within its own sequence (rotary)."""
        starts = self.cu_seqlens[:-1].long()
        return torch.arange(self.total, device=self.device) - starts[self.sequence_of_token]

    @functools.cached_property
    def groups(self) -> list[AttentionGroup]:
        """The SDPA back-end's groups, planned once per batch and shared by every layer."""
        return plan_groups(self.lengths, self.device)
