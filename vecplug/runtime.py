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
  else torch's count (one per physical core unless you changed it) when
  waiting is passive. When torch was imported before vecplug (a notebook,
  most applications), OpenMP already spins and it is too late to change
  that; import order alone must not cost speed, so vecplug keeps torch's
  count there too and backs off to one thread only when it measures
  contention: a short probe (a few dozen small matmuls, ~50 ms) with
  torch's count and with one thread, and one thread wins only when the
  many ran ``SPIN_COLLAPSE`` times slower (a core taken by another
  process: measured 4-13x). Then it warns once, naming the fixes
  (``VECPLUG_THREADS``, or import vecplug before torch).
  Applied with ``torch.set_num_threads`` when the first model loads.
- **oneDNN caches** (``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` and ideep's
  ``LRU_CACHE_CAPACITY``, default 1,024 entries each): every new shape of
  a bf16 matmul or attention block adds entries, and token-budget batches
  make new shapes all the time, so the default caches grew the peak memory
  of a 40,000-text stream by 60% and kept growing; 64 entries each kept it
  flat at the same speed. The fused bf16 products (``modernbert.cpu_kernels``)
  hold bigger entries: at 64 a 100,000-text
  stream grew 21%, at 32 8-11%, with no loss of speed (a paragraph batch
  already touches more attention shapes than either size holds, layer
  after layer); 16 was slower. Read lazily by torch, so set at ``import vecplug``
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
import time
import warnings

from .settings import THREADS_ENV, Settings

CACHE_ENTRIES = "32"
# With spinning OpenMP, torch's threads back off to one when the probe ran this many times slower with them than
# with one thread: an idle machine gives at most ~1.1 (several threads are faster, or as fast on tiny work); a core
# held by another process 4-13x.
SPIN_COLLAPSE = 1.5
PROBE_ROUNDS = 3
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
            why = "torch was imported first" if wait.startswith("active (") else f"OMP_WAIT_POLICY={wait}"
            source = threads_beside_spinning_openmp(torch, why)
        _choice = ThreadChoice(torch.get_num_threads(), source, wait)
        return _choice


def threads_beside_spinning_openmp(torch, why: str = "torch was imported first") -> str:
    """OpenMP spins (``why``: torch was imported first, or the user's policy): keep torch's count unless a probe
    measures contention.

    Returns the reason the report shows; sets one thread (and warns once)
    only when ``spin_collapse`` says the machine is contended.
    """
    threads = torch.get_num_threads()
    if threads <= 1:
        return f"torch's count when vecplug loaded ({why})"
    many, one = probe_seconds(torch, threads)
    if not spin_collapse(many, one):
        return (f"torch's count, kept though OpenMP spins ({why}): {threads} threads ran a "
                f"probe in {many * 1000:.0f} ms, one thread in {one * 1000:.0f} ms")
    torch.set_num_threads(1)
    warnings.warn(
        f"vecplug: OpenMP threads spin while they wait here ({why}), and this CPU is "
        f"busy: {threads} threads ran {many / one:.1f}x slower than one, so vecplug embeds with 1 thread. "
        f"To use {threads}: import vecplug before torch (or set OMP_WAIT_POLICY=PASSIVE before torch is "
        f"imported), or set {THREADS_ENV}={threads} to keep them regardless.",
        RuntimeWarning, stacklevel=3,
    )
    return (f"1: OpenMP spins ({why}) and {threads} threads ran {many / one:.1f}x slower than one "
            f"in a probe; import vecplug before torch, or set {THREADS_ENV}")


def spin_collapse(many_seconds: float, one_seconds: float) -> bool:
    """Did several spinning threads run the probe ``SPIN_COLLAPSE`` times slower than one thread?"""
    return many_seconds > SPIN_COLLAPSE * one_seconds


def probe_seconds(torch, threads: int) -> tuple[float, float]:
    """Best time of a small model-like workload with ``threads`` threads, and with one (torch's count restored).

    Dozens of small matmuls and layer norms: each a parallel region whose
    threads wait for one another, where a spinning thread that lost its core
    costs a time slice. Alternated, best of ``PROBE_ROUNDS`` each, so a
    moment's noise does not decide.
    """
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(256, 256, generator=generator)
    weight = torch.randn(256, 256, generator=generator) / 16

    def run() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            hidden = tokens
            for _ in range(64):
                hidden = torch.nn.functional.layer_norm(hidden @ weight, (256,))
        return time.perf_counter() - started

    run()  # warm: thread pool and kernels
    many, one = [], []
    try:
        for _ in range(PROBE_ROUNDS):
            torch.set_num_threads(threads)
            many.append(run())
            torch.set_num_threads(1)
            one.append(run())
    finally:
        torch.set_num_threads(threads)
    return min(many), min(one)
