"""The HTTP routes: OpenAI's embeddings API, TEI's ``/embed`` and ``/info``, health and metrics.

Routes read and check the body themselves (orjson, then the pydantic model),
so that a body that is not JSON, or not sent as ``application/json`` (curl's
``-d`` default), gets the same clear 400 as any other mistake, and the
OpenAPI schema still documents every body (``openapi_extra``).
"""
from __future__ import annotations

import asyncio
import base64
import time
from contextlib import asynccontextmanager

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..model import check_dimensions
from .batching import QueueFull, ShuttingDown, TextsTooLong
from .config import ServerConfig
from .engine import ModelHost
from .errors import APIError, describe_validation_errors, error_body, is_tei_path
from .metrics import Metrics
from .middleware import Gate
from .schemas import EmbeddingRequest, EmbeddingResponse, EmbedRequest, Health, ModelList, OpenAIError, TEIError

FINGERPRINT_HEADER = "X-Vecplug-Fingerprint"


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json", headers=headers)


def request_body(model) -> dict:
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def error_responses(error_model, *statuses: int) -> dict:
    return {status: {"model": error_model} for status in statuses}


class ClientGone(Exception):
    """The client hung up while its request waited: there is nobody to answer."""


def create_app(config: ServerConfig) -> FastAPI:
    metrics = Metrics()
    host = ModelHost(config, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        host.start(on_failure=lambda error: app.state.on_failure(error))
        yield
        await asyncio.to_thread(host.stop)

    app = FastAPI(title="vecplug", version=__version__, lifespan=lifespan, redoc_url=None,
                  description="Embeddings from one resident model: OpenAI's and TEI's APIs, with dynamic batching.")
    app.state.host, app.state.metrics = host, metrics
    app.state.on_failure = lambda error: None  # `vecplug serve` replaces it: exit when the model cannot load
    _add_error_handlers(app)
    _add_openapi_bodies(app, host, EmbeddingRequest, EmbedRequest)
    openai_errors = error_responses(OpenAIError, 400, 401, 404, 413, 429, 503)
    tei_errors = error_responses(TEIError, 401, 413, 422, 429, 503)

    @app.post("/v1/embeddings", responses={200: {"model": EmbeddingResponse}, **openai_errors},
              openapi_extra=request_body(EmbeddingRequest))
    async def create_embeddings(request: Request):
        """OpenAI's embeddings API; ``input_type`` picks the prompt (default document)."""
        body = EmbeddingRequest.model_validate(await read_json(request))
        require_ready(host)
        if body.model is not None and body.model not in host.accepted_names():
            names = host.accepted_names()
            raise APIError(404, f"model {body.model!r} is not served here; this server serves {names[0]!r}"
                                + (f" (also accepted: {', '.join(map(repr, names[1:]))})" if names[1:] else "")
                                + ". Send one of those, or leave model out.", code="model_not_found", param="model")
        dimensions = requested_dimensions(host, body.dimensions, param="dimensions")
        texts = [body.input] if isinstance(body.input, str) else body.input
        job = await embed(request, host, texts, host.spec.prompt_for(body.input_type))
        vectors = cut(job.vectors, dimensions)
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
        return json_response(payload, headers={FINGERPRINT_HEADER: fingerprint(host, dimensions)})

    @app.get("/v1/models", responses={200: {"model": ModelList}, **error_responses(OpenAIError, 401, 503)})
    async def list_models():
        """The served model, with its spec (dimensions, prompts, fingerprint ...) under ``vecplug``."""
        require_ready(host)
        card = {"id": host.served_name, "object": "model", "created": host.started_at, "owned_by": "vecplug",
                "vecplug": host.spec.to_dict()}
        return json_response({"object": "list", "data": [card]})

    @app.post("/embed", responses={200: {"model": list[list[float]]}, **tei_errors},
              openapi_extra=request_body(EmbedRequest))
    async def tei_embed(request: Request):
        """text-embeddings-inference's ``/embed``: a list of vectors, one per input."""
        body = EmbedRequest.model_validate(await read_json(request))
        require_ready(host)
        names = prompt_names(host)
        name = "document" if body.prompt_name is None else body.prompt_name
        if name not in names:
            raise APIError(422, f"unknown prompt_name {name!r}; this model has {', '.join(names)}")
        dimensions = requested_dimensions(host, body.dimensions, status=422)
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        job = await embed(request, host, texts, host.spec.prompts.get(name, ""), reject_truncated=body.truncate is False)
        return json_response(cut(job.vectors, dimensions),
                             headers={FINGERPRINT_HEADER: fingerprint(host, dimensions)})

    # TEI also answers on "/", which is where huggingface_hub's InferenceClient(model=url) posts
    app.add_api_route("/", tei_embed, methods=["POST"], include_in_schema=False)

    @app.get("/info", responses=error_responses(TEIError, 401, 503))
    async def tei_info():
        """text-embeddings-inference's ``/info``, plus the model's spec under ``vecplug``."""
        require_ready(host)
        model = host.model
        return json_response({
            "model_id": host.served_name,
            "model_sha": None,
            "model_dtype": str(getattr(model, "dtype", "")).replace("torch.", "") or None,
            "model_type": {"embedding": {"pooling": getattr(getattr(model, "files", None), "pooling", "mean")}},
            "max_concurrent_requests": config.max_queue_texts,
            "max_input_length": host.spec.max_tokens,
            "max_batch_tokens": host.batcher.token_budget,
            "max_batch_requests": None,
            "max_client_batch_size": config.max_request_texts,
            "auto_truncate": True,
            "tokenization_workers": 1,
            "version": __version__,
            "sha": None,
            "docker_label": None,
            "vecplug": host.spec.to_dict(),
        })

    @app.get("/health", responses={200: {"model": Health}, 503: {"model": Health}})
    async def health():
        """200 once the model has loaded and answered a warm-up; 503 while loading, draining or failed."""
        if host.ready:
            return json_response({"status": "ok", "model": host.served_name, "fingerprint": host.spec.fingerprint})
        return json_response({"status": host.status, "detail": host.error}, status=503, headers={"Retry-After": "1"})

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus_metrics():
        """Prometheus text format: requests, texts, tokens, truncations, batches, queue depth, latencies."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    app.add_middleware(Gate, api_key=config.api_key, max_request_bytes=config.max_request_bytes, host=host,
                       metrics=metrics)
    return app


# -- helpers the routes share ------------------------------------------------------------
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


def requested_dimensions(host: ModelHost, dimensions: int | None, status: int = 400, param: str | None = None):
    if dimensions is None or dimensions == host.spec.dimensions:
        return None
    try:
        return check_dimensions(dimensions, host.spec)
    except ValueError as error:  # InvalidSettingError: says what the model has and was trained for
        raise APIError(status, str(error), param=param) from None


def cut(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Matryoshka truncation then re-normalisation, exactly as ``EmbeddingModel`` does it in process."""
    if dimensions is None:
        return np.ascontiguousarray(vectors)
    part = vectors[:, :dimensions]
    return np.ascontiguousarray(part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12))


