"""``vecplug pg reembed``: move a vectorizer to another model while queries keep working.

1. ``vecplug.begin_reembed`` adds a shadow column (``<column>_vecplug_next``)
   and records the new model; from then on a changed text clears both columns.
2. Every row is embedded into the shadow column in batches of its own
   transactions, walking the primary key (keyset pagination), then walked
   again for rows whose text changed meanwhile. Queries, inserts and the
   worker (still filling the current column with the current model) go on.
3. The shadow column gets its HNSW index (``CREATE INDEX CONCURRENTLY``).
4. One transaction: lock the vectorizer and the table against writers,
   embed what is still missing, and ``vecplug.finish_reembed`` swaps the
   columns, the index name and the recorded model. Readers wait only for the
   final ``ALTER TABLE``s. A deadlock with another session retries the step.

Rows that cannot be embedded with the new model (a poisoned text) are
queued at the swap, for workers of the new model, and counted in the report.
Every statement is named in ``statements``, with whose rights it runs.
"""
from __future__ import annotations

import dataclasses
import time

import vecplug

from . import statements
from . import vectorizers as vz
from .batch import BatchResult, BatchRunner, Row
from .connection import connect
from .installer import given_api_key, server_api_key

SWAP_TRIES = 3


@dataclasses.dataclass
class ReembedReport:
    vectorizer: str
    model: str
    fingerprint: str
    dimensions: int
    embedded: int = 0
    queued: int = 0          # rows the new model could not embed: queued for the worker at the swap
    truncated: int = 0
    failed: int = 0          # chunked: rows that failed alone in a walk (queued at the swap unless a later walk did them)
    seconds: float = 0.0

    def __str__(self) -> str:
        text = (f"{self.vectorizer} now uses {self.model} ({self.dimensions} dimensions, fingerprint "
                f"{self.fingerprint}): embedded {self.embedded} rows in {self.seconds:.1f} s")
        if self.truncated:
            text += f"; {self.truncated} texts truncated"
        if self.queued:
            text += f"; {self.queued} rows failed and are queued for workers of the new model"
        return text + ". Run workers with this model from now on."


def reembed(dsn: str, vectorizer: str, model=None, *, server_url: str | None = None, api_key: str | None = None,
            dimensions: int | None = None, device: str | None = None, dtype: str | None = None,
            batch_size: int = 64, show_progress: bool = True) -> ReembedReport:
    """Re-embed every row of ``vectorizer`` (id or name) with ``model`` (or the server at ``server_url``), then swap.

    ``dimensions``: Matryoshka size of the new vectors (default the model's).
    The server's API key: ``api_key``, ``$VECPLUG_API_KEY``, or the one
    ``vecplug pg install`` recorded (when this role may read it).
    Resumable: run it again after an interruption with the same model.
    """
    import psycopg
    from pgvector.psycopg import register_vector

    from vecplug.progress import progress

    started = time.perf_counter()
    if server_url is not None and not given_api_key(api_key):
        # as the worker: the key vecplug pg install recorded, when this role may read it
        with connect(dsn, "pg reembed") as conn:
            api_key = server_api_key(None, conn)
    embedder = _load(model, server_url, api_key, device, dtype)
    view = embedder.with_dimensions(dimensions or embedder.spec.dimensions)
    name = embedder.served_name or embedder.spec.name
    with connect(dsn, "pg reembed") as conn:
        register_vector(conn)
        found = vz.resolve(vz.load_all(conn), vectorizer)
        if not found.exists:
            raise vz.VectorizerError(f"the table of vectorizer {found.name} is gone")
        if found.refusal:  # it writes the table as this role, as the worker does: the same rule
            raise vz.VectorizerError(f"cannot re-embed {found.name} as role {conn.info.user!r}: {found.refusal}")
        table = _regclass_text(conn, found)
        with conn.transaction():
            conn.execute(statements.BEGIN_REEMBED,
                         [table, found.embedding_column, name, view.spec.fingerprint, view.spec.dimensions])
        current = vz.load_one(conn, found.id)
        view = vz.model_for(current, embedder, next_column=True)
        report = ReembedReport(current.name, name, view.spec.fingerprint, view.spec.dimensions)
        runner = BatchRunner(conn, embedder, batch_size=batch_size)
        if current.chunked:
            _reembed_chunks(conn, runner, table, current, view, report, show_progress)
            report.seconds = time.perf_counter() - started
            return report
        total = conn.execute(statements.count_without_shadow_vector(current)).fetchone()[0]
        with progress(total=total, desc="re-embedding", unit="row", quiet=not show_progress) as bar:
            for _ in range(3):  # the walk, then catch-up walks for texts changed meanwhile
                if not _walk(conn, runner, current, view, report, bar):
                    break
        _build_index(conn, current)
        for attempt in range(SWAP_TRIES):
            try:
                with conn.transaction():
                    conn.execute(statements.LOCK_VECTORIZER_FOR_SWAP, [table, current.embedding_column])
                    conn.execute(statements.lock_against_writers(current))
                    _walk(conn, runner, current, view, report, None, transaction=False)
                    report.queued = conn.execute(statements.FINISH_REEMBED,
                                                 [table, current.embedding_column]).fetchone()[0]
                break
            except psycopg.errors.DeadlockDetected:
                if attempt == SWAP_TRIES - 1:
                    raise
    report.seconds = time.perf_counter() - started
    return report


