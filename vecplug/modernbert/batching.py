"""Token-budget batching: read a window of texts, sort by length, pack by real tokens.

Padding-free batches are only fast when each forward pass has enough real
tokens to keep the matmuls busy and few enough to stay in cache; counting
texts (batch_size=32) gets neither right when lengths vary 100-fold.
"""
from __future__ import annotations

import itertools
import queue
import threading
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


def prefetch(items: Iterator, transform: Callable, depth: int = 1) -> Iterator:
    """Yield ``transform(item)`` for each item, computing the next one in a thread.

    Tokenizing the next window overlaps the forward pass of this one; errors
    raised while reading ``items`` (a bad text) surface in the caller, in order.
    """
    results: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in items:
                if stop.is_set():
                    return
                results.put((transform(item), None))
        except BaseException as error:  # handed to the consumer, not lost in the thread
            results.put((None, error))
        results.put((done, None))

    thread = threading.Thread(target=work, daemon=True, name="vecplug-tokenizer")
    thread.start()
    try:
        while True:
            value, error = results.get()
            if error is not None:
                raise error
            if value is done:
                return
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                results.get(timeout=0.05)
            except queue.Empty:
                pass
