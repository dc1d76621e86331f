"""Packing texts into forward passes by real tokens, shortest first: the engine's batches and the server's.

Padding-free batches are only fast when each forward pass has enough real
tokens to keep the matmuls busy and few enough to stay in cache, and when
equal lengths sit together (the CPU attention back-end batches those).
"""
from __future__ import annotations


def plan_batches(lengths: list[int], token_budget: int, max_sequences: int = 4096) -> list[list[int]]:
    """Indices grouped into batches of at most ``token_budget`` tokens, shortest first.

    Sorting makes equal lengths neighbours (the CPU attention back-end batches
    those together); a text longer than the budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for index in order:
        length = lengths[index]
        if current and (tokens + length > token_budget or len(current) >= max_sequences):
            batches.append(current)
            current, tokens = [], 0
        current.append(index)
        tokens += length
    if current:
        batches.append(current)
    return batches


def groups_of(items, size: int, limit: int, measure=len):
    """Lists of at most ``size`` items whose ``measure`` adds up to about ``limit`` (a larger item goes alone).

    What a request or a streamed step holds: the client's requests to a
    server (characters, or UTF-8 bytes), the CLI's chunking groups.
    """
    group: list = []
    used = 0
    for item in items:
        amount = measure(item)
        if group and (len(group) >= size or used + amount > limit):
            yield group
            group, used = [], 0
        group.append(item)
        used += amount
    if group:
        yield group
