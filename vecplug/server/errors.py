"""Errors a client can act on, in the body shape its API family expects.

OpenAI clients read ``{"error": {"message", "type", "code"}}``; TEI clients
(``huggingface_hub``) read ``{"error": "...", "error_type": "..."}``: each
route's ``Flavour`` (its entry in ``routes.ROUTES``) picks the shape. Every
message says what was wrong and what to do about it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .schemas import OpenAIError, TEIError

# OpenAI's error types by status; TEI's are coarser.
OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
                408: "invalid_request_error",
                413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
                503: "service_unavailable"}
TEI_TYPES = {400: "Validation", 401: "Unauthorized", 404: "Validation", 408: "Validation", 413: "Validation",
             422: "Validation", 429: "Overloaded", 503: "Unhealthy", 504: "Overloaded"}


class APIError(Exception):
    """An error answered with ``status`` and a JSON body; ``headers`` go with it (Retry-After ...)."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = dict(headers or {})


def openai_error_body(error: APIError, status: int) -> dict:
    kind = OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": error.message, "type": kind, "param": error.param, "code": error.code}}


def tei_error_body(error: APIError, status: int) -> dict:
    return {"error": error.message, "error_type": TEI_TYPES.get(status, "Backend")}


@dataclass(frozen=True)
class Flavour:
    """An API family: the error body its clients read, and the status of a body it cannot use.

    Routes raise ``APIError(400, ...)`` for any unusable body; a family that
    answers those with another status (TEI: 422) says so in ``bad_body_status``.
    """

    name: str
    error_model: type  # the error body's pydantic model, for the OpenAPI schema
    body: Callable[[APIError, int], dict]  # (error, the status it is answered with) -> the JSON body
    bad_body_status: int = 400

    def answer(self, error: APIError) -> tuple[int, dict]:
        """The status and body this family's clients expect for ``error``."""
        status = self.bad_body_status if error.status == 400 else error.status
        return status, self.body(error, status)


OPENAI = Flavour("openai", OpenAIError, openai_error_body)
TEI = Flavour("tei", TEIError, tei_error_body, bad_body_status=422)  # TEI answers every unusable body with 422


def describe_validation_errors(errors: list[dict]) -> str:
    """One readable sentence from pydantic's error list: where, what, and what came instead."""
    parts = []
    for error in errors[:5]:
        location = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body",))
        message = error.get("msg", "invalid value")
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if error.get("type") == "extra_forbidden":
            message = "unknown field; check its spelling against the API reference (GET /docs)"
        elif error.get("type") in ("missing",):
            message = "required field is missing"
        elif "input" in error and error.get("type") not in ("value_error",):
            message += f" (got {_short(error['input'])})"
        named = location and not message.startswith(location.split(".")[0])
        parts.append(f"{location}: {message}" if named else message)
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more problems")
    return "; ".join(parts)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
