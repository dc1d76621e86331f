"""``RemoteModel``: a model served by ``vecplug serve``, used exactly like a local one.

    model = vecplug.load_model("http://127.0.0.1:8080")   # or RemoteModel(url, api_key=...)
    model.embed_documents(["text"]); model.embed_queries(["question"]); model.spec.fingerprint

It speaks the server's OpenAI-compatible ``/v1/embeddings`` with the
``input_type`` extension, so the server applies the prompts, and asks for
base64 vectors (exact float32, a third of the JSON size). ``embed_chunks``
uses the server's ``/embed_chunks``: the server plans the chunks with the
model's own tokenizer, so spans and vectors are the local model's.

The HTTP client is the standard library's ``http.client``, with a small pool
of keep-alive connections: the core then needs no HTTP dependency, so a
PostgreSQL worker or a Chroma app can use a server with a plain
``pip install vecplug``. The retries that matter here (429 with
Retry-After, 503 while the model loads or a server restarts, refused
connections) are policy a library like httpx leaves to its caller anyway.
Proxies are not used: the client connects to the URL it is given.
"""
from __future__ import annotations

import base64
import http.client
import json
import logging
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from .errors import ModelMismatchError, ServerError, ServerUnavailableError
from .model import EmbeddingModel, ModelSpec, check_kind, check_text
from .settings import API_KEY_ENV, Settings
from .token_budget import groups_of
from .wire import FINGERPRINT_HEADER, TRUNCATED_HEADER

if TYPE_CHECKING:
    import numpy as np

RETRY_STATUSES = (429, 503)
# One request's texts: enough to fill a CPU batch several times over, well under
# the server's per-request limits (2,048 texts, 8 MiB).
BATCH_TEXTS = 256
BATCH_CHARS = 2_000_000
# One /embed_chunks request's texts, in UTF-8 bytes of JSON: a quarter of the server's default
# 8 MiB body limit, so long documents go a few at a time and each answer comes back in good time.
CHUNK_REQUEST_BYTES = 2 * 1024 * 1024
IN_FLIGHT = 2  # requests a stream keeps going, so the server has the next one while it embeds this one
# A refused connection means nothing listens at the URL (a typo, no server started): a few quick
# retries cover a server restarting, then the caller hears it, instead of after retry_seconds.
REFUSED_SECONDS = 2.0
WAIT_NOTICE_SECONDS = 2.0  # a wait longer than this is said once: "waiting for the server at URL (...)"

log = logging.getLogger("vecplug.client")


def is_url(name) -> bool:
    return isinstance(name, str) and name.startswith(("http://", "https://"))


