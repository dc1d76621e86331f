"""How ``vecplug serve`` treats connections and shutdown: slow clients, too many clients, SIGTERM.

uvicorn bounds an idle keep-alive connection (``timeout_keep_alive``) and the
number of connections (``limit_concurrency``: 503 beyond it), but nothing
bounds a client that sends half a request line and waits: its connection
would be held forever. ``http_protocol`` adds that bound: a connection must
deliver a request's headers within ``--request-timeout`` seconds of opening
(or of its previous answer), else it is closed. The body (and, with
``--answer-timeout``, the answer) are bounded by the middleware (``middleware.Gate``).

On SIGTERM (or SIGINT) ``DrainingServer`` drains within ``--graceful-timeout``:
the listener closes at once, requests in flight go on, new requests on open
connections get 503 with ``Retry-After``. Shortly before the timeout
(``answer_by``) whatever is still queued is answered 503 too and the
batcher's threads stop after their current pass; if something still hangs
past the timeout (a forward pass that never returns), the process exits
anyway with ``EXIT_FORCED``.

Exit statuses of ``vecplug serve``: 0 after a drain (every request was
answered, some perhaps with 503), 1 when the model could not load or the
drain was cut short by ``--graceful-timeout`` with work still hanging, 2 for
a usage error.
"""
from __future__ import annotations

import logging
import os
import threading
import time

log = logging.getLogger("vecplug.server")

EXIT_FORCED = 1


def exit_now(status: int) -> None:
    """End the process once the server has drained, skipping the interpreter's teardown.

    Tearing down a process with torch loaded took over a second after the
    drain (module finalization), enough to break ``--graceful-timeout``;
    nothing is left to clean up by then, so output is flushed and the
    process ends.
    """
    import sys

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def answer_by(graceful_timeout: float) -> float:
    """Seconds after SIGTERM when whatever is still queued is answered 503: a moment before the timeout,
    so the answers go out and the process exits within it."""
    return graceful_timeout - min(1.0, graceful_timeout / 4)


def http_protocol(header_timeout: float):
    """uvicorn's HTTP protocol class (httptools when installed, else h11) with a deadline on request headers."""
    try:  # the module imports httptools: uvicorn's own choice for http="auto"
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base

    class HeaderDeadline(Base):
        """Closes a connection whose next request's headers have not all arrived ``header_timeout`` s after
        it opened or after its previous answer: a client trickling headers cannot hold it forever."""

        _header_timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_response_complete(self):
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_deadline()

        def connection_lost(self, exc):
            self._disarm_header_deadline()
            super().connection_lost(exc)

        def _arm_header_deadline(self):
            self._disarm_header_deadline()
            self._header_timer = self.loop.call_later(header_timeout, self._headers_too_slow)

        def _disarm_header_deadline(self):
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self):
            self._header_timer = None
            waiting_for_headers = self.cycle is None or self.cycle.response_complete
            if waiting_for_headers and not self.transport.is_closing():
                log.debug("closing a connection that sent no complete request headers in %g s", header_timeout)
                self.transport.close()

    return HeaderDeadline


def _draining_server_class():
    import uvicorn

    class Draining(uvicorn.Server):
        """uvicorn's server, telling the app on SIGTERM so it refuses new work, and bounding the drain."""

        def __init__(self, config, host, graceful_timeout: float):
            super().__init__(config)
            self.model_host = host
            self.graceful_timeout = graceful_timeout
            self.drained = threading.Event()  # set once uvicorn has shut down: the bound has nothing left to do
            self._drain_bound = None

        def handle_exit(self, sig, frame):
            if self.model_host.status != "failed":
                self.model_host.status = "draining"
            if self._drain_bound is None:
                self._drain_bound = threading.Thread(target=self._bound_the_drain, name="vecplug-drain",
                                                     daemon=True)
                self._drain_bound.start()
            super().handle_exit(sig, frame)

        def run(self, sockets=None):
            try:
                super().run(sockets=sockets)
            finally:
                self.drained.set()

        def _bound_the_drain(self) -> None:
            """Answer what is still queued a moment before the timeout; exit at the timeout if still running."""
            started = time.monotonic()
            if self.drained.wait(answer_by(self.graceful_timeout)):
                return
            batcher = self.model_host.batcher
            if batcher is not None:
                log.info("--graceful-timeout %g s is near: requests still queued are answered 503",
                         self.graceful_timeout)
                batcher.stop(timeout=0)  # queued jobs fail with ShuttingDown (503); the threads end after this pass
            if self.drained.wait(max(0.0, self.graceful_timeout - (time.monotonic() - started)) + 0.5):
                return
            log.error("still running %g s after SIGTERM (--graceful-timeout): exiting with status %d",
                      self.graceful_timeout, EXIT_FORCED)
            logging.shutdown()
            os._exit(EXIT_FORCED)

    return Draining


def DrainingServer(config, host, graceful_timeout: float):  # noqa: N802 - builds the class lazily: uvicorn loads only when serving
    return _draining_server_class()(config, host, graceful_timeout)


def uvicorn_drain_timeout(graceful_timeout: float) -> float:
    """uvicorn's ``timeout_graceful_shutdown``: it cancels tasks still running after this, counted from its
    shutdown (a tick after the signal); between ``answer_by`` and the hard exit."""
    return max(0.1, graceful_timeout - min(0.5, graceful_timeout / 8))
