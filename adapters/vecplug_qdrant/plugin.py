"""Hook implementations of the qdrant adapter (import-light)."""
