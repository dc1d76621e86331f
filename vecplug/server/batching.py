"""Dynamic batching: the texts of concurrent requests share the engine's forward passes.

Two threads own the model. The tokenizer thread tokenizes each request as it
arrives; the engine thread takes the oldest tokenized texts, in arrival order
across requests, up to a few token budgets (``POOL_BUDGETS``), sorts them by
length and runs one forward pass per budget. So the next requests
are tokenized while a batch runs, a request of one short query rides along
with whatever else is waiting, and no request waits behind texts that
arrived after it. Results go back to each request in
its own order, through the callback it was submitted with.

The batcher is the one planner of forward passes for a model with the
token path (``vecplug.contracts.TokenPath``; the built-in ModernBERT and the
MiniLM plugin have it): it plans them with ``plan_batches`` and one budget,
``--max-batch-tokens`` or else the model's own ``token_budget``, and the
model runs each planned pass as it is (it does not re-plan), so the flag
sets the engine's pass sizes above and below the model's default. Models
without the token path go through ``embed_batch`` in batches of
``model.batch_size`` texts on the engine thread alone.

The queue is bounded in texts: a request that does not fit is refused
(``QueueFull``, with a retry estimate) instead of growing memory and latency
without limit. A request cancelled before its texts enter a batch (its client
hung up) is dropped; its texts are never embedded.

Work that is not a batch of texts but needs the model's cores, such as the
token states of late chunking, is handed to the engine thread as a call
(``call_on_engine``): it runs between batches, never beside one, taking turns
with them. Such a request holds its texts' places in the queue while it runs
(``reserve``), so it meets the same limit.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from ..contracts import TokenPath
from ..token_budget import plan_batches

log = logging.getLogger("vecplug.server")


# What /info reports as max_batch_tokens for a model without the token path
# (it is served by text count, not by tokens) when --max-batch-tokens is not given.
TEXT_PATH_TOKEN_BUDGET = 2048

# The engine thread takes up to this many budgets of the oldest ready texts at
# once, sorts them by length and runs one forward pass per budget. Similar
# lengths are what the CPU attention batches well: one budget of
# arrival-ordered texts ran at 0.82x of the same texts sorted as a whole
# (ModernBERT-base, bf16, 2-core CPU); four budgets sorted together ran at
# 1.0x. Every text taken arrived before any text left waiting, so a later
# request waits for nothing it would not have waited for anyway.
POOL_BUDGETS = 4


class QueueFull(Exception):
    def __init__(self, queued: int, limit: int, retry_after: int):
        super().__init__(f"{queued} texts queued, limit {limit}")
        self.queued, self.limit, self.retry_after = queued, limit, retry_after


class TextsTooLong(Exception):
    """Texts over the model's max tokens, in a request that asked not to truncate."""

    def __init__(self, indices: list[int], max_tokens: int):
        super().__init__(f"texts {indices} exceed {max_tokens} tokens")
        self.indices, self.max_tokens = indices, max_tokens


class ShuttingDown(Exception):
    pass


class Job:
    """One request's texts on their way through the batcher.

    ``texts`` carry their prompt already. When every text is embedded (or the
    job failed) ``on_done(job)`` is called once, from a batcher thread: then
    ``vectors`` holds full-dimension rows in input order, or ``error`` is set.
    """

    __slots__ = ("texts", "on_done", "reject_truncated", "token_ids", "tokens", "truncated", "vectors",
                 "error", "next_index", "embedded", "cancelled", "submitted_at", "finished")

    def __init__(self, texts: list[str], on_done: Callable[["Job"], None], reject_truncated: bool = False):
        self.texts = texts
        self.on_done = on_done
        self.reject_truncated = reject_truncated
        self.token_ids: list[list[int]] | None = None
        self.tokens = 0
        self.truncated = 0
        self.vectors: np.ndarray | None = None
        self.error: BaseException | None = None
        self.next_index = 0  # the next text to put in a batch
        self.embedded = 0
        self.cancelled = False
        self.finished = False
        self.submitted_at = time.perf_counter()


class EngineCall:
    """A function to run on the engine thread for another thread, which waits for its result."""

    def __init__(self, function: Callable, args: tuple):
        self.function, self.args = function, args
        self._done = threading.Event()
        self._result = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._result = self.function(*self.args)
        except BaseException as error:  # noqa: BLE001 - raised in the waiting thread instead
            self._error = error
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    def wait(self):
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._result


