"""The route table: every HTTP route, declared once with its API flavour, request model and answer.

``create_app`` adds each route to FastAPI from here, with a shared endpoint
(``app.endpoint_for``) that reads and checks the body with the route's
request model, refuses work until the model is ready, and calls the route's
answer. The rest of the server reads the table too: errors take the shape
and statuses of their path's flavour (``flavour_for``), the middleware lets
``open`` routes through without a key or while draining, metrics count the
paths, a 404 lists the documented routes, and the OpenAPI schema states the
served limits in every request model.

To add a route (a new API flavour included): write its request and response
models in ``schemas``, an answer ``async def name(call) -> Response`` below
(an embedding route builds an ``EmbeddingOrder`` and calls
``run_embedding``), and one ``Route`` in ``ROUTES``. The answer's name is
the operation's id and its docstring the operation's description.
"""
from __future__ import annotations

import base64
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from .. import __version__
from ..wire import FINGERPRINT_HEADER, TRUNCATED_HEADER
from .chunks import chunk_vectors, check_request_texts, on_engine, require_chunk_path, token_states
from .engine import ModelHost
from .errors import OPENAI, TEI, APIError, Flavour
from .handling import (EmbeddingOrder, as_texts, fingerprint, json_response, prompt_names, requested_dimensions,
                       run_embedding)
from .schemas import (ChunkedText, EmbedAllRequest, EmbedChunksRequest, EmbeddingRequest, EmbeddingResponse,
                      EmbedRequest, Health, ModelList)

# FastAPI's own pages: counted in the metrics under their path, like the routes.
FRAMEWORK_PATHS = ("/docs", "/openapi.json")


@dataclass(frozen=True)
class Call:
    """What a route's answer gets: the request, the model host, and the body checked against ``Route.request``."""

    request: Request
    host: ModelHost
    body: BaseModel | None


