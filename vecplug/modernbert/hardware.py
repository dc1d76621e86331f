"""Pick the device and dtype: the fastest that keeps quality on this machine."""
from __future__ import annotations

import platform

from ..cpu import cpu_flags, cpu_kind, kind_has_native_bf16
from ..devices import normalise_device, normalise_dtype, require_device_present


def cpu_has_native_bf16() -> bool:
    """bf16 matmuls are only a win with hardware support (AVX512-BF16 or AMX)."""
    return kind_has_native_bf16(cpu_kind())


def cpu_description() -> str:
    flags = cpu_flags()
    shown = [flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if flag in flags]
    return f"{platform.processor() or platform.machine()} [{' '.join(shown) or 'no avx flags read'}]"


def choose_device(device) -> str:
    """The device to run on: the one asked for, checked, or a CUDA GPU when torch sees one."""
    import torch

    device = normalise_device(device)
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    require_device_present(device)
    return device


def choose_dtype(dtype, device: str):
    """bf16 on GPUs and bf16-capable CPUs, fp16 on GPUs without bf16, else fp32."""
    import torch

    dtype = normalise_dtype(dtype)
    if dtype is not None:
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
