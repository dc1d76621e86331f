"""``vecplug pg worker``: embeds what async vectorizers queue, and loses nothing.

    worker = vecplug_pgvector.Worker(dsn, server_url="http://127.0.0.1:8080")
    worker.run()            # until worker.stop() (the CLI: SIGTERM / Ctrl-C), finishing the batch in hand
    worker.run(once=True)   # drain what is queued now; the report says what is left

Each batch is one transaction (``batch.BatchRunner``). Between batches the
worker goes round the vectorizers in turn; when every queue is empty it
waits for a ``pg_notify`` from the triggers (LISTEN), or ``poll_interval``
at most, so a lost notification costs seconds, not rows. When the server or
the database is unavailable it backs off (1 s doubling to 30 s), reconnects
and carries on: rows stay queued meanwhile and no attempt is counted. A
vectorizer whose recorded model differs from the worker's is refused (it
would mix two vector spaces in one column), and the others are served.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time

import vecplug
from vecplug.errors import ModelMismatchError

from . import statements
from . import vectorizers as vz
from .batch import BatchRunner, DatabaseLost, Outage, default_batch_tokens
from .connection import connect
from .worker_telemetry import WorkerMetrics

MAX_BACKOFF_S = 30.0
MAX_BATCH_ROWS = 1024  # the default cap on rows per batch; batches are sized by tokens (batch_tokens)
QUEUE_GAUGE_EVERY_S = 10.0
FOLD_ACTIVITY_EVERY_S = 60.0
SERVER_RETRY_S = 5.0  # RemoteModel's own retries per request; the worker's backoff takes over after


@dataclasses.dataclass
class WorkerReport:
    """What a run did; ``exit_code`` is what ``vecplug pg worker --once`` exits with."""

    embedded: int = 0
    skipped: int = 0
    errors: int = 0
    failed: int = 0
    truncated: int = 0
    batches: int = 0
    left: int = 0                        # rows still queued at the end of --once (errors, refusals, an outage)
    refused: dict = dataclasses.field(default_factory=dict)   # vectorizer name -> why
    outage: str | None = None            # why a --once run ended early

    @property
    def exit_code(self) -> int:
        return 0 if not (self.left or self.failed or self.refused or self.outage) else 1

    def add(self, result) -> None:
        self.embedded += result.embedded
        self.skipped += result.skipped
        self.errors += result.errors
        self.failed += result.failed
        self.truncated += result.truncated
        self.batches += 1

    def __str__(self) -> str:
        parts = [f"embedded {self.embedded} rows in {self.batches} batches"]
        if self.skipped:
            parts.append(f"{self.skipped} queued rows needed no vector")
        if self.truncated:
            parts.append(f"{self.truncated} texts truncated to the model's max tokens")
        if self.errors:
            parts.append(f"{self.errors} row errors")
        if self.failed:
            parts.append(f"{self.failed} rows moved to vecplug.failed")
        if self.left:
            parts.append(f"{self.left} rows left queued")
        parts += [f"refused {name}: {why}" for name, why in self.refused.items()]
        if self.outage:
            parts.append(f"stopped by an outage: {self.outage}")
        return "; ".join(parts)


class Worker:
    """Embeds the queued rows of a database's async vectorizers (and the sync ones' fallbacks).

    ``dsn``: a libpq connection string (the worker opens, and reopens, its
    own connections); connect as the role that owns the tables (or a role
    with no rights of its own that the owner is a member of): a vectorizer
    whose owner lacks a right of this role is left queued and noted in
    ``vecplug.status`` (``vecplug.worker_refusal`` says why). The model:
    ``server_url`` (a ``vecplug serve``; API key from ``api_key``,
    ``$VECPLUG_API_KEY``, or else the one ``vecplug pg install`` recorded
    when this role may read it), or ``model`` (a name for ``vecplug.load_model``,
    or a loaded model), or neither: the server recorded by ``vecplug pg
    install``. ``vectorizers``: ids or names to serve (default all).
    A row that fails on its own ``max_attempts`` times moves to
    ``vecplug.failed``; between attempts it waits ``retry_delay`` seconds,
    doubling. A batch (one transaction) holds about ``batch_tokens`` tokens
    of text (default: 8 of the model's forward passes, its ``token_budget``)
    and at most ``batch_size`` rows.
    """

    def __init__(self, dsn: str, model=None, *, server_url: str | None = None, api_key: str | None = None,
                 device: str | None = None, dtype: str | None = None, batch_size: int = MAX_BATCH_ROWS,
                 batch_tokens: int | None = None, vectorizers: list[str] | None = None, max_attempts: int = 5, retry_delay: float = 10.0,
                 poll_interval: float = 5.0, metrics_port: int | None = None, metrics_host: str = "127.0.0.1",
                 show_progress: bool = True):
        if not isinstance(dsn, str):
            raise TypeError("dsn must be a libpq connection string: the worker opens (and reopens) its own connections")
        if model is not None and server_url is not None:
            raise ValueError("give model or server_url, not both")
        for name, value, least in (("batch_size", batch_size, 1), ("max_attempts", max_attempts, 1),
                                   ("batch_tokens", 1 if batch_tokens is None else batch_tokens, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, not {value!r}")
        if retry_delay < 0 or poll_interval <= 0:
            raise ValueError("retry_delay must be >= 0 and poll_interval > 0 seconds")
        self.dsn = dsn
        self.server_url, self.api_key = server_url, api_key
        self.device, self.dtype = device, dtype
        self._model = model if isinstance(model, vecplug.EmbeddingModel) else None
        self._model_name = model if isinstance(model, str) else None
        self.batch_size, self.max_attempts, self.retry_delay = batch_size, max_attempts, retry_delay
        self.batch_tokens = batch_tokens
        self.poll_interval = poll_interval
        self.wanted = list(vectorizers or [])
        self.metrics_port, self.metrics_host = metrics_port, metrics_host
        self.show_progress = show_progress
        self.log = logging.getLogger("vecplug_pgvector.worker")
        self._stop = threading.Event()
        self.conn = self.listen_conn = None
        self.runner: BatchRunner | None = None
        self.metrics: WorkerMetrics | None = None
        self._refused: dict[int, str] = {}
        self._last_gauges = self._last_fold = 0.0

    # -- control --------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the batch in hand, then return from ``run`` (safe from a signal handler or another thread)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, once: bool = False) -> WorkerReport:
        """Serve until ``stop()``; with ``once``, until no due row is left (or an outage), then return."""
        import psycopg

        from vecplug.progress import progress

        report = WorkerReport()
        self.metrics = WorkerMetrics(self.metrics_port, self.metrics_host)
        if self.metrics.url:
            self.log.info("metrics on %s", self.metrics.url, extra={"fields": {"event": "metrics",
                                                                              "url": self.metrics.url}})
        backoff = 1.0
        outage_kind = None
        bar = None
        try:
            while not self.stopping:
                try:
                    self._connect()
                    self._ensure_model()
                    if bar is None:
                        bar = progress(total=self._pending() if once else None, desc="vecplug pg worker", unit="row",
                                       quiet=not self.show_progress)
                    handled = self._round(report, bar)
                    backoff = 1.0
                    if outage_kind and (handled or outage_kind == "database"):  # the server: once it embedded
                        self.log.info("%s available again: carrying on", outage_kind, extra={"fields": {
                            "event": "recovered", "kind": outage_kind}})
                        self.metrics.availability(outage_kind, True)
                        outage_kind = None
                    if handled:
                        continue
                    if once:
                        break
                    self._wait_for_work(self.poll_interval)
                except (Outage, psycopg.OperationalError) as error:
                    if isinstance(error, psycopg.OperationalError):  # outside a batch: reading the vectorizers
                        error = DatabaseLost(" ".join(str(error).split()))
                    kind = "database" if isinstance(error, DatabaseLost) else "server"
                    if kind == "database":
                        self._close()
                    if outage_kind != kind:
                        self.log.warning("%s unavailable (%s): rows stay queued; retrying", kind, error,
                                         extra={"fields": {"event": "outage", "kind": kind, "error": str(error)}})
                        self.metrics.availability(kind, False)
                        outage_kind = kind
                    if once:
                        report.outage = str(error)
                        break
                    self._sleep(backoff)
                    backoff = min(MAX_BACKOFF_S, backoff * 2)
            if once and self.conn is not None:
                report.left = self._left_at_the_end(report)
        finally:
            if bar is not None:
                bar.close()
            self._close()
            self.metrics.close()
        self.log.info("worker stopped: %s", report, extra={"fields": {"event": "stopped", **dataclasses.asdict(report)}})
        return report

    # -- connections and the model ----------------------------------------------------------------------------
    def _connect(self) -> None:
        import psycopg
        from pgvector.psycopg import register_vector

        if self.conn is not None and not self.conn.closed and not self.conn.broken:
            return
        self._close()
        try:
            self.conn = connect(self.dsn, "pg worker")
            register_vector(self.conn)
            self.listen_conn = connect(self.dsn, "pg worker listen")
            self.listen_conn.execute(statements.LISTEN)
        except psycopg.OperationalError as error:
            self._close()
            raise DatabaseLost(" ".join(str(error).split())) from error
        except psycopg.ProgrammingError as error:  # register_vector: no vector type
            self._close()
            raise vz.VectorizerError(f"cannot use this database: {error} (is pgvector enabled?)") from None

    def _close(self) -> None:
        for connection in (self.conn, self.listen_conn):
            if connection is not None:
                try:
                    connection.close()
                except Exception:  # noqa: BLE001 - closing a broken connection
                    pass
        self.conn = self.listen_conn = None
        self.runner = None

    def _ensure_model(self) -> None:
        if self._model is None:
            if self._model_name is not None:
                self._model = vecplug.load_model(self._model_name, device=self.device, dtype=self.dtype)
            else:
                url, key = self._installed_server()
                from vecplug.client import RemoteModel

                try:
                    self._model = RemoteModel(url, api_key=key, retry_seconds=SERVER_RETRY_S)
                except vecplug.ServerError as error:
                    raise Outage(str(error)) from error
            spec = self._model.spec
            self.log.info("embedding with %s (%d dimensions, fingerprint %s)", spec.name, spec.dimensions,
                          spec.fingerprint, extra={"fields": {"event": "model", "model": spec.name,
                                                               "fingerprint": spec.fingerprint}})
        if self.runner is None:
            self.runner = BatchRunner(self.conn, self._model, batch_size=self.batch_size,
                                      batch_tokens=self.batch_tokens or default_batch_tokens(self._model),
                                      max_attempts=self.max_attempts, retry_delay=self.retry_delay)

    def _installed_server(self) -> tuple[str, str | None]:
        """The server and its key: those given, else what ``vecplug pg install`` recorded.

        The key: ``api_key``, else ``$VECPLUG_API_KEY``, else the recorded one
        when this role may read it, also with a ``server_url`` of the worker's
        own (the README's form): a worker sent to a server started with a key
        must not need the key passed twice.
        """
        from .installer import given_api_key, recorded_settings, server_api_key

        if self.server_url is not None:
            return self.server_url, server_api_key(self.api_key, self.conn)
        settings = recorded_settings(self.conn)
        if settings is None:
            raise vz.VectorizerError("no model given (--server-url or --model), and this role may not read the "
                                     "server recorded by vecplug pg install")
        if not settings.get("server_url"):
            raise vz.VectorizerError("no model given: pass --server-url URL (a vecplug serve) or --model NAME; "
                                     "vecplug pg install recorded no server either")
        return settings["server_url"], given_api_key(self.api_key) or settings.get("api_key") or None

    # -- the work -----------------------------------------------------------------------------------------------
    def _served(self) -> list[vz.Vectorizer]:
        found = vz.load_all(self.conn)
        if not self.wanted:
            return [v for v in found if v.exists]
        return [vz.resolve(found, wanted) for wanted in self.wanted]

    def _round(self, report: WorkerReport, bar) -> int:
        """One batch of each served vectorizer; returns the queue rows handled."""
        handled = 0
        for vectorizer in self._served():
            if self.stopping:
                break
            if vectorizer.refusal:  # this role holds rights the table's owner lacks, or lacks grants it needs
                self._refuse(vectorizer, vectorizer.refusal, report)
                continue
            try:
                vectorizer = self._pin_model(vectorizer)
                result = self.runner.run(vectorizer)
            except ModelMismatchError as error:
                self._refuse(vectorizer, str(error), report)
                continue
            except Outage:
                raise
            except Exception as error:  # noqa: BLE001 - one vectorizer's failure never stops the others
                if self.conn.closed or self.conn.broken:
                    raise DatabaseLost(" ".join(str(error).split())) from error
                self._refuse(vectorizer, f"{type(error).__name__}: {' '.join(str(error).split())}", report)
                continue
            if self._refused.pop(vectorizer.id, None):
                report.refused.pop(vectorizer.name, None)
            if not result.locked:
                continue
            handled += result.locked
            report.add(result)
            self.metrics.batch(vectorizer.name, result)
            bar.update(result.embedded + result.skipped + result.failed)
            if bar.total is not None and bar.n > bar.total:
                bar.total = bar.n
            self.log.info("%s: embedded %d rows in %.2f s", vectorizer.name, result.embedded, result.seconds,
                          extra={"fields": {"event": "batch", "vectorizer": vectorizer.name,
                                            **dataclasses.asdict(result)}})
            if result.errors:
                self.log.warning("%s: %d rows failed (%d moved to vecplug.failed): %s", vectorizer.name,
                                 result.errors, result.failed, result.last_error,
                                 extra={"fields": {"event": "row_errors", "vectorizer": vectorizer.name,
                                                   "errors": result.errors, "failed": result.failed,
                                                   "error": result.last_error}})
        self._housekeeping()
        return handled

    def _pin_model(self, vectorizer: vz.Vectorizer) -> vz.Vectorizer:
        """A vectorizer created without a known model takes this worker's (checked by name first)."""
        if vectorizer.model_fingerprint:
            return vectorizer
        view = vz.model_for(vectorizer, self._model)
        name = vectorizer.model or self._model.served_name or view.spec.name
        with self.conn.transaction():
            pinned = self.conn.execute(statements.PIN_MODEL, [
                vectorizer.id, name, view.spec.fingerprint, json.dumps({**view.spec.to_dict(), "name": name})
            ]).fetchone()[0]
            if pinned:
                self.log.info("%s: recorded model %s (fingerprint %s)", vectorizer.name, name, view.spec.fingerprint,
                              extra={"fields": {"event": "pinned", "vectorizer": vectorizer.name}})
        return vz.load_one(self.conn, vectorizer.id) or vectorizer

    def _refuse(self, vectorizer: vz.Vectorizer, error: str, report: WorkerReport) -> None:
        """Leave a vectorizer alone (its rows stay queued), and say why: in the log and in vecplug.status."""
        report.refused[vectorizer.name] = error
        if self._refused.get(vectorizer.id) == error:
            return
        self._refused[vectorizer.id] = error
        self.log.error("refusing to write to %s: %s", vectorizer.name, error,
                       extra={"fields": {"event": "refused", "vectorizer": vectorizer.name, "error": str(error)}})
        with self.conn.transaction():
            self.conn.execute(statements.RECORD_REFUSAL, [vectorizer.id, None if vectorizer.refusal else str(error)])

    def _pending(self) -> int:
        ids = [vectorizer.id for vectorizer in self._served()]
        with self.conn.transaction():
            return self.conn.execute(statements.PENDING, [ids]).fetchone()[0]

    def _left_at_the_end(self, report: WorkerReport) -> int:
        """What a --once run leaves queued: everything after an outage, else what errors or refusals kept."""
        import psycopg

        try:
            return self._pending() if report.outage else self._left_after_errors()
        except psycopg.Error:  # the database itself went away: the outage says so
            return 0

    def _left_after_errors(self) -> int:
        """Rows a --once run leaves queued: retrying after errors, or waiting in a vectorizer it refused."""
        ids = [vectorizer.id for vectorizer in self._served()]
        with self.conn.transaction():
            return self.conn.execute(statements.LEFT_AFTER_ERRORS, [list(self._refused), ids]).fetchone()[0]

    def _housekeeping(self) -> None:
        """Queue gauges every few seconds; fold the activity log now and then (one worker at a time)."""
        now = time.monotonic()
        if self.metrics.server is not None and now - self._last_gauges >= QUEUE_GAUGE_EVERY_S:
            self._last_gauges = now
            with self.conn.transaction():
                rows = self.conn.execute(statements.QUEUE_GAUGES).fetchall()
            for _, name, pending, oldest in rows:
                self.metrics.queue(name, pending, float(oldest) if oldest is not None else None)
        if now - self._last_fold >= FOLD_ACTIVITY_EVERY_S:
            self._last_fold = now
            with self.conn.transaction():
                self.conn.execute(statements.FOLD_ACTIVITY)

    def _wait_for_work(self, seconds: float) -> None:
        """Until a notification, ``stop()``, or ``seconds``; a broken LISTEN connection is a database outage."""
        import psycopg

        deadline = time.monotonic() + seconds
        try:
            while not self.stopping and time.monotonic() < deadline:
                # list(): the generator must finish, it holds the connection's lock while suspended
                if list(self.listen_conn.notifies(timeout=min(0.5, max(0.01, deadline - time.monotonic())),
                                                  stop_after=1)):
                    list(self.listen_conn.notifies(timeout=0.01))  # the rest of a burst: one round serves them
                    return
        except psycopg.OperationalError as error:
            raise DatabaseLost(" ".join(str(error).split())) from error

    def _sleep(self, seconds: float) -> None:
        """Short naps, not Event.wait: a signal handler calling stop() must never find the Event's lock held here."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
