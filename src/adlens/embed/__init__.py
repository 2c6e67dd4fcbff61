"""Embeddings: images (EfficientNet-Lite0, ONNX Runtime), texts (MiniLM int8 ONNX), a
similarity learned from a labelled catalogue, PCA reduction, and retrieval metrics.

Importing this package is cheap: no torch and no ONNX Runtime session until a model is used
(torch only ever for the one-time ONNX export of the image model, or the torch references).

    from adlens.embed import get_embedder, CatalogProjection, evaluate_embeddings
    img = get_embedder("efficientnet-lite0")          # (N, 1280) unit rows
    txt = get_embedder("minilm")                      # (N, 384) unit rows
    res = img.embed_files(paths)                      # vectors + per-file errors
    proj = CatalogProjection().fit(res.vectors, labels)   # learn "same kind of product"
    Z = proj.transform(new_vectors)                   # cosine now follows the labels

Models are picked by name through :func:`get_embedder`; see :mod:`adlens.embed.base` for
plugging in another one (e.g. an open_clip checkpoint on disk).
"""

from adlens.embed.base import (
    Embedder,
    available_embedders,
    get_embedder,
    l2_normalize,
    register_embedder,
)
from adlens.embed.evaluate import evaluate_embeddings, pair_auc, retrieval_at_k
from adlens.embed.finetune import TunedEfficientNet, finetune_backbone
from adlens.embed.image import EfficientNetLite0, EfficientNetLite0Int8, FileEmbeddings
from adlens.embed.pca import PCA
from adlens.embed.projection import CatalogProjection
from adlens.embed.text import MiniLM

__all__ = [
    "CatalogProjection",
    "EfficientNetLite0",
    "EfficientNetLite0Int8",
    "Embedder",
    "FileEmbeddings",
    "MiniLM",
    "PCA",
    "available_embedders",
    "evaluate_embeddings",
    "finetune_backbone",
    "get_embedder",
    "l2_normalize",
    "pair_auc",
    "register_embedder",
    "retrieval_at_k",
    "TunedEfficientNet",
]
