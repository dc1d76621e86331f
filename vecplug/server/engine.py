"""The resident model: loaded in a thread while the server already answers, then warmed up.

``/health`` says 503 ("loading") until the model has loaded and answered a
warm-up request through the same batcher real requests use, then 200. If
loading fails the server exits with status 1 and the error on stderr: a
server that can never answer should not sit there looking alive.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .batching import Batcher, Job
from .config import ServerConfig

log = logging.getLogger("vecplug.server")
WARM_UP_TEXTS = ["warm-up", "A warm-up text of a few more words, so the batch has two lengths."]


class ModelHost:
    def __init__(self, config: ServerConfig, metrics=None):
        self.config = config
        self.metrics = metrics
        self.status = "loading"  # -> "ok" | "failed"; "draining" is set by the server on SIGTERM
        self.error: str | None = None
        self.model = None
        self.batcher: Batcher | None = None
        self.started_at = int(time.time())
        self._ready = threading.Event()

    # -- what routes read ------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.status == "ok"

    @property
    def spec(self):
        """The served spec: the model's, cut to ``--dimensions`` when given."""
        return self.model.spec

    @property
    def served_name(self) -> str:
        return self.config.served_name or self.model.spec.name

    def accepted_names(self) -> list[str]:
        spec = self.model.spec
        names = [self.served_name, spec.name, *spec.aliases]
        return list(dict.fromkeys(names))

    # -- life cycle ---------------------------------------------------------------
    def start(self, on_failure: Callable[[str], None]) -> None:
        threading.Thread(target=self._load, args=(on_failure,), name="vecplug-loader", daemon=True).start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.stop()

    def _load(self, on_failure: Callable[[str], None]) -> None:
        from ..registry import load_model

        config = self.config
        try:
            started = time.perf_counter()
            model = load_model(config.model, device=config.device, dtype=config.dtype,
                               dimensions=config.dimensions)
            batcher = Batcher(model, max_queue_texts=config.max_queue_texts,
                              max_batch_tokens=config.max_batch_tokens, metrics=self.metrics,
                              express_lane=str(model.describe().get("device", "")).startswith("cpu"))
            batcher.start()
            self._warm_up(batcher, model)
            self.model, self.batcher = model, batcher
            if self.status == "loading":  # a SIGTERM during loading has made it "draining": keep that
                self.status = "ok"
            log.info("model %s ready in %.1f s (fingerprint %s, %d dims)", model.spec.name,
                     time.perf_counter() - started, model.spec.fingerprint, model.spec.dimensions)
        except Exception as error:  # anything: the server must exit, not hang at 503
            self.status, self.error = "failed", f"{type(error).__name__}: {error}"
            log.error("could not load the model: %s", self.error)
            on_failure(self.error)
        finally:
            self._ready.set()

    @staticmethod
    def _warm_up(batcher: Batcher, model) -> None:
        done = threading.Event()
        texts = [model.spec.apply_prompt(text, kind) for kind in ("document", "query") for text in WARM_UP_TEXTS]
        job: Job = batcher.submit(texts, lambda _job: done.set())
        done.wait()
        if job.error is not None:
            raise RuntimeError(f"the warm-up embedding failed: {job.error}") from job.error
