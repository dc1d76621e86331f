"""vecplug adapter: pgvector."""
