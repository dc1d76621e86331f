"""What the routes share: reading and checking a body, readiness, queueing texts, waiting, errors.

Bodies are read and checked here (orjson, then the route's pydantic model),
not by FastAPI's body injection, so that a body that is not JSON, or not
sent as ``application/json`` (curl's ``-d`` default), gets the same clear
400 as any other mistake. Every embedding route, whatever its API flavour,
goes through ``run_embedding``: dimensions, the per-request limit, the
queue, the wait, Matryoshka cuts and the fingerprint header.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np
import orjson
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from ..model import check_dimensions, cut_dimensions
from ..wire import FINGERPRINT_HEADER
from .batching import Job, QueueFull, ShuttingDown, TextsTooLong
from .engine import ModelHost
from .errors import APIError


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json", headers=headers)


class ClientGone(Exception):
    """The client hung up while its request waited: there is nobody to answer."""


async def read_json(request: Request):
    body = await request.body()
    if not body.strip():
        raise APIError(400, "the request body is empty; send a JSON object such as {\"input\": \"some text\"}")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise APIError(400, f"the request body is not valid JSON ({error}); send a JSON object such as "
                            "{\"input\": \"some text\"}") from None
    if not isinstance(data, dict):
        raise APIError(400, f"the request body must be a JSON object, not {type(data).__name__}; "
                            "for example {\"input\": \"some text\"}")
    return data


async def read_body(request: Request, model: type[BaseModel]) -> BaseModel:
    """The body as the route's request model; pydantic's ValidationError becomes a 400 naming the fields."""
    return model.model_validate(await read_json(request))


def require_ready(host: ModelHost) -> None:
    if host.ready:
        return
    if host.status == "loading":
        raise APIError(503, "the model is still loading; retry in a few seconds (GET /health says when it is ready)",
                       code="loading", headers={"Retry-After": "2"})
    if host.status == "draining":
        raise APIError(503, "the server is shutting down and takes no new requests", code="draining",
                       headers={"Retry-After": "1"})
    raise APIError(503, f"the model failed to load: {host.error}", code="model_failed")


def prompt_names(host: ModelHost) -> list[str]:
    """What TEI's prompt_name may say: the model's prompt names, and always query and document."""
    return sorted({"document", "query", *host.spec.prompts})


def prompted(host: ModelHost, texts: list[str], prompt_name: str) -> list[str]:
    """The texts as the model reads them: ``ModelSpec.apply_prompt``'s one rule (a text that already starts
    with one of the model's prompts gets none added), the same as in Python, PostgreSQL and the stores."""
    apply_prompt = host.spec.apply_prompt
    return [apply_prompt(text, prompt_name) for text in texts]


def requested_dimensions(host: ModelHost, dimensions: int | None) -> int | None:
    """The Matryoshka cut a body asks for, None for the full vector; a 400 when the model cannot give it."""
    if dimensions is None or dimensions == host.spec.dimensions:
        return None
    try:
        return check_dimensions(dimensions, host.spec)
    except ValueError as error:  # InvalidSettingError: says what the model has and was trained for
        raise APIError(400, str(error), param="dimensions") from None


