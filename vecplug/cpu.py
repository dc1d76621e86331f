"""What kind of CPU this is: its feature flags and the matmul class they give.

Core, not engine: the bench and ``vecplug doctor`` name the CPU kind beside
every figure, and an engine picks its dtype from the same flags. No heavy
imports: ``/proc/cpuinfo`` is read once.
"""
from __future__ import annotations

import functools

# strongest first: the first kind whose flag the CPU has names it
CPU_KINDS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"), ("avx512f", "AVX512"), ("avx2", "AVX2"))
NATIVE_BF16_KINDS = ("AMX", "AVX512-BF16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags (Linux /proc/cpuinfo); empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_kind(flags=None) -> str:
    """"AMX", "AVX512-BF16", "AVX512", "AVX2" or "other", from ``flags`` (default: this CPU's).

    Why these: each step is a different matmul roof (AMX tiles, AVX512 bf16
    dot products, AVX512 and AVX2 fp32 FMAs), so a throughput figure means
    little without it.
    """
    flags = cpu_flags() if flags is None else flags
    return next((kind for flag, kind in CPU_KINDS if flag in flags), "other")


def kind_has_native_bf16(kind: str) -> bool:
    """bf16 matmuls run in hardware (AMX or AVX512-BF16): bf16 is this CPU's fastest roof."""
    return kind in NATIVE_BF16_KINDS
