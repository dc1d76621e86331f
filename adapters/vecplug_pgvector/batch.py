"""One batch of a vectorizer's queue, in one transaction: claim, read, embed, write, dequeue.

    vecplug.claim_batch (FOR UPDATE SKIP LOCKED)  ->  read each row's current text
    ->  vecplug_before_ingest  ->  embed (document prompt)  ->  write where the text is unchanged
    ->  vecplug.finish_batch: delete exactly the queue rows claimed  ->  COMMIT

Batches are sized by tokens (``batch_tokens``): a batch claims about as many
rows as its token budget holds (from the tokens per row seen so far, at most
``batch_size``), reads them, and embeds the rows that fit the budget, in
queue order (always at least one); the rest of the claim stays queued,
untouched, for the next batch. Fixed row counts made passes of short texts
too small for the engine and batches of long ones too long.

Several workers share a queue: SKIP LOCKED gives each its own rows. A row
whose text changes while it is embedded is not overwritten (the write
checks the md5 of the text it read) and the change queued a new row. A row
deleted meanwhile is simply not written. A queued key that names no row
counts as done only when it reads back as itself (its type's text form, under
``vectorizers.KEY_SETTINGS``); a key that cannot be read as its type at all
is that row's error, never the batch's.

vecplug's queue is reached only through its functions (sql/core/23_worker_api.sql);
the table is read and written as the connected role (see ``vectorizers``).
Every statement is named in ``statements``, with whose rights it runs.

Failures: an outage (the server unreachable, busy or refusing the key, the
database gone) rolls the whole transaction back: every row stays queued,
no attempt is counted. Any other error is taken to be about the rows: the
batch is split in halves, each in a savepoint, until the rows that fail
alone are found; those get an attempt and a backoff, and after
``max_attempts`` move to ``vecplug.failed`` with their error. The others go through.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time

import vecplug
from vecplug.errors import ModelMismatchError, ServerError, ServerUnavailableError

from . import formats, statements
from . import vectorizers as vz

MAX_ERROR_CHARS = 2000
BUDGET_PASSES = 8            # default batch_tokens: this many of the model's forward passes (token_budget)
DEFAULT_PASS_TOKENS = 2048   # a model that does not say its token_budget (a RemoteModel)
CHARS_PER_TOKEN = 4          # a model that cannot count tokens: estimated from characters
OUTAGE_STATUSES = (401, 403, 429, 502, 503, 504)


class Outage(Exception):
    """Nothing can be embedded now (server or database); the batch was rolled back, no attempt counted."""


class DatabaseLost(Outage):
    """The database connection broke (restart, network); reconnect and carry on."""


@dataclasses.dataclass
class BatchResult:
    locked: int = 0          # queue rows taken
    embedded: int = 0        # table rows that got their vector
    skipped: int = 0         # rows gone, without text, dropped by a plugin, or changed meanwhile
    errors: int = 0          # rows that failed on their own this time (attempt counted)
    failed: int = 0          # of those, rows moved to vecplug.failed
    truncated: int = 0
    deferred: int = 0        # claimed rows past the token budget: left queued for the next batch
    seconds: float = 0.0
    last_error: str | None = None


@dataclasses.dataclass
class Row:
    """A table row to embed: its key (text values), its queue rows, its text and that text's md5.

    ``values``: the row's values of the columns its vectorizer's format names (``format_columns`` order).
    """

    key: tuple[str, ...]
    queue_ids: list[int]
    attempts: int
    text: str | None
    md5: str | None
    values: tuple = ()

    def format_values(self, vectorizer) -> dict:
        """{name in the template: value} for ``formats.fill``."""
        return dict(zip(formats.template_names(vectorizer.format), self.values))


def default_batch_tokens(model) -> int:
    """Tokens per worker batch when none is given: ``BUDGET_PASSES`` of the model's forward passes, so the
    engine runs full passes and the per-batch round trips are spread over many rows."""
    budget = None
    try:
        budget = model.describe().get("token_budget")
    except Exception:  # noqa: BLE001 - a model that cannot describe itself (a server away): the default
        pass
    return BUDGET_PASSES * int(budget or DEFAULT_PASS_TOKENS)


def is_outage(error: BaseException) -> bool:
    """Errors that say nothing about the rows: retry the same rows later, count no attempt."""
    if isinstance(error, ServerUnavailableError):
        return True
    if isinstance(error, ServerError):
        return error.status is None or error.status in OUTAGE_STATUSES
    return isinstance(error, (ConnectionError, TimeoutError))


def write_in_halves(conn, rows: list[Row], write, on_written, on_failure) -> set[tuple]:
    """``on_written(write(rows))`` in a savepoint; the keys of the rows that fail alone.

    An error about the rows splits them in halves, each tried again in its own
    savepoint, until the rows that fail alone are found (``on_failure(row,
    error)`` for each): one bad text never holds back its batch. Errors that
    say nothing about the rows (a model mismatch, an outage, a lost
    connection) end the batch instead.
    """
    try:
        with conn.transaction():  # a savepoint
            outcome = write(rows)
        on_written(outcome)
        return set()
    except (ModelMismatchError, Outage):
        raise
    except Exception as error:  # noqa: BLE001 - any other error is about these rows; find which
        if conn.closed or conn.broken:
            raise DatabaseLost(f"lost the database connection: {_one_line(error)}") from error
        if is_outage(error):
            raise Outage(_one_line(error)) from error
        if len(rows) > 1:
            middle = len(rows) // 2
            return (write_in_halves(conn, rows[:middle], write, on_written, on_failure)
                    | write_in_halves(conn, rows[middle:], write, on_written, on_failure))
        on_failure(rows[0], error)
        return {rows[0].key}


class BatchRunner:
    """Runs batches on one autocommit connection: each batch is one explicit transaction, its retries savepoints."""

    def __init__(self, conn, model, *, batch_size: int = 64, max_attempts: int = 5, retry_delay: float = 10.0,
                 max_retry_delay: float = 3600.0, batch_tokens: int | None = None):
        """``batch_size``: rows per batch, at most; ``batch_tokens``: tokens per batch (None: rows only)."""
        self.conn = conn
        self.model = model
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self._tokens_per_row: dict[int, float] = {}  # per vectorizer, from its batches so far
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay

    def run(self, vectorizer: vz.Vectorizer) -> BatchResult:
        """One batch of ``vectorizer``'s queue. Raises Outage (rolled back) or ModelMismatchError (refused)."""
        result = BatchResult()
        started = time.perf_counter()
        try:
            with self.conn.transaction():
                self._run(vectorizer, result)
        except Outage as error:
            cause = error.__cause__
            if isinstance(error, DatabaseLost) and cause is not None and is_outage(cause):
                # The server failed first, and PostgreSQL ended the session that waited on it meanwhile
                # (idle_in_transaction_session_timeout, a proxy's idle limit): the server's outage. The
                # worker reconnects to the database anyway (it checks the connection before each round).
                raise Outage(_one_line(cause)) from cause
            raise  # it says what it is already: wrapping it again doubled "lost the database connection: "
        except Exception as error:
            if self.conn.closed or self.conn.broken:
                raise DatabaseLost(f"lost the database connection: {_one_line(error)}") from error
            raise
        result.seconds = time.perf_counter() - started
        return result

    def _run(self, vectorizer: vz.Vectorizer, result: BatchResult) -> None:
        current = vz.load_one(self.conn, vectorizer.id)
        if current is None or not current.exists:
            return
        view = vz.model_for(current, self.model)
        vz.use_key_settings(self.conn)
        rows = self._claim(current)
        result.locked = sum(len(row.queue_ids) for row in rows)
        if not rows:
            return
        if current.chunked:
            from .chunks import ChunkWriter

            ChunkWriter(self).run(current, view, rows, result)
            return
        readable = self._read(current, rows, result)
        done_ids = []
        for row in readable:
            if row.text is None:  # the row is gone (its key reads back as itself) or has no text
                done_ids += row.queue_ids
                result.skipped += 1
        present = self._within_budget(current.id, view, [row for row in readable if row.text is not None], result)
        kept = self.embed_rows(current, view, present, current.embedding_column, result, self._record_failure)
        done = [row for row in present if row.key not in kept]
        done_ids += [queue_id for row in done for queue_id in row.queue_ids]
        self._finish(current, done_ids, done, result)

    def claim_size(self, vectorizer_id: int) -> int:
        """Queue rows to claim: what the token budget holds at the tokens per row seen so far (a quarter
        more, as rows vary), at most ``batch_size``; ``batch_size`` before anything was seen."""
        seen = self._tokens_per_row.get(vectorizer_id)
        if self.batch_tokens is None or seen is None:
            return self.batch_size
        return max(1, min(self.batch_size, math.ceil(1.25 * self.batch_tokens / seen)))

    def _within_budget(self, vectorizer_id: int, view, rows: list[Row], result: BatchResult) -> list[Row]:
        """The first rows, in queue order, whose texts fit ``batch_tokens`` (at least one); the others stay
        queued untouched (not done, no attempt): the next batch takes them."""
        if self.batch_tokens is None or not rows:
            return rows
        texts = [row.text for row in rows]
        counts = view.token_counts(texts, "document") or [max(1, len(text) // CHARS_PER_TOKEN) for text in texts]
        self._tokens_per_row[vectorizer_id] = sum(counts) / len(counts)
        kept, tokens = 0, 0
        while kept < len(rows) and (kept == 0 or tokens + counts[kept] <= self.batch_tokens):
            tokens += counts[kept]
            kept += 1
        result.deferred += len(rows) - kept
        return rows[:kept]

    def _claim(self, vectorizer) -> list[Row]:
        """The due queue rows of a batch, locked (and the vectorizer, SHARE), as one Row per table row."""
        by_key: dict[tuple, Row] = {}
        for queue_id, key, attempts in self.conn.execute(statements.CLAIM_BATCH,
                                                         [vectorizer.id, self.claim_size(vectorizer.id)]).fetchall():
            row = by_key.setdefault(tuple(key), Row(tuple(key), [], attempts, None, None))
            row.queue_ids.append(queue_id)
            row.attempts = max(row.attempts, attempts)
        return list(by_key.values())

    def _finish(self, vectorizer, done_ids: list[int], done: list[Row], result: BatchResult) -> None:
        """Dequeue what is done, forget the failures of rows that went through, log what the batch did."""
        self.conn.execute(statements.FINISH_BATCH, [vectorizer.id, done_ids, result.embedded, result.truncated,
                                                    result.last_error, json.dumps([list(row.key) for row in done])])

    def _read(self, vectorizer, rows: list[Row], result: BatchResult) -> list[Row]:
        """Fill in each row's current text; returns the rows that could be read (text None: no row, no text).

        A key its type cannot read, or one that names no row but does not read
        back as itself, is that row's failure (recorded), never the batch's.
        """
        try:
            with self.conn.transaction():  # a savepoint
                found = self._read_texts(vectorizer, rows)
                missing = [row for index, row in enumerate(rows) if index not in found]
                unreadable = {missing[i].key for i in self._not_round_trips(vectorizer, missing)} if missing else set()
        except Exception as error:  # noqa: BLE001 - a key that is not its type's text; find which
            if self.conn.closed or self.conn.broken:
                raise DatabaseLost(f"lost the database connection: {_one_line(error)}") from error
            if len(rows) > 1:
                middle = len(rows) // 2
                return self._read(vectorizer, rows[:middle], result) + self._read(vectorizer, rows[middle:], result)
            self._fail_alone(vectorizer, rows[0], f"its queued key {list(rows[0].key)} cannot be read as "
                                                  f"{', '.join(vectorizer.key_types)}: {_one_line(error)}", result)
            return []
        readable = []
        for index, row in enumerate(rows):
            if row.key in unreadable:
                self._fail_alone(vectorizer, row, f"its queued key {list(row.key)} names no row, and does not read "
                                                  "back as itself, so the row cannot be told gone; was it queued "
                                                  "by another vecplug version?", result)
                continue
            row.text, row.md5, values = found.get(index, (None, None, None))
            row.values = tuple(values or ())
            readable.append(row)
        return readable

    def _read_texts(self, vectorizer, rows: list[Row]) -> dict[int, tuple[str | None, str | None, list]]:
        """{position in ``rows``: (text, md5, format values)} of the rows that exist."""
        return {position: (text, md5, values) for position, text, md5, values in
                self.conn.execute(statements.read_texts(vectorizer), _key_parameters(vectorizer, rows)).fetchall()}

    def _not_round_trips(self, vectorizer, rows: list[Row]) -> list[int]:
        return [position for (position,) in
                self.conn.execute(statements.keys_not_round_tripping(vectorizer),
                                  _key_parameters(vectorizer, rows)).fetchall()]

    def _fail_alone(self, vectorizer, row: Row, message: str, result: BatchResult) -> None:
        result.errors += 1
        result.last_error = message[:MAX_ERROR_CHARS]
        self._record_failure(vectorizer, row, None, result)

    def embed_rows(self, vectorizer, view, rows: list[Row], column: str, result: BatchResult,
                   on_failure) -> set[tuple]:
        """Embed ``rows`` into ``column`` (savepoints, halving on errors); returns the keys that failed alone.

        ``on_failure(vectorizer, row, error, result)`` records each of those.
        Also used by ``vecplug pg reembed`` for its shadow column.
        """
        self._vectors: dict[tuple, object] = {}
        truncated_before = view.truncated_count
        failed = self._process(vectorizer, view, rows, column, result, on_failure)
        result.truncated += view.truncated_count - truncated_before
        return failed

    def _process(self, vectorizer, view, rows: list[Row], column, result, on_failure) -> set[tuple]:
        return self.write_counted(vectorizer, rows, lambda part: self._embed_and_write(vectorizer, view, part, column),
                                  result, on_failure)

    def write_counted(self, vectorizer, rows: list[Row], write, result: BatchResult, on_failure) -> set[tuple]:
        """``write_in_halves`` with a batch's counts: ``write(rows)`` gives (written, skipped); a row that
        fails alone counts as an error and goes to ``on_failure(vectorizer, row, error, result)``."""
        def written(counts):
            result.embedded += counts[0]
            result.skipped += counts[1]

        def failed(row, error):
            result.errors += 1
            result.last_error = f"{type(error).__name__}: {_one_line(error)}"[:MAX_ERROR_CHARS]
            on_failure(vectorizer, row, error, result)

        return write_in_halves(self.conn, rows, write, written, failed)

    def _embed_and_write(self, vectorizer, view, rows: list[Row], column: str) -> tuple[int, int]:
        """(rows written, rows skipped): a plugin may drop rows; a text may have changed meanwhile."""
        records = [vecplug.Record(row.key, row.text, {"vectorizer": vectorizer.name,
                                                       "key": dict(zip(vectorizer.key_columns, row.key))})
                   for row in rows]
        kept = vecplug.before_ingest(records, vectorizer.target)  # the core refuses ids not in the batch
        by_key = {row.key: row for row in rows}
        missing = [record for record in kept if (record.id, record.text) not in self._vectors]
        if missing:
            documents = [record.text if not vectorizer.format else
                         formats.fill(vectorizer.format, record.text, by_key[record.id].format_values(vectorizer))
                         for record in missing]
            for record, vector in zip(missing, view.embed_documents(documents)):
                self._vectors[(record.id, record.text)] = vector
        if not kept:
            return 0, len(rows)
        columns = [[record.id[index] for record in kept] for index in range(len(vectorizer.key_columns))]
        vectors = [self._vectors[(record.id, record.text)] for record in kept]
        md5s = [by_key[record.id].md5 for record in kept]
        written = {tuple(key) for key in self.conn.execute(statements.write_vectors(vectorizer, column),
                                                           columns + [md5s, vectors]).fetchall()}
        unwritten = [by_key[record.id] for record in kept if record.id not in written]
        if unwritten:
            # changed or deleted meanwhile (a new queue row has it, or nothing is left to embed), unless the
            # row is still there with the text embedded: then the table's own code skipped the UPDATE
            still = self._read_texts(vectorizer, unwritten)
            refused = [row for index, row in enumerate(unwritten) if still.get(index, (None, None, None))[1] == row.md5]
            if refused:
                raise RowsNotWritten(
                    f"the UPDATE of {len(refused)} rows (keys {[list(row.key) for row in refused[:3]]}) changed "
                    "nothing: a BEFORE UPDATE trigger, rule or policy of the table skipped it")
        return len(written), len(rows) - len(written)

    def _record_failure(self, vectorizer, row: Row, error: BaseException | None, result: BatchResult) -> None:
        """An attempt and a backoff for the row's queue rows; past ``max_attempts``, into vecplug.failed."""
        result.failed += self.conn.execute(statements.RECORD_ROW_FAILURE, [
            vectorizer.id, row.queue_ids, result.last_error, self.max_attempts, self.retry_delay,
            self.max_retry_delay]).fetchone()[0]


class RowsNotWritten(Exception):
    """The table's own code skipped the write of rows that are still there: their error, so they are retried."""


def _key_parameters(vectorizer, rows: list[Row]) -> list[list]:
    """The keys of ``rows`` as ``statements.read_texts`` and ``keys_not_round_tripping`` take them."""
    return statements.key_parameters(vectorizer, [row.key for row in rows])


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
