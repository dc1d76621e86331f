"""What every request passes before a route sees it: draining, the API key, the body size, the deadline.

A plain ASGI wrapper rather than Starlette middleware classes: it runs before
the body is read, so an oversized body is refused unread (by its
Content-Length) or as soon as the streamed part passes the limit, and it
times every request for the metrics.

A client has ``--request-timeout`` seconds from its headers on to send its
body (``Deadline``): a body still arriving then is a 408 (the headers
themselves are timed by ``lifecycle.http_protocol``). The answer has no
deadline unless ``--answer-timeout`` gives one: queueing behind accepted bulk
work is not a slow client, and a client that gives up hangs up, which frees
its work anyway. With ``--answer-timeout`` an answer not ready in time is a
504: the deadline reaches the routes as the disconnect they already watch
for (``handling.wait_for_disconnect``): the receive channel says
"http.disconnect" when time is up, so the request's queued texts are dropped
exactly as when its client hangs up, and the endpoint answers 504 instead
(``app.endpoint_for``). Work that does not watch (a full queue waited out, a
worker thread) is cancelled ``BACKSTOP_SECONDS`` later.
"""
from __future__ import annotations

import asyncio
import hmac
import time

import orjson

from .errors import APIError

# A refused body is read and dropped up to this size (then the connection is cut):
# most HTTP clients only read the answer once they have sent the whole request.
DISCARD_BYTES = 256 * 1024 * 1024
# After the deadline, work that has not stopped by itself is cancelled this much later.
BACKSTOP_SECONDS = 2.0
# Where the request's answer Deadline (None without --answer-timeout) and whether it came with the right
# API key sit in the ASGI scope.
DEADLINE_KEY = "vecplug.deadline"
KEY_GIVEN_KEY = "vecplug.key_given"


