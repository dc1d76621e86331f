"""The vecplug_milvus plugin's hooks (found through the ``vecplug`` entry-point group)."""
