"""vecplug adapter: qdrant."""
