"""Shared by the tune tests: the synthetic task as files, the CLI as a real process, recall measured by the test."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

import vecplug


def write_pairs(path, pairs) -> str:
    path.write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
    return str(path)


def run_tune_cli(*args, cwd, timeout=600) -> subprocess.CompletedProcess:
    """``vecplug tune ARGS`` in its own process, in ``cwd`` (where nothing may appear)."""
    return subprocess.run([sys.executable, "-m", "vecplug", "tune", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def recall_at_10(model_dir, pairs, corpus) -> float:
    """The share of ``pairs``' queries whose positive is in the top 10 of ``corpus``, with vecplug.load_model."""
    model = vecplug.load_model(str(model_dir), dtype="float32")
    documents = model.embed_documents(corpus)
    queries = model.embed_queries([pair["query"] for pair in pairs])
    top = np.argsort(-(queries @ documents.T), axis=1)[:, :10]
    wanted = [corpus.index(pair["positive"]) for pair in pairs]
    return float(np.mean([target in row for target, row in zip(wanted, top)]))
