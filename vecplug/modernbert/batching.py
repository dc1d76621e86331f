"""Token-budget batching: read a window of texts, then sort and pack them (``vecplug.token_budget``).

Padding-free batches are only fast when each forward pass has enough real
tokens to keep the matmuls busy and few enough to stay in cache; counting
texts (batch_size=32) gets neither right when lengths vary 100-fold.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator


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
