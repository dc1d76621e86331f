"""``after_import(module, callback)``: run ``callback`` once ``module`` is imported, without importing it.

Chroma and LanceDB find embedding functions in a registry of their own,
filled at import time, and have no plugin discovery. An adapter must
register there before the user's first ``get_collection`` / ``open_table``,
yet ``vecplug --help`` and ``vecplug.load_plugins()`` import every adapter
package and must not pay for chromadb or lancedb. So the adapter registers
now if the library is already imported, and otherwise the moment its import
completes (a one-shot ``sys.meta_path`` finder that wraps the library's
loader, then steps aside).
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable


def after_import(module: str, callback: Callable[[], None], *, who: str) -> None:
    """Call ``callback`` now if ``module`` is imported, else right after ``import module`` completes.

    A failing callback must not break the user's ``import module``: it
    becomes a warning naming ``who`` (the adapter).
    """
    if module in sys.modules:
        callback()
    else:
        sys.meta_path.insert(0, _RunAfterImport(module, callback, who))


class _RunAfterImport(importlib.abc.MetaPathFinder):
    def __init__(self, module: str, callback: Callable[[], None], who: str):
        self.module, self.callback, self.who = module, callback, who

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.module:
            return None
        sys.meta_path[:] = [finder for finder in sys.meta_path if finder is not self]
        spec = importlib.util.find_spec(fullname)  # the finders that would have served it
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original_exec_module = spec.loader.exec_module

        def exec_module(module):
            original_exec_module(module)
            try:
                self.callback()
            except Exception as error:
                import warnings

                warnings.warn(f"{self.who} could not register its embedding function: {error!r}", stacklevel=2)

        spec.loader.exec_module = exec_module
        return spec
