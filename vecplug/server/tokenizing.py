"""Tokenizing for the batcher: absurd texts are cut by characters first, without losing a token.

Every text is cut to the model's ``max_tokens`` anyway, so tokenizing all of
an 8 MB text is wasted work that held the tokenizer for seconds. A text
longer than ``max_tokens * CHARS_PER_TOKEN_BOUND`` characters is tokenized
from its head alone: the cut falls at the last whitespace after a
non-whitespace character in the head's second half, where every
vocabulary's pre-tokenizer (byte-level BPE, WordPiece, Metaspace) splits, so
the head's tokens are the first tokens of the whole text. The head is used
only when it overflows ``max_tokens`` by itself (the model counts it as
truncated, so ``truncate=false`` still refuses it): then the kept tokens are
exactly the whole text's. A head that does not overflow (more than 16
characters per token on average, as in long runs of spaces) is given up and
the whole text is tokenized: slow, rare, never wrong. Only a head of more
than ``max_tokens * 8`` characters without any whitespace is cut inside a
word; BPE's merges reach a few tokens back from a cut, and the kept tokens
end thousands of tokens before it.
"""
from __future__ import annotations

import re

# Characters per token, an upper bound for real text: English prose runs at
# 4-5 characters per token, code at 3-4, base64 and hex at 2-3, CJK at 1-2.
# A text cut at max_tokens * 16 characters still holds far more than
# max_tokens tokens; when it does not, the whole text is tokenized (above).
CHARS_PER_TOKEN_BOUND = 16

_LAST_WORD_END = re.compile(r"\S(?=\s)")


def char_limit(max_tokens: int) -> int:
    """The longest text tokenized whole: 131,072 characters at 8,192 tokens."""
    return max_tokens * CHARS_PER_TOKEN_BOUND


def head(text: str, limit: int) -> str:
    """The text's first characters up to ``limit``, ending where a word ends (when one does in the second half)."""
    window = text[limit // 2:limit + 1]
    last = None
    for last in _LAST_WORD_END.finditer(window):
        pass
    end = limit // 2 + last.end() if last is not None else limit
    return text[:end]


def tokenize_cut(model, texts: list[str]) -> tuple[list[list[int]], int]:
    """``model.tokenize(texts)`` with absurd texts cut first: the token ids, and how many texts were truncated.

    Counts truncation as the model does (``truncated_count``), so the caller
    must be the only thread tokenizing with this model for the count to be
    this call's alone (the batcher's tokenizer thread is).
    """
    limit = char_limit(model.max_tokens)
    long_rows = [row for row, text in enumerate(texts) if len(text) > limit]
    before = model.truncated_count
    if not long_rows:
        token_ids = model.tokenize(texts)
        return token_ids, model.truncated_count - before
    long_set = set(long_rows)
    short_rows = [row for row in range(len(texts)) if row not in long_set]
    token_ids: list = [None] * len(texts)
    for row, ids in zip(short_rows, model.tokenize([texts[row] for row in short_rows]) if short_rows else []):
        token_ids[row] = ids
    for row in long_rows:  # one call each: the model's count then says whether this head overflowed
        counted = model.truncated_count
        [ids] = model.tokenize([head(texts[row], limit)])
        if model.truncated_count == counted:  # the head fits: its cut may have lost tokens, so the whole text
            [ids] = model.tokenize([texts[row]])
        token_ids[row] = ids
    return token_ids, model.truncated_count - before
