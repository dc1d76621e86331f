"""Token-budget batching: same vector whatever the batch, streaming with flat memory."""
from __future__ import annotations

import numpy as np
import pytest

import vecplug
from vecplug.modernbert.batching import pipelined
from vecplug.modernbert.packed_batch import BLOCK_LOCAL_MIN_LENGTH, plan_groups
from vecplug.token_budget import plan_batches
from vecplug.testing import stdlib_paragraphs

from parity import min_cosine, same_text_among_neighbours


def test_plan_batches_respects_budget_and_covers_everything():
    lengths = [5, 300, 40, 40, 41, 7, 1000, 12]
    batches = plan_batches(lengths, token_budget=100)
    assert sorted(index for batch in batches for index in batch) == list(range(len(lengths)))
    for batch in batches:
        tokens = sum(lengths[index] for index in batch)
        assert tokens <= 100 or len(batch) == 1  # a longer text gets a batch of its own
        assert [lengths[i] for i in batch] == sorted(lengths[i] for i in batch)


def test_attention_groups_bound_padding():
    lengths = [10, 10, 11, 12, 30, 31, 600, 700]
    groups = plan_groups(lengths, "cpu")
    assert sum(group.token_count for group in groups) == sum(lengths)
    for group in groups:
        assert group.sequences * group.length <= 1.25 * group.token_count
        assert group.length < BLOCK_LOCAL_MIN_LENGTH or group.sequences == 1


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_same_text_same_vector_whatever_the_batch(tiny_model_dir, dtype):
    """Adapters and the server compare vectors made in different batches."""
    model = vecplug.load_model(str(tiny_model_dir), dtype=dtype)
    alone, among = same_text_among_neighbours(model, [stdlib_paragraphs()[17]], trials=4)
    if dtype == "float32":
        np.testing.assert_allclose(among, alone, atol=1e-5)
    else:  # the base shape's figure is in test_parity_full and BENCHMARKS.md
        assert min_cosine(among, alone) >= 0.9999


def test_stream_results_come_in_input_order(tiny_model):
    paragraphs = list(stdlib_paragraphs()[:300])
    model = tiny_model
    model.window_texts, saved = 64, model.window_texts
    try:
        streamed = np.stack(list(model.iter_embed(iter(paragraphs))))
    finally:
        model.window_texts = saved
    np.testing.assert_allclose(streamed, model.embed_documents(paragraphs), atol=1e-5)


def test_stream_reports_bad_item_by_index(tiny_model):
    def texts():
        yield from ["fine"] * 10
        yield None

    with pytest.raises(TypeError, match="index 10"):
        list(tiny_model.iter_embed(texts()))


def test_pipeline_yields_earlier_windows_before_a_reading_error():
    def windows():
        yield [1]
        yield [2]
        raise RuntimeError("boom")

    out = []
    with pytest.raises(RuntimeError, match="boom"):
        for value in pipelined(windows(), lambda window: [x * 10 for x in window], lambda tokens: tokens):
            out.append(value)
    assert out == [[10], [20]]


def test_input_is_read_in_the_callers_thread(tiny_model):
    """A generator over a database cursor must not be read from another thread."""
    import threading

    caller = threading.get_ident()
    readers = set()

    def texts():
        for index in range(300):
            readers.add(threading.get_ident())
            yield f"row {index}"

    tiny_model.window_texts, saved = 50, tiny_model.window_texts
    try:
        assert sum(len(chunk) for chunk in tiny_model.iter_embed_chunks(texts())) == 300
    finally:
        tiny_model.window_texts = saved
    assert readers == {caller}
