"""Other libraries' loggers turned down for a block, and back as they were after it.

Where vecplug reports a library's failure itself, as one line, or its
chatter is not the user's concern (a bench's model export, pymilvus
logging each failed call with a traceback before raising it), the
library's own log lines would only repeat it or bury it.
"""
from __future__ import annotations

import contextlib
import logging


@contextlib.contextmanager
def loggers_quieted(names, level: int = logging.ERROR):
    """Only records at ``level`` and above from the loggers ``names`` (and their children) inside the block."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, previous in zip(loggers, levels):
            logger.setLevel(previous)
