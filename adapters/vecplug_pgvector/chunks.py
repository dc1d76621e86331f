"""A chunked vectorizer's batch: each row's text cut into passages, each passage embedded, the row's chunks replaced.

    claimed rows  ->  read each row's text (and the format's columns)  ->  vecplug_before_ingest
    ->  chunk and embed (``model.embed_chunks``; with a format: plan the chunks of the bare text,
        embed the template filled with each)  ->  keep the rows whose text is still the one read
    ->  DELETE their old chunks, INSERT the new ones  ->  vecplug.finish_batch  ->  COMMIT

All of it runs in the batch's transaction (``batch.BatchRunner``), so a row's
old chunks and its queue rows go in the same commit that writes its new
chunks: a search sees all the old chunks of a row or all the new ones, and
a text that got shorter leaves no chunk behind. Failures are found as for
single vectors: the rows are halved in savepoints until the ones that fail
alone are found, which get an attempt, a backoff and, after
``max_attempts``, a place in ``vecplug.failed``.

A row read with a NULL text counts as an empty one: no chunks (its old ones
go). Chunks and offsets are of the text the ``vecplug_before_ingest`` hooks
return, which is the row's own unless a plugin rewrites it.
"""
from __future__ import annotations

import vecplug
from vecplug.errors import ModelMismatchError

from . import formats, statements
from .batch import Row, RowsNotWritten, _key_parameters


class CannotChunk(ModelMismatchError):
    """The worker's model cannot cut texts by its tokens: the vectorizer is refused (its rows stay queued)."""


def can_chunk(model) -> bool:
    """A model that knows where its tokens are (``ChunkPath``), or one that chunks elsewhere (a server's
    ``RemoteModel`` with its own ``embed_chunks``)."""
    from vecplug.contracts import ChunkPath
    from vecplug.model import EmbeddingModel

    return isinstance(model, ChunkPath) or type(model).embed_chunks is not EmbeddingModel.embed_chunks


