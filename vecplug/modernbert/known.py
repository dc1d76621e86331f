"""The ModernBERT embedding models vecplug knows by name.

Both model cards require ``search_query: `` / ``search_document: `` prefixes
and their hub files do not add them, so the prompts live here.
"""
from ..model import ModelSpec

NOMIC_PROMPTS = {"query": "search_query: ", "document": "search_document: "}

KNOWN_MODELS = (
    ModelSpec(
        name="nomic-ai/modernbert-embed-base",
        aliases=("modernbert-embed-base", "nomic-modernbert"),
        dimensions=768,
        matryoshka_dims=(768, 256),
        max_tokens=8192,
        prompts=NOMIC_PROMPTS,
        description="Nomic's ModernBERT-base embedder (default)",
    ),
    ModelSpec(
        name="lightonai/modernbert-embed-large",
        aliases=("modernbert-embed-large",),
        dimensions=1024,
        matryoshka_dims=(1024, 256),
        max_tokens=8192,
        prompts=NOMIC_PROMPTS,
        description="LightOn's ModernBERT-large embedder",
    ),
)


def known_spec_for_directory(path) -> ModelSpec | None:
    """A local copy of a known model keeps its name and prompts.

    Recognised by the folder name (``.../modernbert-embed-base``) or the
    Hugging Face cache layout (``models--nomic-ai--modernbert-embed-base/snapshots/<rev>``).
    """
    parts = [part.lower() for part in path.parts]
    for spec in KNOWN_MODELS:
        repo = spec.name.split("/")[-1].lower()
        cache_name = "models--" + spec.name.lower().replace("/", "--")
        if parts and (parts[-1] == repo or cache_name in parts):
            return spec
    return None
