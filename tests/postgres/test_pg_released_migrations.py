"""Released migrations are frozen: ``sql/core/released.sha256`` lists each file a released vecplug ran once.

A database runs a migration (and ``bootstrap.sql``) once, so a later change
to the file reaches new installs only: upgraded databases would silently
differ from them. These tests fail when a listed file changes, and when a
file is not listed at all (released with its sha256, or ``new`` until a
release ships it), so the list stays kept. No database needed; the
installer's own refusal of a changed migration is tested in test_pg_install.py.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("psycopg")

from vecplug_pgvector import sqlfiles  # noqa: E402

RELEASED = Path(__file__).resolve().parents[2] / "sql" / "core" / "released.sha256"
NEW = "new"


def listed() -> dict[str, str]:
    """The list: path under sql/core -> its released sha256, or "new"."""
    entries: dict[str, str] = {}
    for number, line in enumerate(RELEASED.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, path = line.partition("  ")
        assert path and (digest == NEW or re.fullmatch(r"[0-9a-f]{64}", digest)), (
            f"sql/core/released.sha256 line {number} is not 'SHA256  PATH' (as sha256sum prints it) "
            f"or 'new  PATH': {line!r}")
        assert path not in entries, f"sql/core/released.sha256 lists {path} twice"
        entries[path] = digest
    return entries


def run_once_files() -> dict[str, sqlfiles.SqlFile]:
    """The files a database runs once, as this vecplug ships them: the migrations, and bootstrap.sql (the
    installer runs it only where vecplug.migrations does not exist yet; install.sql's IF NOT EXISTS skips it)."""
    files = {"bootstrap.sql": sqlfiles.bootstrap()}
    files.update({f"migrations/{file.name}.sql": file for file in sqlfiles.migrations()})
    return files


def test_released_files_never_change():
    files = run_once_files()
    changed = [path for path, digest in listed().items()
               if digest != NEW and path in files and files[path].checksum != digest]
    next_number = sqlfiles.latest_version() + 1
    assert not changed, (
        f"{', '.join('sql/core/' + path for path in changed)} changed after a released vecplug ran it in "
        "databases (sql/core/released.sha256 holds the released checksum). Those databases never run it again, so "
        "the change would reach new installs only. Restore the file (git log -p -- FILE shows the released text) "
        f"and put the change into a new migration, sql/core/migrations/{next_number:04d}_what_it_does.sql, "
        f"listed as 'new  migrations/{next_number:04d}_what_it_does.sql'.")


def test_every_file_run_once_is_listed_as_released_or_new():
    files, entries = run_once_files(), listed()
    missing = sorted(set(files) - set(entries))
    assert not missing, (
        "sql/core/released.sha256 does not list " + ", ".join(missing) + ": add '" + f"{NEW}  {missing[0]}"
        + "' (it may change until a release ships it; the release then puts its sha256 there).")
    gone = sorted(set(entries) - set(files))
    assert not gone, (f"sql/core/released.sha256 lists {', '.join(gone)}, which vecplug no longer ships: a released "
                      "migration stays (databases recorded it), and a new one that was dropped leaves the list too.")


def test_new_migrations_come_after_every_released_one():
    files, entries = run_once_files(), listed()
    migrations = {path: digest for path, digest in entries.items() if path.startswith("migrations/") and path in files}
    released = [files[path].number for path, digest in migrations.items() if digest != NEW]
    new = [files[path].number for path, digest in migrations.items() if digest == NEW]
    assert not (released and new) or min(new) > max(released), (
        f"migrations {sorted(new)} are listed as new but {max(released)} was released: a database of that "
        "release would never run them. Give them numbers after the released ones.")
