"""Chunking and token states over HTTP: what ``/embed_chunks`` and ``/embed_all`` ask of the engine.

The rules of chunking live once, in ``vecplug.chunking``; here is only how
the server runs them beside its other requests:

- Plain chunking plans each text's spans off the event loop, then embeds the
  chunk texts as documents through the batcher, like ``/embed`` texts: they
  share forward passes with other requests, under ``--max-batch-tokens``. A
  request's chunks enter the queue in slices of at most ``--max-request-texts``
  texts, one slice after another, so a long document is never refused for
  having more chunks than a request may have texts. The first slice meets
  the queue's limit (429) like any request; the later ones belong to a
  request already admitted, so they wait for room instead of failing it
  half done.
- Late chunking and ``/embed_all`` need token states. They are planned in a
  worker thread and each forward pass runs on the engine thread
  (``Batcher.call_on_engine``), between batches and taking turns with them,
  never beside one on the same cores; passes hold at most the batcher's token
  budget. The request holds its inputs' places in the queue while it runs.
"""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
from fastapi import Request

from ..contracts import ChunkPath
from ..errors import InvalidSettingError
from .batching import QueueFull, ShuttingDown, TextsTooLong
from .engine import ModelHost
from .errors import APIError
from .handling import ClientGone, cut_to, embed, job_error, prompted, queue_full_error, wait_for_disconnect


class RequestCancelled(Exception):
    """The client of a late-chunking request hung up: its remaining passes are not run."""


class EngineLane:
    """The served model as chunking sees it, with every forward pass run on the batcher's engine thread.

    Everything else (tokenizing, offsets, the spec) is the model's own, used
    from the worker thread that plans the request. ``token_budget`` is the
    batcher's, so ``--max-batch-tokens`` sizes these passes too.
    """

    def __init__(self, host: ModelHost):
        self._model, self._batcher, self._metrics = host.model, host.batcher, host.metrics
        self.token_budget = host.batcher.token_budget
        self.cancelled = threading.Event()
        self.tokens = self.truncated = 0  # for the metrics: tokens through the passes, texts cut

    def __getattr__(self, name):
        return getattr(self._model, name)

    def token_states(self, token_ids: list[list[int]]) -> np.ndarray:
        if self.cancelled.is_set():
            raise RequestCancelled()
        return self._batcher.call_on_engine(self._timed_states, token_ids)

    def _timed_states(self, token_ids: list[list[int]]) -> np.ndarray:
        if self.cancelled.is_set():  # hung up while this pass waited for its turn
            raise RequestCancelled()
        started = time.perf_counter()
        states = self._model.token_states(token_ids)
        self.tokens += sum(map(len, token_ids))
        if self._metrics is not None:
            self._metrics.observe_batch(len(token_ids), sum(map(len, token_ids)), time.perf_counter() - started)
        return states


def require_chunk_path(host: ModelHost) -> None:
    if not isinstance(host.model, ChunkPath):
        raise APIError(501, f"{host.model.name} cannot be chunked or give token states: its plugin does not tell "
                            "where its tokens are (no token_offsets, token_states; vecplug.contracts.ChunkPath). "
                            "Serve a ModernBERT model for /embed_chunks and /embed_all.", code="not_supported")


def check_request_texts(host: ModelHost, texts: list[str]) -> None:
    """The per-request limit of ``/embed``: it counts inputs, whatever they become."""
    limit = host.config.max_request_texts
    if len(texts) > limit:
        raise APIError(413, f"{len(texts):,} texts in one request; this server takes at most {limit:,} per request. "
                            "Split them into several requests.", code="too_many_inputs")


