"""embed_chunks' plan rules, each checked with the model's tokenizer read straight from tokenizer.json.

The checks never ask vecplug how many tokens a chunk has: they tokenize
the chunk texts themselves, count characters themselves, and embed chunk
texts through ``embed_documents``, so a wrong plan cannot agree with itself.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

import vecplug
from vecplug.chunking import BOUNDARY_SEARCH_SHARE
from vecplug.testing import stdlib_paragraphs


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    return tokenizer


def own_tokens(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def document(paragraphs: int, start: int = 0) -> str:
    return "\n\n".join(stdlib_paragraphs()[start:start + paragraphs])


def check_covers_once(text: str, spans, overlapping: bool = False) -> None:
    """Spans in order, inside the text, and every non-whitespace character in at least (or exactly) one."""
    covered = np.zeros(len(text), dtype=np.int64)
    for (start, end), (next_start, next_end) in zip(spans, spans[1:]):
        assert start < next_start and end < next_end
        if not overlapping:
            assert end <= next_start
    for start, end in spans:
        assert 0 <= start < end <= len(text)
        # a one-token chunk may keep its word's space (" statement" is one token, "statement" two)
        assert not text[start].isspace() or not text[start + 1].isspace()
        assert not text[end - 1].isspace()
        covered[start:end] += 1
    visible = np.array([not character.isspace() for character in text], dtype=bool)
    assert (covered[visible] >= 1).all()
    if not overlapping:
        assert (covered[visible] == 1).all()


@pytest.mark.parametrize("chunk_tokens", [1, 7, 64, 512])
def test_every_chunk_fits_and_the_text_is_covered_once(tiny_model, tokenizer, chunk_tokens):
    text = document(30 if chunk_tokens > 7 else 3)
    [result] = tiny_model.embed_chunks([text], chunk_tokens=chunk_tokens)
    assert result.texts == [text[start:end] for start, end in result.spans]
    assert max(own_tokens(tokenizer, piece) for piece in result.texts) <= chunk_tokens
    check_covers_once(text, result.spans)
    # at most ~25% more chunks than a plain token split of the same text
    plain = math.ceil(own_tokens(tokenizer, text) / chunk_tokens)
    assert len(result) <= math.ceil(1.25 * plain) + 1
    assert result.vectors.shape == (len(result), tiny_model.dimensions)
    assert result.vectors.dtype == np.float32


def test_chunks_end_at_paragraphs_where_one_is_near(tiny_model, tokenizer):
    """Where a paragraph break lies in the last fifth of a chunk's room, the chunk ends there."""
    text = document(40)
    chunk_tokens = 128
    [result] = tiny_model.embed_chunks([text], chunk_tokens=chunk_tokens)
    encoding = tokenizer.encode(text, add_special_tokens=False)
    breaks = [match.start() for match in re.finditer(r"\n\n", text)]
    checked = 0
    for start, end in result.spans[:-1]:
        first = next(index for index, (_, token_end) in enumerate(encoding.offsets) if token_end > start)
        room_end = first + chunk_tokens
        search_start = room_end - int(chunk_tokens * BOUNDARY_SEARCH_SHARE) + 1
        lo = encoding.offsets[min(search_start, len(encoding.offsets) - 1)][0]
        hi = encoding.offsets[min(room_end, len(encoding.offsets) - 1)][0]
        if any(lo <= position <= hi for position in breaks):
            checked += 1
            assert text[end:end + 2] == "\n\n", (text[end - 30:end + 5], "does not end at a paragraph")
    assert checked >= 3


def test_chunks_end_at_sentences_when_no_paragraph_is_near(tiny_model):
    sentences = " ".join(f"Sentence number {index} says something about item {index * 7}." for index in range(200))
    [result] = tiny_model.embed_chunks([sentences], chunk_tokens=100)
    assert len(result) > 3
    assert all(piece.endswith(".") for piece in result.texts)


def test_overlap_shares_tokens_and_still_covers_everything(tiny_model, tokenizer):
    text = document(20)
    [plain] = tiny_model.embed_chunks([text], chunk_tokens=64)
    [overlapped] = tiny_model.embed_chunks([text], chunk_tokens=64, overlap_tokens=16)
    check_covers_once(text, overlapped.spans, overlapping=True)
    assert max(own_tokens(tokenizer, piece) for piece in overlapped.texts) <= 64
    shared = [own_tokens(tokenizer, text[next_start:end])
              for (_, end), (next_start, _) in zip(overlapped.spans, overlapped.spans[1:])]
    assert all(end > start for (_, end), (start, _) in zip(overlapped.spans, overlapped.spans[1:]))
    assert 8 <= np.median(shared) <= 24
    plain_split = math.ceil((own_tokens(tokenizer, text) - 16) / (64 - 16))
    assert len(plain) < len(overlapped) <= math.ceil(1.25 * plain_split) + 1


