"""vecplug: let a database embed its own text with a local ModernBERT model.

    import vecplug
    model = vecplug.load_model()             # $VECPLUG_MODEL or nomic-ai/modernbert-embed-base
    model.embed_documents(["text", ...])     # float32 (n, dim), L2-normalised, document prompt
    model.embed_queries(["question"])        # query prompt
    vecplug.embed(["text"], kind="query")    # through the vecplug_embed hook

Importing this package is cheap: torch and friends load with the first model.
"""
from .errors import (
    InvalidSettingError,
    ModelFileError,
    ModelMismatchError,
    ModelNotAvailableError,
    ServerError,
    ServerUnavailableError,
    UnknownModelError,
    VecplugError,
)
from .hookspecs import hookimpl
from .model import EmbeddingModel, ModelSpec
from .plugins import load_plugins, pm
from .records import Record, Target, before_ingest
from . import runtime
from .registry import DEFAULT_MODEL, clear_cache, default_model_name, embed, load_model, registered_models
from .spaces import check_same_space, same_space

__version__ = "0.1.0"

runtime.prepare_environment()  # OpenMP reads its wait policy when torch is imported: before that, if we can

__all__ = [
    "DEFAULT_MODEL",
    "EmbeddingModel",
    "InvalidSettingError",
    "ModelFileError",
    "ModelMismatchError",
    "ModelNotAvailableError",
    "ModelSpec",
    "Record",
    "ServerError",
    "ServerUnavailableError",
    "Target",
    "UnknownModelError",
    "VecplugError",
    "before_ingest",
    "check_same_space",
    "clear_cache",
    "default_model_name",
    "embed",
    "hookimpl",
    "load_model",
    "load_plugins",
    "pm",
    "registered_models",
    "same_space",
]
