"""The near-duplicate pair rule.

Two images are duplicates when

* their aHash MD5 keys are equal (seed 000's exact rule: same 32x32 mean-threshold pattern), or
* ``hamming(pHash) <= phash_radius`` **and** ``hamming(dHash) <= dhash_radius``.

pHash (low DCT frequencies) is robust to re-encoding, resizing and small edits; requiring
dHash (horizontal gradients) to agree as well removes many pHash collisions between different
images with the same composition (product shots on the same background, one template).

Defaults (pHash <= 8, dHash <= 10) come from ``benchmarks/bench_dedup_quality.py``: on the
synthetic banner corpus (``adlens.sample``, seeds 0-3) precision 1.000 and recall 0.981-0.995
for re-encodes, resizes, <= 5 % crops, price/CTA changes and 2x re-renders; on 2,605 real product
photos with generated variants, 20 of 3.4 M distinct-photo pairs collide (vs 50 at 10/10 and 273
for pHash <= 10 alone). Wider radii (e.g. 10 / 12) catch more crops and overlays at the cost
of precision on homogeneous catalogues. pHash codes almost always have exactly 32 one-bits
(median threshold), so pHash distances are even and an odd radius behaves like the even one below it.
Re-layouts of a creative into another ad size are *not* caught by hashes (by design).

Example
-------
>>> import numpy as np
>>> ph = np.array([0xF0F0, 0xF0F1, 0x0F0F], np.uint64)
>>> near_duplicate_pairs([1, 2, 3], ph, ph, None)
[(1, 2, 1)]
"""

from __future__ import annotations

import numpy as np

from adlens.dedup.groups import _has_duplicates
from adlens.dedup.hashing import hamming64, to_uint64
from adlens.dedup.index import HashIndex

__all__ = ["near_duplicate_pairs", "DEFAULT_PHASH_RADIUS", "DEFAULT_DHASH_RADIUS"]

DEFAULT_PHASH_RADIUS = 8
DEFAULT_DHASH_RADIUS = 10


def near_duplicate_pairs(
    ids,
    phash,
    dhash=None,
    ahash_md5=None,
    phash_radius: int = DEFAULT_PHASH_RADIUS,
    dhash_radius: int | None = DEFAULT_DHASH_RADIUS,
    *,
    as_array: bool = False,
):
    """All duplicate pairs among n images.

    Parameters
    ----------
    ids : array-like (n,) of int
        Unique ids; pairs are reported with these.
    phash, dhash : array-like (n,) of uint64 / int64
        64-bit codes from :func:`adlens.dedup.hashing.hash_greys`. ``dhash=None`` or
        ``dhash_radius=None`` -> pHash alone decides near matches.
    ahash_md5 : array-like (n,) of str, optional
        Exact keys; equal keys always pair, whatever the distances.
    phash_radius : int
        Maximum pHash Hamming distance of a near match (inclusive); negative disables.
    dhash_radius : int or None
        Maximum dHash Hamming distance of a near match (inclusive).
    as_array : bool
        Return an (m, 3) int64 array instead of a list of tuples.

    Returns
    -------
    list of ``(id_i, id_j, phash_distance)`` with ``id_i < id_j``, sorted; each pair once.

    Example
    -------
    >>> import numpy as np
    >>> near_duplicate_pairs([5, 6], np.array([0, 0xFFFF], np.uint64), None, ["k", "k"])
    [(5, 6, 16)]
    """
    ids = np.asarray(ids).astype(np.int64).ravel()
    n = ids.size
    ph = np.atleast_1d(to_uint64(phash)).ravel()
    if ph.size != n:
        raise ValueError(f"phash has {ph.size} codes for {n} ids")
    if _has_duplicates(ids):
        raise ValueError("ids contain duplicates")
    use_dhash = dhash is not None and dhash_radius is not None
    dh = np.atleast_1d(to_uint64(dhash)).ravel() if use_dhash else None
    if use_dhash and dh.size != n:
        raise ValueError(f"dhash has {dh.size} codes for {n} ids")

    parts = []  # (i, j) position pairs with i < j
    if ahash_md5 is not None:
        keys = np.asarray(ahash_md5).astype(str).ravel()
        if keys.size != n:
            raise ValueError(f"ahash_md5 has {keys.size} keys for {n} ids")
        parts.append(_equal_key_pairs(keys))
    if phash_radius is not None and phash_radius >= 0 and n > 1:
        index = HashIndex()
        index.add(np.arange(n), ph)
        i, j, _ = index.radius_pairs(ph, int(phash_radius))
        keep = i < j
        i, j = i[keep], j[keep]
        if use_dhash:
            ok = hamming64(dh[i], dh[j]) <= dhash_radius
            i, j = i[ok], j[ok]
        parts.append(np.stack([i, j], axis=1))
    if not parts:
        pairs = np.zeros((0, 2), np.int64)
    else:
        pairs = np.unique(np.concatenate(parts).reshape(-1, 2), axis=0)
    a, b = ids[pairs[:, 0]], ids[pairs[:, 1]]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    dist = hamming64(ph[pairs[:, 0]], ph[pairs[:, 1]])
    out = np.stack([lo, hi, dist], axis=1).astype(np.int64) if pairs.size else np.zeros((0, 3), np.int64)
    out = out[np.lexsort((out[:, 1], out[:, 0]))]
    if as_array:
        return out
    return [(int(x), int(y), int(d)) for x, y, d in out]


def _equal_key_pairs(keys: np.ndarray) -> np.ndarray:
    """All (i, j), i < j, with ``keys[i] == keys[j]`` (positions)."""
    _, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.argsort(inv, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = []
    for g in np.flatnonzero(counts > 1):
        members = order[starts[g] : starts[g] + counts[g]]
        i, j = np.triu_indices(members.size, k=1)
        out.append(np.stack([members[i], members[j]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)
