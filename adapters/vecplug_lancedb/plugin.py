"""The vecplug_lancedb plugin's entry-point module (import-light).

No hooks: importing it, as ``vecplug.load_plugins()`` does, imports the
package, which registers the ``"vecplug"`` embedding function with LanceDB
now if lancedb is imported, else the moment it is. Neither this module nor
the package imports lancedb or pyarrow, so ``vecplug --help`` and other
users of vecplug do not pay for them.
"""
