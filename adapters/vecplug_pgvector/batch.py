"""One batch of a vectorizer's queue, in one transaction: lock, read, embed, write, dequeue.

    lock queue rows (FOR UPDATE SKIP LOCKED)  ->  read each row's current text
    ->  vecplug_before_ingest  ->  embed (document prompt)  ->  write where the text is unchanged
    ->  delete exactly the queue rows locked  ->  COMMIT

Several workers share a queue: SKIP LOCKED gives each its own rows. A row
whose text changes while it is embedded is not overwritten (the write
checks the md5 of the text it read) and the change queued a new row. A row
deleted meanwhile is simply not written.

Failures: an outage (the server unreachable, busy or refusing the key, the
database gone) rolls the whole transaction back: every row stays queued,
no attempt is counted. Any other error is taken to be about the rows: the
batch is split in halves, each in a savepoint, until the rows that fail
alone are found; those get an attempt and a backoff, and after
``max_attempts`` move to ``vecplug.failed`` with their error. The others go through.
"""
from __future__ import annotations

import dataclasses
import time

import vecplug
from vecplug.errors import ModelMismatchError, ServerError, ServerUnavailableError

from . import vectorizers as vz

MAX_ERROR_CHARS = 2000
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
    seconds: float = 0.0
    last_error: str | None = None


@dataclasses.dataclass
class Row:
    """A table row to embed: its key (text values), its queue rows, its text and that text's md5."""

    key: tuple[str, ...]
    queue_ids: list[int]
    attempts: int
    text: str
    md5: str


def is_outage(error: BaseException) -> bool:
    """Errors that say nothing about the rows: retry the same rows later, count no attempt."""
    if isinstance(error, ServerUnavailableError):
        return True
    if isinstance(error, ServerError):
        return error.status is None or error.status in OUTAGE_STATUSES
    return isinstance(error, (ConnectionError, TimeoutError))


