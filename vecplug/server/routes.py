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

import asyncio
import base64
import inspect
from pathlib import Path
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
from .handling import (EmbeddingOrder, as_texts, fingerprint, json_response, prompt_names, prompted,
                       requested_dimensions, run_embedding)
from .middleware import KEY_GIVEN_KEY
from .model_names import embedding_kind, model_description
from .schemas import (ChunkedText, DecodeRequest, EmbedAllRequest, EmbedChunksRequest, EmbeddingRequest,
                      EmbeddingResponse, EmbedRequest, Health, ModelList, SimpleToken, TokenizeRequest)

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
async def create_embeddings(call: Call) -> Response:
    """OpenAI's embeddings API; ``input_type``, or ``:query``/``:document`` after the model name, picks the
    prompt (default document)."""
    body, host = call.body, call.host
    order = EmbeddingOrder(as_texts(body.input), embedding_kind(host, body), body.dimensions)
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
            "description": model_description(host), "vecplug": host.spec.to_dict()}
    return json_response({"object": "list", "data": [card]})


# -- text-embeddings-inference ----------------------------------------------------
def tei_prompt_name(host: ModelHost, prompt_name: str | None) -> str:
    """TEI's ``prompt_name`` (default document), checked: a name of the model's prompts, or a kind."""
    name = "document" if prompt_name is None else prompt_name
    names = prompt_names(host)
    if name not in names:
        raise APIError(400, f"unknown prompt_name {name!r}; this model has {', '.join(names)}")
    return name


