"""Ids for records written without them.

INT64 collections: each process draws one random starting point in
``[0, 2**62)`` and hands out the integers after it in order, under a lock.
So ids are distinct within a process for good (across calls, threads and
collections), and two processes collide only if their runs of ids overlap:
for processes writing K ids each, about ``2K / 2**62`` per pair (1e-10 for
a billion ids each). Before a batch of generated ids is written, the
collection is asked whether any row already has an id in the batch's
range (one query per ``BLOCK`` ids); if one does (a run drawn across another's), this
process draws a new start and the batch gets new ids. No coordination
and no ``max(id)`` scan, which two writers could both read at once.
VARCHAR collections get ``uuid4().hex``.
"""
from __future__ import annotations

import secrets
import threading
import uuid

START_BITS = 62  # starts below 2**62: a run of ids can never reach INT64's 2**63 - 1
BLOCK = 2**20  # ids of the run checked against a collection with one query


class IntIds:
    """The process's run of generated INT64 ids (module instance ``int_ids``)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._next = secrets.randbits(START_BITS)

    def take(self, count: int) -> list[int]:
        """``count`` ids never handed out before in this process, consecutive."""
        with self._lock:
            first = self._next
            self._next += count
        return list(range(first, first + count))

    def move(self) -> None:
        """Draw a new start: the current run met rows written by someone else."""
        with self._lock:
            self._next = secrets.randbits(START_BITS)


int_ids = IntIds()


class IdSource:
    """Fresh ids for one collection, asking it about each block of ``BLOCK`` ids of the run once.

    Asking per batch would cost a query per batch, and Milvus Lite answers a
    range query by scanning the collection: a 10,000-row upload spent most
    of its time there.
    """

    def __init__(self, client, collection_name: str, id_type: str):
        self.client, self.collection_name, self.id_type = client, collection_name, id_type
        self._checked = range(0)  # ids of the run this collection is known to lack

    def take(self, count: int) -> list:
        """``count`` ids that are in the collection neither now nor (within this process) later."""
        if count == 0:
            return []
        if self.id_type == "str":
            return [uuid.uuid4().hex for _ in range(count)]
        for _ in range(8):
            ids = int_ids.take(count)
            if ids[0] in self._checked and ids[-1] in self._checked:
                return ids
            block = range(ids[0], ids[0] + max(count, BLOCK))
            taken = self.client.query(self.collection_name, filter=f"id >= {block[0]} and id <= {block[-1]}",
                                      output_fields=["id"], limit=1)
            if not taken:
                self._checked = block
                return ids
            int_ids.move()
        raise RuntimeError(f"could not find {count} unused ids in collection {self.collection_name!r} "
                           "after 8 random draws")
