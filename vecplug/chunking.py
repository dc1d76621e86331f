"""Long texts as passages: token-exact chunk plans and the vectors of those chunks.

One set of rules for every path (Python, the server, PostgreSQL, Chroma,
Qdrant), all of it here; a model lends only what needs its tokenizer and
weights (``contracts.ChunkPath``):

- ``chunk_tokens`` counts the text's own tokens, never the prompt or the
  special tokens. Each chunk's text, tokenized alone without special tokens,
  has at most ``chunk_tokens`` tokens: a plan is checked by tokenizing its
  chunks and cut back where a re-tokenized text came out longer.
- A chunk ends on a token boundary, and where it can at a paragraph break,
  else at a sentence end, else between words, found in the last fifth of
  the chunk's step (``chunk_tokens - overlap_tokens``). So each chunk holds
  at least 80% of a plain token split's new tokens, and a text never gets
  more than 25% more chunks than a plain split would give it.
- Spans are half-open character offsets into the original text, with the
  whitespace around a chunk left out; a chunk of whitespace only is no chunk.
  Two exceptions, both only for chunks a token or a character long: a
  token whose word is spelled with more tokens alone (``Ġword``) keeps its
  space, and a character spelled with more tokens than ``chunk_tokens``
  (an emoji, at ``chunk_tokens=2``) stays whole and over the limit.
- Late chunking (``late=True``) embeds the whole document once (prompt
  included) and pools each chunk from token states that saw all of it:
  see ``late_vectors``.
- Chunks are documents: the document prompt goes before each chunk (plain)
  or the whole text (late), by ``ModelSpec.apply_prompt``'s one rule, so a
  chunk or text that already starts with one of the model's prompts gets
  none added, as anywhere else.
"""
from __future__ import annotations

import bisect
import dataclasses
import math
import re
from typing import TYPE_CHECKING

from .errors import InvalidSettingError

if TYPE_CHECKING:
    import numpy as np

# The share of a chunk's step, at its end, searched for a better place to cut.
BOUNDARY_SEARCH_SHARE = 0.2
# Where a window of a too-long text overlaps the next (late chunking), as a share of the window:
# each token's state comes from the window where it has the most context on both sides, so every
# token but those near the text's ends sees at least an eighth of a window on each side.
LATE_WINDOW_OVERLAP_SHARE = 0.25

SENTENCE_ENDS = ".!?;:\u2026\u3002\uff01\uff1f"  # ...and CJK full stops
CLOSING_MARKS = "\"')]}\u201d\u2019\u00bb"

# How good a cut point is, best last (a larger number wins).
ANY_TOKEN, BETWEEN_WORDS, SENTENCE_END, PARAGRAPH_END = range(4)


@dataclasses.dataclass(frozen=True)
class Chunks:
    """One text's chunks: ``spans[i]`` is ``(start, end)`` in the text, ``texts[i] == text[start:end]``.

    ``vectors`` is float32, one unit row per chunk, the model's (or its
    view's) dimensions; a text with nothing but whitespace has no chunks.
    """

    spans: list
    texts: list
    vectors: "np.ndarray"

    def __len__(self) -> int:
        return len(self.spans)


