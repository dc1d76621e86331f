"""The FastAPI app: the routes of ``routes.ROUTES``, one shared endpoint, error handlers, the gate.

Each route's endpoint reads and checks the body with the route's request
model, refuses work until the model is ready (503), and calls the route's
answer; errors are answered by the handlers in ``handling``, in the shape of
the path's API flavour.
"""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from .. import __version__
from .config import ServerConfig
from .engine import ModelHost
from .handling import add_error_handlers, read_body, require_ready
from .metrics import Metrics
from .middleware import Gate
from .openapi import add_openapi_bodies, request_body
from .routes import ROUTES, Call, Route


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
    add_error_handlers(app, ROUTES)
    add_openapi_bodies(app, host, *ROUTES.request_models())
    for route in ROUTES:
        options = {"response_class": route.response_class} if route.response_class else {}
        app.add_api_route(route.path, endpoint_for(route, host), methods=[route.method], name=route.name,
                          description=route.description, responses=route.responses(),
                          openapi_extra=request_body(route.request) if route.request else None,
                          include_in_schema=route.documented, **options)
    app.add_middleware(Gate, routes=ROUTES, api_key=config.api_key, max_request_bytes=config.max_request_bytes,
                       host=host, metrics=metrics)
    return app


def endpoint_for(route: Route, host: ModelHost):
    """The endpoint every route shares: body, readiness, then the route's own answer."""
    async def endpoint(request: Request):
        body = await read_body(request, route.request) if route.request else None
        if route.needs_model:
            require_ready(host)
        return await route.answer(Call(request, host, body))

    return endpoint
