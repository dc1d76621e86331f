"""The hooks: register the model, and embed for ``vecplug.embed`` when it is asked for by name."""
from __future__ import annotations

import vecplug

from .model import ALIASES, MODEL_NAME, MiniLMLoader, spec


@vecplug.hookimpl
def vecplug_register_models(register):
    register(spec(), MiniLMLoader())


@vecplug.hookimpl
def vecplug_embed(texts, kind, model, dimensions):
    """Answer only for this plugin's model (by name or alias); None lets another plugin answer."""
    name = model if model is not None else vecplug.default_model_name()
    if name != MODEL_NAME and name not in ALIASES:
        return None
    return vecplug.load_model(MODEL_NAME, dimensions=dimensions).embed(texts, kind)
