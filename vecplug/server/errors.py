"""Errors a client can act on, in the body shape its API family expects.

OpenAI clients read ``{"error": {"message", "type", "code"}}``; TEI clients
(``huggingface_hub``) read ``{"error": "...", "error_type": "..."}``. Every
message says what was wrong and what to do about it.
"""
from __future__ import annotations

# Paths that speak the text-embeddings-inference dialect; everything else speaks OpenAI's.
TEI_PATHS = ("/embed", "/info", "/")
# OpenAI's error types by status; TEI's are coarser.
OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
                413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
                503: "service_unavailable"}
TEI_TYPES = {400: "Validation", 401: "Unauthorized", 404: "Validation", 413: "Validation", 422: "Validation",
             429: "Overloaded", 503: "Unhealthy"}


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


def is_tei_path(path: str) -> bool:
    return path in TEI_PATHS


def error_body(path: str, error: APIError) -> dict:
    if is_tei_path(path):
        return {"error": error.message, "error_type": TEI_TYPES.get(error.status, "Backend")}
    kind = OPENAI_TYPES.get(error.status, "server_error" if error.status >= 500 else "invalid_request_error")
    return {"error": {"message": error.message, "type": kind, "param": error.param, "code": error.code}}


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
