"""vecplug for lancedb (being built)."""
