"""Hook implementations of the chroma adapter (import-light)."""
