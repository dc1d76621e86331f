"""vecplug for langchain (being built)."""
