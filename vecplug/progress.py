"""Progress a person can see, and silence for everyone else.

Long work (a benchmark, a backfill, a demo, ``vecplug embed`` over a file)
shows a bar on stderr when stderr is a terminal, and nothing at all when it
is a pipe, a log file or a test: a bar's carriage returns make logs
unreadable. ``quiet=True`` (the CLI's ``--quiet``) silences it anyway.

    with progress(total=len(texts), desc="embedding", unit="text") as bar:
        for chunk in model.iter_embed_chunks(texts):
            bar.update(len(chunk))
"""
from __future__ import annotations

import sys


def shows_progress(quiet: bool = False, stream=None) -> bool:
    """True when a bar would be seen: not quiet, and the stream is a terminal."""
    stream = stream if stream is not None else sys.stderr
    if quiet:
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress(iterable=None, *, total=None, desc: str | None = None, unit: str = "it",
             quiet: bool = False, stream=None, **options):
    """A tqdm bar that is disabled (a no-op with the same methods) when nobody would see it.

    Use it around an iterable (``for x in progress(items)``) or as a context
    manager with ``update(n)``; ``options`` go to tqdm (``leave``, ``position`` ...).
    """
    from tqdm.auto import tqdm

    stream = stream if stream is not None else sys.stderr
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream,
                disable=not shows_progress(quiet, stream), dynamic_ncols=True, **options)
