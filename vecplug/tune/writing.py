"""Where a tuning run writes: a staging folder beside DIR, renamed to DIR only at the very end.

The staging folder (``.DIR.vecplug-tune-XXXX`` in DIR's parent, so the
final rename stays on one file system and is atomic) holds the trainer's
scratch files and the saved model. It is removed whatever happens: a
failure, a tuned model that does not win, Ctrl-C. DIR exists only once
it is complete.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import InvalidSettingError

RECORD = "vecplug_tune.json"


def check_output(out) -> Path:
    """DIR as a Path, refused (exit 2) when it exists and is not an empty folder, or its parent is missing."""
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "is a file" if not out.is_dir() else "exists and is not empty"
        raise InvalidSettingError(f"--out {out} {what}: name a new folder (nothing is overwritten)")
    if not out.absolute().parent.is_dir():
        raise InvalidSettingError(f"--out {out}: its parent folder {out.absolute().parent} does not exist")
    if not os.access(out.absolute().parent, os.W_OK):
        raise InvalidSettingError(f"--out {out}: cannot write in {out.absolute().parent}")
    return out


@contextlib.contextmanager
def staging_folder(out: Path):
    """A fresh folder beside ``out``; removed on exit, whether the run finished, failed or was interrupted."""
    parent = out.absolute().parent
    folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.vecplug-tune-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def publish(model_dir: Path, out: Path, record: dict) -> Path:
    """Write ``vecplug_tune.json`` into the finished model and move it to ``out`` in one rename."""
    (model_dir / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    out = out.absolute()
    if out.is_dir():  # an empty folder the user made: rename() replaces it atomically on POSIX
        out.rmdir()
    os.replace(model_dir, out)
    return out
