"""The vecplug_langchain plugin's hooks (found through the ``vecplug`` entry-point group)."""