class Batcher:
    def __init__(self, model, *, max_queue_texts: int, max_batch_tokens: int | None = None, metrics=None):
        self.model = model
        self.fast = isinstance(model, TokenPath)
        # The one budget of a forward pass: the flag, else the model's own.
        self.token_budget = max_batch_tokens or (model.token_budget if self.fast else TEXT_PATH_TOKEN_BUDGET)
        # the text path's batches, in texts (EmbeddingModel.batch_size)
        self.batch_texts = None if self.fast else max(1, model.batch_size)
        self.max_queue_texts = max_queue_texts
        self.metrics = metrics
        self.queued_texts = 0
        self._condition = threading.Condition()
        self._to_tokenize: deque[Job] = deque()
        self._ready: deque[Job] = deque()
        self._calls: deque[EngineCall] = deque()
        self._call_turn = True  # with both waiting, a call and a batch take turns
        self._tokenizing = False
        self._stopping = False
        self._texts_per_second: float | None = None
        self._threads: list[threading.Thread] = []

    # -- life cycle ------------------------------------------------------
    def start(self) -> None:
        if self.fast:
            self._threads.append(threading.Thread(target=self._tokenize_loop, name="vecplug-tokenizer", daemon=True))
        self._threads.append(threading.Thread(target=self._engine_loop, name="vecplug-engine", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued, then end the threads; jobs still queued after ``timeout`` fail."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        with self._condition:
            leftovers = [*self._to_tokenize, *self._ready]
            self._to_tokenize.clear()
            self._ready.clear()
            calls = list(self._calls)
            self._calls.clear()
        for job in leftovers:
            self._finish(job, ShuttingDown("the server is shutting down"))
        for call in calls:
            call.fail(ShuttingDown("the server is shutting down"))

    # -- called from the event loop ----------------------------------------
    def submit(self, texts: list[str], on_done: Callable[[Job], None], reject_truncated: bool = False) -> Job:
        """Queue a request's texts, or raise QueueFull / ShuttingDown at once."""
        job = Job(texts, on_done, reject_truncated)
        with self._condition:
            if self._stopping:
                raise ShuttingDown("the server is shutting down")
            if self.queued_texts + len(texts) > self.max_queue_texts:
                raise QueueFull(self.queued_texts, self.max_queue_texts, self._retry_after(len(texts)))
            self.queued_texts += len(texts)
            (self._to_tokenize if self.fast else self._ready).append(job)
            self._condition.notify_all()
        self._observe_queue()
        return job

    def reserve(self, texts: int) -> None:
        """Hold ``texts`` places in the queue for work run by calls (late chunking); QueueFull when full."""
        with self._condition:
            if self._stopping:
                raise ShuttingDown("the server is shutting down")
            if self.queued_texts + texts > self.max_queue_texts:
                raise QueueFull(self.queued_texts, self.max_queue_texts, self._retry_after(texts))
            self.queued_texts += texts
        self._observe_queue()

    def release(self, texts: int) -> None:
        """Give back places taken by ``reserve``."""
        with self._condition:
            self.queued_texts -= texts
        self._observe_queue()

    # -- called from any thread but the engine's -----------------------------
    def call_on_engine(self, function: Callable, *args):
        """Run ``function(*args)`` on the engine thread, between batches; its result, or its error raised here.

        Blocks the calling thread (a worker, never the event loop) until done.
        """
        call = EngineCall(function, args)
        with self._condition:
            if self._stopping:
                raise ShuttingDown("the server is shutting down")
            self._calls.append(call)
            self._condition.notify_all()
        return call.wait()

    def cancel(self, job: Job) -> int:
        """Drop a job whose client has gone; returns how many of its texts will not be embedded."""
        with self._condition:
            if job.cancelled or job.finished:
                return 0
            job.cancelled = True
            dropped = len(job.texts) - job.next_index
            job.next_index = len(job.texts)
            self.queued_texts -= dropped
        self._observe_queue()
        return dropped

    # -- the tokenizer thread ------------------------------------------------
    def _tokenize_loop(self) -> None:
        while True:
            with self._condition:
                while not self._to_tokenize and not self._stopping:
                    self._condition.wait()
                if not self._to_tokenize:
                    return
                job = self._to_tokenize.popleft()
                if job.cancelled:
                    continue
                self._tokenizing = True
            try:
                self._tokenize(job)
            except Exception as error:  # a tokenizer failure fails this request only
                log.exception("tokenizing a request failed")
                with self._condition:
                    self._tokenizing = False
                    self._forget(job)
                self._finish(job, error)
                continue
            with self._condition:
                self._tokenizing = False
                if job.error is not None:
                    self._forget(job)
                elif not job.cancelled:
                    self._ready.append(job)
                self._condition.notify_all()
            if job.error is not None:
                self._finish(job, job.error)

    def _tokenize(self, job: Job) -> None:
        before = self.model.truncated_count
        job.token_ids = self.model.tokenize(job.texts)
        job.truncated = self.model.truncated_count - before
        job.tokens = sum(len(ids) for ids in job.token_ids)
        if job.reject_truncated and job.truncated:
            limit = self.model.max_tokens
            indices = [index for index, ids in enumerate(job.token_ids) if len(ids) >= limit]
            job.error = TextsTooLong(indices, limit)

    def _forget(self, job: Job) -> None:
        """Take a job's untaken texts off the queue count (caller holds the lock)."""
        self.queued_texts -= len(job.texts) - job.next_index
        job.next_index = len(job.texts)

    # -- the engine thread ---------------------------------------------------
    def _engine_loop(self) -> None:
        while True:
            with self._condition:
                while not self._ready and not self._calls and not (self._stopping and self._drained()):
                    self._condition.wait()
                if not self._ready and not self._calls:
                    return
                call = None
                if self._calls and (self._call_turn or not self._ready):
                    call = self._calls.popleft()
                    self._call_turn = False
                else:
                    batch = self._take_batch()
                    self._call_turn = True
            if call is not None:
                call.run()
                continue
            self._observe_queue()
            if batch:
                self._run(batch)

    def _drained(self) -> bool:
        return not self._to_tokenize and not self._tokenizing and not self._ready and not self._calls

    def _take_batch(self) -> list[tuple[Job, int]]:
        """Texts in arrival order until ``POOL_BUDGETS`` token budgets (without the fast path: a batch) are full."""
        batch: list[tuple[Job, int]] = []
        tokens = 0
        pool_tokens = self.token_budget * POOL_BUDGETS
        while self._ready:
            job = self._ready[0]
            if job.cancelled or job.error is not None:
                self._ready.popleft()
                self._forget(job)  # a cancelled job is already off the count: no-op then
                continue
            if self.fast:
                length = len(job.token_ids[job.next_index])
                if batch and tokens + length > pool_tokens:
                    break
                tokens += length
            elif len(batch) >= self.batch_texts:
                break
            batch.append((job, job.next_index))
            job.next_index += 1
            if job.next_index == len(job.texts):
                self._ready.popleft()
        self.queued_texts -= len(batch)
        return batch

    def _embed_by_length(self, token_ids: list[list[int]]) -> tuple[np.ndarray | None, dict[int, BaseException]]:
        """One forward pass per token budget of the texts sorted by length; rows in input order.

        The passes planned here are the passes the model runs (``TokenPath``).
        A pass that fails fails its own rows only (returned by row): the pool
        holds several requests' texts, and the others' passes still count.
        """
        vectors = None
        failed: dict[int, BaseException] = {}
        for rows in plan_batches([len(ids) for ids in token_ids], self.token_budget):
            started = time.perf_counter()
            try:
                part = np.asarray(self.model.embed_token_ids([token_ids[row] for row in rows]), dtype=np.float32)
            except Exception as error:  # noqa: BLE001 - the requests with a text in this pass get the error
                log.exception("a forward pass failed")
                failed.update(dict.fromkeys(rows, error))
                continue
            if self.metrics is not None:
                self.metrics.observe_batch(len(rows), sum(len(token_ids[row]) for row in rows),
                                           time.perf_counter() - started)
            if vectors is None:
                vectors = np.empty((len(token_ids), part.shape[1]), dtype=np.float32)
            vectors[rows] = part
        return vectors, failed

    def _run(self, batch: list[tuple[Job, int]]) -> None:
        started = time.perf_counter()
        failed: dict[int, BaseException] = {}
        try:
            if self.fast:
                vectors, failed = self._embed_by_length([job.token_ids[index] for job, index in batch])
            else:
                vectors = self.model.embed_batch([job.texts[index] for job, index in batch])
            vectors = None if vectors is None else np.asarray(vectors, dtype=np.float32)
        except Exception as error:  # noqa: BLE001 - the whole batch was one pass
            log.exception("a forward pass failed")
            failed = dict.fromkeys(range(len(batch)), error)
            vectors = None
        for row, error in failed.items():
            job = batch[row][0]
            if job.error is None:
                job.error = error
                self._finish(job, error)
        if vectors is None:
            return
        seconds = time.perf_counter() - started
        self._observe_batch(batch, seconds)
        for row, (job, index) in enumerate(batch):
            if job.error is not None:
                continue
            if job.vectors is None:
                job.vectors = np.empty((len(job.texts), vectors.shape[1]), dtype=np.float32)
            job.vectors[index] = vectors[row]
            job.embedded += 1
            if job.embedded == len(job.texts):
                self._finish(job)

    def _finish(self, job: Job, error: BaseException | None = None) -> None:
        if job.finished:
            return
        job.finished = True
        if error is not None:
            job.error = error
        try:
            job.on_done(job)
        except Exception:  # the loop may be closed at shutdown; nobody is waiting then
            log.debug("could not deliver a result", exc_info=True)

    # -- estimates and metrics -------------------------------------------------
    def _retry_after(self, incoming: int) -> int:
        """Seconds until the queue has room for ``incoming`` texts, at the throughput seen so far."""
        rate = self._texts_per_second
        if not rate:
            return 1
        backlog = self.queued_texts + incoming - self.max_queue_texts
        return max(1, min(60, math.ceil(max(backlog, incoming) / rate)))

    def _observe_batch(self, batch: list[tuple[Job, int]], seconds: float) -> None:
        rate = len(batch) / max(seconds, 1e-6)
        self._texts_per_second = rate if self._texts_per_second is None else 0.8 * self._texts_per_second + 0.2 * rate
        if self.metrics is not None and not self.fast:  # the fast path observes each forward pass itself
            self.metrics.observe_batch(len(batch), 0, seconds)

    def _observe_queue(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_texts.set(self.queued_texts)
