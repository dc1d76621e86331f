"""Dynamic batching: the texts of concurrent requests share the engine's forward passes.

Two threads own the model. The tokenizer thread tokenizes requests in
slices of at most ``TOKENIZE_SLICE_TEXTS`` texts, taking any small or query
request waiting before each slice, so a one-word query is never tokenized
behind a 2,048-text request; absurdly long texts are cut by characters first
(``tokenizing``). The engine thread runs one forward pass at a time, chosen
by the scheduler (``scheduler``): small and query requests get the next pass,
bulk requests share pools of a few token budgets by deficit round robin, and
engine calls take their turns. So the next requests are tokenized while a
pass runs, a small request waits at most for the pass in progress (on a CPU
not even that: the express lane below), not for the bulk queued before it,
and no bulk request waits for all the others to finish.
Results go back to each request in its own order, through the callback it
was submitted with.

The batcher is the one planner of forward passes for a model with the
token path (``vecplug.contracts.TokenPath``; the built-in ModernBERT and the
MiniLM plugin have it): it plans them with ``plan_batches`` and one budget,
``--max-batch-tokens`` or else the model's own ``token_budget``, and the
model runs each planned pass as it is (it does not re-plan), so the flag
sets the engine's pass sizes above and below the model's default. Models
without the token path go through ``embed_batch`` in batches of
``model.batch_size`` texts on the engine thread alone.

On a CPU, express passes (small and query requests, ``scheduler``) run on
a thread of their own, beside the bulk pass in progress, instead of after
it: a pass cannot be interrupted, and one bulk pass of an 8,192-token text
took 14 s on a 2-core CPU (a 2,048-token pass 0.7 s), which a one-word
query would otherwise wait out. The two passes share the cores for the few
milliseconds an express pass takes; OpenMP waits passively, so the bulk pass
loses about what the express pass costs. A GPU runs one pass in
milliseconds and keeps a single engine thread (two passes would also need
two passes' memory). Only models with the token path get the lane: their
engines are thread-safe (vecplug's ModernBERT, the MiniLM plugin), while a
plugin's ``embed_batch`` need not be.

The queue is bounded in texts: a request that does not fit is refused
(``QueueFull``, with a retry estimate) instead of growing memory and latency
without limit. A request cancelled before its texts are run (its client hung
up) is dropped; its texts are never embedded.

Work that is not a batch of texts but needs the model's cores, such as the
token states of late chunking, is handed to the engine thread as a call
(``call_on_engine``): it runs between passes, never beside one, taking turns
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
from .scheduler import CALL, EXPRESS, POOL_BUDGETS, ReadyQueues, next_turn
from .tokenizing import tokenize_cut

log = logging.getLogger("vecplug.server")

__all__ = ["Batcher", "EngineCall", "Job", "POOL_BUDGETS", "QueueFull", "ShuttingDown", "TextsTooLong"]

# What /info reports as max_batch_tokens for a model without the token path
# (it is served by text count, not by tokens) when --max-batch-tokens is not given.
TEXT_PATH_TOKEN_BUDGET = 2048

# The tokenizer works on a bulk request this many texts (or characters, after
# the cut of absurd texts) at a time, and takes any small or query request
# waiting before each slice: a slice is tens of milliseconds of work.
TOKENIZE_SLICE_TEXTS = 256
TOKENIZE_SLICE_CHARS = 262_144
# A request of at most this many characters (or a query request) is
# tokenized before the next slice of bulk: a few milliseconds of work.
TOKENIZE_SMALL_CHARS = 16_384


def slice_end(texts: list[str], start: int) -> int:
    """Where the slice of bulk texts starting at ``start`` ends: at most ``TOKENIZE_SLICE_TEXTS`` texts and
    ``TOKENIZE_SLICE_CHARS`` characters (counted after the character cut), at least one text."""
    end, chars = start, 0
    while end < len(texts) and end - start < TOKENIZE_SLICE_TEXTS:
        chars += min(len(texts[end]), TOKENIZE_SLICE_CHARS)
        if end > start and chars > TOKENIZE_SLICE_CHARS:
            break
        end += 1
    return end


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

    ``texts`` carry their prompt already; ``query`` says they are queries
    (the scheduler runs small and query requests first). When every text is
    embedded (or the job failed) ``on_done(job)`` is called once, from a
    batcher thread: then ``vectors`` holds full-dimension rows in input
    order, or ``error`` is set.
    """

    __slots__ = ("texts", "on_done", "reject_truncated", "query", "token_ids", "tokens", "truncated", "vectors",
                 "error", "next_index", "tokenized", "embedded", "cancelled", "submitted_at", "finished", "credit",
                 "chars")

    def __init__(self, texts: list[str], on_done: Callable[["Job"], None], reject_truncated: bool = False,
                 query: bool = False):
        self.texts = texts
        self.on_done = on_done
        self.reject_truncated = reject_truncated
        self.query = query
        self.token_ids: list[list[int]] = []
        self.tokens = 0
        self.truncated = 0
        self.vectors: np.ndarray | None = None
        self.error: BaseException | None = None
        self.next_index = 0  # the next text to put in a pass
        self.tokenized = 0  # texts tokenized so far (the tokenizer works in slices)
        self.embedded = 0
        self.cancelled = False
        self.finished = False
        self.credit = 0  # the scheduler's deficit round robin
        self.chars = sum(map(len, texts))
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
    def __init__(self, model, *, max_queue_texts: int, max_batch_tokens: int | None = None, metrics=None,
                 express_lane: bool = False):
        self.model = model
        self.fast = isinstance(model, TokenPath)
        # Express passes on a thread of their own, beside the bulk pass in progress (the module docstring says why)
        self.express_lane = express_lane and self.fast
        # The one budget of a forward pass: the flag, else the model's own.
        self.token_budget = max_batch_tokens or (model.token_budget if self.fast else TEXT_PATH_TOKEN_BUDGET)
        # the text path's batches, in texts (EmbeddingModel.batch_size)
        self.batch_texts = None if self.fast else max(1, model.batch_size)
        self.max_queue_texts = max_queue_texts
        self.metrics = metrics
        self.queued_texts = 0
        self._condition = threading.Condition()
        self._to_tokenize: deque[Job] = deque()
        self._ready = ReadyQueues(self.token_budget, self.fast, self.batch_texts)
        self._calls: deque[EngineCall] = deque()
        self._last_turn: str | None = None
        self._tokenizing = False
        self._stopping = False
        self._texts_per_second: float | None = None
        self._threads: list[threading.Thread] = []

    # -- life cycle ------------------------------------------------------
    def start(self) -> None:
        if self.fast:
            self._threads.append(threading.Thread(target=self._tokenize_loop, name="vecplug-tokenizer", daemon=True))
        self._threads.append(threading.Thread(target=self._engine_loop, name="vecplug-engine", daemon=True))
        if self.express_lane:
            self._threads.append(threading.Thread(target=self._express_loop, name="vecplug-express", daemon=True))
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
            ready = self._ready
            leftovers = [*self._to_tokenize, *ready.express, *ready.bulk,
                         *(job for batch in ready.pending_passes for job, _ in batch)]
            self._to_tokenize.clear()
            ready.express.clear()
            ready.bulk.clear()
            ready.pending_passes.clear()
            calls = list(self._calls)
            self._calls.clear()
        for job in dict.fromkeys(leftovers):
            self._finish(job, ShuttingDown("the server is shutting down"))
        for call in calls:
            call.fail(ShuttingDown("the server is shutting down"))

    # -- called from the event loop ----------------------------------------
    def submit(self, texts: list[str], on_done: Callable[[Job], None], reject_truncated: bool = False,
               query: bool = False) -> Job:
        """Queue a request's texts, or raise QueueFull / ShuttingDown at once."""
        job = Job(texts, on_done, reject_truncated, query)
        with self._condition:
            if self._stopping:
                raise ShuttingDown("the server is shutting down")
            if self.queued_texts + len(texts) > self.max_queue_texts:
                raise QueueFull(self.queued_texts, self.max_queue_texts, self._retry_after(len(texts)))
            self.queued_texts += len(texts)
            if self.fast:
                self._to_tokenize.append(job)
            else:
                self._ready.add(job)
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
        """Run ``function(*args)`` on the engine thread, between passes; its result, or its error raised here.

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
                job = self._next_to_tokenize()
                if job is None:
                    continue
                self._tokenizing = True
            try:
                self._tokenize_slice(job)
            except Exception as error:  # a tokenizer failure fails this request only
                log.exception("tokenizing a request failed")
                job.error = error
            with self._condition:
                self._tokenizing = False
                if job.error is not None or job.cancelled:
                    self._remove_from_tokenizing(job)
                    self._forget(job)
                elif job.tokenized == len(job.texts):
                    self._remove_from_tokenizing(job)
                    self._ready.add(job)
                self._condition.notify_all()
            if job.error is not None:
                self._finish(job, job.error)

    def _next_to_tokenize(self) -> Job | None:
        """A small or query request if one waits (oldest first), else the oldest request's next slice.

        Cancelled requests are dropped on the way (caller holds the lock)."""
        for job in [job for job in self._to_tokenize if job.cancelled]:
            self._to_tokenize.remove(job)
        small = next((job for job in self._to_tokenize
                      if job.query or job.chars <= TOKENIZE_SMALL_CHARS), None)
        if small is not None:
            return small
        return self._to_tokenize[0] if self._to_tokenize else None

    def _remove_from_tokenizing(self, job: Job) -> None:
        if job in self._to_tokenize:
            self._to_tokenize.remove(job)

    def _tokenize_slice(self, job: Job) -> None:
        """Tokenize the job's next texts: all of a small or query request, else one slice."""
        start = job.tokenized
        small = job.query or job.chars <= TOKENIZE_SMALL_CHARS
        end = len(job.texts) if small else slice_end(job.texts, start)
        token_ids, truncated = tokenize_cut(self.model, job.texts[start:end])
        job.token_ids.extend(token_ids)
        job.tokens += sum(len(ids) for ids in token_ids)
        job.truncated += truncated
        job.tokenized = end
        if end == len(job.texts) and job.reject_truncated and job.truncated:
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
                while True:
                    self._ready.drop_dead(self._forget)
                    waiting = self._ready.waiting() | ({CALL} if self._calls else set())
                    if self.express_lane:
                        waiting.discard(EXPRESS)  # the express thread's
                    if waiting or (self._stopping and self._drained()):
                        break
                    self._condition.wait()
                turn = next_turn(waiting, self._last_turn)
                if turn is None:
                    self._condition.notify_all()  # the express thread ends once everything is done
                    return
                self._last_turn = turn
                call, batch = None, []
                if turn == CALL:
                    call = self._calls.popleft()
                else:
                    taken = self._ready.taken
                    batch = self._ready.take_express() if turn == EXPRESS else self._ready.take_bulk_pass()
                    self.queued_texts -= self._ready.taken - taken
            if call is not None:
                call.run()
                continue
            self._observe_queue()
            batch = [(job, index) for job, index in batch if not job.cancelled and job.error is None]
            if batch:
                self._run(batch)

    def _express_loop(self) -> None:
        """Express passes (small and query requests), each as soon as it is ready, beside any bulk pass."""
        while True:
            with self._condition:
                while True:
                    self._ready.drop_dead(self._forget)
                    if EXPRESS in self._ready.waiting():
                        break
                    if self._stopping and self._drained():
                        return
                    self._condition.wait()
                taken = self._ready.taken
                batch = self._ready.take_express()
                self.queued_texts -= self._ready.taken - taken
            self._observe_queue()
            batch = [(job, index) for job, index in batch if not job.cancelled and job.error is None]
            if batch:
                self._run(batch)
            with self._condition:
                self._condition.notify_all()  # the engine thread may be waiting for the queue to drain

    def _drained(self) -> bool:
        return not self._to_tokenize and not self._tokenizing and self._ready.empty() and not self._calls

    def _run(self, batch: list[tuple[Job, int]]) -> None:
        """One forward pass over ``batch`` (planned by the scheduler); rows to their jobs, or its error to them.

        A pass that fails fails its own requests only: the others of its pool
        have their own passes.
        """
        started = time.perf_counter()
        try:
            if self.fast:
                token_ids = [job.token_ids[index] for job, index in batch]
                vectors = np.asarray(self.model.embed_token_ids(token_ids), dtype=np.float32)
            else:
                vectors = np.asarray(self.model.embed_batch([job.texts[index] for job, index in batch]),
                                     dtype=np.float32)
        except Exception as error:  # noqa: BLE001 - the requests with a text in this pass get the error
            log.exception("a forward pass failed")
            for job, _ in batch:
                if job.error is None:
                    self._finish(job, error)
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
        if self.metrics is not None:
            tokens = sum(len(job.token_ids[index]) for job, index in batch) if self.fast else 0
            self.metrics.observe_batch(len(batch), tokens, seconds)

    def _observe_queue(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_texts.set(self.queued_texts)
