"""Token-budget batching: read a window of texts, sort by length, pack by real tokens.

Padding-free batches are only fast when each forward pass has enough real
tokens to keep the matmuls busy and few enough to stay in cache; counting
texts (batch_size=32) gets neither right when lengths vary 100-fold.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator


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


def windows(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(texts)
    while window := list(itertools.islice(iterator, size)):
        yield window


def pipelined(windows_of_texts: Iterator[list], tokenize: Callable, embed: Callable) -> Iterator:
    """Yield ``embed(tokenize(window))`` per window, tokenizing the next window in a thread.

    The input is read in the caller's thread (a generator over a database
    cursor must stay in its own thread); only tokenizing, which releases the
    GIL, runs beside the forward pass of the previous window. An error raised
    while reading the input (a bad text) comes after the results of every
    window before it, as it would without the pipeline.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vecplug-tokenizer") as pool:
        pending = None
        while True:
            try:
                window = next(windows_of_texts, None)
            except BaseException:
                if pending is not None:
                    yield embed(pending.result())
                raise
            upcoming = pool.submit(tokenize, window) if window is not None else None
            if pending is not None:
                yield embed(pending.result())
            if upcoming is None:
                return
            pending = upcoming
