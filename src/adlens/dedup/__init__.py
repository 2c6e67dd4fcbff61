"""Duplicate detection core: perceptual hashes, a Hamming index, pair matching and grouping.

Everything here is arrays in, arrays out (no database):

* :mod:`adlens.dedup.hashing` -- ``grey32``, ``hash_greys``, ``hash_files``: aHash (+ MD5 exact
  key), 64-bit pHash and dHash with a documented, stable bit order.
* :mod:`adlens.dedup.index` -- ``HashIndex``: exact Hamming radius / k-NN search over 64-bit
  codes with stable int64 ids (multi-index hashing + faiss flat scan), scales to 10 M codes.
* :mod:`adlens.dedup.match` -- ``near_duplicate_pairs``: the pair rule (exact aHash key, or
  pHash and dHash both within a radius).
* :mod:`adlens.dedup.groups` -- ``UnionFind``, ``group_pairs``, ``choose_canonical``.
"""

from adlens.dedup.groups import UnionFind, choose_canonical, group_pairs
from adlens.dedup.hashing import (
    HashBatch,
    grey32,
    hamming64,
    hash_files,
    hash_greys,
    hash_image,
    to_int64,
    to_uint64,
)
from adlens.dedup.index import HashIndex
from adlens.dedup.match import DEFAULT_DHASH_RADIUS, DEFAULT_PHASH_RADIUS, near_duplicate_pairs

__all__ = [
    "HashBatch",
    "grey32",
    "hash_greys",
    "hash_image",
    "hash_files",
    "hamming64",
    "to_int64",
    "to_uint64",
    "HashIndex",
    "near_duplicate_pairs",
    "DEFAULT_PHASH_RADIUS",
    "DEFAULT_DHASH_RADIUS",
    "UnionFind",
    "group_pairs",
    "choose_canonical",
]
