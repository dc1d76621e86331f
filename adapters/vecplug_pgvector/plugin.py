"""Hook implementations of the pgvector adapter (import-light)."""
