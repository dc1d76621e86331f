"""The reference every fast path is checked against.

transformers' ModernBertModel, eager attention, float32, one text at a time,
mean pooling over all its tokens (prompt included), L2 norm.
"""
from __future__ import annotations

import numpy as np


def reference_embeddings(model_dir, token_ids: list[list[int]]) -> np.ndarray:
    import torch
    from transformers import ModernBertModel

    reference = ModernBertModel.from_pretrained(str(model_dir), attn_implementation="eager", dtype=torch.float32)
    reference.eval()
    rows = []
    with torch.no_grad():
        for ids in token_ids:
            hidden = reference(input_ids=torch.tensor([ids])).last_hidden_state[0]
            rows.append(torch.nn.functional.normalize(hidden.mean(0), dim=0).numpy())
    return np.stack(rows)


def texts_of_lengths(model, token_counts: list[int]) -> list[str]:
    """Real stdlib text cut to about each token count (the exact count is what is tested)."""
    from vecplug.testing import stdlib_paragraphs

    corpus = " ".join(stdlib_paragraphs()).split()
    texts = []
    for index, count in enumerate(token_counts):
        start = (index * 997) % (len(corpus) - 10_000)
        words = corpus[start : start + max(1, count)]
        text = " ".join(words)
        while len(model.tokenize([text])[0]) > count + 2 and len(words) > 1:
            words = words[: max(1, int(len(words) * 0.9))]
            text = " ".join(words)
        texts.append(text)
    return texts


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(axis=1).min())


def same_text_among_neighbours(model, probes: list[str], trials: int, seed: int = 0):
    """Each probe embedded alone, then among 5-120 random stdlib paragraphs at a random place.

    Returns (alone, among): row i of ``among`` is one trial's vector for the
    probe whose alone-vector is row i of ``alone``.
    """
    from vecplug.testing import stdlib_paragraphs

    paragraphs = list(stdlib_paragraphs()[:400])
    rng = np.random.default_rng(seed)
    alone, among = [], []
    for probe in probes:
        by_itself = model.embed_documents([probe])[0]
        for _ in range(trials):
            neighbours = list(rng.choice(paragraphs, size=int(rng.integers(5, 120)), replace=True))
            place = int(rng.integers(0, len(neighbours) + 1))
            neighbours.insert(place, probe)
            alone.append(by_itself)
            among.append(model.embed_documents(neighbours)[place])
    return np.stack(alone), np.stack(among)
