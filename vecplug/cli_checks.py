"""Checks every command makes before it starts work: a mistake is one line and exit 2.

Click's own usage errors exit 2; these raise ``click.BadParameter`` the same
way, so ``vecplug embed --device tpu`` fails in milliseconds with a message
that names the option, instead of a traceback after a model has loaded.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import click

DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?)$")


def check_device(device: str | None) -> str | None:
    """``cpu``, ``cuda`` or ``cuda:N``, and a CUDA device only where torch sees one."""
    if device is None:
        return None
    if not DEVICE_PATTERN.match(device):
        raise click.BadParameter(f"{device!r} is not a device vecplug runs on; use cpu, cuda or cuda:N",
                                 param_hint="'--device'")
    if device.startswith("cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise click.BadParameter(f"{device!r} was asked for but torch sees no CUDA GPU here; "
                                     "use --device cpu (or leave it out)", param_hint="'--device'")
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            raise click.BadParameter(f"{device!r}: torch sees {count} CUDA device(s), cuda:0 to cuda:{count - 1}",
                                     param_hint="'--device'")
    return device


def check_writable_file(path: str | None, option: str) -> None:
    """An output file's folder must exist and be writable before hours of work go into it."""
    if path is None or path == "-":
        return
    target = Path(path).expanduser()
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise click.BadParameter(f"{path} is a directory; give a file name", param_hint=f"'{option}'")
    if not folder.is_dir():
        raise click.BadParameter(f"folder {folder} does not exist; create it first", param_hint=f"'{option}'")
    if not os.access(folder, os.W_OK):
        raise click.BadParameter(f"folder {folder} is not writable", param_hint=f"'{option}'")
