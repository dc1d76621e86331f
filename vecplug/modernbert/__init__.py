"""The built-in ModernBERT plugin: files, an unpadded forward pass, token-budget batching."""
