"""Format templates of vectorizers: ``format => E'title: {title}\\n\\n{chunk}'``.

The worker fills them here; the sync trigger fills them in SQL
(``vecplug._fill_format`` in sql/core/15_vectorizer_internals.sql). Both
follow one rule, so a row embeds the same text either way: ``{name}`` is a
placeholder, ``{{`` and ``}}`` are a literal brace, and ``create_vectorizer``
refuses any other brace. ``{text}`` (a vectorizer without chunking) or
``{chunk}`` (with) is the text; any other name is a column of the row, as
its text form (NULL: an empty string).
"""
from __future__ import annotations

import re

PIECE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
TEXT_NAMES = ("text", "chunk")


def template_names(template: str | None) -> list[str]:
    """The column names a template uses, each once, in the order they first appear ({text}/{chunk} left out).

    The i-th is the column ``vecplug.vectorizers.format_attnums[i]`` numbers,
    so a renamed column still fills the name the template was written with.
    """
    names: list[str] = []
    for match in PIECE.finditer(template or ""):
        name = match.group(1)
        if name is not None and name not in TEXT_NAMES and name not in names:
            names.append(name)
    return names


def fill(template: str, body: str, values: dict[str, str | None]) -> str:
    """``template`` with {text}/{chunk} replaced by ``body`` and each {column} by ``values[column]``."""

    def piece(match: re.Match) -> str:
        token, name = match.group(0), match.group(1)
        if name is None:
            return token[0]  # "{{" -> "{", "}}" -> "}"
        if name in TEXT_NAMES:
            return body
        return values.get(name) or ""

    return PIECE.sub(piece, template)
