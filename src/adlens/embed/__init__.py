"""Embeddings: images (EfficientNet-Lite0, ONNX Runtime), texts (MiniLM int8 ONNX), learned
projections fitted on a labelled catalogue, PCA reduction, and retrieval metrics.

Importing this package is cheap: no torch, no ONNX Runtime session until a model is used.
Pick models by name through :func:`get_embedder` (see :mod:`adlens.embed.base` for plugging
in your own).
"""

from adlens.embed.base import (
    Embedder,
    available_embedders,
    get_embedder,
    l2_normalize,
    register_embedder,
)

__all__ = [
    "Embedder",
    "available_embedders",
    "get_embedder",
    "l2_normalize",
    "register_embedder",
]
