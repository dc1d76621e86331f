"""Prometheus metrics for ``GET /metrics``, in a registry of the app's own (tests start many apps)."""
from __future__ import annotations

# Batches hold 1 to a few thousand texts; on CPU 2,048 tokens, on GPU 65,536.
TEXT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
TOKEN_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # the *_created series only double the output

        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter("vecplug_requests", "HTTP requests by route and status code",
                                ["route", "status"], registry=registry)
        self.request_seconds = Histogram("vecplug_request_seconds", "Time from request to response, by route",
                                         ["route"], buckets=SECONDS_BUCKETS, registry=registry)
        self.texts = Counter("vecplug_texts", "Texts embedded", registry=registry)
        self.tokens = Counter("vecplug_tokens", "Tokens embedded, prompt and special tokens included",
                              registry=registry)
        self.truncated = Counter("vecplug_truncated_texts", "Texts cut to the model's max tokens",
                                 registry=registry)
        self.rejected = Counter("vecplug_rejected_requests",
                                "Requests refused or dropped before embedding, by reason "
                                "(queue_full, client_gone, timeout, loading, draining; a request that "
                                "timed out after queueing counts as client_gone too)", ["reason"], registry=registry)
        self.dropped_texts = Counter("vecplug_dropped_texts", "Texts not embedded because their client had gone "
                                     "or their request timed out",
                                     registry=registry)
        self.queue_texts = Gauge("vecplug_queue_texts", "Texts accepted and not yet embedded", registry=registry)
        self.batch_texts = Histogram("vecplug_batch_texts", "Texts per forward pass", buckets=TEXT_BUCKETS,
                                     registry=registry)
        self.batch_tokens = Histogram("vecplug_batch_tokens", "Real tokens per forward pass",
                                      buckets=TOKEN_BUCKETS, registry=registry)
        self.batch_seconds = Histogram("vecplug_batch_seconds", "Forward pass time per batch",
                                       buckets=SECONDS_BUCKETS, registry=registry)
        self.queue_seconds = Histogram("vecplug_queue_seconds", "Time from a request's arrival to its vectors",
                                       buckets=SECONDS_BUCKETS, registry=registry)

    def observe_batch(self, texts: int, tokens: int, seconds: float) -> None:
        self.batch_texts.observe(texts)
        if tokens:
            self.batch_tokens.observe(tokens)
        self.batch_seconds.observe(seconds)

    def observe_job(self, texts: int, tokens: int, truncated: int, seconds: float) -> None:
        self.texts.inc(texts)
        self.tokens.inc(tokens)
        self.truncated.inc(truncated)
        self.queue_seconds.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
