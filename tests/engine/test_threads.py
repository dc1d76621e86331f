"""One model, many threads: no races on a fresh model or a fresh process (issue 14, defects 1 and 2).

A race shows only on state that has not been initialised yet, so each trial
starts fresh: a new process for plugin loading, new rotary tables (or a
newly loaded model) for the engine, with the threads released together by
a barrier. The old code failed most trials; a few dozen make a pass mean
something.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

import pytest
import torch

from vecplug.modernbert.encoder import RotaryTables

THREADS = 8


def run_together(work, arguments) -> list:
    """Run ``work(argument)`` in one thread per argument, released at once; return the errors raised."""
    barrier = threading.Barrier(len(arguments))
    errors = []

    def run(argument):
        barrier.wait()
        try:
            work(argument)
        except Exception as error:  # collected: the test reports them all
            errors.append(error)

    threads = [threading.Thread(target=run, args=(argument,)) for argument in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_rotary_tables_grow_safely_under_concurrent_lookups():
    """Fresh tables, 8 threads asking for 513-5,413 positions at once: every lookup is whole and right.

    The old tables grew with no lock: a thread growing for a shorter length
    replaced the longer table another thread had just checked (IndexError),
    in about 4 rounds of 10 here.
    """
    lengths = [513 + 700 * index for index in range(THREADS)]
    failures = []
    for _ in range(100):
        tables = RotaryTables(16, 10_000.0, "cpu")
        tables.lookup(torch.arange(8), 8)  # warm: 512 positions, like a model after one short text

        def look_up(length):
            positions = torch.arange(length)
            cos, sin = tables.lookup(positions, length)
            angles = positions[:, None].float() * tables.inv_freq
            assert cos.shape == sin.shape == (length, 1, 1, 8)
            torch.testing.assert_close(cos[:, 0, 0], angles.cos())
            torch.testing.assert_close(sin[:, 0, 0], angles.sin())

        failures += run_together(look_up, lengths)
    assert not failures, f"{len(failures)} failed lookups, first: {failures[0]!r}"


CONCURRENT_EMBEDDINGS = """
import json, sys, threading
import numpy as np
import vecplug
from vecplug.testing import stdlib_paragraphs

model_dir, trials, lengths = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
sys.setswitchinterval(1e-5)  # switch threads often: the races show in fewer trials
model = vecplug.load_model(model_dir, dtype="float32")
ids = model.tokenize([" ".join(stdlib_paragraphs()[:300])])[0]
assert len(ids) > max(lengths)
sequences = [ids[:length] for length in lengths]
expected = model.embed_token_ids(sequences)
failures = []
for trial in range(trials):
    vecplug.clear_cache()  # a freshly loaded model: rotary tables not grown yet
    model = vecplug.load_model(model_dir, dtype="float32")
    barrier = threading.Barrier(len(sequences))
    results = [None] * len(sequences)
    def embed(index):
        barrier.wait()
        try:
            results[index] = model.embed_token_ids([sequences[index]])[0]
        except Exception as error:
            failures.append(repr(error))
    threads = [threading.Thread(target=embed, args=(index,)) for index in range(len(sequences))]
    for thread in threads: thread.start()
    for thread in threads: thread.join()
    if not failures:
        np.testing.assert_allclose(np.stack(results), expected, atol=1e-5)
print(json.dumps({"trials": trials, "failures": failures}))
"""


@pytest.mark.slow  # a fresh process or a real wait: seconds of the fast loop
def test_one_fresh_model_embeds_long_texts_from_many_threads(tiny_model_dir):
    """A freshly loaded model, 8 threads embedding 513-2,613 tokens at once: every vector as if alone."""
    lengths = [513 + 300 * index for index in range(THREADS)]
    result = run_python(CONCURRENT_EMBEDDINGS, str(tiny_model_dir), "6", json.dumps(lengths))
    assert result["failures"] == [], result["failures"][:3]


LOAD_FROM_THREADS = """
import json, sys, threading
import vecplug

target = sys.argv[1]
barrier = threading.Barrier(8)
seen, errors = [], []
def load():
    barrier.wait()
    try:
        seen.append(vecplug.load_model(target) if target != "-" else sorted(vecplug.registered_models()))
    except Exception as error:
        errors.append(repr(error))
threads = [threading.Thread(target=load) for _ in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
answers = [value if isinstance(value, list) else id(value) for value in seen]
print(json.dumps({"errors": errors, "distinct": len({json.dumps(answer) for answer in answers}),
                  "models": answers[0] if answers and isinstance(answers[0], list) else None}))
"""


def test_plugins_load_once_for_threads_in_a_fresh_process():
    """8 threads asking for the registry in a fresh process all see the built-in models (20 processes).

    Before the fix ``load_plugins`` marked itself done before registering
    anything, and 7 of 8 threads usually saw an empty registry.
    """
    for trial in range(20):
        result = run_python(LOAD_FROM_THREADS, "-")
        assert result["errors"] == [] and result["distinct"] == 1, (trial, result)
        assert "nomic-ai/modernbert-embed-base" in result["models"], (trial, result)


@pytest.mark.slow  # three fresh processes, eight threads loading at once
def test_load_model_from_threads_in_a_fresh_process_returns_one_model(tiny_model_dir):
    """8 threads calling load_model(dir) at once in a fresh process get the one cached model (3 processes)."""
    for trial in range(3):
        result = run_python(LOAD_FROM_THREADS, str(tiny_model_dir))
        assert result == {"errors": [], "distinct": 1, "models": None}, (trial, result)


def run_python(code: str, *arguments: str) -> dict:
    completed = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *arguments], capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])
