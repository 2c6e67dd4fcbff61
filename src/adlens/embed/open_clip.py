"""Optional open_clip backend for users who have open_clip and a checkpoint on disk.

Not installed by adlens (open_clip pulls torchvision); nothing is downloaded: ``pretrained``
must be a local file. Gives a joint image-text space (``embed_images`` and ``embed_texts``)::

    emb = get_embedder("open_clip", arch="ViT-B-32", pretrained="/models/vit_b_32.pt")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from adlens.embed.base import Embedder, l2_normalize, register_embedder

__all__ = ["OpenClip"]


@register_embedder("open_clip")
class OpenClip(Embedder):
    """An open_clip model from a local checkpoint (image and text towers, unit-norm outputs).

    Args:
        arch: open_clip architecture name, e.g. ``"ViT-B-32"``.
        pretrained: path to the checkpoint file (never a hub tag: no downloads at run time).
        batch_size: items per forward pass.
    """

    modality = "image+text"

    def __init__(self, arch: str, pretrained: str | os.PathLike, *, batch_size: int = 32):
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"open_clip checkpoint not found: {path} (adlens never downloads weights)")
        try:
            import open_clip
            import torch
        except ImportError as e:
            raise ImportError("the 'open_clip' embedder needs `pip install open_clip_torch` (and its torchvision)") from e
        self._torch = torch
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(arch, pretrained=str(path))
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.batch_size = batch_size
        self.dim = int(self.model.text_projection.shape[1]) if hasattr(self.model, "text_projection") else 512
        self.model_id = f"open_clip/{arch}/{path.name}/v1"

    def embed_images(self, images: Sequence) -> np.ndarray:
        from adlens.embed.image import load_rgb

        out = []
        for s in range(0, len(images), self.batch_size):
            x = self._torch.stack([self.preprocess(load_rgb(im)) for im in images[s : s + self.batch_size]])
            with self._torch.inference_mode():
                out.append(self.model.encode_image(x).float().numpy())
        return l2_normalize(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for s in range(0, len(texts), self.batch_size):
            with self._torch.inference_mode():
                out.append(self.model.encode_text(self.tokenizer(list(texts[s : s + self.batch_size]))).float().numpy())
        return l2_normalize(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)