def test_short_empty_and_whitespace_texts(tiny_model):
    results = tiny_model.embed_chunks(["  A short text.  ", "", "   ", "\n\n\n\n", "\t"], chunk_tokens=64)
    assert results[0].spans == [(2, 15)] and results[0].texts == ["A short text."]
    assert [len(result) for result in results[1:]] == [0, 0, 0, 0]
    assert all(result.vectors.shape == (0, tiny_model.dimensions) for result in results[1:])
    assert tiny_model.embed_chunks([], chunk_tokens=64) == []


def test_plain_chunk_vectors_are_embed_documents_of_the_chunk_texts(tiny_model):
    texts = [document(8), "One more text.", document(5, start=50)]
    results = tiny_model.embed_chunks(texts, chunk_tokens=48, overlap_tokens=8)
    for result in results:
        expected = tiny_model.embed_documents(result.texts)
        np.testing.assert_allclose(result.vectors, expected, atol=1e-6)
    small = tiny_model.with_dimensions(32).embed_chunks(texts[:1], chunk_tokens=48)[0]
    np.testing.assert_allclose(small.vectors, tiny_model.with_dimensions(32).embed_documents(small.texts), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(small.vectors, axis=1), 1, atol=1e-5)


def test_multibyte_characters_are_never_split(tiny_model, tokenizer):
    """Characters the byte-level tokenizer spells with several tokens stay whole, even with tiny chunks."""
    text = "日本語のテキストです。" * 40 + "\n\nÉté à Paris — naïve café. " * 20 + "🙂🙃" * 30
    for chunk_tokens in (2, 5, 33):
        [result] = tiny_model.embed_chunks([text], chunk_tokens=chunk_tokens, late=chunk_tokens == 33)
        check_covers_once(text, result.spans)
        counts = [own_tokens(tokenizer, piece) for piece in result.texts]
        single_characters = [piece for piece, count in zip(result.texts, counts) if count > chunk_tokens]
        # only a character spelled with more tokens than the chunk holds may exceed it, alone
        assert all(len(piece) == 1 for piece in single_characters)
        for piece in result.texts:
            piece.encode("utf-8")  # whole characters only


def test_a_text_of_twenty_thousand_tokens(tiny_model, tokenizer):
    text = document(400, start=100)
    assert own_tokens(tokenizer, text) >= 20_000
    [result] = tiny_model.embed_chunks([text], chunk_tokens=512)
    check_covers_once(text, result.spans)
    assert max(own_tokens(tokenizer, piece) for piece in result.texts) <= 512
    assert len(result) <= math.ceil(1.25 * math.ceil(own_tokens(tokenizer, text) / 512)) + 1


@pytest.mark.parametrize("arguments, message", [
    ({"chunk_tokens": 0}, "chunk_tokens must be at least 1"),
    ({"chunk_tokens": -5}, "chunk_tokens must be at least 1"),
    ({"chunk_tokens": 2.5}, "chunk_tokens must be an integer"),
    ({"chunk_tokens": 64, "overlap_tokens": -1}, "overlap_tokens must be at least 0"),
    ({"chunk_tokens": 64, "overlap_tokens": 64}, "less than chunk_tokens"),
    ({"chunk_tokens": 64, "late": "yes"}, "late must be True or False"),
])
def test_bad_settings_fail_before_any_work(tiny_model, arguments, message):
    before = tiny_model.stats()

    def texts():
        raise AssertionError("the texts were read")
        yield  # pragma: no cover

    with pytest.raises(vecplug.InvalidSettingError, match=message):
        tiny_model.embed_chunks(texts(), **arguments)
    assert tiny_model.stats() == before


def test_a_bare_string_is_refused(tiny_model):
    with pytest.raises(TypeError, match="wrap it in a list"):
        tiny_model.embed_chunks("one long text", chunk_tokens=64)
    with pytest.raises(TypeError, match="index 1"):
        tiny_model.embed_chunks(["fine", None], chunk_tokens=64)
