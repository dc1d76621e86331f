"""The HTTP routes: OpenAI's embeddings API, TEI's ``/embed`` and ``/info``, health and metrics.

Each route checks its body, queues the texts with their prompt through the
batcher (``handling.embed``) and writes the answer with orjson; errors are
answered by the handlers in ``handling``.
"""
from __future__ import annotations

import asyncio
import base64
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response

from .. import __version__
from .config import ServerConfig
from .engine import ModelHost
from .errors import APIError
from .handling import (
    FINGERPRINT_HEADER, TRUNCATED_HEADER, add_error_handlers, cut, embed, fingerprint, json_response, prompt_names, read_json,
    require_ready, requested_dimensions,
)
from .metrics import Metrics
from .middleware import Gate
from .openapi import add_openapi_bodies, error_responses, request_body
from .schemas import EmbeddingRequest, EmbeddingResponse, EmbedRequest, Health, ModelList, OpenAIError, TEIError


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
    add_error_handlers(app)
    add_openapi_bodies(app, host, EmbeddingRequest, EmbedRequest)
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
        return json_response(payload, headers={FINGERPRINT_HEADER: fingerprint(host, dimensions),
                                               TRUNCATED_HEADER: str(job.truncated)})

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
