"""The vecplug_lancedb plugin's hooks (found through the ``vecplug`` entry-point group)."""
