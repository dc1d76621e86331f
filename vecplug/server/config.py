"""The server's settings, checked once when ``vecplug serve`` starts."""
from __future__ import annotations

import dataclasses

# OpenAI's own limit on texts per request; also bounds one request's share of the queue.
MAX_REQUEST_TEXTS = 2048
# A request body above this is refused unread (413): 2,048 texts of 4 KB, or one
# text far beyond what 8,192 tokens can read. Tokenizing megabytes only to cut them
# at max_tokens would stall every other client.
MAX_REQUEST_BYTES = 8 * 1024 * 1024
DEFAULT_QUEUE_TEXTS = 4096
# A client sends a request's headers, then its body, each within this many seconds (--request-timeout).
# The answer has no deadline by default (--answer-timeout): waiting behind accepted work is not a slow client.
REQUEST_TIMEOUT = 60.0
# Open connections at most (--max-connections): beyond, uvicorn answers 503 instead of exhausting the host.
MAX_CONNECTIONS = 1024
# SIGTERM: seconds to finish what is running before exiting (--graceful-timeout).
GRACEFUL_TIMEOUT = 30.0


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    model: str | None = None
    device: str | None = None
    dtype: str | None = None
    dimensions: int | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    max_batch_tokens: int | None = None  # None: the model's own budget (2,048 on CPU, 65,536 on GPU)
    max_queue_texts: int = DEFAULT_QUEUE_TEXTS
    max_request_texts: int = MAX_REQUEST_TEXTS
    max_request_bytes: int = MAX_REQUEST_BYTES
    api_key: str | None = dataclasses.field(default=None, repr=False)
    served_name: str | None = None
    access_log: bool = False
    request_timeout: float = REQUEST_TIMEOUT
    answer_timeout: float | None = None
    max_connections: int = MAX_CONNECTIONS
    graceful_timeout: float = GRACEFUL_TIMEOUT

    def __post_init__(self):
        for name in ("max_queue_texts", "max_request_texts", "max_request_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("request_timeout", "graceful_timeout", "answer_timeout"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0 seconds, got {getattr(self, name)}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {self.max_connections}")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be at least 1, got {self.max_batch_tokens}")
        if self.max_request_texts > self.max_queue_texts:
            # a request larger than the whole queue could never be accepted
            object.__setattr__(self, "max_request_texts", self.max_queue_texts)
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key is empty; set a non-empty key or none at all")

