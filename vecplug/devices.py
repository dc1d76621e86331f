"""Device and dtype settings, checked once for every model plugin.

``vecplug.load_model`` checks what a user asked for here, before any plugin
sees it, so ``device="tpu"`` or ``dtype="int8"`` gets one clear
``InvalidSettingError`` whichever plugin serves the model, and a plugin's
``placement`` only decides what "auto" (None) means on this machine.
Spellings are normalised ("CPU", "cpu:0", "bf16", ``torch.bfloat16``) so the
model cache never loads a second copy for another spelling of one setting.
"""
from __future__ import annotations

from .errors import InvalidSettingError

DTYPES = ("float32", "bfloat16", "float16")
DTYPE_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


def normalise_device(device) -> str | None:
    """"cpu", "cuda" or "cuda:N" from what a user may type; None stays None (auto).

    Case and spaces do not matter ("CPU"), a ``torch.device`` is accepted,
    and "cpu:0" is "cpu": torch has one CPU device.
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


def require_device_present(device: str) -> None:
    """A CUDA device must be one torch sees here; say how many there are when it is not."""
    if not device.startswith("cuda"):
        return
    import torch

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


def dtype_name(dtype) -> str:
    """"bfloat16" for torch.bfloat16: the spelling users pass and JSON records."""
    return str(dtype).removeprefix("torch.")


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