def cut(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Matryoshka truncation then re-normalisation (the model's own ``cut_dimensions``), contiguous for orjson."""
    return np.ascontiguousarray(vectors if dimensions is None else cut_dimensions(vectors, dimensions))


def cut_to(vectors: np.ndarray, width: int) -> np.ndarray:
    """Matryoshka cut to ``width`` columns where the vectors are wider: the batcher gives the model's full
    vectors, also when ``--dimensions`` serves fewer."""
    return cut(vectors, None if vectors.shape[1] == width else width)


def fingerprint(host: ModelHost, dimensions: int | None) -> str:
    return host.spec.truncated(dimensions).fingerprint


def as_texts(value: str | list[str]) -> list[str]:
    """A body's text input, one string or a list of them, as a list."""
    return [value] if isinstance(value, str) else value


@dataclass(frozen=True)
class EmbeddingOrder:
    """What an embedding route asks of the engine, read from its body by the route's flavour."""

    texts: list[str]
    prompt_name: str
    dimensions: int | None = None
    reject_truncated: bool = False


async def run_embedding(request: Request, host: ModelHost, order: EmbeddingOrder) -> tuple[Job, np.ndarray, dict]:
    """Check the dimensions, embed, cut: the job, its vectors as asked, and the fingerprint header."""
    dimensions = requested_dimensions(host, order.dimensions)
    job = await embed(request, host, order.texts, order.prompt_name, order.reject_truncated)
    vectors = cut_to(job.vectors, dimensions or host.spec.dimensions)
    return job, vectors, {FINGERPRINT_HEADER: fingerprint(host, dimensions)}


async def embed(request: Request, host: ModelHost, texts: list[str], prompt_name: str,
                reject_truncated: bool = False, wait_for_room: bool = False):
    """Queue the texts with their prompt (``prompt_name``'s), wait for the vectors, drop them if the client
    leaves first.

    A full queue is a 429, unless ``wait_for_room``: then the texts wait until
    they fit (the later parts of a request already admitted, see ``chunks``).
    """
    config, metrics = host.config, host.metrics
    if len(texts) > config.max_request_texts:
        raise APIError(413, f"{len(texts):,} texts in one request; this server takes at most "
                            f"{config.max_request_texts:,} per request. Split them into several requests.",
                       code="too_many_inputs")
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def on_done(job):
        loop.call_soon_threadsafe(_resolve, future, job)

    try:
        read = prompted(host, texts, prompt_name)
        job = await submit(host, read, on_done, reject_truncated, wait_for_room, is_query(host, read))
    except QueueFull as full:
        metrics.rejected.labels("queue_full").inc()
        raise queue_full_error(full, len(texts)) from None
    except ShuttingDown:
        raise APIError(503, "the server is shutting down", code="draining", headers={"Retry-After": "1"}) from None
    disconnected = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        await asyncio.wait({future, disconnected}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        disconnected.cancel()
    if not future.done():
        metrics.rejected.labels("client_gone").inc()
        metrics.dropped_texts.inc(host.batcher.cancel(job))
        raise ClientGone()
    job = future.result()
    if job.error is not None:
        raise job_error(job.error)
    metrics.observe_job(len(texts), job.tokens, job.truncated, time.perf_counter() - job.submitted_at)
    return job


def is_query(host: ModelHost, prompted_texts: list[str]) -> bool:
    """Whether these prompted texts are all queries (the scheduler runs query requests of up to a pass first).

    Known by the prompt the texts begin with, so every route's flavour of
    asking for queries counts, Milvus's ``search_prompt`` in the text too; a
    model whose query and document prompts are the same has no queries to tell.
    """
    spec = host.spec
    query, document = spec.prompt_for("query"), spec.prompt_for("document")
    if query == document:
        return False
    if query:
        return all(text.startswith(query) for text in prompted_texts)
    return not any(text.startswith(document) for text in prompted_texts)  # no query prompt: not documents


async def submit(host: ModelHost, texts: list[str], on_done, reject_truncated: bool, wait_for_room: bool,
                 query: bool = False):
    """``batcher.submit``; with ``wait_for_room`` a full queue is waited out (polled) rather than raised."""
    pause = 0.01
    while True:
        try:
            return host.batcher.submit(texts, on_done, reject_truncated, query)
        except QueueFull:
            if not wait_for_room:
                raise
        await asyncio.sleep(pause)
        pause = min(0.2, pause * 2)


def queue_full_error(full: QueueFull, incoming: int) -> APIError:
    """The 429 of a request whose ``incoming`` texts do not fit in the queue."""
    return APIError(429, f"the server is busy: {full.queued:,} texts are queued and {incoming:,} more would "
                         f"pass its limit of {full.limit:,} (--max-queue-texts). Retry after {full.retry_after} s.",
                    code="queue_full", headers={"Retry-After": str(full.retry_after)})


def _resolve(future: asyncio.Future, job) -> None:
    if not future.done():
        future.set_result(job)


async def wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def job_error(error: BaseException) -> APIError:
    if isinstance(error, APIError):
        return error
    if isinstance(error, TextsTooLong):
        shown = ", ".join(map(str, error.indices[:10])) + (" ..." if len(error.indices) > 10 else "")
        return APIError(413, f"inputs at index {shown} are longer than the model's {error.max_tokens} tokens and "
                             "truncate=false was asked; send truncate=true (or leave it out) to embed their first "
                             f"{error.max_tokens} tokens, or shorten them.", code="input_too_long")
    if isinstance(error, ShuttingDown):
        return APIError(503, "the server is shutting down", code="draining", headers={"Retry-After": "1"})
    return APIError(500, f"embedding failed inside the server: {type(error).__name__}: {error}. "
                         "This is a server bug or a broken model; the server log has the traceback.",
                    code="internal_error")
