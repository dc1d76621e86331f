"""Runs the vecplug CLI with the fake hash model (tests/fake_plugin.py) registered.

``vecplug serve`` started this way serves a third-party model that has only
``embed_batch`` (no token fast path), as a plugin installed through an
entry point would. ``FAKE_LOAD_SECONDS`` slows its loading, so that tests see
the server's "loading" state for certain; ``FAKE_LOAD_ERROR`` makes loading
fail with that message, after the server is listening. ``FAKE_EMBED_SECONDS``
makes every batch take that long, so a test knows a batch is still running.
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import vecplug  # noqa: E402
from fake_plugin import FAKE_SPEC, HashModel  # noqa: E402


class SlowLoadingPlugin:
    @vecplug.hookimpl
    def vecplug_register_models(self, register):
        def load(spec, device, dtype):
            time.sleep(float(os.environ.get("FAKE_LOAD_SECONDS", "0")))
            if os.environ.get("FAKE_LOAD_ERROR"):
                raise RuntimeError(os.environ["FAKE_LOAD_ERROR"])
            model = HashModel(spec)
            delay = float(os.environ.get("FAKE_EMBED_SECONDS", "0"))
            if delay:
                embed_batch = model.embed_batch
                model.embed_batch = lambda texts: time.sleep(delay) or embed_batch(texts)
            return model

        register(FAKE_SPEC, load)


vecplug.pm.register(SlowLoadingPlugin(), name="fake-slow")

from vecplug.cli import main  # noqa: E402

main()
