"""The built-in ModernBERT plugin, registered like any external one.

Import-light: torch and transformers load only when a model does.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..hookspecs import hookimpl
from ..model import ModelLoader, ModelSpec
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
    from .files import is_modernbert_directory

    if not is_modernbert_directory(path):
        return None
    return spec_for_directory(path, name=str(path)), ModernBertLoader(directory=path)


def spec_for_directory(path: Path, name: str) -> ModelSpec:
    """The spec of a ModernBERT directory: its own prompts and sizes, or a known model's when it is a copy of one.

    Matryoshka: a copy of a known model keeps its trained sizes. Of any
    other checkpoint vecplug cannot tell how it was trained, so its spec
    says so explicitly (``any_dimensions``): cutting is allowed, at the
    caller's judgement, as it was before vecplug knew the difference.
    """
    from .files import read_model_files

    files = read_model_files(path)
    known = known_spec_for_directory(path)
    prompts = files.prompts or (known.prompts if known else {})
    tuned = tuned_sizes(path)  # a `vecplug tune` output keeps the sizes its base had (or it was trained for)
    return ModelSpec(
        name=name,
        dimensions=files.hidden_size,
        max_tokens=files.max_tokens,
        prompts=prompts,
        matryoshka_dims=tuned["matryoshka_dims"] if tuned else known.matryoshka_dims if known else (),
        any_dimensions=tuned["any_dimensions"] if tuned else known is None,
        description=f"ModernBERT from {path}" + (f" (a copy of {known.name})" if known else "")
        + (f", {files.pooling} pooling" if files.pooling != "mean" else ""),
    )


def tuned_sizes(path: Path) -> dict | None:
    """{"matryoshka_dims": (...), "any_dimensions": bool} from ``vecplug_tune.json``, None for other models.

    sentence-transformers' files do not say which sizes a model was trained
    to be cut to; ``vecplug tune`` records them beside its output.
    """
    from .file_checks import read_json_file

    sizes = read_json_file(path / "vecplug_tune.json").get("model", {})  # {} when there is no such file
    if not isinstance(sizes, dict) or "matryoshka_dims" not in sizes:
        return None
    return {"matryoshka_dims": tuple(int(size) for size in sizes["matryoshka_dims"]),
            "any_dimensions": bool(sizes.get("any_dimensions", False))}


@hookimpl
def vecplug_model_from_hub(name):
    """Any ModernBERT on the hub in the sentence-transformers layout, under its hub id.

    Its files come from the HF cache (downloaded unless ``HF_HUB_OFFLINE``
    is set). A repository that does not exist is not claimed (the name stays
    unknown); one that cannot be fetched says why (ModelNotAvailableError).
    """
    from ..errors import ModelNotAvailableError, UnknownModelError
    from .files import download_or_find, is_modernbert_directory

    try:
        directory = download_or_find(name)
    except ModelNotAvailableError as error:
        if type(error.__cause__).__name__ in ("RepositoryNotFoundError", "HFValidationError"):
            return None
        raise
    if not is_modernbert_directory(directory):
        raise UnknownModelError(f"{name} is not a ModernBERT model (its config.json's model_type is not "
                                "'modernbert'); no vecplug plugin serves it")
    return spec_for_directory(directory, name=name), ModernBertLoader(directory=directory)


@hookimpl
def vecplug_engine_report(device, dtype):
    from .report import engine_report

    return engine_report(device, dtype)
