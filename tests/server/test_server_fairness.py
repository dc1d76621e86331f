"""A fair server: small and query requests go ahead of bulk, bulk requests share passes, huge texts are cut.

Orders are asserted by events (which pass a text ran in, which answer came
first), not by wall-clock thresholds; the latencies themselves are measured
by ``scripts/bench_server_mixed.py``.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.request

import numpy as np
import pytest

from vecplug.server.batching import Batcher, TextsTooLong
from vecplug.server.tokenizing import char_limit, head, tokenize_cut
from vecplug.testing import long_documents, running_server, stdlib_paragraphs

from test_server import call
from test_server_batching import Recording


class SlowTokenizing(Recording):
    """The recording model whose every tokenize call also takes ``tokenize_delay`` seconds."""

    def __init__(self, model, forward_delay: float = 0.0, tokenize_delay: float = 0.0):
        super().__init__(model, forward_delay)
        self.tokenize_delay = tokenize_delay
        self.tokenized: list[list[str]] = []

    def tokenize(self, texts):
        self.tokenized.append(list(texts))
        time.sleep(self.tokenize_delay)
        return super().tokenize(texts)


def submit(batcher: Batcher, texts: list[str], finished: list, name: str, **options):
    done = threading.Event()

    def on_done(job):
        finished.append(name)
        done.set()

    return batcher.submit(texts, on_done, **options), done


def bulk_texts(count: int, salt: str) -> list[str]:
    paragraphs = stdlib_paragraphs()
    return [f"{salt} {paragraphs[index % len(paragraphs)]}" for index in range(count)]


def test_a_small_request_runs_at_the_next_pass_not_after_the_queued_bulk(tiny_model):
    recording = Recording(tiny_model, forward_delay=0.05)
    batcher = Batcher(recording, max_queue_texts=10_000, max_batch_tokens=512)
    batcher.start()
    finished: list[str] = []
    try:
        bulk = [submit(batcher, bulk_texts(150, f"bulk {number}"), finished, f"bulk {number}") for number in range(3)]
        while not any(name == "forward-start" for name, _, _ in recording.events):
            time.sleep(0.005)
        passes_before = len(recording.batches)
        query, query_done = submit(batcher, ["where is the answer?"], finished, "query", query=True)
        assert query_done.wait(60)
        passes_until_answered = len(recording.batches) - passes_before
        for _, done in bulk:
            assert done.wait(120)
    finally:
        batcher.stop()
    assert finished[0] == "query" and query.error is None
    # the pass in progress (and at most one more that started meanwhile), then the query's own
    assert passes_until_answered <= 3
    assert batcher.queued_texts == 0


def test_a_query_of_a_few_texts_goes_first_and_a_large_one_does_not(tiny_model):
    batcher = Batcher(tiny_model, max_queue_texts=10_000)
    queues = batcher._ready
    small = type("J", (), {"query": False, "tokens": 10, "texts": ["x"]})()
    query = type("J", (), {"query": True, "tokens": batcher.token_budget, "texts": ["x"]})()
    large_query = type("J", (), {"query": True, "tokens": batcher.token_budget + 1, "texts": ["x"]})()
    large = type("J", (), {"query": False, "tokens": batcher.token_budget, "texts": ["x"]})()
    assert [queues.is_express(job) for job in (small, query, large_query, large)] == [True, True, False, False]


def test_bulk_requests_share_each_pool_by_tokens(tiny_model):
    """Deficit round robin: two bulk requests queued together both run in the first pool, in equal shares,
    and the later one finishes long before the earlier one's last pass (FIFO ran all of the first before)."""
    first_pass, both_ready = threading.Event(), threading.Event()

    class SlowFirstPass(Recording):
        def embed_token_ids(self, token_ids):
            if not first_pass.is_set():
                first_pass.set()
                assert both_ready.wait(60)  # the two bulk requests are tokenized and ready meanwhile
            return super().embed_token_ids(token_ids)

    recording = SlowFirstPass(tiny_model)
    batcher = Batcher(recording, max_queue_texts=10_000, max_batch_tokens=512)
    batcher.start()
    finished: list[str] = []
    first, second = bulk_texts(400, "first"), bulk_texts(400, "second")
    try:
        _, blocker_done = submit(batcher, ["blocker"], finished, "blocker")
        assert first_pass.wait(30)
        jobs = [submit(batcher, first, finished, "first"), submit(batcher, second, finished, "second")]
        while any(job.tokenized < len(job.texts) for job, _ in jobs):
            time.sleep(0.01)
        both_ready.set()
        for _, done in [*jobs, (None, blocker_done)]:
            assert done.wait(120)
    finally:
        batcher.stop()
    first_ids = {tuple(ids) for ids in tiny_model.tokenize(first)}
    second_ids = {tuple(ids) for ids in tiny_model.tokenize(second)}
    bulk_passes = recording.batches[1:]
    pool, tokens = [], 0
    for batch in bulk_passes:  # the first pool: four budgets of tokens (more passes, sorted by length)
        pool.append(batch)
        tokens += sum(map(len, batch))
        if tokens >= 4 * 512 * 0.9:
            break
    in_pool_first = sum(sum(len(ids) for ids in batch if tuple(ids) in first_ids) for batch in pool)
    in_pool_second = sum(sum(len(ids) for ids in batch if tuple(ids) in second_ids) for batch in pool)
    assert in_pool_first > 0 and in_pool_second > 0
    assert 0.5 < in_pool_first / in_pool_second < 2
    last_second = max(number for number, batch in enumerate(bulk_passes)
                      if any(tuple(ids) in second_ids for ids in batch))
    last_first = max(number for number, batch in enumerate(bulk_passes)
                     if any(tuple(ids) in first_ids for ids in batch))
    assert last_second > 0.8 * last_first  # they advanced together
    for job, _ in jobs:
        assert job.error is None
    np.testing.assert_allclose(jobs[1][0].vectors, tiny_model.embed_batch(second), atol=2e-6)


