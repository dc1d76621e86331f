"""Milvus Lite's per-process lock on a ``.db``, and how to let go of it.

Milvus Lite 3 serves a ``.db`` folder from a server thread in the process
that opened it, holding an exclusive ``flock`` on the folder's ``LOCK``
file until that process exits: ``client.close()`` does not stop the
server, so no other process can open the file meanwhile (pymilvus says
only "Open local milvus failed"). ``release`` stops this process's server
for a path, which frees the lock; ``held_elsewhere`` tells, without
opening, whether another process holds it.
"""
from __future__ import annotations

import os
from pathlib import Path

LOCK_FILE = "LOCK"


def release(path) -> None:
    """Stop this process's Milvus Lite server for the ``.db`` at ``path``, so other processes can open it.

    Every client of that file in this process stops working; open a new
    ``MilvusClient(path)`` to use it again. Nothing happens if this process
    has no server for it.
    """
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(os.fspath(path))


def held_elsewhere(path) -> bool:
    """True if another process holds the Milvus Lite lock on the ``.db`` at ``path`` (this one's doesn't count)."""
    import fcntl

    lock = Path(path) / LOCK_FILE
    if not lock.exists() or _served_here(path):
        return False
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _served_here(path) -> bool:
    from milvus_lite.server_manager import server_manager_instance

    return os.path.abspath(os.fspath(path)) in server_manager_instance._servers
