"""Checks every command makes before it starts work: a mistake is one line and exit 2.

Click's own usage errors exit 2; these raise ``click.BadParameter`` the same
way, so ``vecplug embed --device tpu`` fails in milliseconds with a message
that names the option, instead of a traceback after a model has loaded.
"""
from __future__ import annotations

import os
from pathlib import Path

import click

def check_device(device: str | None) -> str | None:
    """``cpu``, ``cuda`` or ``cuda:N``, and a CUDA device only where torch sees one (``vecplug.devices``' rules)."""
    if device is None:
        return None
    from .devices import normalise_device, require_device_present
    from .errors import InvalidSettingError

    try:
        normalised = normalise_device(device)
        require_device_present(normalised)
    except InvalidSettingError as error:
        raise click.BadParameter(str(error), param_hint="'--device'") from None
    return normalised


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
