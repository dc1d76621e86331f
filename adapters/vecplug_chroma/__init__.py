"""vecplug adapter: chroma."""