def check_chunking(chunk_tokens, overlap_tokens=0) -> tuple[int, int]:
    """Both settings as ints, or an error that says what is allowed; called before any work."""
    import numbers

    def integer(name, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise InvalidSettingError(f"{name} must be an integer, got {value!r}")
        return int(value)

    chunk_tokens, overlap_tokens = integer("chunk_tokens", chunk_tokens), integer("overlap_tokens", overlap_tokens)
    if chunk_tokens < 1:
        raise InvalidSettingError(f"chunk_tokens must be at least 1, got {chunk_tokens}; 512 suits most retrieval")
    if not 0 <= overlap_tokens < chunk_tokens:
        raise InvalidSettingError(
            f"overlap_tokens must be at least 0 and less than chunk_tokens ({chunk_tokens}), got {overlap_tokens}"
        )
    return chunk_tokens, overlap_tokens


@dataclasses.dataclass(frozen=True)
class ChunkSettings:
    """An adapter's chunking settings, checked once when made: what ``embed_chunks`` takes."""

    chunk_tokens: int
    overlap_tokens: int = 0
    late: bool = False

    @classmethod
    def of(cls, chunk_tokens, overlap_tokens=0, late=False) -> "ChunkSettings | None":
        """None without ``chunk_tokens`` (one vector per text, as before); bad settings raise here."""
        if chunk_tokens is None:
            if overlap_tokens != 0 or late is not False:
                raise InvalidSettingError("overlap_tokens and late need chunk_tokens (chunking is off without it)")
            return None
        chunk_tokens, overlap_tokens = check_chunking(chunk_tokens, overlap_tokens)
        check_late(late)
        return cls(chunk_tokens, overlap_tokens, late)

    def embed(self, model, texts: list[str]) -> "list[Chunks]":
        return model.embed_chunks(texts, self.chunk_tokens, self.overlap_tokens, self.late)


def check_late(late) -> bool:
    if not isinstance(late, bool):
        raise InvalidSettingError(f"late must be True or False, got {late!r}")
    return late


# -- plans: where the chunks of one text are -----------------------------------------------------

class TextLayout:
    """Where a text's tokens and whitespace are, to rank each token boundary as a place to cut."""

    def __init__(self, text: str, offsets: list[tuple[int, int]]):
        self.text, self.offsets = text, offsets
        runs = [match.span() for match in re.finditer(r"\s+", text)]
        self._run_starts = [start for start, _ in runs]
        self._runs = runs

    def _whitespace_around(self, position: int) -> tuple[int, int]:
        """The run of whitespace that touches ``position`` (empty at ``position`` when none)."""
        index = bisect.bisect_right(self._run_starts, position) - 1
        if index >= 0:
            start, end = self._runs[index]
            if start <= position <= end:
                return start, end
        return position, position

    def cut_quality(self, token: int) -> int:
        """How good a cut just before ``token`` is; ANY_TOKEN-1 where it would split a character."""
        start = self.offsets[token][0]
        if start < self.offsets[token - 1][1]:  # two tokens share a character (a multi-byte one)
            return ANY_TOKEN - 1
        gap_start, gap_end = self._whitespace_around(start)
        if gap_start == gap_end:
            return ANY_TOKEN
        if self.text.count("\n", gap_start, gap_end) >= 2:
            return PARAGRAPH_END
        before = self.text[:gap_start].rstrip(CLOSING_MARKS)
        if before and before[-1] in SENTENCE_ENDS:
            return SENTENCE_END
        return BETWEEN_WORDS

    def span(self, first: int, stop: int) -> tuple[int, int] | None:
        """Characters of tokens ``first..stop-1`` without the whitespace at either end; None if nothing else."""
        start, end = self.offsets[first][0], self.offsets[stop - 1][1]
        while start < end and self.text[start].isspace():
            start += 1
        while end > start and self.text[end - 1].isspace():
            end -= 1
        return (start, end) if start < end else None


def best_cut(layout: TextLayout, first: int, earliest: int, latest: int) -> int:
    """The token before which to cut a chunk that starts at ``first``: the best boundary in ``earliest..latest``.

    Paragraph beats sentence beats word beats any token; among equals the
    latest wins. A cut never splits a character: where the whole search
    range would, the cut moves back, and only a character spelled with more
    tokens than the chunk holds moves it forward.
    """
    best, best_quality = None, ANY_TOKEN - 1
    for token in range(latest, earliest - 1, -1):
        quality = layout.cut_quality(token)
        if quality > best_quality:
            best, best_quality = token, quality
            if quality == PARAGRAPH_END:
                break
    if best is not None:
        return best
    for token in [*range(earliest - 1, first, -1), *range(latest + 1, len(layout.offsets))]:
        if layout.cut_quality(token) >= ANY_TOKEN:
            return token
    return len(layout.offsets)


def token_ranges(layout: TextLayout, chunk_tokens: int, overlap_tokens: int,
                 limits: dict[int, int] | None = None) -> list[tuple[int, int]]:
    """``[(first, stop), ...]`` token ranges of the chunks; ``limits[first]`` tightens a chunk's size."""
    total = len(layout.offsets)
    step = chunk_tokens - overlap_tokens
    search = max(1, math.floor(step * BOUNDARY_SEARCH_SHARE))
    ranges, first = [], 0
    while first < total:
        size = min(chunk_tokens, (limits or {}).get(first, chunk_tokens))
        latest = first + size
        if latest >= total:
            ranges.append((first, total))
            break
        stop = best_cut(layout, first, max(first + 1, latest - search + 1), latest)
        ranges.append((first, stop))
        following = max(first + 1, stop - overlap_tokens)
        while 0 < following < total and layout.cut_quality(following) < ANY_TOKEN:
            following += 1  # never start a chunk inside a character
        first = following
    return ranges


def plan_spans(text: str, offsets: list[tuple[int, int]], chunk_tokens: int, overlap_tokens: int,
               count_tokens) -> list[tuple[int, int]]:
    """The spans of one text's chunks; ``count_tokens(list_of_texts)`` checks each against the limit."""
    if not offsets:
        return []
    layout = TextLayout(text, offsets)
    limits: dict[int, int] = {}
    while True:
        ranges = token_ranges(layout, chunk_tokens, overlap_tokens, limits)
        kept = [(first, stop, layout.span(first, stop)) for first, stop in ranges]
        kept = [(first, stop, span) for first, stop, span in kept if span is not None]
        counts = count_tokens([text[start:end] for _, _, (start, end) in kept])
        # Re-tokenized alone, a chunk can come out longer (a word cut in two merges differently): give
        # it one token less and plan again. One character the tokenizer spells with more tokens than
        # the limit cannot be cut smaller; it stays a chunk of its own.
        shrinkable = [(first, stop) for (first, stop, _), count in zip(kept, counts)
                      if count > chunk_tokens and 1 <= stop - first - 1 < limits.get(first, chunk_tokens)]
        if shrinkable:
            for first, stop in shrinkable:
                limits[first] = stop - first - 1
            continue
        return [keep_leading_space(layout, first, span, count, chunk_tokens, count_tokens)
                for (first, _, span), count in zip(kept, counts)]


def keep_leading_space(layout: TextLayout, first: int, span: tuple[int, int], count: int, chunk_tokens: int,
                       count_tokens) -> tuple[int, int]:
    """A one-token chunk whose word is spelled with more tokens without its space (``Ġword``) keeps the space."""
    start, end = span
    token_start = layout.offsets[first][0]
    if count <= chunk_tokens or token_start == start:
        return span
    if count_tokens([layout.text[token_start:end]])[0] <= chunk_tokens:
        return token_start, end
    return span


def plan_chunks(model, texts: list[str], chunk_tokens: int = 512, overlap_tokens: int = 0) -> list[list]:
    """Every text's chunk spans, without embedding: for callers that embed the chunks their own way.

    (PostgreSQL's ``format`` templates embed a title with each chunk, so they
    need the spans of the bare text first.)
    """
    from .model import check_texts

    return planned_spans(model, check_texts(texts), *check_chunking(chunk_tokens, overlap_tokens))


def planned_spans(model, texts: list[str], chunk_tokens: int, overlap_tokens: int) -> list[list]:
    """``plan_chunks`` for texts and settings already checked (``embed_chunks`` checks them first)."""
    from .contracts import ChunkPath

    if not isinstance(model, ChunkPath):
        raise InvalidSettingError(
            f"{model.name} cannot chunk: its plugin does not tell where its tokens are in a text "
            "(it implements no token_offsets; see vecplug.contracts.ChunkPath)"
        )

    def count_tokens(pieces: list[str]) -> list[int]:
        return [len(offsets) for offsets in model.token_offsets(pieces)] if pieces else []

    return [
        plan_spans(text, offsets, chunk_tokens, overlap_tokens, count_tokens)
        for text, offsets in zip(texts, model.token_offsets(texts))
    ]


# -- vectors ------------------------------------------------------------------------------------

def embed_chunks(model, texts, chunk_tokens: int = 512, overlap_tokens: int = 0, late: bool = False) -> list[Chunks]:
    """``EmbeddingModel.embed_chunks``: plan every text's chunks, then embed them plainly or late."""
    from .model import check_texts, refuse_single_text

    refuse_single_text(texts)
    chunk_tokens, overlap_tokens = check_chunking(chunk_tokens, overlap_tokens)
    check_late(late)
    texts = check_texts(texts)
    if late:
        check_late_pooling(model)
    spans = planned_spans(model, texts, chunk_tokens, overlap_tokens)
    if late:
        vectors = late_vectors(model, texts, spans)
    else:
        pieces = [text[start:end] for text, text_spans in zip(texts, spans) for start, end in text_spans]
        vectors = per_text(model.embed_documents(pieces), spans)
    return [
        Chunks(list(text_spans), [text[start:end] for start, end in text_spans], text_vectors)
        for text, text_spans, text_vectors in zip(texts, spans, vectors)
    ]


@dataclasses.dataclass
class Window:
    """One forward pass's worth of a document: token ids, and which rows feed which chunk."""

    token_ids: list
    contributions: list = dataclasses.field(default_factory=list)  # [(chunk number, row indices), ...]


def first_visible(text: str, start: int, end: int) -> int:
    """Where the first non-whitespace character of ``text[start:end]`` is, or -1 for whitespace only.

    A byte-level token carries the space before its word (``Ġword``); it
    belongs where its word starts.
    """
    for position in range(start, end):
        if not text[position].isspace():
            return position
    return -1


def document_windows(model, text: str, spans: list, first_chunk: int) -> list[Window]:
    """The passes a late-chunked document needs, and what each of its tokens adds to which chunk.

    Prompt and text are tokenized together (the text's first word keeps its
    usual token) and told apart by character offsets; special and prompt
    tokens feed no chunk. A document longer than ``max_tokens`` runs in
    windows that each repeat the special and prompt tokens and overlap the
    next by ``LATE_WINDOW_OVERLAP_SHARE``; a token's state comes from the
    window whose centre is nearest, where it has the most context on both
    sides.
    """
    import numpy as np

    prompted = model.spec.apply_prompt(text, "document")  # no prompt added to a text that starts with one
    prompt = prompted[:len(prompted) - len(text)]
    ids, offsets, special = model.encode_with_offsets([prompted])[0]
    lead = next((index for index, flag in enumerate(special) if not flag), len(ids))
    trail = len(ids) - next((index for index in range(len(ids) - 1, -1, -1) if not special[index]), -1) - 1
    inner_end = len(ids) - trail
    visible = [first_visible(prompted, *offsets[token]) for token in range(lead, inner_end)]
    split = lead + next(
        (index for index, token in enumerate(range(lead, inner_end))
         if offsets[token][1] > len(prompt) and (visible[index] < 0 or visible[index] >= len(prompt))),
        inner_end - lead,
    )
    # the text's tokens that own a character: where it is (in the text) and which token it is
    owners = [(visible[token - lead] - len(prompt), token) for token in range(split, inner_end)
              if visible[token - lead] >= 0]
    positions = np.array([position for position, _ in owners], dtype=np.int64)
    owner_tokens = np.array([token for _, token in owners], dtype=np.int64)

    head, prompt_ids, body, tail = ids[:lead], ids[lead:split], ids[split:inner_end], ids[inner_end:]
    width = model.max_tokens - len(head) - len(prompt_ids) - len(tail)
    if len(ids) <= model.max_tokens:
        starts = [0]
        width = len(body)
    elif width < 1:
        raise InvalidSettingError(f"{model.name}'s document prompt leaves no room for text in {model.max_tokens} tokens")
    else:
        stride = max(1, width - math.floor(width * LATE_WINDOW_OVERLAP_SHARE))
        starts = list(range(0, len(body) - width, stride)) + [len(body) - width]
    windows = [Window(head + prompt_ids + body[start:start + width] + tail) for start in starts]
    centres = np.array(starts, dtype=np.float64) + (width - 1) / 2

    for chunk, (start, end) in enumerate(spans):
        low, high = np.searchsorted(positions, [start, end], side="left")
        tokens = owner_tokens[low:high]
        if tokens.size == 0:  # its first character shares a token with the one before: use that token
            tokens = owner_tokens[max(low - 1, 0):max(low, 1)]
        body_index = tokens - split
        nearest = np.abs(body_index[:, None] - centres[None, :]).argmin(axis=1) if len(starts) > 1 \
            else np.zeros(len(tokens), dtype=np.int64)
        for window_number in np.unique(nearest):
            chosen = body_index[nearest == window_number]
            rows = len(head) + len(prompt_ids) + chosen - starts[window_number]
            windows[window_number].contributions.append((first_chunk + chunk, rows))
    return windows


def late_vectors(model, texts: list[str], spans: list[list]) -> list["np.ndarray"]:
    """Each chunk's vector: the L2-normalised mean of the final states of the tokens that start in it.

    Every window of every document is planned into forward passes of the
    model's ``token_budget`` real tokens (the packed path, as plain
    embedding), and only one pass's token states are held at a time.
    """
    import numpy as np

    from .token_budget import plan_batches

    windows, first_chunk = [], 0
    for text, text_spans in zip(texts, spans):
        if text_spans:
            windows.extend(document_windows(model, text, text_spans, first_chunk))
        first_chunk += len(text_spans)
    sums, counts = None, np.zeros(first_chunk, dtype=np.int64)
    for planned in plan_batches([len(window.token_ids) for window in windows], model.token_budget):
        states = model.token_states([windows[number].token_ids for number in planned])
        if sums is None:
            sums = np.zeros((first_chunk, states.shape[1]), dtype=np.float64)
        base = 0
        for number in planned:
            for chunk, rows in windows[number].contributions:
                sums[chunk] += states[base + rows].sum(axis=0, dtype=np.float64)
                counts[chunk] += len(rows)
            base += len(windows[number].token_ids)
    if sums is None:  # no text had a chunk
        sums = np.zeros((0, model.dimensions))
    means = (sums / np.maximum(counts, 1)[:, None])[:, :model.dimensions]
    vectors = (means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    return per_text(vectors, spans)


def check_late_pooling(model) -> None:
    """Late chunking pools the mean of a chunk's token states: only a mean-pooled model's vectors are made so.

    A CLS or last-token model was trained to put the text's meaning in one
    token; the mean of a span's states is not in its vector space, so its
    late chunks could not be compared with its queries. Refused, before any
    work, with what to do instead.
    """
    pooling = model.describe().get("pooling", "mean")
    if pooling != "mean":
        raise InvalidSettingError(
            f"{model.name} pools with its {pooling} token, and late chunking needs a mean-pooled model (each "
            "chunk is the mean of its tokens' states, which is not in this model's vector space); "
            "chunk without late=True (--late), or use a mean-pooled model"
        )


def per_text(vectors: "np.ndarray", spans: list[list]) -> list["np.ndarray"]:
    """The rows of every text's chunks, all texts' chunks being ``vectors`` one after another."""
    import numpy as np

    bounds = np.cumsum([0] + [len(text_spans) for text_spans in spans])
    return [vectors[bounds[index]:bounds[index + 1]] for index in range(len(spans))]
