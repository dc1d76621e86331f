"""``vecplug pg status``: the ``vecplug.status`` view, as rows or as a table a person reads."""
from __future__ import annotations

import datetime

COLUMNS = ("id", "vectorizer", "mode", "model", "dimensions", "pending", "oldest_pending_age", "retrying", "failed",
           "embedded", "truncated", "last_error", "last_error_at", "reembedding_to", "state")


def status(conn) -> list[dict]:
    """One dict per vectorizer (those of tables the role may read): what ``vecplug.status`` shows."""
    from psycopg.rows import dict_row

    from .connection import connection_for

    with connection_for(conn, "pg status") as connection, connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute("SELECT " + ", ".join(COLUMNS) + " FROM vecplug.status ORDER BY id")
        rows = cursor.fetchall()
    for row in rows:
        for name in ("pending", "retrying", "failed", "embedded", "truncated"):
            row[name] = int(row[name])
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows as aligned columns; errors on their own lines under their vectorizer."""
    if not rows:
        return "no vectorizers (create one with SELECT vecplug.create_vectorizer('table', 'text_column'))"
    header = ("vectorizer", "mode", "model", "dims", "pending", "oldest", "retrying", "failed", "embedded",
              "truncated")
    lines = [header]
    for row in rows:
        lines.append((f"{row['id']}: {row['vectorizer']}", row["mode"], _short(row["model"] or "(not yet known)"),
                      str(row["dimensions"]), str(row["pending"]), _age(row["oldest_pending_age"]),
                      str(row["retrying"]), str(row["failed"]), str(row["embedded"]), str(row["truncated"])))
    widths = [max(len(line[index]) for line in lines) for index in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    for row in rows:
        if row["state"] not in ("ok", "re-embedding"):
            text.append(f"  {row['vectorizer']}: {row['state']}")
        if row["reembedding_to"]:
            text.append(f"  {row['vectorizer']}: re-embedding to {row['reembedding_to']} in progress")
        if row["last_error"]:
            at = row["last_error_at"].isoformat(timespec="seconds") if row["last_error_at"] else "?"
            text.append(f"  {row['vectorizer']}: last error at {at}: {row['last_error']}")
    return "\n".join(text)


def _age(age: datetime.timedelta | None) -> str:
    if age is None:
        return "-"
    seconds = age.total_seconds()
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _short(name: str, width: int = 40) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3):]