async def chunk_vectors(request: Request, host: ModelHost, texts: list[str], chunk_tokens: int, overlap_tokens: int,
                        late: bool, dimensions: int | None) -> tuple[list, int]:
    """Every text's ``(spans, vectors)``, vectors cut to ``dimensions`` (else the served ones); and chunks cut."""
    require_chunk_path(host)
    check_request_texts(host, texts)
    width = dimensions or host.spec.dimensions
    if late:
        results = await on_engine(request, host, len(texts), late_chunks, texts, chunk_tokens, overlap_tokens)
        return [(chunks.spans, cut_to(chunks.vectors, width)) for chunks in results], 0
    from ..chunking import plan_chunks

    try:
        spans = await asyncio.to_thread(plan_chunks, host.model, texts, chunk_tokens, overlap_tokens)
    except InvalidSettingError as error:
        raise APIError(400, str(error)) from None
    pieces = [text[start:end] for text, text_spans in zip(texts, spans) for start, end in text_spans]
    vectors, truncated = await embed_in_slices(request, host, pieces)
    vectors = cut_to(vectors, width)
    bounds = np.cumsum([0] + [len(text_spans) for text_spans in spans])
    return [(text_spans, vectors[bounds[index]:bounds[index + 1]]) for index, text_spans in enumerate(spans)], \
        truncated


async def embed_in_slices(request: Request, host: ModelHost, texts: list[str]) -> tuple[np.ndarray, int]:
    """Documents through the batcher in slices of the per-request limit: their vectors, and how many were cut."""
    size = host.config.max_request_texts
    parts, truncated = [], 0
    for start in range(0, len(texts), size):
        job = await embed(request, host, texts[start:start + size], "document", wait_for_room=start > 0)
        parts.append(job.vectors)
        truncated += job.truncated
    if not parts:
        return np.zeros((0, host.spec.dimensions), dtype=np.float32), 0
    return np.concatenate(parts), truncated


def late_chunks(texts: list[str], chunk_tokens: int, overlap_tokens: int, lane: EngineLane):
    """``embed_chunks(late=True)`` with the engine lane as its model (run in a worker thread)."""
    from ..chunking import embed_chunks

    return embed_chunks(lane, texts, chunk_tokens, overlap_tokens, late=True)


def token_states(host: ModelHost, texts: list[str], prompt_name: str, reject_truncated: bool,
                 lane: EngineLane) -> list[np.ndarray]:
    """TEI's ``/embed_all``: each prompted text's tokens (special ones included, cut to max tokens) and their
    final hidden states, in passes of the batcher's budget (run in a worker thread)."""
    from ..token_budget import plan_batches

    before = host.model.truncated_count
    token_ids = host.model.tokenize(prompted(host, texts, prompt_name))
    lane.truncated = host.model.truncated_count - before
    if reject_truncated and lane.truncated:
        limit = host.model.max_tokens
        raise TextsTooLong([index for index, ids in enumerate(token_ids) if len(ids) >= limit], limit)
    per_text: list = [None] * len(texts)
    for rows in plan_batches([len(ids) for ids in token_ids], lane.token_budget):
        states = lane.token_states([token_ids[row] for row in rows])
        bounds = np.cumsum([0] + [len(token_ids[row]) for row in rows])
        for number, row in enumerate(rows):
            per_text[row] = states[bounds[number]:bounds[number + 1]]
    return per_text


async def on_engine(request: Request, host: ModelHost, texts: int, work, *args):
    """Run ``work(*args, lane)`` in a worker thread whose passes go to the engine thread; its result.

    The request holds ``texts`` places in the queue meanwhile (429 when
    full); a client that hangs up stops it before its next pass.
    """
    batcher, metrics = host.batcher, host.metrics
    try:
        batcher.reserve(texts)
    except QueueFull as full:
        metrics.rejected.labels("queue_full").inc()
        raise queue_full_error(full, texts) from None
    except ShuttingDown:
        raise APIError(503, "the server is shutting down", code="draining", headers={"Retry-After": "1"}) from None
    lane = EngineLane(host)
    started = time.perf_counter()
    try:
        task = asyncio.ensure_future(asyncio.to_thread(work, *args, lane))
        disconnected = asyncio.ensure_future(wait_for_disconnect(request))
        try:
            await asyncio.wait({task, disconnected}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            disconnected.cancel()
        if not task.done():
            lane.cancelled.set()
            metrics.rejected.labels("client_gone").inc()
            task.add_done_callback(lambda finished: finished.exception())  # its RequestCancelled is expected
            raise ClientGone()
        try:
            result = task.result()
        except InvalidSettingError as error:
            raise APIError(400, str(error)) from None
        except (ShuttingDown, TextsTooLong) as error:
            raise job_error(error) from None
        metrics.observe_job(texts, lane.tokens, lane.truncated, time.perf_counter() - started)
        return result
    finally:
        batcher.release(texts)