class BatchRunner:
    """Runs batches on one autocommit connection: each batch is one explicit transaction, its retries savepoints."""

    def __init__(self, conn, model, *, batch_size: int = 64, max_attempts: int = 5, retry_delay: float = 10.0,
                 max_retry_delay: float = 3600.0):
        self.conn = conn
        self.model = model
        self.batch_size = batch_size
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
        except Exception as error:
            if self.conn.closed or self.conn.broken:
                raise DatabaseLost(f"lost the database connection: {_one_line(error)}") from error
            raise
        result.seconds = time.perf_counter() - started
        return result

    def _run(self, vectorizer: vz.Vectorizer, result: BatchResult) -> None:
        current = vz.load_one(self.conn, vectorizer.id, lock="SHARE")  # a re-embedding's swap waits for us
        if current is None or not current.exists:
            return
        view = vz.model_for(current, self.model)
        rows = self.conn.execute(vz.lock_and_read_sql(current), [current.id, self.batch_size]).fetchall()
        result.locked = len(rows)
        if not rows:
            return
        by_key: dict[tuple, Row] = {}
        done_ids = []
        for queue_id, key, attempts, text, md5 in rows:
            key = tuple(key)
            if text is None:  # the row is gone or has no text: nothing to embed, nothing to keep
                done_ids.append(queue_id)
                result.skipped += 1
                continue
            row = by_key.setdefault(key, Row(key, [], attempts, text, md5))
            row.queue_ids.append(queue_id)
            row.attempts = max(row.attempts, attempts)
        kept = self.embed_rows(current, view, list(by_key.values()), current.embedding_column, result,
                               self._record_failure)
        done = [row for row in by_key.values() if row.key not in kept]
        done_ids += [queue_id for row in done for queue_id in row.queue_ids]
        self.conn.execute("DELETE FROM vecplug.queue WHERE id = ANY(%s)", [done_ids])
        if done and self.conn.execute("SELECT EXISTS (SELECT FROM vecplug.failed WHERE vectorizer_id = %s)",
                                      [current.id]).fetchone()[0]:
            # a row that failed before (its text since changed) and went through now is no failure any more
            self.conn.execute(vz.forget_failed_sql(current), [[row.key[index] for row in done]
                                                             for index in range(len(current.key_columns))]
                              + [current.id])
        self.conn.execute("INSERT INTO vecplug.activity (vectorizer_id, embedded, truncated, error) "
                          "VALUES (%s, %s, %s, %s)", [current.id, result.embedded, result.truncated, result.last_error])

    def embed_rows(self, vectorizer, view, rows: list[Row], column: str, result: BatchResult,
                   on_failure) -> set[tuple]:
        """Embed ``rows`` into ``column`` (savepoints, halving on errors); returns the keys that failed alone.

        ``on_failure(vectorizer, row, error, result)`` records each of those.
        Also used by ``vecplug pg reembed`` for its shadow column.
        """
        self._vectors: dict[tuple, object] = {}
        truncated_before = getattr(view, "truncated_count", None)
        failed = self._process(vectorizer, view, rows, column, result, on_failure)
        if truncated_before is not None:
            result.truncated += view.truncated_count - truncated_before
        return failed

    def _process(self, vectorizer, view, rows: list[Row], column, result, on_failure) -> set[tuple]:
        try:
            with self.conn.transaction():  # a savepoint
                written, skipped = self._embed_and_write(vectorizer, view, rows, column)
            result.embedded += written
            result.skipped += skipped
            return set()
        except (ModelMismatchError, Outage):
            raise
        except Exception as error:  # noqa: BLE001 - any other error is about these rows; find which
            if self.conn.closed or self.conn.broken:
                raise DatabaseLost(f"lost the database connection: {_one_line(error)}") from error
            if is_outage(error):
                raise Outage(_one_line(error)) from error
            if len(rows) > 1:
                middle = len(rows) // 2
                return (self._process(vectorizer, view, rows[:middle], column, result, on_failure)
                        | self._process(vectorizer, view, rows[middle:], column, result, on_failure))
            result.errors += 1
            result.last_error = f"{type(error).__name__}: {_one_line(error)}"[:MAX_ERROR_CHARS]
            on_failure(vectorizer, rows[0], error, result)
            return {rows[0].key}

    def _embed_and_write(self, vectorizer, view, rows: list[Row], column: str) -> tuple[int, int]:
        """(rows written, rows skipped): a plugin may drop rows; a text may have changed meanwhile."""
        records = [vecplug.Record(row.key, row.text, {"vectorizer": vectorizer.name,
                                                       "key": dict(zip(vectorizer.key_columns, row.key))})
                   for row in rows]
        kept = vecplug.before_ingest(records, vectorizer.target)
        by_key = {row.key: row for row in rows}
        unknown = [record.id for record in kept if record.id not in by_key]
        if unknown:
            raise ValueError(f"a vecplug_before_ingest plugin returned records with ids {unknown[:3]} that were not "
                             "in the batch; it may drop or change records, not invent them")
        missing = [record for record in kept if (record.id, record.text) not in self._vectors]
        if missing:
            for record, vector in zip(missing, view.embed_documents([record.text for record in missing])):
                self._vectors[(record.id, record.text)] = vector
        if not kept:
            return 0, len(rows)
        columns = [[record.id[index] for record in kept] for index in range(len(vectorizer.key_columns))]
        vectors = [self._vectors[(record.id, record.text)] for record in kept]
        cursor = self.conn.execute(vz.write_sql(vectorizer, column),
                                   columns + [[by_key[record.id].md5 for record in kept], vectors])
        written = cursor.rowcount
        return written, len(rows) - written

    def _record_failure(self, vectorizer, row: Row, error: BaseException, result: BatchResult) -> None:
        """An attempt and a backoff for the row's queue rows; past ``max_attempts``, into vecplug.failed."""
        message = result.last_error
        self.conn.execute("""
            UPDATE vecplug.queue SET attempts = attempts + 1, last_error = %s,
                retry_after = now() + make_interval(secs => least(%s, %s * power(2, attempts)))
            WHERE id = ANY(%s)
        """, [message, self.max_retry_delay, self.retry_delay, row.queue_ids])
        moved = self.conn.execute("""
            WITH moved AS (DELETE FROM vecplug.queue WHERE id = ANY(%s) AND attempts >= %s
                           RETURNING vectorizer_id, pk, queued_at, attempts, last_error)
            INSERT INTO vecplug.failed (vectorizer_id, pk, queued_at, attempts, error)
            SELECT vectorizer_id, pk, min(queued_at), max(attempts), min(last_error) FROM moved
            GROUP BY vectorizer_id, pk
        """, [row.queue_ids, self.max_attempts]).rowcount
        result.failed += moved


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