class ChunkWriter:
    """One batch of a chunked vectorizer, on a ``BatchRunner``'s connection and transaction."""

    def __init__(self, runner):
        self.runner = runner
        self.conn = runner.conn
        self._chunks: dict[tuple, tuple[list, object]] = {}  # (key, text) -> (spans, vectors): halving re-embeds nothing

    def run(self, vectorizer, view, rows: list[Row], result) -> None:
        if not can_chunk(view):  # else every row would fail alone and end in vecplug.failed
            raise CannotChunk(f"vectorizer {vectorizer.name} chunks its texts, and this worker's model "
                              f"{view.name!r} cannot: run the worker with a model that can (vecplug's ModernBERT, "
                              "or a vecplug serve that answers POST /embed_chunks)")
        readable = self.runner._read(vectorizer, rows, result)
        done_ids = []
        for row in readable:
            if row.text is None:  # the row is gone (its key reads back as itself): its chunks went with it
                done_ids += row.queue_ids
                result.skipped += 1
        # sized by tokens like any batch: a claim of long documents embeds the first that fit, the rest wait
        present = self.runner._within_budget(vectorizer.id, view, [row for row in readable if row.text is not None],
                                             result)
        truncated_before = view.truncated_count
        failed = self._process(vectorizer, view, present, result) if present else set()
        result.truncated += view.truncated_count - truncated_before
        done = [row for row in present if row.key not in failed]
        done_ids += [queue_id for row in done for queue_id in row.queue_ids]
        self.runner._finish(vectorizer, done_ids, done, result)

    def _process(self, vectorizer, view, rows: list[Row], result) -> set[tuple]:
        """Chunk, embed and write ``rows`` in a savepoint, halving on errors; returns the keys that failed alone."""
        return self.runner.write_counted(vectorizer, rows, lambda part: self._embed_and_write(vectorizer, view, part),
                                         result, self.runner._record_failure)

    def _embed_and_write(self, vectorizer, view, rows: list[Row]) -> tuple[int, int]:
        """(rows written, rows skipped): a plugin may drop rows; a text may have changed or gone meanwhile."""
        records = [vecplug.Record(row.key, row.text, {"vectorizer": vectorizer.name,
                                                       "key": dict(zip(vectorizer.key_columns, row.key))})
                   for row in rows]
        kept = vecplug.before_ingest(records, vectorizer.target)  # the core refuses ids not in the batch
        by_key = {row.key: row for row in rows}
        missing = [record for record in kept if (record.id, record.text) not in self._chunks]
        if missing:
            embedded = self._embed(vectorizer, view, [record.text for record in missing],
                                   [by_key[record.id] for record in missing])
            for record, chunks in zip(missing, embedded):
                self._chunks[(record.id, record.text)] = chunks
        if not kept:
            return 0, len(rows)
        kept_rows = [by_key[record.id] for record in kept]
        positions = {position for (position,) in self.conn.execute(
            statements.rows_still_current(vectorizer),
            _key_parameters(vectorizer, kept_rows) + [[row.md5 for row in kept_rows]]).fetchall()}
        current = [record for index, record in enumerate(kept) if index in positions]
        if not current:
            return 0, len(rows)
        key_count = len(vectorizer.key_columns)
        self.conn.execute(statements.delete_chunks(vectorizer),
                          [[record.id[index] for record in current] for index in range(key_count)])
        keys, indexes, starts, ends, texts, vectors = [[] for _ in range(key_count)], [], [], [], [], []
        for record in current:
            spans, chunk_vectors = self._chunks[(record.id, record.text)]
            for number, ((start, end), vector) in enumerate(zip(spans, chunk_vectors)):
                for index in range(key_count):
                    keys[index].append(record.id[index])
                indexes.append(number)
                starts.append(start)
                ends.append(end)
                texts.append(record.text[start:end])
                vectors.append(vector)
        if indexes:
            inserted = self.conn.execute(statements.insert_chunks(vectorizer),
                                         keys + [indexes, starts, ends, texts, vectors]).rowcount
            if inserted != len(indexes):
                raise RowsNotWritten(f"{len(indexes) - inserted} of {len(indexes)} chunks were not inserted: a "
                                     "BEFORE INSERT trigger, rule or policy of the destination table skipped them")
        return len(current), len(rows) - len(current)

    def _embed(self, vectorizer, view, texts: list[str], rows: list[Row]) -> list[tuple[list, object]]:
        """(spans, vectors) of each text's chunks.

        Without a format, ``embed_chunks`` does it all (late chunking too). With one, the bare
        text is chunked (so the offsets are into it) and the template, filled with each chunk and
        the row's columns, is what is embedded.
        """
        import numpy as np

        if not vectorizer.format:
            return [(list(found.spans), found.vectors) for found in view.embed_chunks(
                texts, chunk_tokens=vectorizer.chunk_tokens, overlap_tokens=vectorizer.chunk_overlap,
                late=vectorizer.late_chunking)]
        spans = plan_chunks(view, texts, vectorizer.chunk_tokens, vectorizer.chunk_overlap)
        documents = [formats.fill(vectorizer.format, text[start:end], row.format_values(vectorizer))
                     for text, text_spans, row in zip(texts, spans, rows) for start, end in text_spans]
        flat = view.embed_documents(documents) if documents else np.zeros((0, view.dimensions), dtype=np.float32)
        bounds = np.cumsum([0] + [len(text_spans) for text_spans in spans])
        return [(list(text_spans), flat[bounds[index]:bounds[index + 1]]) for index, text_spans in enumerate(spans)]


def plan_chunks(model, texts: list[str], chunk_tokens: int, overlap_tokens: int) -> list[list]:
    """Each text's chunk spans without embedding them, where the model can say where its tokens are
    (``vecplug.chunking.plan_chunks``); otherwise the spans of ``embed_chunks`` (its vectors unused)."""
    try:
        from vecplug.chunking import plan_chunks as plan
        from vecplug.contracts import ChunkPath
    except ImportError:
        plan = ChunkPath = None
    if plan is not None and isinstance(model, ChunkPath):
        return [list(spans) for spans in plan(model, texts, chunk_tokens, overlap_tokens)]
    return [list(found.spans) for found in model.embed_chunks(texts, chunk_tokens=chunk_tokens,
                                                              overlap_tokens=overlap_tokens)]
