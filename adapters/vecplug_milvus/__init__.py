"""vecplug for milvus (being built)."""
