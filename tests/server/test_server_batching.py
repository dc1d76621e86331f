"""The server's batcher in process, on the real tiny model: routing, budgets, overlap, cancelling, the bound."""
from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest

from vecplug.server.batching import Batcher, QueueFull, TextsTooLong
from vecplug.server.config import ServerConfig
from vecplug.server.engine import ModelHost
from vecplug.testing import stdlib_paragraphs

from fake_plugin import FAKE_SPEC, HashModel


class Recording:
    """The real model, with a log of what reached tokenize and the forward pass (and an optional delay)."""

    def __init__(self, model, forward_delay: float = 0.0):
        self.model = model
        self.forward_delay = forward_delay
        self.batches: list[list[list[int]]] = []
        self.events: list[tuple[str, float, int]] = []
        self.max_tokens = model.max_tokens
        self.token_budget = model.token_budget  # a TokenPath, as the model it wraps

    @property
    def truncated_count(self):
        return self.model.truncated_count

    def tokenize(self, texts):
        self.events.append(("tokenize", time.perf_counter(), len(texts)))
        return self.model.tokenize(texts)

    def embed_token_ids(self, token_ids):
        self.batches.append(token_ids)
        self.events.append(("forward-start", time.perf_counter(), len(token_ids)))
        time.sleep(self.forward_delay)
        vectors = self.model.embed_token_ids(token_ids)
        self.events.append(("forward-end", time.perf_counter(), len(token_ids)))
        return vectors