async def tei_embed(call: Call) -> Response:
    """text-embeddings-inference's ``/embed``: a list of vectors, one per input.

    ``normalize=false`` gives the pooled vectors before the model's L2
    normalisation, pooled here from the token states (``/embed_all``'s) the
    way the model pools; a model whose plugin gives no token states refuses it.
    """
    body, host = call.body, call.host
    if body.normalize is False:
        return await unnormalised(call)
    order = EmbeddingOrder(as_texts(body.inputs), tei_prompt_name(host, body.prompt_name), body.dimensions,
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
    prompt_name = tei_prompt_name(host, body.prompt_name)
    states = await on_engine(call.request, host, len(texts), token_states, host, texts, prompt_name,
                             body.truncate is False)
    return json_response(states, headers={FINGERPRINT_HEADER: host.spec.fingerprint})


# How the served model pools token states into one vector, by ``describe()["pooling"]`` (the names of
# ``modernbert.files.POOLING_MODES``: sentence-transformers' pooling modes).
POOLINGS = {"mean": lambda states: states.mean(axis=0), "cls": lambda states: states[0],
            "lasttoken": lambda states: states[-1]}


async def unnormalised(call: Call) -> Response:
    """``/embed`` with ``normalize=false``: each input's pooled token states, cut to ``dimensions``, unnormalised."""
    import numpy as np

    from ..contracts import ChunkPath

    body, host = call.body, call.host
    pooling = host.model.describe().get("pooling", "mean") if isinstance(host.model, ChunkPath) else None
    if pooling not in POOLINGS:
        why = (f"its pooling {pooling!r} is not one vecplug can redo" if pooling is not None else
               "its plugin gives no token states (vecplug.contracts.ChunkPath) to pool")
        raise APIError(400, f"normalize=false is not available for {host.served_name}: it has no unnormalised "
                            f"output here ({why}); it serves L2-normalised vectors only. Leave normalize out or "
                            "send true.", param="normalize")
    dimensions = requested_dimensions(host, body.dimensions) or host.spec.dimensions
    texts = as_texts(body.inputs)
    check_request_texts(host, texts)
    prompt_name = tei_prompt_name(host, body.prompt_name)
    states = await on_engine(call.request, host, len(texts), token_states, host, texts, prompt_name,
                             body.truncate is False)
    pooled = np.stack([POOLINGS[pooling](np.asarray(text_states, dtype=np.float32)) for text_states in states])
    return json_response(np.ascontiguousarray(pooled[:, :dimensions]),
                         headers={FINGERPRINT_HEADER: fingerprint(host, None if dimensions == host.spec.dimensions
                                                                  else dimensions)})


def model_tokenizer(host: ModelHost):
    """The served model's ``tokenizers.Tokenizer`` (ModernBERT's ``tokenizer``), or a 501 for a plugin without."""
    tokenizer = getattr(host.model, "tokenizer", None)
    if not all(hasattr(tokenizer, name) for name in ("decode_batch", "id_to_token", "get_vocab_size")):
        raise APIError(501, f"{host.served_name} does not expose its tokenizer (a tokenizers.Tokenizer as "
                            "model.tokenizer), so this server cannot tokenize or decode for it", code="not_supported")
    return tokenizer


async def tei_tokenize(call: Call) -> Response:
    """text-embeddings-inference's ``/tokenize``: each input's tokens as ``/embed`` reads it.

    Tokens of the prompted text (the prompt, then the input: ``prompt_name``
    as in ``/embed``, default document), never cut to the model's max tokens.
    ``start``/``stop`` are character offsets into that prompted text; the
    special tokens the model adds have none.
    """
    body, host = call.body, call.host
    require_chunk_path(host)
    tokenizer = model_tokenizer(host)
    texts = as_texts(body.inputs)
    check_request_texts(host, texts)
    read = prompted(host, texts, tei_prompt_name(host, body.prompt_name))
    encoded = await asyncio.to_thread(host.model.encode_with_offsets, read)
    answer = []
    for text, (ids, offsets, special_mask) in zip(read, encoded):
        tokens = []
        for token_id, (start, stop), special in zip(ids, offsets, special_mask):
            if special and start == stop:  # added by the model's template ([CLS] ... [SEP])
                if body.add_special_tokens:
                    tokens.append({"id": token_id, "text": tokenizer.id_to_token(token_id) or "", "special": True,
                                   "start": None, "stop": None})
                continue
            tokens.append({"id": token_id, "text": text[start:stop], "special": bool(special), "start": start,
                           "stop": stop})
        answer.append(tokens)
    return json_response(answer, headers={FINGERPRINT_HEADER: host.spec.fingerprint})


async def tei_decode(call: Call) -> Response:
    """text-embeddings-inference's ``/decode``: token ids back to text, one text per sequence."""
    body, host = call.body, call.host
    tokenizer = model_tokenizer(host)
    batch = isinstance(body.ids[0], list)
    sequences = body.ids if batch else [body.ids]
    check_request_texts(host, sequences)
    vocabulary = tokenizer.get_vocab_size()
    for number, sequence in enumerate(sequences):
        unknown = [token_id for token_id in sequence if token_id >= vocabulary]
        if unknown:
            where = f"ids[{number}]" if batch else "ids"
            raise APIError(400, f"{where} holds {unknown[0]}, not a token id of this model (0 to {vocabulary - 1})",
                           param="ids")
    texts = await asyncio.to_thread(tokenizer.decode_batch, sequences, skip_special_tokens=body.skip_special_tokens)
    return json_response(texts)


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
def public_name(host: ModelHost) -> str:
    """The served name as anyone may see it: a model loaded from a local folder is named by the folder's last
    part, not its path on this machine (``--served-name`` is shown as given)."""
    name = host.served_name
    if host.config.served_name is None and Path(name).is_dir():
        return Path(name).name
    return name


async def health(call: Call) -> Response:
    """200 once the model has loaded and answered a warm-up; 503 while loading, draining or failed.

    Anyone may ask (no API key): the answer is the status, the model's public
    name and fingerprint. A request with the server's API key also gets where
    the model loaded from and how it runs.
    """
    host = call.host
    if not host.ready:
        return json_response({"status": host.status, "detail": host.error}, status=503, headers={"Retry-After": "1"})
    answer = {"status": "ok", "model": public_name(host), "fingerprint": host.spec.fingerprint}
    if call.request.scope.get(KEY_GIVEN_KEY):
        report = host.model.describe()
        local = Path(host.model.spec.name)
        answer.update(model_path=str(local.resolve()) if local.is_dir() else None, device=report.get("device"),
                      dtype=report.get("dtype"), version=__version__)
    return json_response(answer)


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
    Route("POST", "/tokenize", TEI, tei_tokenize, request=TokenizeRequest, success=list[list[SimpleToken]],
          errors=(401, 413, 422, 501, 503)),
    Route("POST", "/decode", TEI, tei_decode, request=DecodeRequest, success=list[str],
          errors=(401, 413, 422, 501, 503)),
    Route("GET", "/info", TEI, tei_info, errors=(401, 503)),
    Route("GET", "/health", OPENAI, health, success=Health, other_responses={503: {"model": Health}}, open=True,
          needs_model=False),
    Route("GET", "/metrics", OPENAI, prometheus_metrics, other_responses={200: {"content": {"text/plain": {}}}},
          response_class=Response, needs_model=False),
)
