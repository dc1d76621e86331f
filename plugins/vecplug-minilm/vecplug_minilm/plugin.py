"""The hook: register the model. ``vecplug.embed(..., model="minilm")`` then finds it by name or alias.

No ``vecplug_embed`` implementation: that hook is for plugins that embed
without registering a model; a registered model is embedded through
``vecplug.load_model`` already.
"""
from __future__ import annotations

import vecplug

from .model import MiniLMLoader, spec


@vecplug.hookimpl
def vecplug_register_models(register):
    register(spec(), MiniLMLoader())
