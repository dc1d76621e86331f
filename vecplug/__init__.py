"""vecplug: let a database embed its own text with a local ModernBERT model.

    import vecplug
    model = vecplug.load_model()             # $VECPLUG_MODEL or nomic-ai/modernbert-embed-base
    model.embed_documents(["text", ...])     # float32 (n, dim), L2-normalised, document prompt
    model.embed_queries(["question"])        # query prompt
    model.embed_chunks([long_text], chunk_tokens=512, late=True)  # passages: .spans, .texts, .vectors
    vecplug.embed(["text"], kind="query")    # through the vecplug_embed hook
    vecplug.cluster(vectors, k=8)            # k-means labels (scikit-learn, the cluster extra)

Importing this package is cheap: torch and friends load with the first model.

For plugin authors: ``EmbeddingModel`` and ``ModelLoader`` (base classes),
``Embedder``, ``TokenPath``, ``ChunkPath`` and ``Loader`` (what vecplug relies on, as
Protocols), ``check_texts``/``check_text``/``check_kind`` (the input checks
every path shares), ``progress`` (a bar only a person sees) and
``RemoteModel`` (a ``vecplug serve`` model, imported on first use).
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
from .chunking import Chunks
from .contracts import ChunkPath, Embedder, Loader, TokenPath
from .hookspecs import hookimpl
from .model import EmbeddingModel, ModelLoader, ModelSpec, check_kind, check_text, check_texts
from .plugins import load_plugins, pm
from .progress import progress
from .records import Record, Target, before_ingest
from .analysis import cluster
from . import runtime
from .registry import clear_cache, default_model_name, embed, load_model, registered_models
from .settings import DEFAULT_MODEL
from .spaces import check_same_space, same_space
from .tune import tune  # the function; its package imports sentence-transformers only when a run starts

__version__ = "0.1.0"

runtime.prepare_environment()  # OpenMP reads its wait policy when torch is imported: before that, if we can


def __getattr__(name: str):
    """``vecplug.RemoteModel`` without importing the HTTP client (ssl, threads) with every ``import vecplug``."""
    if name == "RemoteModel":
        from .client import RemoteModel

        return RemoteModel
    raise AttributeError(f"module 'vecplug' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODEL",
    "ChunkPath",
    "Chunks",
    "Embedder",
    "EmbeddingModel",
    "InvalidSettingError",
    "Loader",
    "ModelFileError",
    "ModelLoader",
    "ModelMismatchError",
    "ModelNotAvailableError",
    "ModelSpec",
    "Record",
    "RemoteModel",
    "ServerError",
    "ServerUnavailableError",
    "Target",
    "TokenPath",
    "UnknownModelError",
    "VecplugError",
    "before_ingest",
    "check_kind",
    "check_same_space",
    "check_text",
    "check_texts",
    "clear_cache",
    "cluster",
    "default_model_name",
    "embed",
    "hookimpl",
    "load_model",
    "load_plugins",
    "pm",
    "progress",
    "registered_models",
    "same_space",
    "tune",
]
