"""Full-size parity: a ModernBERT-base-shaped model (22 layers, 768 hidden, window 128).

Slow (a minute or two on 2 cores); CI runs it in the same pass as the rest.
"""
from __future__ import annotations

import numpy as np
import pytest

import vecplug
from vecplug.testing import write_model

from parity import min_cosine, reference_embeddings, same_text_among_neighbours, texts_of_lengths

pytestmark = pytest.mark.slow

# 1 token to 3,000, across the 128-token local window and the block-local threshold
TOKEN_COUNTS = [1, 40, 64, 65, 66, 129, 130, 300, 700, 3400]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("base") / "modernbert-base-shape", shape="base")


@pytest.fixture(scope="module")
def texts_and_reference(base_dir):
    model = vecplug.load_model(str(base_dir), dtype="float32")
    texts = texts_of_lengths(model, TOKEN_COUNTS)
    ids = model.tokenize(["search_document: " + text for text in texts])
    assert max(map(len, ids)) >= 3000
    return texts, ids, reference_embeddings(base_dir, ids)


def test_base_shape_float32(base_dir, texts_and_reference):
    texts, ids, reference = texts_and_reference
    model = vecplug.load_model(str(base_dir), dtype="float32")
    assert min_cosine(model.embed_documents(texts), reference) >= 0.9999
    # sequences of 1 and 2 tokens, without the prompt
    short = [[1], [1, 2]]
    assert min_cosine(model.encoder.forward(short).numpy(), reference_embeddings(base_dir, short)) >= 0.9999


def test_base_shape_bfloat16(base_dir, texts_and_reference):
    texts, ids, reference = texts_and_reference
    model = vecplug.load_model(str(base_dir), dtype="bfloat16")
    assert min_cosine(model.embed_documents(texts), reference) >= 0.999


def test_base_shape_bfloat16_same_vector_whatever_the_batch(base_dir):
    """The exact-output figure in BENCHMARKS.md: bf16, full-size layers, padded attention groups."""
    from vecplug.testing import stdlib_paragraphs

    model = vecplug.load_model(str(base_dir), dtype="bfloat16")
    probes = [stdlib_paragraphs()[index] for index in (3, 17, 101, 250)]
    alone, among = same_text_among_neighbours(model, probes, trials=4)
    identical = sum(np.array_equal(a, b) for a, b in zip(alone, among))
    print(f"bf16 base shape: min cosine {min_cosine(among, alone):.7f}, bit-identical {identical}/{len(alone)}")
    assert min_cosine(among, alone) >= 0.9999


def test_compiled_layers_match_eager(tiny_model_dir, tiny_model):
    """The torch.compile path (default on CUDA) computes the same numbers; checked here on CPU."""
    import torch

    from vecplug.modernbert.encoder import UnpaddedModernBert

    compiled = UnpaddedModernBert(tiny_model_dir, "cpu", torch.float32, compile=True)
    ids = tiny_model.tokenize(["search_document: a compiled forward pass", "second text " * 30])
    np.testing.assert_allclose(compiled.forward(ids).numpy(), tiny_model.encoder.forward(ids).numpy(), atol=1e-5)
    assert compiled.compiled  # it did not fall back to eager
