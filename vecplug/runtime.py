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
  count there too and backs off only when it measures contention. At the
  first load vecplug reads, from ``/proc/stat`` over 0.2 s, how much of
  this process's CPUs other processes keep busy, and a short probe (a few
  dozen small matmuls, ~50 ms) times torch's count against one thread. Fewer
  threads are used when those processes leave fewer free CPUs than torch
  has threads (as many as fit, at least one), or when the many ran
  ``SPIN_COLLAPSE`` times slower than one. The reading is what decides
  on a small machine: a spinning thread that was just woken runs a
  probe's short rounds before the scheduler takes its core back, so a
  busy core hid from the timing alone (2 threads 21 ms, one 27 ms, beside
  a busy loop that made the embedding itself 2-3x slower). Then it warns
  once, naming the fixes (``VECPLUG_THREADS``, or import vecplug before
  torch).
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

Every variable above is only a default: one set in the environment wins
(a blank one counts as unset), except an ``LRU_CACHE_CAPACITY`` that crashes
torch's bf16 products, which a bf16 CPU load refuses.
``ThreadChoice`` records what was chosen and why; a loaded model reports it
in ``model.describe()`` (``threads``, ``threads_reason``, ``openmp_wait``; the bench header and ``doctor`` print it).
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
import threading
import time
import warnings

from .errors import InvalidSettingError
from .settings import THREADS_ENV, Settings

CACHE_ENTRIES = "32"
# With spinning OpenMP, torch's threads back off to one when the probe ran this many times slower with them than
# with one thread: an idle machine gives at most ~1.1 (several threads are faster, or as fast on tiny work); a core
# held by another process 4-13x.
SPIN_COLLAPSE = 1.5
PROBE_ROUNDS = 3
# torch's threads fit when other processes leave this many fewer CPUs free than there are threads, at most:
# background noise is a tenth of a CPU or two, a busy process a whole one.
FIT_MARGIN = 0.5
# /proc/stat counts in ticks of 10 ms per CPU: read over this long, the reading is good to a tenth of a CPU or so.
OCCUPANCY_WINDOW_SECONDS = 0.2
DEFAULTS = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "ONEDNN_PRIMITIVE_CACHE_CAPACITY": CACHE_ENTRIES,
    "LRU_CACHE_CAPACITY": CACHE_ENTRIES,
}

# Read when vecplug is imported: was OpenMP loaded (with torch) before vecplug could
# set the wait policy, and had the user chosen one?
_torch_before_vecplug = "torch" in sys.modules
_wait_policy_set_by_user = bool(os.environ.get("OMP_WAIT_POLICY", "").strip())
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
        if not os.environ.get(name, "").strip():  # a blank value (``NAME=`` in a compose file) is no choice
            os.environ[name] = value


