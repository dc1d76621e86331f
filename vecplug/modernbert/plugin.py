"""The built-in ModernBERT plugin, registered like any external one.

Import-light: torch and transformers load only when a model does.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..hookspecs import hookimpl
from ..model import ModelLoader
from .known import KNOWN_MODELS, known_spec_for_directory


@dataclasses.dataclass(frozen=True)
class ModernBertLoader(ModelLoader):
    """Loads one model: a hub id (through the HF cache) or a local directory."""

    directory: Path | None = None

    def __call__(self, spec, device, dtype, **options):
        from .embedder import load_modernbert
        from .files import download_or_find, read_model_files

        directory = self.directory or download_or_find(spec.name)
        files = read_model_files(directory)
        if not spec.prompts and files.prompts:
            spec = dataclasses.replace(spec, prompts=files.prompts)
        if spec.dimensions != files.hidden_size:  # the weights are the truth, not the catalogue
            matryoshka = tuple(dims for dims in spec.matryoshka_dims if dims <= files.hidden_size)
            spec = dataclasses.replace(spec, dimensions=files.hidden_size, matryoshka_dims=matryoshka)
        return load_modernbert(spec, files, device, dtype, **options)

    def locate(self, spec) -> str | None:
        """Where this model's files are on this machine (a directory, or the HF cache), or None; no download."""
        if self.directory is not None:
            return str(self.directory)
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        found = try_to_load_from_cache(spec.name, "model.safetensors")
        return str(Path(found).parent) if isinstance(found, str) else None

    def placement(self, device: str | None, dtype: str | None) -> tuple[str, str]:
        """The concrete (device, dtype) an auto request gets here: the model cache's key."""
        from ..devices import dtype_name
        from ..runtime import choose_threads
        from .hardware import choose_device, choose_dtype

        choose_threads()  # before torch first runs: threads, OpenMP waiting, oneDNN cache sizes

        device = choose_device(device)
        return device, dtype_name(choose_dtype(dtype, device))


@hookimpl
def vecplug_register_models(register):
    for spec in KNOWN_MODELS:
        register(spec, ModernBertLoader())


@hookimpl
def vecplug_model_from_directory(path):
    from ..model import ModelSpec
    from .files import is_modernbert_directory, read_model_files

    if not is_modernbert_directory(path):
        return None
    files = read_model_files(path)
    known = known_spec_for_directory(path)
    prompts = files.prompts or (known.prompts if known else {})
    spec = ModelSpec(
        name=str(path),
        dimensions=files.hidden_size,
        max_tokens=files.max_tokens,
        prompts=prompts,
        matryoshka_dims=known.matryoshka_dims if known else (),
        description=f"ModernBERT from {path}" + (f" (a copy of {known.name})" if known else ""),
    )
    return spec, ModernBertLoader(directory=path)


@hookimpl
def vecplug_engine_report(device, dtype):
    from .report import engine_report

    return engine_report(device, dtype)