class Deadline:
    """When a request must have been answered; ``expired`` once a part of it ran out of time."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False

    def remaining(self) -> float:
        return self.at - time.monotonic()


def timed_out(seconds: float) -> APIError:
    """The 504 of a request not answered within ``--answer-timeout``."""
    return APIError(504, f"the answer was not ready within {seconds:g} s (--answer-timeout); the request's "
                         "queued texts were dropped. The server is busy or the request is large: send fewer "
                         "texts per request, or retry later.", code="timeout", headers={"Retry-After": "1"})


class Gate:
    def __init__(self, app, *, routes, api_key: str | None, max_request_bytes: int, host, metrics,
                 request_timeout: float, answer_timeout: float | None = None):
        self.app = app
        self.routes = routes  # routes.ROUTES: which paths are open (no key, answered while draining), error shapes
        self.open_paths = routes.open_paths
        self.counted_paths = routes.counted_paths
        self.api_key = api_key.encode() if api_key else None
        self.max_request_bytes = max_request_bytes
        self.host = host
        self.metrics = metrics
        self.request_timeout = request_timeout
        self.answer_timeout = answer_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        route = path if path in self.counted_paths else "other"
        started = time.perf_counter()
        status_seen = {}

        async def send_and_count(message):
            if message["type"] == "http.response.start":
                status_seen["status"] = message["status"]
            await send(message)

        receiving = Deadline(self.request_timeout)
        answering = scope[DEADLINE_KEY] = None if self.answer_timeout is None else Deadline(self.answer_timeout)
        scope[KEY_GIVEN_KEY] = self.api_key is not None and self._key_problem(scope) is None
        try:
            refusal = self._refusal(scope, path)
            if refusal is None and (refusal := self._declared_too_large(scope)) is not None:
                await discard_body(receive)
            if refusal is not None:
                await respond(send_and_count, self.routes.flavour_for(path), refusal)
            else:
                await self._answer_in_time(scope, self._limited(self._timed(receive, receiving, answering)),
                                           send_and_count, answering, status_seen)
        finally:
            status = status_seen.get("status", 499)  # no response started: the client went away
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(time.perf_counter() - started)

    async def _answer_in_time(self, scope, receive, send, deadline: Deadline | None, status_seen: dict) -> None:
        """The app, cancelled if still running ``BACKSTOP_SECONDS`` after the answer's deadline (then a 504 if no
        answer has started)."""
        if deadline is None:
            return await self.app(scope, receive, send)
        try:
            await asyncio.wait_for(self.app(scope, receive, send), deadline.remaining() + BACKSTOP_SECONDS)
        except (asyncio.TimeoutError, TimeoutError):
            deadline.expired = True
            if "status" not in status_seen:
                self.metrics.rejected.labels("timeout").inc()
                error = timed_out(deadline.seconds)
                await respond(send, self.routes.flavour_for(scope["path"]), error)

    def _timed(self, receive, receiving: Deadline, answering: Deadline | None):
        """``receive`` bounded by the deadlines: a body still arriving at ``receiving``'s is a 408; once the body
        is in, a request still waiting at ``answering``'s hears "http.disconnect" (see the module's docstring)."""
        body_done = False

        async def timed_receive():
            nonlocal body_done
            if not body_done:
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, receiving.remaining()))
                except (asyncio.TimeoutError, TimeoutError):
                    receiving.expired = True
                    self.metrics.rejected.labels("timeout").inc()
                    raise APIError(408, f"the request body did not arrive within {receiving.seconds:g} s "
                                        "(--request-timeout); send it at once, or send less", code="timeout",
                                   headers={"Connection": "close"}) from None
                if message["type"] != "http.request" or not message.get("more_body"):
                    body_done = True
                return message
            if answering is None:
                return await receive()
            if answering.expired:
                return {"type": "http.disconnect"}
            waiting = asyncio.ensure_future(receive())
            try:
                done, _ = await asyncio.wait({waiting}, timeout=max(0.0, answering.remaining()))
            finally:
                if not waiting.done():
                    waiting.cancel()
            if waiting in done:
                return waiting.result()
            answering.expired = True
            return {"type": "http.disconnect"}

        return timed_receive

    def _refusal(self, scope, path: str) -> APIError | None:
        if self.host.status == "draining" and path not in self.open_paths:
            self.metrics.rejected.labels("draining").inc()
            return APIError(503, "the server is shutting down and takes no new requests; retry against another "
                                 "instance or after it restarts", code="draining",
                            headers={"Retry-After": "1", "Connection": "close"})
        if self.api_key is not None and path not in self.open_paths:
            problem = self._key_problem(scope)
            if problem:
                return APIError(401, problem, code="invalid_api_key",
                                headers={"WWW-Authenticate": 'Bearer realm="vecplug"'})
        return None

    def _declared_too_large(self, scope) -> APIError | None:
        length = header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_request_bytes:
            return too_large(int(length), self.max_request_bytes)
        return None

    def _key_problem(self, scope) -> str | None:
        authorization = header(scope, b"authorization")
        if authorization is None:
            return ("this server needs an API key: send the header 'Authorization: Bearer <key>' with the key "
                    "it was started with ($VECPLUG_API_KEY or --api-key-file)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "the Authorization header must be 'Bearer <key>'"
        if not hmac.compare_digest(token.strip().encode(), self.api_key):
            return "wrong API key: use the key this server was started with ($VECPLUG_API_KEY or --api-key-file)"
        return None

    def _limited(self, receive):
        """``receive`` that refuses a streamed body as soon as it passes the limit."""
        seen = 0
        limit = self.max_request_bytes

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    if message.get("more_body"):
                        await discard_body(receive)
                    raise too_large(seen, limit, streamed=True)
            return message

        return limited_receive


async def discard_body(receive, at_most: int = DISCARD_BYTES) -> None:
    """Read and drop the rest of a refused body, so the client gets to read the 413 instead of a broken pipe."""
    discarded = 0
    while discarded <= at_most:
        message = await receive()
        if message["type"] != "http.request":
            return
        discarded += len(message.get("body", b""))
        if not message.get("more_body"):
            return


def header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def too_large(size: int, limit: int, streamed: bool = False) -> APIError:
    amount = f"more than {limit:,}" if streamed else f"{size:,}"
    return APIError(413, f"the request body is {amount} bytes; this server accepts at most {limit:,} per request "
                         "(--max-request-bytes). Send fewer or shorter texts per request: texts longer than "
                         "the model's max tokens are cut anyway.", code="request_too_large")


async def respond(send, flavour, error: APIError) -> None:
    """Answer ``error`` before the app sees the request, in the path's flavour (``errors.Flavour``)."""
    status, payload = flavour.answer(error)
    body = orjson.dumps(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(key.lower().encode(), str(value).encode()) for key, value in error.headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
