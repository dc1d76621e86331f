"""What the worker tells people and machines: a progress bar on a terminal, JSON logs and Prometheus metrics otherwise.

Metrics (``--metrics-port``), served on 127.0.0.1 unless told otherwise:
``vecplug_worker_rows_embedded_total{vectorizer}``, ``..._rows_skipped_total``,
``..._row_errors_total`` (attempts that failed), ``..._rows_failed_total``
(moved to vecplug.failed), ``..._truncated_texts_total``, ``..._batches_total{vectorizer}``,
``..._batch_seconds{vectorizer}``, ``..._pending_rows{vectorizer}``,
``..._oldest_pending_seconds{vectorizer}``, ``..._outages_total{kind}`` and
``..._available{kind}`` (1 or 0, for "server" and "database").
"""
from __future__ import annotations

import datetime
import json
import logging

BATCH_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        data = {"time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(),
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        data.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(stream, structured: bool, level: int = logging.INFO) -> logging.Handler:
    """A handler for the worker's logger on ``stream``: JSON lines, or plain lines for a person."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter() if structured else logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("vecplug_pgvector")
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


class WorkerMetrics:
    """Prometheus metrics in a registry of their own, served over HTTP when a port is given; else no-ops."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1"):
        self.server = None
        if port is None:
            return
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
        except ImportError:
            raise RuntimeError('--metrics-port needs prometheus-client: pip install ".[postgres]" in the vecplug '
                               "checkout") from None
        self.registry = registry = CollectorRegistry(auto_describe=True)
        label = ["vectorizer"]
        self.embedded = Counter("vecplug_worker_rows_embedded", "Rows that got their vector", label, registry=registry)
        self.skipped = Counter("vecplug_worker_rows_skipped",
                               "Queued rows that needed no vector (gone, no text, dropped by a plugin, changed meanwhile)",
                               label, registry=registry)
        self.row_errors = Counter("vecplug_worker_row_errors", "Rows that failed on their own (an attempt counted)",
                                  label, registry=registry)
        self.failed = Counter("vecplug_worker_rows_failed", "Rows moved to vecplug.failed after max attempts",
                              label, registry=registry)
        self.truncated = Counter("vecplug_worker_truncated_texts", "Texts cut to the model's max tokens", label,
                                 registry=registry)
        self.batches = Counter("vecplug_worker_batches", "Batches committed", label, registry=registry)
        self.batch_seconds = Histogram("vecplug_worker_batch_seconds", "Time per batch: lock, read, embed, write",
                                       label, buckets=BATCH_SECONDS_BUCKETS, registry=registry)
        self.pending = Gauge("vecplug_worker_pending_rows", "Rows waiting for a vector", label, registry=registry)
        self.oldest = Gauge("vecplug_worker_oldest_pending_seconds", "Age of the oldest waiting row", label,
                            registry=registry)
        self.outages = Counter("vecplug_worker_outages", "Times the server or the database became unavailable",
                               ["kind"], registry=registry)
        self.available = Gauge("vecplug_worker_available", "1 while the server / database answers", ["kind"],
                               registry=registry)
        for kind in ("server", "database"):
            self.available.labels(kind).set(1)
        try:
            self.server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as error:
            raise RuntimeError(f"cannot serve metrics on {host}:{port}: {error}") from None

    @property
    def url(self) -> str | None:
        if self.server is None:
            return None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/metrics"

    def batch(self, vectorizer: str, result) -> None:
        if self.server is None:
            return
        self.embedded.labels(vectorizer).inc(result.embedded)
        self.skipped.labels(vectorizer).inc(result.skipped)
        self.row_errors.labels(vectorizer).inc(result.errors)
        self.failed.labels(vectorizer).inc(result.failed)
        self.truncated.labels(vectorizer).inc(result.truncated)
        self.batches.labels(vectorizer).inc()
        self.batch_seconds.labels(vectorizer).observe(result.seconds)

    def availability(self, kind: str, up: bool) -> None:
        if self.server is None:
            return
        if not up:
            self.outages.labels(kind).inc()
        self.available.labels(kind).set(1 if up else 0)

    def queue(self, vectorizer: str, pending: int, oldest_seconds: float | None) -> None:
        if self.server is None:
            return
        self.pending.labels(vectorizer).set(pending)
        self.oldest.labels(vectorizer).set(oldest_seconds or 0.0)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
