"""How torch uses the CPU in a vecplug process: intra-op threads, OpenMP waiting, oneDNN caches.

Three process-wide settings decide whether CPU embedding is fast, survives a
busy machine and keeps flat memory; vecplug chooses each deliberately:

- **OpenMP waits passively** (``OMP_WAIT_POLICY=PASSIVE``). torch's OpenMP
  threads spin while they wait for each other. When another process holds
  one of the cores, every parallel region then waits a time slice for the
  thread that lost its core: measured here, torch's default two threads
  embedded 13x (tiny model) and 4-5x (base shape) slower than one thread,
  while two passively waiting threads matched or beat one thread, alone or
  beside a busy process. libgomp reads the variable once, when torch is
  imported: ``import vecplug`` sets it (unless you did) if torch is not
  imported yet.
- **Threads**: ``VECPLUG_THREADS`` if set, else ``OMP_NUM_THREADS`` if set,
  else torch's default (one per physical core) when waiting is passive,
  else (torch was imported before vecplug, so OpenMP spins) one thread.
  Applied with ``torch.set_num_threads`` when the first model loads.
- **oneDNN caches** (``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` and ideep's
  ``LRU_CACHE_CAPACITY``, default 1,024 entries each): every new shape of
  a bf16 matmul or attention block adds entries, and token-budget batches
  make new shapes all the time, so the default caches grew the peak memory
  of a 40,000-text stream by 60% and kept growing; 64 entries each keep it
  flat at the same speed. Read lazily by torch, so set at ``import vecplug``
  and again before the first model loads (unless you set them).

Every variable above is only a default: one set in the environment wins.
``ThreadChoice`` records what was chosen and why; a loaded model reports it
in ``model.describe()`` (``threads``, ``threads_reason``, ``openmp_wait``; the bench header and ``doctor`` print it).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import threading

from .settings import THREADS_ENV, Settings

CACHE_ENTRIES = "64"
DEFAULTS = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "ONEDNN_PRIMITIVE_CACHE_CAPACITY": CACHE_ENTRIES,
    "LRU_CACHE_CAPACITY": CACHE_ENTRIES,
}

# Read when vecplug is imported: was OpenMP loaded (with torch) before vecplug could
# set the wait policy, and had the user chosen one?
_torch_before_vecplug = "torch" in sys.modules
_wait_policy_set_by_user = "OMP_WAIT_POLICY" in os.environ
_choice: "ThreadChoice | None" = None
_choice_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class ThreadChoice:
    """torch's intra-op thread count in this process, where it came from, and how OpenMP waits."""

    count: int
    source: str
    openmp_wait: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return f"{self.count} ({self.source}; OpenMP waits: {self.openmp_wait})"


def prepare_environment() -> None:
    """Set vecplug's defaults for the OpenMP and oneDNN variables that are still unset (see the module docstring).

    The wait policy only counts before torch is imported; the cache sizes
    until torch first runs a oneDNN operation.
    """
    for name, value in DEFAULTS.items():
        if name == "OMP_WAIT_POLICY" and "torch" in sys.modules:
            continue  # too late: setting it now would only make the report lie
        os.environ.setdefault(name, value)


def requested_threads() -> int | None:
    """``VECPLUG_THREADS`` as a positive int, None when unset; InvalidSettingError when it is not one."""
    return Settings().thread_count()


def openmp_wait() -> str:
    """How OpenMP threads wait in this process: the policy in force when torch was imported."""
    policy = os.environ.get("OMP_WAIT_POLICY", "").strip().lower()
    if policy and (not _torch_before_vecplug or _wait_policy_set_by_user):
        return policy
    return "active (torch was imported before vecplug; set OMP_WAIT_POLICY=PASSIVE before importing torch)"


def choose_threads() -> ThreadChoice:
    """Decide torch's intra-op threads once per process (the first model load) and apply them."""
    global _choice
    if _choice is not None:
        return _choice
    with _choice_lock:
        if _choice is not None:
            return _choice
        requested = requested_threads()
        prepare_environment()
        import torch

        wait = openmp_wait()
        if requested is not None:
            torch.set_num_threads(requested)
            source = THREADS_ENV
        elif os.environ.get("OMP_NUM_THREADS", "").strip():
            source = "OMP_NUM_THREADS"
        elif wait == "passive":
            source = "default: torch's, one per physical core"
        else:
            torch.set_num_threads(1)
            source = f"default: 1 because OpenMP spins here; set {THREADS_ENV} to override"
        _choice = ThreadChoice(torch.get_num_threads(), source, wait)
        return _choice
