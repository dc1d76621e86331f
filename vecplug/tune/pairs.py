"""Training pairs for ``vecplug tune``: read, checked, and split into training and held-out sets.

Three sources give the same thing, a list of ``Pair``: a JSON lines file
(``{"query": ..., "positive": ..., "negative": ...}``, negative optional),
any iterable of such dicts or of ``(query, positive[, negative])`` tuples,
and a SQL query read with a server-side cursor. Every problem is found
here, before a model loads, and named with where it is (``line 3: no
"positive"``) as an ``InvalidSettingError``: the CLI's exit status 2.
"""
from __future__ import annotations

import json
import random
from typing import Iterable, NamedTuple

from ..errors import InvalidSettingError

MIN_PAIRS = 16
FIELDS = ("query", "positive", "negative")


class Pair(NamedTuple):
    query: str
    positive: str
    negative: str | None = None


def pairs_from_jsonl(path) -> list[Pair]:
    """The pairs of a JSON lines file; blank lines are skipped, anything else wrong is named by line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise InvalidSettingError(f"{path}: line {number}: invalid JSON ({error})") from None
            if not isinstance(row, dict):
                raise InvalidSettingError(f'{path}: line {number}: expected an object {{"query": ..., '
                                          f'"positive": ...}}, got a JSON {type(row).__name__}')
            rows.append((f"{path}: line {number}", row))
    return checked_pairs(rows, source=str(path))


def pairs_from_iterable(pairs: Iterable) -> list[Pair]:
    """Dicts with query/positive[/negative], or tuples in that order; named "pair N" (from 1) when wrong."""
    if isinstance(pairs, (str, bytes)):
        raise InvalidSettingError("pairs must be an iterable of dicts or (query, positive[, negative]) tuples, "
                                  "not a string; for a JSON lines file use vecplug tune --pairs FILE")
    return checked_pairs(((f"pair {number}", row) for number, row in enumerate(pairs, start=1)), source="pairs")


def pairs_from_sql(dsn: str, sql: str, fetch: int = 2000) -> list[Pair]:
    """Rows ``(query, positive[, negative])`` of ``sql``, read in batches through a server-side cursor.

    psycopg comes with the ``postgres`` extra. A DSN libpq cannot parse and a
    query PostgreSQL refuses are usage errors (exit 2); a database that does
    not answer is a failure (exit 1); each is one line that says so.
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from ..errors import VecplugError

    try:
        parameters = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as error:
        raise InvalidSettingError(f"{dsn!r} is not a PostgreSQL connection string ({_reason(error)}): use a URI "
                                  "like postgresql://user@localhost:5432/dbname") from None
    options = {"application_name": "vecplug tune"}
    if "connect_timeout" not in parameters:
        options["connect_timeout"] = 10
    try:
        connection = psycopg.connect(dsn, **options)
    except psycopg.OperationalError as error:
        raise VecplugError(f"cannot connect to PostgreSQL: {_reason(error)}. Check --dsn (else the PG* "
                           "environment variables) and that the server is running") from None
    rows = []
    with connection, connection.transaction():
        with connection.cursor(name="vecplug_tune_pairs") as cursor:
            cursor.itersize = fetch
            try:
                cursor.execute(sql)
                columns = len(cursor.description or ())
                if columns not in (2, 3):
                    raise InvalidSettingError(f"--sql returns {columns} columns: select query, positive "
                                              "(and optionally negative), in that order")
                for number, row in enumerate(cursor, start=1):
                    rows.append((f"row {number}", tuple(row)))
            except psycopg.Error as error:
                raise InvalidSettingError(f"--sql failed: {_reason(error)}") from None
    return checked_pairs(rows, source="the --sql query")


def _reason(error) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def checked_pairs(rows, source: str) -> list[Pair]:
    """``Pair``s from (where, dict or tuple); a negative on some rows only is refused (all or none)."""
    pairs, first_negative, first_without = [], None, None
    for where, row in rows:
        pair = _pair(where, row)
        if pair.negative is None:
            first_without = first_without or where
        else:
            first_negative = first_negative or where
        pairs.append(pair)
    if first_negative and first_without:
        raise InvalidSettingError(f"{first_without}: no \"negative\", but {first_negative} has one: give a "
                                  "negative on every pair or on none")
    if len(pairs) < MIN_PAIRS:
        raise InvalidSettingError(f"{source} holds {len(pairs)} pairs; tuning needs at least {MIN_PAIRS} "
                                  "(and learns from hundreds to thousands)")
    return pairs


def _pair(where: str, row) -> Pair:
    if isinstance(row, dict):
        values = {name: row.get(name) for name in FIELDS}
        for name in ("query", "positive"):
            if name not in row:
                raise InvalidSettingError(f'{where}: no "{name}" (each pair needs "query" and "positive")')
    elif isinstance(row, (tuple, list)) and len(row) in (2, 3):
        values = dict(zip(FIELDS, row))
    else:
        raise InvalidSettingError(f"{where}: expected an object with \"query\" and \"positive\" or a "
                                  f"(query, positive[, negative]) tuple, got {type(row).__name__}")
    for name in FIELDS:
        value = values.get(name)
        if value is None and name == "negative":
            continue
        if not isinstance(value, str) or not value.strip():
            got = "empty" if isinstance(value, str) else type(value).__name__
            raise InvalidSettingError(f'{where}: "{name}" must be a non-empty string, got {got}')
    return Pair(values["query"], values["positive"], values.get("negative"))


def split_held_out(pairs: list[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(training, held-out): a seeded share of the distinct queries, with all their pairs, held out.

    By query, not by pair: a query seen in training would make the held-out
    measure a memory test.
    """
    queries = sorted({pair.query for pair in pairs})
    if len(queries) < 4:
        raise InvalidSettingError(f"the pairs hold {len(queries)} distinct queries; tuning needs at least 4 "
                                  "to hold some out for the measure")
    random.Random(seed).shuffle(queries)
    count = min(max(1, round(len(queries) * fraction)), len(queries) - 2)
    held = set(queries[:count])
    return [pair for pair in pairs if pair.query not in held], [pair for pair in pairs if pair.query in held]
