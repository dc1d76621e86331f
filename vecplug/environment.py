"""Reading vecplug's and its libraries' boolean environment switches one way."""
from __future__ import annotations

import os

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def env_flag(name: str) -> bool | None:
    """True or False for a set switch (``1/true/yes/on``, ``0/false/no/off``), None when unset or unreadable."""
    value = os.environ.get(name)
    if value is None:
        return None
    value = value.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None