def test_a_query_is_tokenized_before_the_rest_of_a_large_request(tiny_model):
    recording = SlowTokenizing(tiny_model, tokenize_delay=0.05)
    batcher = Batcher(recording, max_queue_texts=10_000)
    batcher.start()
    finished: list[str] = []
    try:
        large, large_done = submit(batcher, bulk_texts(2048, "large"), finished, "large")
        while not recording.tokenized:
            time.sleep(0.005)
        _, query_done = submit(batcher, ["a question"], finished, "query", query=True)
        assert query_done.wait(60) and large_done.wait(120)
    finally:
        batcher.stop()
    slices = [texts for texts in recording.tokenized if texts != ["a question"]]
    query_call = next(number for number, texts in enumerate(recording.tokenized) if texts == ["a question"])
    assert query_call <= 2 < len(slices)  # after the slice in progress, long before the large request's last
    assert finished == ["query", "large"] and large.error is None


def test_a_huge_text_is_cut_by_characters_without_losing_a_token(tiny_model):
    limit = char_limit(tiny_model.max_tokens)
    prose = " ".join(long_documents(count=256))
    huge = (prose + " ") * (limit // len(prose) + 3)
    assert len(huge) > 2 * limit
    calls = []

    class Counting:
        max_tokens = tiny_model.max_tokens

        @property
        def truncated_count(self):
            return tiny_model.truncated_count

        def tokenize(self, texts):
            calls.append(sum(map(len, texts)))
            return tiny_model.tokenize(texts)

    token_ids, truncated = tokenize_cut(Counting(), ["short one", huge, "another short one"])
    assert token_ids == tiny_model.tokenize(["short one", huge, "another short one"])
    assert truncated == 1
    assert max(calls) <= limit  # the huge text was never tokenized whole
    assert len(head(huge, limit)) > limit // 2 and head(huge, limit)[-1] != " "


def test_a_cut_that_could_lose_tokens_tokenizes_the_whole_text(tiny_model):
    limit = char_limit(tiny_model.max_tokens)
    spaced = "word" + " " * (limit + 10) + "the tail " * 10
    token_ids, truncated = tokenize_cut(tiny_model, [spaced])
    assert token_ids == tiny_model.tokenize([spaced])
    assert truncated == (len(token_ids[0]) >= tiny_model.max_tokens)


def test_refusing_truncation_still_refuses_a_text_that_was_cut(tiny_model):
    huge = "many words " * (char_limit(tiny_model.max_tokens) // 5)
    batcher = Batcher(tiny_model, max_queue_texts=100)
    batcher.start()
    try:
        done = threading.Event()
        job = batcher.submit(["short", huge], lambda job: done.set(), reject_truncated=True)
        assert done.wait(60)
    finally:
        batcher.stop()
    assert isinstance(job.error, TextsTooLong) and job.error.indices == [1]
    assert batcher.queued_texts == 0


def post_json(url: str, path: str, body: dict, timeout: float = 300):
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.headers, json.loads(response.read())


def queued_texts(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("vecplug_queue_texts "):
                return float(line.split()[1])
    return 0.0


@pytest.mark.slow  # a server with one large request of 2,048 texts and a query beside it
def test_a_query_answers_before_the_bulk_request_queued_ahead_of_it(tiny_model_dir):
    answered: list[str] = []
    with running_server(tiny_model_dir, "--dtype", "float32", "--max-batch-tokens", "256") as server:
        bulk = bulk_texts(2048, "bulk")

        def send_bulk():
            status, _, _ = post_json(server.url, "/v1/embeddings", {"input": bulk})
            answered.append(f"bulk {status}")

        thread = threading.Thread(target=send_bulk)
        thread.start()
        deadline = time.monotonic() + 60
        while queued_texts(server.url) < 100 and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.01)
        status, _, body = post_json(server.url, "/v1/embeddings", {"input": "where?", "input_type": "query"})
        answered.append(f"query {status}")
        thread.join(300)
    assert answered == ["query 200", "bulk 200"]
    assert len(body["data"]) == 1


@pytest.mark.slow  # an 8 MB body: read, cut, embedded; and refused whole under truncate=false
def test_an_8_mb_text_is_cut_and_counted_as_truncated(tiny_model_dir, tiny_model):
    prose = " ".join(long_documents(count=256))
    huge = (prose + " ") * (8_000_000 // (len(prose) + 1))
    assert 7_500_000 < len(huge.encode()) < 8 * 1024 * 1024 - 1000
    with running_server(tiny_model_dir, "--dtype", "float32") as server:
        status, headers, body = post_json(server.url, "/v1/embeddings", {"input": [huge]})
        assert status == 200 and headers["X-Vecplug-Truncated"] == "1"
        want = tiny_model.embed([huge[:200_000]], "document")[0]
        assert float(np.dot(body["data"][0]["embedding"], want)) > 0.99999
        status, _, error = call(server.url, "/embed", {"inputs": [huge], "truncate": False})
        assert status == 413 and "index 0" in json.dumps(error)
