"""The vecplug_llamaindex plugin's hooks (found through the ``vecplug`` entry-point group)."""