def _load(model, server_url, api_key, device, dtype):
    if (model is None) == (server_url is None):
        raise ValueError("give the new model: model (a name or a loaded model) or server_url, one of them")
    if server_url is not None:
        from vecplug.client import RemoteModel

        return RemoteModel(server_url, api_key=api_key)
    if isinstance(model, vecplug.EmbeddingModel):
        return model
    return vecplug.load_model(model, device=device, dtype=dtype)


def _regclass_text(conn, vectorizer: vz.Vectorizer) -> str:
    from psycopg import sql

    return sql.Identifier(vectorizer.schema, vectorizer.table).as_string(conn)


def _walk(conn, runner: BatchRunner, vectorizer, view, report: ReembedReport, bar, transaction: bool = True) -> int:
    """One pass in key order over the rows with text and no shadow vector; returns the rows embedded."""
    return walk_pages(conn, lambda after: statements.rows_without_shadow_vector(vectorizer, after=after),
                      lambda query, parameters: _embed_batch(conn, runner, vectorizer, view, report, query, parameters),
                      runner.batch_size, report, bar, transaction)


def walk_pages(conn, page_query, handle_page, page_size: int, report, bar, transaction: bool = True) -> int:
    """One pass in key order, a page at a time; returns how many rows ``report`` counted embedded meanwhile.

    ``page_query(after)`` is the page's query (``after``: it continues from
    the previous page's last key); ``handle_page(query, parameters)`` runs it
    and returns the page's rows, each page in its own transaction unless the
    caller holds one (``transaction=False``: the final walk under the swap's lock).
    """
    embedded_before = report.embedded
    last_key = None
    while True:
        query = page_query(last_key is not None)
        parameters = [*(last_key or ()), page_size]
        if transaction:
            with conn.transaction():
                found = handle_page(query, parameters)
        else:
            found = handle_page(query, parameters)
        if not found:
            return report.embedded - embedded_before
        last_key = found[-1].key
        if bar is not None:
            bar.update(len(found))


def _embed_batch(conn, runner, vectorizer, view, report, query, parameters) -> list[Row]:
    rows = [Row(tuple(key), [], 0, text, md5, tuple(values or ()))
            for key, text, md5, values in conn.execute(query, parameters).fetchall()]
    if rows:
        result = BatchResult()
        runner.embed_rows(vectorizer, view, rows, vectorizer.next_column, result, lambda *failure: None)
        report.embedded += result.embedded
        report.truncated += result.truncated
    return rows


def _build_index(conn, vectorizer: vz.Vectorizer) -> None:
    """The shadow column's HNSW index, built without blocking writers (unless one is there)."""
    if vectorizer.index != "hnsw":
        return
    if not conn.execute(statements.HAS_VALID_INDEX, [_regclass_text(conn, vectorizer),
                                                      vectorizer.next_column]).fetchone()[0]:
        conn.execute(statements.create_shadow_index(vectorizer))


def _reembed_chunks(conn, runner: BatchRunner, table: str, vectorizer, view, report: ReembedReport,
                    show_progress: bool) -> None:
    """A chunked vectorizer: walks into the shadow table (reembed_chunks), then the swap, as for a shadow column."""
    import psycopg

    from vecplug.progress import progress

    from . import reembed_chunks as chunked

    shadow = chunked.shadow_of(conn, vectorizer)
    with conn.transaction():
        vz.use_key_settings(conn)
        total = conn.execute(chunked.count_to_chunk(vectorizer, shadow)).fetchone()[0]
    with progress(total=total, desc="re-chunking", unit="row", quiet=not show_progress) as bar:
        for _ in range(3):  # the walk, then catch-up walks for texts changed meanwhile
            if not chunked.walk(conn, runner, vectorizer, shadow, view, report, bar):
                break
    for attempt in range(SWAP_TRIES):
        try:
            with conn.transaction():
                conn.execute(statements.LOCK_VECTORIZER_FOR_SWAP, [table, vectorizer.embedding_column])
                conn.execute(statements.lock_against_writers(vectorizer))
                chunked.walk(conn, runner, vectorizer, shadow, view, report, None, transaction=False)
                conn.execute(chunked.drop_stale(vectorizer, shadow))
                report.queued = conn.execute(statements.FINISH_REEMBED,
                                             [table, vectorizer.embedding_column]).fetchone()[0]
            break
        except psycopg.errors.DeadlockDetected:
            if attempt == SWAP_TRIES - 1:
                raise