Answer = Callable[[Call], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    """One route: ``method path``, answered by ``answer`` in ``flavour``'s dialect.

    ``request``: the body's model (checked before ``answer`` runs; None for no
    body). ``success``: the 200 body's model, and ``errors`` the statuses
    answered in the flavour's error shape, both for the OpenAPI schema;
    ``other_responses`` documents anything else. ``open``: answered without an
    API key and while draining (health probes). ``needs_model``: 503 until the
    model has loaded and warmed up.
    """

    method: str
    path: str
    flavour: Flavour
    answer: Answer
    request: type[BaseModel] | None = None
    success: object = None
    errors: tuple[int, ...] = ()
    other_responses: dict = field(default_factory=dict)
    response_class: type[Response] | None = None
    documented: bool = True
    open: bool = False
    needs_model: bool = True

    @property
    def name(self) -> str:
        return self.answer.__name__

    @property
    def description(self) -> str:
        return inspect.cleandoc(self.answer.__doc__ or "")

    def responses(self) -> dict:
        """The OpenAPI responses: 200, then the flavour's errors, then the rest."""
        found = {} if self.success is None else {200: {"model": self.success}}
        found.update({status: {"model": self.flavour.error_model} for status in self.errors})
        return {**found, **self.other_responses}


class RouteTable:
    """The routes in the order they are added (and documented), with what other parts ask of them."""

    def __init__(self, *routes: Route):
        self.routes = routes
        self._flavours: dict[str, Flavour] = {}
        for route in routes:
            if self._flavours.setdefault(route.path, route.flavour) is not route.flavour:
                raise ValueError(f"{route.path} speaks two API flavours; errors there could take only one shape")

    def __iter__(self):
        return iter(self.routes)

    def flavour_for(self, path: str) -> Flavour:
        """The API flavour of a path: its errors' shape. Unknown paths speak OpenAI's."""
        return self._flavours.get(path, OPENAI)

    @property
    def open_paths(self) -> frozenset[str]:
        return frozenset(route.path for route in self.routes if route.open)

    @property
    def counted_paths(self) -> frozenset[str]:
        """Paths counted under their own name in the metrics; anything else is "other"."""
        return frozenset(self._flavours) | frozenset(FRAMEWORK_PATHS)

    def request_models(self) -> list[type[BaseModel]]:
        """The documented routes' request models, each once, in route order."""
        return list(dict.fromkeys(route.request for route in self.routes if route.request and route.documented))

    def listing(self) -> str:
        """``POST /v1/embeddings, GET /v1/models, ...``: what a 404 says this server answers."""
        return ", ".join(f"{route.method} {route.path}" for route in self.routes if route.documented)


# -- OpenAI ---------------------------------------------------------------------
def check_model_name(host: ModelHost, name: str | None) -> None:
    """OpenAI's ``model`` field: absent, the served name, or one of the model's names; else 404."""
    names = host.accepted_names()
    if name is not None and name not in names:
        raise APIError(404, f"model {name!r} is not served here; this server serves {names[0]!r}"
                            + (f" (also accepted: {', '.join(map(repr, names[1:]))})" if names[1:] else "")
                            + ". Send one of those, or leave model out.", code="model_not_found", param="model")


async def create_embeddings(call: Call) -> Response:
    """OpenAI's embeddings API; ``input_type`` picks the prompt (default document)."""
    body, host = call.body, call.host
    check_model_name(host, body.model)
    order = EmbeddingOrder(as_texts(body.input), host.spec.prompt_for(body.input_type), body.dimensions)
    job, vectors, headers = await run_embedding(call.request, host, order)
    if body.encoding_format == "base64":
        encoded = [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in vectors]
    else:
        encoded = list(vectors)
    payload = {
        "object": "list",
        "data": [{"object": "embedding", "index": index, "embedding": vector} for index, vector in enumerate(encoded)],
        "model": host.served_name,
        "usage": {"prompt_tokens": job.tokens, "total_tokens": job.tokens},
    }
    return json_response(payload, headers={**headers, TRUNCATED_HEADER: str(job.truncated)})


async def list_models(call: Call) -> Response:
    """The served model, with its spec (dimensions, prompts, fingerprint ...) under ``vecplug``."""
    host = call.host
    card = {"id": host.served_name, "object": "model", "created": host.started_at, "owned_by": "vecplug",
            "vecplug": host.spec.to_dict()}
    return json_response({"object": "list", "data": [card]})


# -- text-embeddings-inference ----------------------------------------------------
def tei_prompt(host: ModelHost, prompt_name: str | None) -> str:
    """TEI's ``prompt_name`` (default document) as the prompt text; an unknown name is refused."""
    name = "document" if prompt_name is None else prompt_name
    names = prompt_names(host)
    if name not in names:
        raise APIError(400, f"unknown prompt_name {name!r}; this model has {', '.join(names)}")
    return host.spec.prompts.get(name, "")


async def tei_embed(call: Call) -> Response:
    """text-embeddings-inference's ``/embed``: a list of vectors, one per input."""
    body, host = call.body, call.host
    order = EmbeddingOrder(as_texts(body.inputs), tei_prompt(host, body.prompt_name), body.dimensions,
                           reject_truncated=body.truncate is False)
    _, vectors, headers = await run_embedding(call.request, host, order)
    return json_response(vectors, headers=headers)


async def tei_embed_all(call: Call) -> Response:
    """text-embeddings-inference's ``/embed_all``: every token's final hidden state, per input.

    The tokens are the prompted text's, special tokens included, cut to the
    model's max tokens unless ``truncate`` is false (then such texts are a 413).
    """
    body, host = call.body, call.host
    require_chunk_path(host)
    texts = as_texts(body.inputs)
    check_request_texts(host, texts)
    prompt = tei_prompt(host, body.prompt_name)
    states = await on_engine(call.request, host, len(texts), token_states, host, texts, prompt, body.truncate is False)
    return json_response(states, headers={FINGERPRINT_HEADER: host.spec.fingerprint})


async def embed_chunks(call: Call) -> Response:
    """vecplug's chunking: each input as passages of at most ``chunk_tokens`` of its own tokens, embedded.

    One ``{"spans": [[start, end], ...], "embeddings": [[...], ...]}`` per
    input, spans as half-open character offsets into the input: exactly what
    ``model.embed_chunks`` gives in Python (``vecplug.chunking`` holds the
    rules). ``late`` pools each chunk from one pass over the whole text. The
    per-request limit counts inputs, not chunks.
    """
    body, host = call.body, call.host
    dimensions = requested_dimensions(host, body.dimensions)
    results, truncated = await chunk_vectors(call.request, host, body.inputs, body.chunk_tokens,
                                             body.overlap_tokens, body.late, dimensions)
    payload = [{"spans": [list(span) for span in spans], "embeddings": vectors} for spans, vectors in results]
    return json_response(payload, headers={FINGERPRINT_HEADER: fingerprint(host, dimensions),
                                           TRUNCATED_HEADER: str(truncated)})


async def tei_info(call: Call) -> Response:
    """text-embeddings-inference's ``/info``, plus the model's spec under ``vecplug`` and the routes served."""
    host = call.host
    report = host.model.describe()
    return json_response({
        "model_id": host.served_name,
        "model_sha": None,
        "model_dtype": report.get("dtype"),
        "model_type": {"embedding": {"pooling": report.get("pooling", "mean")}},
        "max_concurrent_requests": host.config.max_queue_texts,
        "max_input_length": host.spec.max_tokens,
        "max_batch_tokens": host.batcher.token_budget,
        "max_batch_requests": None,
        "max_client_batch_size": host.config.max_request_texts,
        "auto_truncate": True,
        "tokenization_workers": 1,
        "version": __version__,
        "sha": None,
        "docker_label": None,
        "vecplug": host.spec.to_dict(),
        "vecplug_routes": ROUTES.listing().split(", "),
    })


# -- the server itself -------------------------------------------------------------
async def health(call: Call) -> Response:
    """200 once the model has loaded and answered a warm-up; 503 while loading, draining or failed."""
    host = call.host
    if host.ready:
        return json_response({"status": "ok", "model": host.served_name, "fingerprint": host.spec.fingerprint})
    return json_response({"status": host.status, "detail": host.error}, status=503, headers={"Retry-After": "1"})


async def prometheus_metrics(call: Call) -> Response:
    """Prometheus text format: requests, texts, tokens, truncations, batches, queue depth, latencies."""
    body, content_type = call.host.metrics.render()
    return Response(body, media_type=content_type)


ROUTES = RouteTable(
    Route("POST", "/v1/embeddings", OPENAI, create_embeddings, request=EmbeddingRequest, success=EmbeddingResponse,
          errors=(400, 401, 404, 413, 429, 503)),
    Route("GET", "/v1/models", OPENAI, list_models, success=ModelList, errors=(401, 503)),
    Route("POST", "/embed", TEI, tei_embed, request=EmbedRequest, success=list[list[float]],
          errors=(401, 413, 422, 429, 503)),
    # TEI also answers on "/", which is where huggingface_hub's InferenceClient(model=url) posts
    Route("POST", "/", TEI, tei_embed, request=EmbedRequest, documented=False),
    Route("POST", "/embed_all", TEI, tei_embed_all, request=EmbedAllRequest, success=list[list[list[float]]],
          errors=(401, 413, 422, 429, 501, 503)),
    Route("POST", "/embed_chunks", TEI, embed_chunks, request=EmbedChunksRequest, success=list[ChunkedText],
          errors=(401, 413, 422, 429, 501, 503)),
    Route("GET", "/info", TEI, tei_info, errors=(401, 503)),
    Route("GET", "/health", OPENAI, health, success=Health, other_responses={503: {"model": Health}}, open=True,
          needs_model=False),
    Route("GET", "/metrics", OPENAI, prometheus_metrics, other_responses={200: {"content": {"text/plain": {}}}},
          response_class=Response, needs_model=False),
)
