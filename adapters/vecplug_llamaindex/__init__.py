"""vecplug for llamaindex (being built)."""
