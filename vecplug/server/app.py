"""The FastAPI app: the routes of ``routes.ROUTES``, one shared endpoint, error handlers, the gate.

Each route's endpoint reads and checks the body with the route's request
model, refuses work until the model is ready (503), and calls the route's
answer; errors are answered by the handlers here, in the shape (and with the
status) of the path's API flavour.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .. import __version__
from .config import ServerConfig
from .engine import ModelHost
from .errors import APIError, describe_validation_errors
from .handling import ClientGone, job_error, json_response, read_body, require_ready
from .metrics import Metrics
from .middleware import DEADLINE_KEY, Gate, timed_out
from .openapi import add_openapi_bodies, request_body
from .routes import ROUTES, Call, Route, RouteTable

log = logging.getLogger("vecplug.server")
# After a drain, the batcher's threads get this long to end their current pass; the process exits regardless.
STOP_SECONDS = 1.0


def create_app(config: ServerConfig) -> FastAPI:
    metrics = Metrics()
    host = ModelHost(config, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        host.start(on_failure=lambda error: app.state.on_failure(error))
        yield
        if host.batcher is not None:
            await asyncio.to_thread(host.batcher.stop, STOP_SECONDS)

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
                       host=host, metrics=metrics, request_timeout=config.request_timeout,
                       answer_timeout=config.answer_timeout)
    return app


def endpoint_for(route: Route, host: ModelHost):
    """The endpoint every route shares: body, readiness, then the route's own answer."""
    async def endpoint(request: Request):
        body = None
        try:
            body = await read_body(request, route.request) if route.request else None
            if route.needs_model:
                require_ready(host)
            return await route.answer(Call(request, host, body))
        except (ClientGone, ClientDisconnect):
            deadline = request.scope.get(DEADLINE_KEY)
            if deadline is not None and deadline.expired:  # the middleware's deadline, not the client, ended it
                host.metrics.rejected.labels("timeout").inc()
                raise timed_out(deadline.seconds) from None
            log.info("client disconnected before the answer to %s %s%s; its queued texts were dropped",
                     request.method, request.url.path, _texts_of(route, body))
            raise ClientGone() from None

    return endpoint


def _texts_of(route: Route, body) -> str:
    """`` (3 texts)`` for a body with texts: what the log line of a hung-up client says about its request."""
    if route.request is not None and body is None:
        return " (its body had not all arrived)"
    texts = getattr(body, "input", None) or getattr(body, "inputs", None)
    if texts is None:
        return ""
    count = 1 if isinstance(texts, str) else len(texts)
    return f" ({count} text{'s' if count != 1 else ''})"


def add_error_handlers(app: FastAPI, routes: RouteTable) -> None:
    """Every error answered in the shape (and with the status) of its path's API flavour."""
    def answer(request: Request, error: APIError) -> Response:
        status, body = routes.flavour_for(request.url.path).answer(error)
        return json_response(body, status=status, headers=error.headers)

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
            message = (f"no route {request.method} {request.url.path}; this server answers {routes.listing()} "
                       "(GET /docs describes them)")
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see GET /docs for the methods"
        else:
            message = str(error.detail)
        return answer(request, APIError(error.status_code, message, headers=getattr(error, "headers", None)))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):
        return answer(request, job_error(error))
