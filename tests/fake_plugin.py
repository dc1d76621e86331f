"""A deterministic third-party plugin for tests: its own model, spec and embed hook."""
from __future__ import annotations

import hashlib

import numpy as np

import vecplug

FAKE_SPEC = vecplug.ModelSpec(
    name="fake/hash-embedder",
    aliases=("fake-hash",),
    dimensions=8,
    max_tokens=64,
    prompts={},
    fingerprint="fake-hash-v1",
)


class HashModel(vecplug.EmbeddingModel):
    """Vectors from a hash of the text: equal texts, equal vectors; no torch."""

    def embed_batch(self, texts):
        rows = []
        for text in texts:
            digest = hashlib.sha256(text.encode()).digest()[: self.spec.dimensions]
            row = np.frombuffer(digest, dtype=np.uint8).astype(np.float32) - 127.5
            rows.append(row / np.linalg.norm(row))
        return np.stack(rows)


class FakePlugin:
    """Registers the hash model and answers ``vecplug_embed`` for it only."""

    def __init__(self):
        self.embed_calls = []

    @vecplug.hookimpl
    def vecplug_register_models(self, register):
        register(FAKE_SPEC, lambda spec, device, dtype: HashModel(spec))

    @vecplug.hookimpl
    def vecplug_embed(self, texts, kind, model, dimensions):
        if model not in (FAKE_SPEC.name, *FAKE_SPEC.aliases):
            return None
        self.embed_calls.append((list(texts), kind))
        return vecplug.load_model(model, dimensions=dimensions).embed(texts, kind)
