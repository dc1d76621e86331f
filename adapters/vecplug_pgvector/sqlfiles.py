"""The SQL files of schema ``vecplug``: where they are and in which order they apply.

They live in the checkout's top-level ``sql/`` folder, which the package
links to, so the wheel ships them (``vecplug pg sql-dir`` prints where).
Layout, which ``sql/install.sql`` (the psql route) follows by hand:

- ``core/bootstrap.sql``: the schema and ``vecplug.migrations``; idempotent.
- ``core/migrations/NNNN_name.sql``: applied once each, in number order;
  the highest number applied is the schema version. Tables and data live here.
- ``core/NN_name.sql``: repeatable (CREATE OR REPLACE), plain SQL/plpgsql,
  applied again when their checksum changes. Installs on managed PostgreSQL.
- ``query/NN_name.sql``: repeatable, need plpython3u (a superuser) and pgvector.

``core/released.sha256`` (in the checkout, not shipped) holds the sha256 of
every bootstrap and migration file a release shipped: those never change
(tests/postgres/test_pg_released_migrations.py), and ``install`` refuses a database
whose recorded checksum of a migration differs from this package's file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from importlib import resources
from pathlib import Path

LAYERS = ("core", "query")
_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_REPEATABLE = re.compile(r"^\d{2}_[a-z0-9_]+\.sql$")


@dataclasses.dataclass(frozen=True)
class SqlFile:
    """One file: ``name`` is what ``vecplug.migrations`` records."""

    name: str
    path: Path

    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    @property
    def number(self) -> int:
        return int(self.name.split("_", 1)[0])


def sql_dir() -> Path:
    """The folder holding ``install.sql`` (inside the installed package)."""
    return Path(str(resources.files("vecplug_pgvector") / "sql"))


def bootstrap(root: Path | None = None) -> SqlFile:
    root = root or sql_dir()
    return SqlFile("bootstrap", root / "core" / "bootstrap.sql")


def migrations(root: Path | None = None) -> list[SqlFile]:
    """``core/migrations/NNNN_*.sql`` in number order; recorded by stem (``0001_settings``)."""
    root = root or sql_dir()
    found = [SqlFile(path.stem, path) for path in (root / "core" / "migrations").iterdir()
             if _MIGRATION.match(path.name)]
    found.sort(key=lambda file: file.number)
    numbers = [file.number for file in found]
    if numbers != list(range(1, len(found) + 1)):
        raise RuntimeError(f"vecplug's SQL migrations are not numbered 1, 2, 3 ...: {numbers} in {root}")
    return found


def repeatables(layer: str, root: Path | None = None) -> list[SqlFile]:
    """``<layer>/NN_*.sql`` in name order; recorded as ``<layer>/<file name>``."""
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, not {layer!r}")
    root = root or sql_dir()
    found = [SqlFile(f"{layer}/{path.name}", path) for path in (root / layer).iterdir()
             if _REPEATABLE.match(path.name)]
    return sorted(found, key=lambda file: file.name)


def latest_version(root: Path | None = None) -> int:
    """The schema version this package installs."""
    files = migrations(root)
    return files[-1].number if files else 0