class RemoteModel(EmbeddingModel):
    """A ``vecplug serve`` server's model with the local model's interface.

    ``api_key`` defaults to ``$VECPLUG_API_KEY_FILE``'s or ``$VECPLUG_API_KEY``'s
    (``vecplug.settings``); ``""`` sends none. ``fingerprint``: refuse a
    server whose model has another one (ModelMismatchError). Requests that
    meet 429, 503 or a refused connection are retried with growing pauses
    (honouring Retry-After) for up to ``retry_seconds``, then
    ServerUnavailableError names the server. A refused connection (nothing
    listens there: a wrong URL, or no server started) is retried for only
    ``refused_seconds`` (2 s; a server that is being started later needs
    more), an unknown host not at all. A wait longer than 2 s (the model
    loading, a busy server) is said once, as a warning of the
    ``vecplug.client`` logger. ``timeout`` bounds one request.
    """

    def __init__(self, url: str, api_key: str | None = None, *, fingerprint: str | None = None,
                 timeout: float = 300.0, retry_seconds: float = 60.0, batch_size: int = BATCH_TEXTS,
                 refused_seconds: float = REFUSED_SECONDS):
        if not is_url(url):
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        self.url = base_url(url)
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.refused_seconds = min(refused_seconds, retry_seconds)
        self._waiting_said = False
        self.batch_size = batch_size
        self._api_key = Settings(api_key=api_key).api_key_value()
        self._connections = ConnectionPool(self.url, timeout)
        self._counters = {"truncated": 0}  # shared with with_dimensions views, like a local model's
        self._counter_lock = threading.Lock()
        self.served_name = None
        spec = self._fetch_spec()
        if fingerprint and spec.fingerprint != fingerprint:
            raise ModelMismatchError(
                f"the server at {self.url} serves {spec.name} with fingerprint {spec.fingerprint}, "
                f"not the expected {fingerprint}: its vectors are not comparable with the ones you have. "
                "Point at a server running the original model."
            )
        super().__init__(spec)

    # -- what a local model offers -----------------------------------------------
    def embed_batch(self, texts: list[str]):
        raise NotImplementedError(
            "RemoteModel has the server apply prompts; call embed(texts, kind), embed_documents or embed_queries"
        )

    def iter_embed_chunks(self, texts: Iterable[str], kind: str = "document") -> Iterator:
        """Requests of up to ``batch_size`` texts, two in flight, vectors in input order."""
        check_kind(kind)
        requests = groups_of((check_text(text, index) for index, text in enumerate(texts)), self.batch_size,
                             BATCH_CHARS)
        first = next(requests, None)
        if first is None:
            return
        second = next(requests, None)
        if second is None:  # one request: no threads
            yield self._embed(first, kind)
            return
        with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="vecplug-client") as pool:
            pending = [pool.submit(self._embed, first, kind), pool.submit(self._embed, second, kind)]
            for chunk in requests:
                yield pending.pop(0).result()
                pending.append(pool.submit(self._embed, chunk, kind))
            for future in pending:
                yield future.result()

    def embed_chunks(self, texts: Iterable[str], chunk_tokens: int = 512, overlap_tokens: int = 0,
                     late: bool = False) -> list:
        """The local model's ``embed_chunks``, computed by the server (``POST /embed_chunks``).

        Settings and texts are checked here first, so a mistake raises before
        any request; texts go in requests of at most ``batch_size`` texts and
        about ``CHUNK_REQUEST_BYTES``, two in flight, retried like ``embed``.
        """
        from .chunking import Chunks, check_chunking, check_late
        from .model import check_texts, refuse_single_text

        refuse_single_text(texts)
        chunk_tokens, overlap_tokens = check_chunking(chunk_tokens, overlap_tokens)
        check_late(late)
        texts = check_texts(texts)
        settings = {"chunk_tokens": chunk_tokens, "overlap_tokens": overlap_tokens, "late": late}
        requests = list(groups_of(texts, self.batch_size, CHUNK_REQUEST_BYTES, utf8_length))
        if len(requests) == 1:
            answers = [self._embed_chunks(requests[0], settings)]
        else:
            with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="vecplug-client") as pool:
                answers = list(pool.map(lambda batch: self._embed_chunks(batch, settings), requests))
        results = []
        for batch, answer in zip(requests, answers):
            for text, (spans, vectors) in zip(batch, answer):
                results.append(Chunks(spans, [text[start:end] for start, end in spans], vectors))
        return results

    @property
    def truncated_count(self) -> int:
        """Texts the server cut to max tokens for this client (its ``X-Vecplug-Truncated`` answers)."""
        return self._counters["truncated"]

    def describe(self) -> dict:
        """The spec, plus where it runs: the server's URL and the name it serves the model under."""
        return {**super().describe(), "server": self.url, "served_name": self.served_name}

    def __repr__(self) -> str:
        return f"<RemoteModel {self.name} at {self.url} dim={self.dimensions}>"

    # -- the wire ---------------------------------------------------------------------
    def _fetch_spec(self) -> ModelSpec:
        _, data = self._request("GET", "/v1/models", first_contact=True)
        try:
            card = json.loads(data)["data"][0]
            fields = card["vecplug"]
            self.served_name = card.get("id")
            return ModelSpec(name=fields["name"], dimensions=fields["dimensions"], max_tokens=fields["max_tokens"],
                             prompts=fields.get("prompts", {}), aliases=tuple(fields.get("aliases", ())),
                             matryoshka_dims=tuple(fields.get("matryoshka_dims", ())),
                             any_dimensions=bool(fields.get("any_dimensions", False)),
                             fingerprint=fields.get("fingerprint", ""))
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise ServerError(f"{self.url}/v1/models did not describe a vecplug model ({error!r}); "
                              "is this a `vecplug serve` server?", self.url) from None

    def _embed(self, texts: list[str], kind: str):
        import numpy as np

        payload = {"input": texts, "input_type": kind, "encoding_format": "base64"}
        if self.spec.dimensions != self._full_spec.dimensions:
            payload["dimensions"] = self.spec.dimensions
        headers, data = self._request("POST", "/v1/embeddings", json.dumps(payload).encode())
        self._check_fingerprint(headers)
        self._count_truncated(headers)
        items = sorted(json.loads(data)["data"], key=lambda item: item["index"])
        vectors = np.stack([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in items])
        if vectors.shape != (len(texts), self.spec.dimensions):
            raise ServerError(f"{self.url} returned vectors of shape {vectors.shape} for {len(texts)} texts of "
                              f"{self.spec.dimensions} dimensions", self.url)
        return vectors.astype(np.float32, copy=False)

    def _embed_chunks(self, texts: list[str], settings: dict) -> list[tuple[list, "np.ndarray"]]:
        import numpy as np

        payload = {"inputs": texts, **settings}
        if self.spec.dimensions != self._full_spec.dimensions:
            payload["dimensions"] = self.spec.dimensions
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers, data = self._request("POST", "/embed_chunks", body)
        self._check_fingerprint(headers)
        self._count_truncated(headers)
        answer = json.loads(data)
        if not isinstance(answer, list) or len(answer) != len(texts):
            shown = len(answer) if isinstance(answer, list) else repr(answer)[:100]
            raise ServerError(f"{self.url}/embed_chunks answered {shown} entries for {len(texts)} texts", self.url)
        results = []
        for text, entry in zip(texts, answer):
            spans = [(int(start), int(end)) for start, end in entry["spans"]]
            vectors = np.asarray(entry["embeddings"], dtype=np.float32).reshape(len(spans), self.spec.dimensions)
            if any(not 0 <= start < end <= len(text) for start, end in spans):
                raise ServerError(f"{self.url}/embed_chunks answered spans outside their text: {spans[:5]}", self.url)
            results.append((spans, vectors))
        return results

    def _check_fingerprint(self, headers) -> None:
        served = headers.get(FINGERPRINT_HEADER)
        if served and self.spec.fingerprint and served != self.spec.fingerprint:
            raise ModelMismatchError(
                f"the server at {self.url} now answers with fingerprint {served}, but this client was set up "
                f"for {self.spec.fingerprint} ({self.spec.name}): the server's model changed. Refusing to mix "
                "vectors of two models; load the model again to use the new one."
            )

    def _count_truncated(self, headers) -> None:
        truncated = headers.get(TRUNCATED_HEADER)
        if truncated and truncated.isdigit():
            with self._counter_lock:
                self._counters["truncated"] += int(truncated)

    def _headers(self, body: bytes | None) -> dict:
        headers = {"Accept": "application/json", "User-Agent": "vecplug-client"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _request(self, method: str, path: str, body: bytes | None = None, *, first_contact: bool = False):
        """One request with retries on 429, 503 and failed connections, for up to ``retry_seconds``.

        Refused connections stop after ``refused_seconds``, an unknown host at once. ``first_contact``
        (the spec's request, which answers at once): a request still unanswered after
        ``WAIT_NOTICE_SECONDS`` is said once too; an embedding request may take that long.
        """
        started = time.monotonic()
        tries = 0
        notice = self._wait_notice(f"no answer yet to {method} {path}") if first_contact else None
        try:
            while True:
                tries += 1
                retry_after = None
                limit, refused = self.retry_seconds, False
                try:
                    status, headers, data = self._connections.request(method, path, body, self._headers(body))
                except TimeoutError:
                    raise ServerError(f"{self.url} did not answer {method} {path} within {self.timeout:g} s "
                                      "(RemoteModel timeout)", self.url) from None
                except socket.gaierror as error:
                    raise ServerUnavailableError(
                        f"the vecplug server at {self.url} cannot be reached: its host name does not resolve "
                        f"({error.strerror or error}). Fix the URL (--server-url)", self.url) from None
                except ConnectionRefusedError:
                    problem = "cannot connect (connection refused: no server listens there)"
                    limit, refused = self.refused_seconds, True
                except (OSError, http.client.HTTPException) as error:
                    problem = f"cannot connect ({error or type(error).__name__})"
                else:
                    if status < 400:
                        return headers, data
                    message = error_message(data)
                    if status not in RETRY_STATUSES:
                        raise ServerError(f"{self.url} answered {method} {path} with {status}: {message}"
                                          + (f" (set ${API_KEY_ENV} or pass api_key=)" if status == 401 else ""),
                                          self.url, status)
                    problem = f"{status}: {message}"
                    retry_after = parse_retry_after(headers.get("Retry-After"))
                pause = max(retry_after or 0.0, backoff(tries))
                waited = time.monotonic() - started
                if waited + pause > limit:
                    advice = ("Start one with `vecplug serve`, or fix the URL (--server-url)." if refused else
                              "Is `vecplug serve` running there, and reachable?")
                    raise ServerUnavailableError(
                        f"the vecplug server at {self.url} did not answer {method} {path} within "
                        f"{limit:g} s ({tries} tries); last: {problem}. {advice}", self.url)
                if waited + pause >= WAIT_NOTICE_SECONDS:
                    self._say_waiting(problem)
                time.sleep(pause)
        finally:
            if notice is not None:
                notice.cancel()

    def _wait_notice(self, why: str) -> threading.Timer:
        """A timer that says once, after ``WAIT_NOTICE_SECONDS``, that a request is still waiting."""
        timer = threading.Timer(WAIT_NOTICE_SECONDS, self._say_waiting, [why])
        timer.daemon = True
        timer.start()
        return timer

    def _say_waiting(self, why: str) -> None:
        with self._counter_lock:
            if self._waiting_said:
                return
            self._waiting_said = True
        loading = " (the model may be loading)" if why.startswith(("503", "no answer")) else ""
        log.warning("waiting for the vecplug server at %s: %s%s", self.url, why, loading)


def base_url(url: str) -> str:
    """``http://host:port[/prefix]``: no trailing slash, no ``/v1`` (an OpenAI-style base URL works too)."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "replace"))


def backoff(tries: int) -> float:
    """0.1 s, doubling to at most 5 s, with jitter so that many clients do not retry in step."""
    return min(5.0, 0.1 * 2 ** (tries - 1)) * random.uniform(0.5, 1.0)


def parse_retry_after(value: str | None) -> float | None:
    try:
        return min(60.0, max(0.0, float(value))) if value is not None else None
    except ValueError:
        return None


def error_message(data: bytes) -> str:
    """The server's message from an OpenAI- or TEI-shaped error body, else the body itself."""
    try:
        error = json.loads(data).get("error")
        return error.get("message", str(error)) if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        return data[:300].decode("utf-8", "replace") or "(no body)"


class ConnectionPool:
    """Keep-alive connections to one server, shared by threads (one connection per request at a time)."""

    def __init__(self, url: str, timeout: float, keep: int = 4):
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.prefix = parts.path
        self.timeout = timeout
        self.keep = keep
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _new(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method: str, path: str, body: bytes | None, headers: dict):
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is not None:
            try:
                return self._send(connection, method, path, body, headers)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                pass  # the server closed an idle keep-alive connection; try once on a new one
        return self._send(self._new(), method, path, body, headers)

    def _send(self, connection, method, path, body, headers):
        try:
            connection.request(method, self.prefix + path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            with self._lock:
                if len(self._idle) < self.keep:
                    self._idle.append(connection)
                    connection = None
            if connection is not None:
                connection.close()
        return response.status, response.headers, data
