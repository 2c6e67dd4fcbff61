"""The embedder interface and the registry that lets callers pick a model by name.

Every embedder maps images or texts to float32 rows of unit L2 norm, so that an inner product
is a cosine similarity and any embedder can feed :class:`adlens.index.VectorIndex`.

Plugging in another model
-------------------------
Callers never import a concrete class; they ask the registry::

    from adlens.embed import get_embedder
    emb = get_embedder("efficientnet-lite0", model_dir="/models")
    vecs = emb.embed_images([pil_image])            # (1, emb.dim) float32, unit norm

To add a model (say an open_clip checkpoint you have on disk), subclass :class:`Embedder`,
set ``model_id`` (name + weights + preprocessing version: it keys every cache of vectors, so
change it whenever outputs would change) and ``dim``, implement ``embed_images`` and/or
``embed_texts``, and register a factory::

    from adlens.embed import Embedder, register_embedder, l2_normalize

    @register_embedder("my-clip")
    class MyClip(Embedder):
        modality = "image"
        def __init__(self, checkpoint: str):
            import open_clip                                  # import heavy deps lazily
            self.model, _, self.pre = open_clip.create_model_and_transforms(
                "ViT-B-32", pretrained=checkpoint)
            self.model_id = f"open_clip/ViT-B-32/{Path(checkpoint).name}/v1"
            self.dim = 512
        def embed_images(self, images):
            ...
            return l2_normalize(feats)

    get_embedder("my-clip", checkpoint="/models/vitb32.pt")

A package can also register without being imported by the caller, through the entry-point
group ``adlens.embedders`` (``my-clip = my_pkg.embed:MyClip`` in its pyproject); the registry
loads those on the first lookup of an unknown name. :mod:`adlens.embed.open_clip` ships such a
backend for users who have open_clip and its weights installed.
"""

from __future__ import annotations

import os
import threading
from abc import ABC
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "Embedder",
    "l2_normalize",
    "register_embedder",
    "get_embedder",
    "available_embedders",
    "default_num_threads",
]


def default_num_threads() -> int:
    """Cores this process may use: CPU affinity capped by a container's CPU quota (:mod:`adlens.cpus`)."""
    from adlens.cpus import available_cpus

    return available_cpus()


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32; all-zero rows stay zero.

    >>> l2_normalize(np.array([[3.0, 4.0]]))
    array([[0.6, 0.8]], dtype=float32)
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, eps)).astype(np.float32, copy=False)


class Embedder(ABC):
    """Maps images or texts to unit-norm float32 vectors of a fixed size.

    Attributes:
        model_id: model name + weights + preprocessing version; used as a cache key for vectors.
        dim: length of every vector.
        modality: ``"image"`` or ``"text"`` (what the embedder accepts).
    """

    model_id: str
    dim: int
    modality: str = "image"

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        """``images`` (PIL images or HxWx3 uint8 arrays) -> ``(N, dim)`` float32, unit rows."""
        raise NotImplementedError(f"{type(self).__name__} does not embed images")

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``texts`` -> ``(N, dim)`` float32, unit rows."""
        raise NotImplementedError(f"{type(self).__name__} does not embed texts")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, dim={self.dim})"


_REGISTRY: dict[str, Callable[..., Embedder]] = {}
_BUILTINS_LOADED = False
_ENTRY_POINT_GROUP = "adlens.embedders"


def register_embedder(name: str, factory: Callable[..., Embedder] | None = None):
    """Register ``factory`` (a class or function returning an :class:`Embedder`) under ``name``.

    Usable as a decorator (``@register_embedder("x")``) or a call. A later registration of the
    same name replaces the earlier one, so users can override a built-in.
    """
    if factory is None:
        def deco(f):
            _REGISTRY[name] = f
            return f
        return deco
    _REGISTRY[name] = factory
    return factory


_BUILTINS_LOCK = threading.Lock()


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    with _BUILTINS_LOCK:  # two threads asking at once must both see the loaded registry
        if _BUILTINS_LOADED:
            return
        # Importing registers them; the modules import their heavy dependencies lazily.
        from adlens.embed import finetune, image, open_clip, text  # noqa: F401

        _BUILTINS_LOADED = True


def _load_entry_point(name: str) -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=_ENTRY_POINT_GROUP):
        if ep.name == name and name not in _REGISTRY:
            _REGISTRY[name] = ep.load()


def available_embedders() -> list[str]:
    """Names accepted by :func:`get_embedder` (built-ins, registered, and entry points)."""
    _load_builtins()
    from importlib.metadata import entry_points

    names = set(_REGISTRY) | {ep.name for ep in entry_points(group=_ENTRY_POINT_GROUP)}
    return sorted(names)


def get_embedder(name: str, **kwargs) -> Embedder:
    """Build the embedder registered under ``name`` with ``kwargs``.

    Built-ins: ``efficientnet-lite0`` (image, 1280-d, ONNX Runtime), ``efficientnet-lite0-int8``
    (same network quantised, ~1.4x faster, its own vectors), ``efficientnet-lite0-tuned``
    (a backbone fine-tuned on a catalogue, ``path=`` its folder), ``efficientnet-lite0-torch``
    (same model in torch eager, reference/benchmark), ``minilm`` (text, 384-d, int8 ONNX),
    ``minilm-torch`` (sentence-transformers reference), ``open_clip`` (needs open_clip + weights).

    >>> emb = get_embedder("minilm")          # doctest: +SKIP
    >>> emb.embed_texts(["summer sale"]).shape  # doctest: +SKIP
    (1, 384)
    """
    _load_builtins()
    if name not in _REGISTRY:
        _load_entry_point(name)
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown embedder {name!r}; available: {', '.join(available_embedders())}") from None
    return factory(**kwargs)
