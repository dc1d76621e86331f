"""``vecplug doctor``: what vecplug will do on this machine and why, and whether its services answer.

Every line is a check: ``(section, name, status, detail)`` with status
``ok``, ``info``, ``warn`` or ``fail``. The engine is asked through the
``vecplug_engine_report`` hook and databases through ``vecplug_doctor_checks``,
so the core reads no engine's or adapter's internals.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import sys
from pathlib import Path

STATUSES = ("ok", "info", "warn", "fail")


@dataclasses.dataclass(frozen=True)
class Check:
    section: str
    name: str
    status: str
    detail: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def python_checks() -> list[Check]:
    from importlib.metadata import version

    import vecplug

    return [Check("vecplug", "version", "info", f"vecplug {version('vecplug')} at {Path(vecplug.__file__).parent}"),
            Check("vecplug", "python", "info", f"{platform.python_version()} ({sys.executable})")]


def torch_checks() -> list[Check]:
    from .cpu import cpu_kind

    # the CPU's matmul class (AMX, AVX512-BF16, AVX512, AVX2, other), as the bench header names it
    cpu = Check("torch", "CPU", "info", f"{cpu_kind()}, {os.cpu_count()} logical cores")
    try:
        import torch
    except ImportError as error:
        return [Check("torch", "torch", "fail", f"not importable ({error}): pip install torch==2.13.0 (CPU)"), cpu]
    checks = [Check("torch", "torch", "ok", f"{torch.__version__}"), cpu]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count()))
        checks.append(Check("torch", "CUDA", "ok", f"CUDA {torch.version.cuda}: {names}"))
    else:
        why = "this torch is a CPU build" if torch.version.cuda is None else "no GPU visible to torch"
        checks.append(Check("torch", "CUDA", "info", f"not available ({why}): models run on the CPU"))
    try:
        from importlib.metadata import version

        checks.append(Check("torch", "flash-attn", "ok", f"flash-attn {version('flash-attn')}"))
    except Exception:
        hint = ('pip install ".[gpu]" in the vecplug checkout for the fastest CUDA attention'
                if torch.cuda.is_available() else "only used on CUDA")
        checks.append(Check("torch", "flash-attn", "info", f"not installed ({hint})"))
    return checks


def engine_checks(device: str | None = None, dtype: str | None = None) -> list[Check]:
    """Each engine plugin's own account of what it would use here, and why."""
    from .plugins import load_plugins, pm

    load_plugins()
    checks = []
    for implementation in pm.hook.vecplug_engine_report.get_hookimpls():
        try:
            report = implementation.function(device=device, dtype=dtype)
        except Exception as error:  # a broken engine is a finding, not a crash
            checks.append(Check("engine", implementation.plugin_name, "fail", f"{type(error).__name__}: {error}"))
            continue
        if not report:
            continue
        engine = report.get("engine", implementation.plugin_name)
        for key, value in report.items():
            if key == "engine" or key.endswith("_reason"):
                continue
            reason = report.get(f"{key}_reason")
            shown = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            checks.append(Check(f"engine {engine}", key, "info", shown + (f" ({reason})" if reason else "")))
    return checks


def matmul_checks(device: str | None = None, seconds: float = 1.0) -> list[Check]:
    """The bf16 matmul rate, measured for about a second: the roof every MFU figure is measured against."""
    import torch

    from .bench import measure_matmul_peak

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    size = 8192 if device.startswith("cuda") else 2048  # the bench's CPU size: the same roof as its MFU
    rate = measure_matmul_peak(torch.bfloat16, device, size=size, seconds=seconds)
    return [Check("torch", "bf16 matmul", "info", f"{rate / 1e12:.3f} TFLOP/s ({size}x{size} on {device}, "
                                                   f"{seconds:g} s)")]


def plugin_checks() -> list[Check]:
    from .plugins import failed_plugins, get_plugins

    loaded = ", ".join(plugin["name"] for plugin in get_plugins())
    checks = [Check("plugins", "loaded", "ok", loaded or "(none)")]
    for name, why in sorted(failed_plugins.items()):
        checks.append(Check("plugins", f"{name} failed", "warn", why))
    return checks


def model_checks() -> list[Check]:
    """Where models are cached, which registered ones are on this machine, and whether the default one is."""
    from .registry import registered_models
    from .settings import MODEL_ENV, Settings

    default = Settings().resolve("model")
    hf_home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    checks = [Check("models", "hub cache", "info", f"{os.environ.get('HF_HUB_CACHE') or Path(hf_home) / 'hub'}"
                    f"{' (HF_HUB_OFFLINE: no downloads)' if os.environ.get('HF_HUB_OFFLINE') else ''}")]
    placeholder = len(checks)  # the default's line goes here, once the registered models are located
    located = {}
    for name, registration in sorted(registered_models().items()):
        try:
            where = located[name] = registration.loader.locate(registration.spec)
        except NotImplementedError:  # ModelLoader's default: the plugin does not say
            checks.append(Check("models", name, "info",
                                f"its plugin cannot tell whether it is on this machine [{registration.plugin}]"))
            continue
        except Exception as error:
            checks.append(Check("models", name, "warn", f"{registration.plugin}: {error}"))
            continue
        if where:
            status, detail = "ok", f"present: {where}"
        else:
            status, detail = "info", "not on this machine (downloads on first use unless HF_HUB_OFFLINE)"
        checks.append(Check("models", name, status, f"{detail} [{registration.plugin}]"))
    checks.insert(placeholder, default_model_check(default, located, MODEL_ENV))
    return checks