def fingerprint(host: ModelHost, dimensions: int | None) -> str:
    return host.spec.truncated(dimensions).fingerprint


async def embed(request: Request, host: ModelHost, texts: list[str], prompt: str, reject_truncated: bool = False):
    """Queue the texts with their prompt, wait for the vectors, drop them if the client leaves first."""
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
        job = host.batcher.submit([prompt + text for text in texts], on_done, reject_truncated)
    except QueueFull as full:
        metrics.rejected.labels("queue_full").inc()
        raise APIError(429, f"the server is busy: {full.queued:,} texts are queued and {len(texts):,} more would "
                            f"pass its limit of {full.limit:,} (--max-queue-texts). Retry after {full.retry_after} s.",
                       code="queue_full", headers={"Retry-After": str(full.retry_after)}) from None
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


# -- error handlers and the OpenAPI schema ---------------------------------------------------
def _add_error_handlers(app: FastAPI) -> None:
    def answer(request: Request, error: APIError) -> Response:
        if error.status == 400 and is_tei_path(request.url.path):
            error.status = 422  # TEI answers every unusable body with 422
        return json_response(error_body(request.url.path, error), status=error.status, headers=error.headers)

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError):
        return answer(request, error)

    @app.exception_handler(ValidationError)
    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, error):
        return answer(request, APIError(400, describe_validation_errors(error.errors()), code="invalid_value"))

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, error: ClientGone):
        return Response(status_code=499)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        if error.status_code == 404:
            message = (f"no route {request.method} {request.url.path}; this server answers POST /v1/embeddings, "
                       "GET /v1/models, POST /embed, GET /info, GET /health, GET /metrics (GET /docs describes them)")
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see GET /docs for the methods"
        else:
            message = str(error.detail)
        return answer(request, APIError(error.status_code, message, headers=getattr(error, "headers", None)))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):
        return answer(request, job_error(error))


def _add_openapi_bodies(app: FastAPI, host: ModelHost, *models) -> None:
    """Routes parse bodies themselves; put the bodies' schemas where their ``$ref`` points.

    Once the model is loaded the schema also states the served model's limits
    (largest ``dimensions``, texts per request, prompt names), so it promises
    exactly what the server accepts; the fuzz test holds it to that.
    """
    build = app.openapi

    def openapi():
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        app.openapi_schema = None  # FastAPI cached it; keep it only once the served limits are in
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            found = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(found.pop("$defs", {}))
            components[model.__name__] = found
        if host.ready:
            _state_served_limits(components, host)
            app.openapi_schema = schema
        return schema

    app.openapi = openapi


def _state_served_limits(components: dict, host: ModelHost) -> None:
    def options(model: str, field: str) -> list[dict]:
        return components[model]["properties"][field].get("anyOf", [])

    for model, field in (("EmbeddingRequest", "input"), ("EmbedRequest", "inputs")):
        for option in options(model, field):
            if option.get("type") == "array":
                option["maxItems"] = host.config.max_request_texts
    for model in ("EmbeddingRequest", "EmbedRequest"):
        for option in options(model, "dimensions"):
            if option.get("type") == "integer":
                option["maximum"] = host.spec.dimensions
    for option in options("EmbedRequest", "prompt_name"):
        if option.get("type") == "string":
            option["enum"] = prompt_names(host)
