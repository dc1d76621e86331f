"""What the ModernBERT engine will do on this machine, and why: for ``vecplug doctor`` and ``vecplug bench``.

The core asks through the ``vecplug_engine_report`` hook (nothing loaded)
or a loaded model's ``describe()``; it never imports this package.
"""
from __future__ import annotations


def dtype_reason(requested: str | None, device: str) -> str:
    from .hardware import cpu_has_native_bf16

    if requested is not None:
        return "asked for"
    if device.startswith("cuda"):
        import torch

        return ("the GPU supports bf16" if torch.cuda.is_bf16_supported()
                else "the GPU lacks bf16, fp16 keeps its speed")
    if cpu_has_native_bf16():
        return "the CPU has native bf16 matmuls (AVX512-BF16 or AMX)"
    return "the CPU lacks native bf16 (no avx512_bf16/amx_bf16 flag): bf16 would be slower than fp32 here"


def attention_reason(device: str, torch_dtype) -> tuple[list[str], str]:
    """(back-ends available here, fastest first; why the first one)."""
    from .attention import _has_flash_attn, _has_torch_varlen_window, available_backends

    names = available_backends(device, torch_dtype)
    if names[0] == "flash_attn":
        return names, "flash-attn is installed and the GPU runs a 16-bit dtype"
    if names[0] == "torch_varlen":
        return names, "torch's varlen attention has window_size; flash-attn is not installed"
    if not device.startswith("cuda"):
        return names, "on a CPU, grouped SDPA (with split-score bf16 attention for short groups) is the only back-end"
    if not _has_flash_attn() and not _has_torch_varlen_window():
        return names, "neither flash-attn nor a torch varlen attention with window_size is available"
    return names, "the packed CUDA kernels need float16 or bfloat16"


def hardware_description(device: str) -> str:
    import torch

    from .hardware import cpu_description

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return cpu_description()


def engine_report(device: str | None = None, dtype: str | None = None, attention: str | None = None,
                  compiled: bool | None = None) -> dict:
    """Device, dtype, attention back-end, compilation and threads a ModernBERT gets here, each with its reason."""
    from ..devices import dtype_name
    from ..environment import env_flag
    from ..runtime import choose_threads
    from .encoder import should_compile
    from .hardware import choose_device, choose_dtype

    threads = choose_threads()  # what a load here applies (VECPLUG_THREADS, OMP_NUM_THREADS, cores)
    concrete_device = choose_device(device)
    torch_dtype = choose_dtype(dtype, concrete_device)
    backends, why = attention_reason(concrete_device, torch_dtype)
    compile_setting = env_flag("VECPLUG_COMPILE")
    if compiled is None:
        compiled = should_compile(concrete_device, None)
    return {
        "engine": "modernbert",
        "device": concrete_device,
        "device_reason": "asked for" if device else (
            "torch sees a CUDA GPU" if concrete_device.startswith("cuda") else "torch sees no CUDA GPU"),
        "hardware": hardware_description(concrete_device),
        "dtype": dtype_name(torch_dtype),
        "dtype_reason": dtype_reason(dtype, concrete_device),
        "attention": attention or backends[0],
        "attention_reason": "asked for" if attention and attention != backends[0] else why,
        "attention_backends": backends,
        "compiled": compiled,
        "compiled_reason": ("VECPLUG_COMPILE" if compile_setting is not None
                           else "CUDA: fused layers" if concrete_device.startswith("cuda")
                           else "CPU: eager (compiled layers ran 3x slower here)"),
        "threads": threads.count,
        "threads_reason": threads.source,
        "openmp_wait": threads.openmp_wait,
    }
