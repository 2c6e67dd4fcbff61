"""Vector search: :class:`VectorIndex` (FAISS, exact or approximate, ids, filters, save/load)."""

from adlens.index.vector import VectorIndex

__all__ = ["VectorIndex"]