def default_model_check(default, located: dict, model_env: str) -> Check:
    """The default model: named where, and flagged with the command that fixes it when it is not here."""
    from .registry import find_registration
    from .settings import BUILT_IN

    origin = f"built in; ${model_env} unset" if default.source == BUILT_IN else f"from {default.source}"
    shown = f"{default.value} ({origin})"
    registration = find_registration(default.value)
    if registration is None:
        if Path(default.value).expanduser().is_dir():
            return Check("models", "default", "info", f"{shown}: a local directory")
        return Check("models", "default", "fail", f"{shown}: no plugin registers this name and it is not a "
                                                  "directory; see `vecplug models`")
    name = registration.spec.name
    if name not in located or located[name]:
        return Check("models", "default", "info", shown)
    offline = " (HF_HUB_OFFLINE=0 while it downloads)" if os.environ.get("HF_HUB_OFFLINE") else ""
    alternative = "" if name.casefold() == "sentence-transformers/all-minilm-l6-v2" or \
        find_registration("minilm") is None else "; or use the installed MiniLM plugin, which needs none: -m minilm"
    return Check("models", "default", "warn", f"{shown} is not on this machine: download it with `vecplug pull`"
                                              f"{offline} where there is network{alternative}")


def server_checks(server_url: str, api_key: str | None) -> list[Check]:
    """``GET /health`` and ``/v1/models`` of a ``vecplug serve``: up, and which model (name, fingerprint)."""
    import json
    import urllib.error
    import urllib.request

    def get(path: str):
        request = urllib.request.Request(server_url.rstrip("/") + path, headers={"Accept": "application/json"})
        if api_key:
            request.add_header("Authorization", f"Bearer {api_key}")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (the user's own URL)
            return response.status, json.loads(response.read() or b"null")

    section = f"server {server_url}"
    try:
        status, health = get("/health")
    except urllib.error.HTTPError as error:
        return [Check(section, "health", "fail", f"HTTP {error.code}" + (
            " (the model is still loading, or it failed)" if error.code == 503 else ""))]
    except (urllib.error.URLError, OSError, ValueError) as error:
        return [Check(section, "reachable", "fail", f"no answer: {getattr(error, 'reason', error)}")]
    checks = [Check(section, "health", "ok", json.dumps(health) if health is not None else f"HTTP {status}")]
    try:
        _, listing = get("/v1/models")
    except urllib.error.HTTPError as error:
        hint = " (API key missing or wrong: set $VECPLUG_API_KEY)" if error.code in (401, 403) else ""
        return checks + [Check(section, "model", "fail", f"/v1/models answered HTTP {error.code}{hint}")]
    except (urllib.error.URLError, OSError, ValueError) as error:
        return checks + [Check(section, "model", "fail", f"/v1/models: {getattr(error, 'reason', error)}")]
    for entry in (listing or {}).get("data") or []:
        described = entry.get("vecplug") or {}
        checks.append(Check(section, "model", "ok", f"{entry.get('id')}: {described.get('dimensions')} dims, "
                                                    f"fingerprint {described.get('fingerprint')}"))
    if len(checks) == 1:
        checks.append(Check(section, "model", "fail", "/v1/models lists no vecplug model: is it a `vecplug serve`?"))
    return checks


def adapter_checks(dsn: str | None, server_url: str | None, api_key: str | None) -> list[Check]:
    """What adapters check for themselves (PostgreSQL: reachable, pgvector, plpython3u, schema, model)."""
    from .plugins import load_plugins, pm

    load_plugins()
    checks = []
    for implementation in pm.hook.vecplug_doctor_checks.get_hookimpls():
        try:
            arguments = {"dsn": dsn, "server_url": server_url, "api_key": api_key}
            found = implementation.function(**{name: arguments[name] for name in implementation.argnames})
        except Exception as error:
            checks.append(Check(implementation.plugin_name, "doctor", "fail", f"{type(error).__name__}: {error}"))
            continue
        for item in found or []:
            item = dict(item)
            if item.get("status") not in STATUSES:
                item["status"] = "warn"
            checks.append(Check(item.get("section", implementation.plugin_name), item["name"], item["status"],
                                item.get("detail", "")))
    return checks


def run_checks(dsn: str | None = None, server_url: str | None = None, api_key: str | None = None,
               device: str | None = None, dtype: str | None = None, measure: bool = True) -> list[Check]:
    checks = python_checks() + torch_checks()
    if measure:
        checks += matmul_checks(device)
    checks += engine_checks(device, dtype) + plugin_checks() + model_checks()
    if server_url:
        checks += server_checks(server_url, api_key)
    if dsn:
        checks += adapter_checks(dsn, server_url, api_key)
        if not any(check.section.lower().startswith("postgres") for check in checks):
            checks.append(Check("PostgreSQL", "checks", "fail", "--dsn was given, but no installed adapter checks "
                                "PostgreSQL (the vecplug_doctor_checks hook of vecplug_pgvector)"))
    return checks


MARKS = {"ok": "ok  ", "info": "    ", "warn": "WARN", "fail": "FAIL"}


def format_checks(checks: list[Check]) -> str:
    lines, section = [], None
    for check in checks:
        if check.section != section:
            section = check.section
            lines.append(f"{section}:")
        lines.append(f"  {MARKS[check.status]} {check.name}: {check.detail}")
    return "\n".join(lines)
