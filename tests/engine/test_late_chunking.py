"""Late chunking checked against transformers: the model's token states, pooled by hand.

The reference tokenizes prompt and text with ``tokenizers`` (offsets
included), runs transformers' ``ModernBertModel`` in float32 one sequence
at a time, and averages the states of the tokens whose first
non-whitespace character lies in each chunk's span, as the issue states
the rule. Only the spans come from vecplug (their own rules are tested in
tests/core/test_chunking.py).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vecplug
from vecplug.testing import stdlib_paragraphs, write_model

PROMPT = "search_document: "


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    from tokenizers import Tokenizer
    from transformers import ModernBertModel

    tokenizer = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    model = ModernBertModel.from_pretrained(str(tiny_model_dir), attn_implementation="eager", dtype=torch.float32)
    return tokenizer, model.eval()


def states_of(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()


def owner_positions(prompted: str, encoding) -> list[int]:
    """Each token's first non-whitespace character (in the prompted text), -1 for special or blank tokens."""
    positions = []
    for (start, end), special in zip(encoding.offsets, encoding.special_tokens_mask):
        visible = [index for index in range(start, end) if not prompted[index].isspace()]
        positions.append(-1 if special or not visible else visible[0])
    return positions


def pooled(rows: list[np.ndarray], dimensions: int) -> np.ndarray:
    mean = np.mean(rows, axis=0)[:dimensions]
    return mean / np.linalg.norm(mean)


def reference_late_vectors(tokenizer, model, text: str, spans, dimensions: int) -> np.ndarray:
    prompted = PROMPT + text
    encoding = tokenizer.encode(prompted)
    states = states_of(model, encoding.ids)
    positions = owner_positions(prompted, encoding)
    vectors = []
    for start, end in spans:
        rows = [states[token] for token, position in enumerate(positions)
                if len(PROMPT) + start <= position < len(PROMPT) + end]
        vectors.append(pooled(rows, dimensions))
    return np.stack(vectors)


def test_late_chunking_matches_transformers_on_a_text_that_fits(tiny_model, reference):
    tokenizer, model = reference
    text = "\n\n".join(stdlib_paragraphs()[10:22])
    [result] = tiny_model.embed_chunks([text], chunk_tokens=96, late=True)
    assert len(result) >= 4
    expected = reference_late_vectors(tokenizer, model, text, result.spans, tiny_model.dimensions)
    np.testing.assert_allclose(result.vectors, expected, atol=1e-4)
    # Matryoshka: the mean is cut before it is normalised
    [small] = tiny_model.with_dimensions(32).embed_chunks([text], chunk_tokens=96, late=True)
    np.testing.assert_allclose(small.vectors, reference_late_vectors(tokenizer, model, text, result.spans, 32),
                               atol=1e-4)
    # and the whole document's context changes them: late vectors are not the chunks embedded alone
    plain = tiny_model.embed_documents(result.texts)
    assert np.abs((plain * result.vectors).sum(axis=1)).min() < 0.9999


def test_the_first_word_keeps_its_token_and_multibyte_text_pools(tiny_model, reference):
    """Prompt and text tokenized together: the first word's ``Ġword`` token belongs to the text."""
    tokenizer, model = reference
    text = "Résumé of the café. 日本語のテキストです。\n\nNaïve ideas about 🙂 emoji."
    [result] = tiny_model.embed_chunks([text], chunk_tokens=9, late=True)
    assert len(result) >= 3
    expected = reference_late_vectors(tokenizer, model, text, result.spans, tiny_model.dimensions)
    np.testing.assert_allclose(result.vectors, expected, atol=1e-4)


def test_late_vectors_do_not_depend_on_the_other_texts_in_the_call(tiny_model):
    texts = ["\n\n".join(stdlib_paragraphs()[start:start + 6]) for start in (0, 30, 60)] + ["", "Short."]
    together = tiny_model.embed_chunks(texts, chunk_tokens=80, late=True)
    for text, result in zip(texts, together):
        [alone] = tiny_model.embed_chunks([text], chunk_tokens=80, late=True)
        assert alone.spans == result.spans
        np.testing.assert_allclose(alone.vectors, result.vectors, atol=1e-5)
    assert len(together[3]) == 0 and len(together[4]) == 1


@pytest.fixture(scope="module")
def short_window_model_dir(tmp_path_factory):
    """The tiny model, told it reads at most 128 tokens: long texts need several windows."""
    return write_model(tmp_path_factory.mktemp("models") / "tiny-128", shape="tiny", max_tokens=128)


def test_texts_longer_than_max_tokens_run_in_overlapping_windows(short_window_model_dir):
    """The documented rule, computed by hand: windows of the prompt plus ``width`` text tokens, a quarter
    overlapping the next, the last one flush with the text's end; each token's state from the window whose
    centre is nearest."""
    from tokenizers import Tokenizer
    from transformers import ModernBertModel

    vecplug_model = vecplug.load_model(str(short_window_model_dir), dtype="float32")
    assert vecplug_model.max_tokens == 128
    tokenizer = Tokenizer.from_file(str(short_window_model_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    model = ModernBertModel.from_pretrained(str(short_window_model_dir), attn_implementation="eager",
                                            dtype=torch.float32).eval()
    text = "\n\n".join(stdlib_paragraphs()[40:52])
    [result] = vecplug_model.embed_chunks([text], chunk_tokens=50, late=True)

    prompted = PROMPT + text
    encoding = tokenizer.encode(prompted)
    ids, positions = encoding.ids, owner_positions(prompted, encoding)
    prompt_tokens = next(index for index, (start, end) in enumerate(encoding.offsets)
                         if index > 0 and end > len(PROMPT)) - 1  # after [CLS]
    body = ids[1 + prompt_tokens:-1]
    assert len(body) > 3 * 128
    width = 128 - 2 - prompt_tokens
    stride = width - math.floor(width * 0.25)
    starts = list(range(0, len(body) - width, stride)) + [len(body) - width]
    window_states = [states_of(model, ids[:1 + prompt_tokens] + body[start:start + width] + ids[-1:])
                     for start in starts]

    def state(token: int) -> np.ndarray:
        body_index = token - 1 - prompt_tokens
        window = min(range(len(starts)), key=lambda number: abs(body_index - (starts[number] + (width - 1) / 2)))
        return window_states[window][1 + prompt_tokens + body_index - starts[window]]

    expected = np.stack([
        pooled([state(token) for token, position in enumerate(positions)
                if len(PROMPT) + start <= position < len(PROMPT) + end], vecplug_model.dimensions)
        for start, end in result.spans
    ])
    np.testing.assert_allclose(result.vectors, expected, atol=1e-4)