def run_jobs(batcher: Batcher, requests: list[list[str]]):
    """Submit every request from its own thread at once; return the finished jobs in request order."""
    jobs: list = [None] * len(requests)
    done = [threading.Event() for _ in requests]

    def submit(index):
        jobs[index] = batcher.submit(requests[index], lambda job, event=done[index]: event.set())

    threads = [threading.Thread(target=submit, args=(index,)) for index in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for event in done:
        assert event.wait(120)
    return jobs


@pytest.fixture
def paragraphs():
    return list(stdlib_paragraphs()[:200])


def test_concurrent_requests_get_their_own_vectors_in_order(tiny_model, paragraphs):
    recording = Recording(tiny_model)
    batcher = Batcher(recording, max_queue_texts=10_000, max_batch_tokens=512)
    batcher.start()
    rng = random.Random(0)
    requests = [rng.sample(paragraphs, rng.randint(1, 16)) for _ in range(40)]
    try:
        jobs = run_jobs(batcher, requests)
    finally:
        batcher.stop()
    for job, texts in zip(jobs, requests):
        assert job.error is None
        np.testing.assert_allclose(job.vectors, tiny_model.embed_batch(texts), atol=2e-6)
        assert job.tokens == sum(len(ids) for ids in tiny_model.tokenize(texts))
    budgets = [sum(map(len, batch)) for batch in recording.batches]
    assert all(tokens <= 512 or len(batch) == 1 for tokens, batch in zip(budgets, recording.batches))
    assert len(recording.batches) < sum(map(len, requests)) / 2  # requests shared forward passes
    assert batcher.queued_texts == 0


def test_tokenizing_overlaps_the_forward_pass(tiny_model, paragraphs):
    recording = Recording(tiny_model, forward_delay=0.4)
    batcher = Batcher(recording, max_queue_texts=1000)
    batcher.start()
    try:
        first_done, second_done = threading.Event(), threading.Event()
        batcher.submit(paragraphs[:8], lambda job: first_done.set())
        while not any(name == "forward-start" for name, _, _ in recording.events):
            time.sleep(0.01)
        batcher.submit(paragraphs[8:16], lambda job: second_done.set())
        assert first_done.wait(60) and second_done.wait(60)
    finally:
        batcher.stop()
    tokenized = [at for name, at, _ in recording.events if name == "tokenize"]
    first_forward_end = next(at for name, at, _ in recording.events if name == "forward-end")
    assert tokenized[1] < first_forward_end  # the second request was tokenized while the first ran


def test_a_cancelled_request_is_never_embedded(tiny_model, paragraphs):
    recording = Recording(tiny_model, forward_delay=0.3)
    batcher = Batcher(recording, max_queue_texts=1000, max_batch_tokens=256)
    batcher.start()
    try:
        done = threading.Event()
        busy = batcher.submit(paragraphs[:12], lambda job: done.set())
        leaving = batcher.submit(["never embedded, first", "never embedded, second"], lambda job: None)
        assert batcher.cancel(leaving) == 2
        assert batcher.cancel(leaving) == 0
        assert done.wait(60) and busy.error is None
    finally:
        batcher.stop()
    leaving_ids = tiny_model.tokenize(leaving.texts)
    assert all(ids not in batch for batch in recording.batches for ids in leaving_ids)
    assert batcher.queued_texts == 0


def test_the_queue_is_bounded(tiny_model, paragraphs):
    batcher = Batcher(Recording(tiny_model, forward_delay=0.5), max_queue_texts=10)
    batcher.start()
    try:
        done = threading.Event()
        batcher.submit(paragraphs[:8], lambda job: done.set())
        with pytest.raises(QueueFull) as full:
            batcher.submit(paragraphs[:3], lambda job: None)
        assert full.value.limit == 10 and full.value.retry_after >= 1
        assert done.wait(60)
        ok = threading.Event()
        batcher.submit(paragraphs[:3], lambda job: ok.set())  # room again once the first has run
        assert ok.wait(60)
    finally:
        batcher.stop()


def test_refusing_truncation_names_the_long_texts(tiny_model):
    batcher = Batcher(tiny_model, max_queue_texts=100)
    batcher.start()
    long_text = " ".join(["many"] * (tiny_model.max_tokens + 10))
    try:
        done = threading.Event()
        job = batcher.submit(["short", long_text, "short"], lambda job: done.set(), reject_truncated=True)
        assert done.wait(60)
        assert isinstance(job.error, TextsTooLong) and job.error.indices == [1]
        assert batcher.queued_texts == 0
    finally:
        batcher.stop()


def test_models_without_the_fast_path_batch_by_count():
    model = HashModel(FAKE_SPEC)
    model.batch_size = 5
    calls = []
    original = model.embed_batch
    model.embed_batch = lambda texts: calls.append(len(texts)) or original(texts)
    batcher = Batcher(model, max_queue_texts=1000)
    assert not batcher.fast
    batcher.start()
    requests = [[f"request {r} text {t}" for t in range(r % 7 + 1)] for r in range(12)]
    try:
        jobs = run_jobs(batcher, requests)
    finally:
        batcher.stop()
    for job, texts in zip(jobs, requests):
        np.testing.assert_allclose(job.vectors, original(texts), atol=1e-7)
    assert max(calls) <= 5 and sum(calls) == sum(map(len, requests))


def test_a_failing_forward_pass_fails_its_requests_only(tiny_model):
    class Failing(Recording):
        def embed_token_ids(self, token_ids):
            if any(len(ids) > 40 for ids in token_ids):
                raise RuntimeError("forward pass exploded")
            return super().embed_token_ids(token_ids)

    batcher = Batcher(Failing(tiny_model), max_queue_texts=1000, max_batch_tokens=64)
    batcher.start()
    try:
        jobs = run_jobs(batcher, [[" ".join(["long"] * 60)], ["short one"]])
    finally:
        batcher.stop()
    assert isinstance(jobs[0].error, RuntimeError) and jobs[1].error is None
    assert batcher.queued_texts == 0


def test_a_failing_pass_in_a_shared_pool_fails_only_its_own_requests(tiny_model):
    """The engine takes several requests' texts into one pool (up to four token budgets, one forward pass
    each): a failing pass fails the requests with a text in it, never the others of the pool. A slow first
    pass makes the two requests arrive together, as they did by chance in a CI run where both failed."""
    first_pass = threading.Event()

    class SlowThenFailing(Recording):
        def embed_token_ids(self, token_ids):
            if not first_pass.is_set():
                first_pass.set()
                time.sleep(0.5)  # the next two requests queue meanwhile: one pool
            if any(len(ids) > 40 for ids in token_ids):
                raise RuntimeError("forward pass exploded")
            return super().embed_token_ids(token_ids)

    batcher = Batcher(SlowThenFailing(tiny_model), max_queue_texts=1000, max_batch_tokens=64)
    batcher.start()
    try:
        blocker_done = threading.Event()
        blocker = batcher.submit(["blocker"], lambda job: blocker_done.set())
        assert first_pass.wait(30)
        jobs = run_jobs(batcher, [[" ".join(["long"] * 60)], ["short one"], ["another short one"]])
        assert blocker_done.wait(30)
    finally:
        batcher.stop()
    assert blocker.error is None and isinstance(jobs[0].error, RuntimeError)
    assert jobs[1].error is None and jobs[2].error is None
    assert jobs[1].vectors.shape[0] == 1 and jobs[2].vectors.shape[0] == 1
    assert batcher.queued_texts == 0


@pytest.mark.parametrize("max_batch_tokens", [None, 256, 8192])
def test_max_batch_tokens_sets_the_passes_the_engine_runs(tiny_model_dir, monkeypatch, max_batch_tokens):
    """``--max-batch-tokens`` is the one budget of the engine's forward passes, below and above the model's
    own (2,048 real tokens on a CPU): the passes are counted where the encoder runs them, so a second
    planner inside the model (which once cut the server's passes back to its own budget) would show."""
    host = ModelHost(ServerConfig(model=str(tiny_model_dir), dtype="float32", max_batch_tokens=max_batch_tokens))
    failures = []
    host.start(on_failure=failures.append)
    passes: list[list[int]] = []
    try:
        assert host.wait_ready(120) and not failures
        encoder = host.model.encoder
        forward = encoder.forward
        monkeypatch.setattr(encoder, "forward", lambda ids, *args: passes.append([len(seq) for seq in ids])
                            or forward(ids, *args))
        [job] = run_jobs(host.batcher, [list(stdlib_paragraphs()[:400])])  # ~21,000 tokens, 297 at most
    finally:
        host.stop()
    assert job.error is None and sum(map(sum, passes)) == job.tokens
    model_budget = host.model.token_budget
    assert model_budget == 2048
    budget = max_batch_tokens or model_budget
    assert all(sum(lengths) <= budget or len(lengths) == 1 for lengths in passes)
    largest = max(map(sum, passes))
    if max_batch_tokens is None:
        assert model_budget / 2 < largest <= model_budget
    elif max_batch_tokens < model_budget:
        assert max(sum(lengths) for lengths in passes if len(lengths) > 1) <= max_batch_tokens
        assert len(passes) > job.tokens / max_batch_tokens / 2
    else:
        assert largest > model_budget  # the model's own budget could not have made this pass
