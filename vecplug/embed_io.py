"""Streaming input and output for ``vecplug embed``: texts in, vectors out, as they go.

Input is one text per line, or JSON lines with a text field; output is JSON
lines or a ``.npy`` file, or with chunking one JSON line per chunk. Nothing is held whole: a line is read, embedded in
the model's next window and written with it, so the first vectors appear
long before a large input ends and memory stays flat.
"""
from __future__ import annotations

import ast
import collections
import json
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import click

INPUT_FORMATS = ("auto", "lines", "jsonl")
JSONL_SUFFIXES = (".jsonl", ".ndjson")


class InputRecords:
    """Texts read lazily from lines; each record is kept (in order) until its vector is written.

    Iterating yields texts for the model; ``take(n)`` hands back the records
    of the next ``n`` vectors (``take_sources(n, id_field)`` their sources,
    for chunks). The model reads ahead (a window or two of texts), so only
    those records wait here, never the whole input.
    """

    def __init__(self, lines: Iterable[str], input_format: str = "lines", text_field: str = "text",
                 source: str = "input"):
        self._lines = lines
        self.input_format = input_format
        self.text_field = text_field
        self.source = source
        self._pending: collections.deque = collections.deque()

    def __iter__(self) -> Iterator[str]:
        for number, line in enumerate(self._lines, start=1):
            line = line.rstrip("\r\n")  # a Windows file's \r is not part of the text
            if self.input_format == "jsonl":
                record = self._parse(line, number)
                if record is None:
                    continue
                text = record[self.text_field]
            else:
                record, text = None, line
            self._pending.append((text, record, number))
            yield text

    def _parse(self, line: str, number: int) -> dict | None:
        if not line.strip():
            return None  # blank lines between JSON objects carry nothing
        try:
            record = json.loads(line)
        except ValueError as error:
            raise click.ClickException(f"{self.source} line {number} is not JSON ({error}); "
                                       "use --input-format lines for plain text") from None
        if not isinstance(record, dict) or not isinstance(record.get(self.text_field), str):
            raise click.ClickException(f"{self.source} line {number} has no string field {self.text_field!r}; "
                                       "choose the field with --text-field")
        return record

    def take(self, count: int) -> list[tuple[str, dict | None]]:
        return [self._pending.popleft()[:2] for _ in range(count)]

    def take_sources(self, count: int, id_field: str) -> list:
        """Where each of the next ``count`` texts came from: its JSON line's ``id_field``, else its line number
        (an argument's position, from 1)."""
        taken = [self._pending.popleft() for _ in range(count)]
        return [record[id_field] if record is not None and id_field in record else number
                for _, record, number in taken]


def decoded_lines(binary_lines: Iterable[bytes], source: str) -> Iterator[str]:
    """UTF-8 lines from a binary stream, split on \\n only (a stray \\r inside a text does not split it).

    Decoding line by line names the line that is not UTF-8, where a text
    stream would fail somewhere in an 8 KiB block.
    """
    for number, line in enumerate(binary_lines, start=1):
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise click.ClickException(f"{source} line {number} is not UTF-8 ({error.reason} at byte "
                                       f"{error.start}); convert it first, e.g. with iconv") from None


def detect_input_format(path: str | None, first_line: str | None, text_field: str) -> str:
    """``auto``: a ``.jsonl``/``.ndjson`` file, or a first line that is a JSON object with the text field."""
    if path and path != "-" and Path(path).suffix.lower() in JSONL_SUFFIXES:
        return "jsonl"
    if first_line is not None and first_line.lstrip().startswith("{"):
        try:
            record = json.loads(first_line)
        except ValueError:
            return "lines"
        if isinstance(record, dict) and isinstance(record.get(text_field), str):
            return "jsonl"
    return "lines"


def peek_first_line(lines: Iterator[str]) -> tuple[str | None, Iterator[str]]:
    """The first line and an iterator that still yields it."""
    import itertools

    first = next(lines, None)
    if first is None:
        return None, iter(())
    return first, itertools.chain([first], lines)


class JsonLinesWriter:
    """One JSON object per vector: the text (or the input's JSON object) plus ``embedding``."""

    def __init__(self, stream, owns_stream: bool = False):
        self.stream = stream
        self.owns_stream = owns_stream

    def write(self, records: list[tuple[str, dict | None]], vectors) -> None:
        lines = []
        for (text, record), vector in zip(records, vectors):
            row = dict(record) if record is not None else {"text": text}
            row["embedding"] = [round(float(x), 7) for x in vector]
            lines.append(json.dumps(row, ensure_ascii=False))
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()  # a reader at the other end of a pipe sees each chunk as it is done

    def close(self) -> None:
        if self.owns_stream:
            self.stream.close()


class ChunkLinesWriter:
    """One JSON object per chunk: ``source``, ``chunk_index``, ``start``, ``end``, ``text``, ``embedding``.

    ``start``/``end`` are half-open character offsets into the source text
    (``text == source_text[start:end]``); a text of whitespace only writes no line.
    """

    def __init__(self, stream, owns_stream: bool = False):
        self.stream = stream
        self.owns_stream = owns_stream

    def write(self, sources: list, results: list) -> None:
        lines = []
        for source, chunks in zip(sources, results):
            for index, ((start, end), text, vector) in enumerate(zip(chunks.spans, chunks.texts, chunks.vectors)):
                row = {"source": source, "chunk_index": index, "start": start, "end": end, "text": text,
                       "embedding": [round(float(x), 7) for x in vector]}
                lines.append(json.dumps(row, ensure_ascii=False))
        if lines:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.owns_stream:
            self.stream.close()


class NpyWriter:
    """A float32 ``.npy`` written row by row; its header is rewritten after every chunk.

    The row count is unknown until the input ends, so the header is padded to
    a fixed size and updated in place: the file is a valid array of every row
    written so far at any moment, also when the run is interrupted.
    """

    HEADER_BYTES = 128  # magic, version, length, dict: room for a 20-digit row count

    def __init__(self, path: Path, dimensions: int):
        self.path = path
        self.dimensions = dimensions
        self.rows = 0
        self.handle = open(path, "wb")
        self._write_header()

    def _write_header(self) -> None:
        header = repr({"descr": "<f4", "fortran_order": False, "shape": (self.rows, self.dimensions)})
        prefix = b"\x93NUMPY\x01\x00"
        room = self.HEADER_BYTES - len(prefix) - 2
        text = header.encode("latin1").ljust(room - 1) + b"\n"
        assert len(text) == room and ast.literal_eval(header), "npy header overflow"
        self.handle.seek(0)
        self.handle.write(prefix + struct.pack("<H", room) + text)
        self.handle.seek(0, 2)

    def write(self, records, vectors) -> None:
        import numpy as np

        self.handle.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
        self.rows += len(vectors)
        self._write_header()
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()
