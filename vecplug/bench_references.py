"""sentence-transformers' ONNX and OpenVINO back-ends as references for ``vecplug bench --st-backend``.

They are the fastest CPU paths sentence-transformers offers, so vecplug's
speed-up is measured against them too, in the same run on the same files.
They need optimum, which pins an older transformers than vecplug's own
environment has: the reference environment is a separate one (``INSTALL``),
and whatever it lacks is named before any timing.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import warnings
from pathlib import Path

from .quiet_logs import loggers_quieted

BACKENDS = ("onnx", "openvino")
# the modules sentence-transformers imports for each back-end (sentence_transformers/backend/load.py)
BACKEND_MODULES = {"onnx": ("onnxruntime", "optimum.onnxruntime"), "openvino": ("openvino", "optimum.intel.openvino")}
INSTALL = ('pip install "sentence-transformers[onnx,openvino]<6" "datasets<4.2" "huggingface_hub<1" '
           '(with -c a constraints file holding torch==2.13.0; optimum-intel pins transformers 4.57, so in an '
           'environment of its own: docs/benchmarks.md)')


def _absent(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ImportError:  # a parent package is missing, or fails to import
        return True


def missing_backend_line(backends) -> str | None:
    """What to install for ``backends``, on one line; None when every module they need imports."""
    missing = [module for backend in backends for module in BACKEND_MODULES[backend] if _absent(module)]
    if not missing:
        return None
    return (f"--st-backend {' '.join(dict.fromkeys(backends))} needs {', '.join(missing)}, not installed here: "
            f"{INSTALL}")


def tokenizer_class_problem(model_dir: Path, transformers_module=None) -> str | None:
    """A tokenizer class this transformers lacks (transformers 5 saves write one 4.x cannot load), named with its fix.

    The reference environment has transformers 4.57; a folder saved by
    transformers 5 names ``TokenizersBackend``, which 4.57 refuses with a
    long traceback. "PreTrainedTokenizerFast" loads the same tokenizer.json
    in both (``vecplug.testing.write_model`` writes it), so the fix is one
    value in the user's file; the bench says so rather than editing it.
    ``transformers_module``: the transformers to ask (default: the installed one).
    """
    path = Path(model_dir) / "tokenizer_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # no config (or not JSON): sentence-transformers reports that itself
    name = config.get("tokenizer_class")
    if transformers_module is None:
        import transformers as transformers_module
    if not isinstance(name, str) or config.get("auto_map") or hasattr(transformers_module, name):
        return None
    return (f"{path} names tokenizer_class {name!r}, which transformers {transformers_module.__version__} lacks "
            f"(a transformers 5 save writes it): set it to \"PreTrainedTokenizerFast\" there, which transformers 4 "
            f"and 5 both load")


def backend_encoder(model_dir: Path, backend: str, threads: int, prompt: str):
    """sentence-transformers on ``backend`` (exported on the fly), ``threads`` threads: ``(encode, precision)``.

    The export (seconds for a base model) happens here, before any timing.
    Threads are pinned to the count torch uses, so every engine gets the same
    cores; ``precision`` is what the back-end says it computes in, or None.
    """
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    if backend == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        model_kwargs = {"provider": "CPUExecutionProvider", "session_options": options}
    else:
        model_kwargs = {"ov_config": {"INFERENCE_NUM_THREADS": threads}}
    with _quiet_export():
        model = SentenceTransformer(str(model_dir), device="cpu", backend=backend, model_kwargs=model_kwargs)

    def encode(texts):
        vectors = model.encode(texts, batch_size=32, prompt=prompt, normalize_embeddings=True,
                               convert_to_numpy=True)
        return vectors.astype("float32")

    return encode, _precision(model, backend)


@contextlib.contextmanager
def _quiet_export():
    """The export's tracer warnings and "save the exported model" advice: not the bench user's concern."""
    with warnings.catch_warnings(), loggers_quieted(("sentence_transformers", "optimum", "transformers")):
        warnings.simplefilter("ignore")
        yield


def _precision(model, backend: str) -> str | None:
    """OpenVINO's inference precision ("bf16" on bf16 CPUs); ONNX Runtime does not report one."""
    if backend != "openvino":
        return None
    try:
        precision = model[0].auto_model.request.get_property("INFERENCE_PRECISION_HINT")
        return precision.get_type_name()  # "bf16", "f32": an openvino.Type
    except Exception:  # an optimum-intel without ``request``, or not compiled yet: the cell just says "auto"
        return None


def backend_versions(backends) -> dict:
    """The versions of what each back-end ran on, for the bench header."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {"onnx": ("optimum-onnx", "onnxruntime"), "openvino": ("optimum-intel", "openvino")}
    found = {}
    for backend in backends:
        for package in ("optimum", *packages[backend]):
            try:
                found[package] = version(package)
            except PackageNotFoundError:
                pass
    return found
