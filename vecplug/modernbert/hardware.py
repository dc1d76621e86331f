"""Pick the device and dtype: the fastest that keeps quality on this machine."""
from __future__ import annotations

import functools
import platform

from ..errors import InvalidSettingError

DTYPES = ("float32", "bfloat16", "float16")


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


def cpu_has_native_bf16() -> bool:
    """bf16 matmuls are only a win with hardware support (AVX512-BF16 or AMX)."""
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_description() -> str:
    flags = cpu_flags()
    shown = [flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if flag in flags]
    return f"{platform.processor() or platform.machine()} [{' '.join(shown) or 'no avx flags read'}]"


def normalise_device(device) -> str | None:
    """"cpu", "cuda" or "cuda:N" from what a user may type; None stays None (auto).

    Case and spaces do not matter ("CPU"), a ``torch.device`` is accepted,
    and "cpu:0" is "cpu": torch has one CPU device, and the model cache must
    not load a second copy of the weights for another spelling of it.
    """
    if device is None:
        return None
    text = str(device).strip().lower()
    kind, _, index = text.partition(":")
    if kind == "cpu" and (not index or index.isdigit()):
        return "cpu"
    if kind == "cuda" and (not index or index.isdigit()):
        return f"cuda:{int(index)}" if index else "cuda"
    raise InvalidSettingError(
        f"device must be 'cpu', 'cuda' or 'cuda:N' (or None to choose automatically), got {device!r}"
    )


def choose_device(device) -> str:
    """The device to run on: the one asked for, checked, or a CUDA GPU when torch sees one."""
    import torch

    device = normalise_device(device)
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidSettingError(
                f"device={device!r} was asked for but torch sees no CUDA GPU "
                f"(torch {torch.__version__}); use device='cpu', or None to choose automatically"
            )
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise InvalidSettingError(
                f"device={device!r} was asked for but torch sees {torch.cuda.device_count()} CUDA GPU(s) "
                f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})"
            )
    return device


def dtype_name(dtype) -> str:
    """"bfloat16" for torch.bfloat16: the spelling users pass and JSON records."""
    return str(dtype).removeprefix("torch.")


DTYPE_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


def normalise_dtype(dtype) -> str | None:
    """"float32", "bfloat16" or "float16" from a name, a common alias ("bf16") or a torch dtype; None stays None."""
    if dtype is None:
        return None
    text = dtype_name(dtype).strip().lower()
    text = DTYPE_ALIASES.get(text, text)
    if text not in DTYPES:
        raise InvalidSettingError(
            f"dtype must be one of {', '.join(DTYPES)} (or None for the fastest that keeps quality here), "
            f"got {dtype!r}"
        )
    return text


def choose_dtype(dtype, device: str):
    """bf16 on GPUs and bf16-capable CPUs, fp16 on GPUs without bf16, else fp32."""
    import torch

    dtype = normalise_dtype(dtype)
    if dtype is not None:
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