def refuse_crashing_cache_setting(device: str, dtype: str) -> None:
    """Refuse an ``LRU_CACHE_CAPACITY`` that crashes torch's bf16 products on a CPU, before torch runs one.

    ideep reads the variable as C's ``atoi`` does: a 0, a word or a blank
    gives a cache of no entries, and the first bf16 ``F.linear`` on a CPU
    then kills the process with a segmentation fault (torch 2.13). float32
    does not use that cache, so it is left alone there.
    """
    value = os.environ.get("LRU_CACHE_CAPACITY")
    if value is None or device != "cpu" or dtype != "bfloat16":
        return
    leading_integer = re.match(r"\s*[+-]?\d+", value)
    if leading_integer is None or int(leading_integer.group()) == 0:
        raise InvalidSettingError(
            f"LRU_CACHE_CAPACITY={value!r} gives oneDNN's cache no entries, and torch's bf16 products on a CPU "
            f"crash the process then (a segmentation fault); set it to a positive number of entries "
            f"(vecplug's default is {CACHE_ENTRIES}), unset it, or load the model with dtype='float32'")


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

    Returns the reason the report shows; sets fewer threads (and warns once)
    only when other processes leave too few free CPUs for them, or when
    ``spin_collapse`` says the threads already wait on each other.
    """
    threads = torch.get_num_threads()
    if threads <= 1:
        return f"torch's count when vecplug loaded ({why})"
    busy_elsewhere = cpus_busy_elsewhere()
    many, one = probe_seconds(torch, threads)
    cpus = len(allowed_cpus())
    timed = f"{threads} threads ran a probe in {many * 1000:.0f} ms, one thread in {one * 1000:.0f} ms"
    seen = "" if busy_elsewhere is None else f"; other processes kept {busy_elsewhere:.1f} of {cpus} CPUs busy"
    fitting = threads if busy_elsewhere is None else threads_that_fit(threads, cpus, busy_elsewhere)
    if spin_collapse(many, one):
        count, because = 1, f"{threads} threads ran {many / one:.1f}x slower than one in a probe"
    elif fitting < threads:
        count, because = fitting, (f"other processes kept {busy_elsewhere:.1f} of this process's {cpus} CPUs busy "
                                   f"while vecplug loaded")
    else:
        return f"torch's count, kept though OpenMP spins ({why}): {timed}{seen}"
    torch.set_num_threads(count)
    warnings.warn(
        f"vecplug: OpenMP threads spin while they wait here ({why}), and this CPU is "
        f"busy: {because}, so vecplug embeds with {count} thread{'s' if count > 1 else ''}. "
        f"To use {threads}: import vecplug before torch (or set OMP_WAIT_POLICY=PASSIVE before torch is "
        f"imported), or set {THREADS_ENV}={threads} to keep them regardless.",
        RuntimeWarning, stacklevel=3,
    )
    return f"{count}: OpenMP spins ({why}) and {because}; import vecplug before torch, or set {THREADS_ENV}"


def spin_collapse(many_seconds: float, one_seconds: float) -> bool:
    """Did several spinning threads run the probe ``SPIN_COLLAPSE`` times slower than one thread?"""
    return many_seconds > SPIN_COLLAPSE * one_seconds


def threads_that_fit(threads: int, cpus: int, busy_elsewhere: float) -> int:
    """How many of ``threads`` spinning threads get a CPU of their own beside other processes' load (at least one).

    A spinning thread that shares its CPU with a busy process makes every
    parallel region wait a time slice for it, so the threads must fit in
    the CPUs that the others leave free, within ``FIT_MARGIN``.
    """
    free = cpus - busy_elsewhere
    if threads <= free + FIT_MARGIN:
        return threads
    return max(1, math.floor(free + FIT_MARGIN))


def cpus_busy_elsewhere(seconds: float = OCCUPANCY_WINDOW_SECONDS) -> float | None:
    """How many CPUs (of those this process may use) other processes keep busy, read over ``seconds`` while this
    process waits; None where ``/proc/stat`` cannot tell (not Linux).

    The CPUs' busy ticks over the window, less this process's own CPU time,
    per second. Read while vecplug sleeps, so that the others' share is not
    cut by torch's threads competing for the same CPUs (during the probe a
    busy loop read 0.6-0.8 of a CPU, asleep 1.0); long enough that the
    10 ms ticks do not decide.
    """
    before, own_before, started = _busy_cpu_seconds(), time.process_time(), time.perf_counter()
    time.sleep(seconds)
    after, own, wall = _busy_cpu_seconds(), time.process_time() - own_before, time.perf_counter() - started
    if before is None or after is None:
        return None
    return max(0.0, (after - before - own) / wall)


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity; every CPU where the platform cannot tell)."""
    if hasattr(os, "sched_getaffinity"):
        return os.sched_getaffinity(0)
    return set(range(os.cpu_count() or 1))


def _busy_cpu_seconds() -> float | None:
    """Seconds the CPUs this process may run on have spent busy since boot (``/proc/stat``), None if unknown.

    Busy is user, nice, system, irq and softirq time; idle, iowait and a
    hypervisor's steal are not another process holding the CPU.
    """
    try:
        allowed = {f"cpu{number}" for number in allowed_cpus()}
        ticks = 0
        with open("/proc/stat", encoding="ascii") as stat:
            for line in stat:
                name, *fields = line.split()
                if name in allowed:
                    user, nice, system, _idle, _iowait, irq, softirq = (int(field) for field in fields[:7])
                    ticks += user + nice + system + irq + softirq
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None


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
