"""Second dedup stage: near-duplicates by image-embedding cosine, for what hashes miss.

Hashes are blind to larger crops (> 5 %), overlays (stickers, strips) and re-layouts; global
image embeddings tolerate crops and overlays much better. A pair is an *embedding duplicate*
when the cosine of the two L2-normalised embeddings is >= ``threshold`` and hashes did not
already put them in one group. These links are recorded with method ``"embedding"`` and
reported apart from hash matches.

Default threshold (0.95): on the sample corpus the most similar pair of *different* creatives
has cosine 0.949, so 0.95 keeps precision at 1.0 there; what it catches is measured in
BENCHMARKS.md (section "Similar products", the cascade paragraph). Different products in one
banner template can reach 0.96 (``benchmarks/eval_relayout_clothing.py``: 4 of 720 such pairs
at >= 0.95); raise the threshold where advertisers do that.

Re-layouts into another ad size (cosine 0.30-0.68 to their original) are not caught here: on real
photos the global embedding ranks them below other products in the same template. The third
stage, :mod:`adlens.dedup.relayout`, matches local features inside the photo regions instead.
"""

from __future__ import annotations

import math

import numpy as np

from adlens.errors import InvalidInput

DEFAULT_COSINE_THRESHOLD = 0.95


def check_threshold(threshold) -> float:
    """A cascade threshold is a cosine in (0, 1]: below that nearly every pair of banners would be
    merged for good in the ledger, and NaN would silently link nothing."""
    ok = isinstance(threshold, int | float | np.integer | np.floating) and not isinstance(threshold, bool)
    if not ok or not math.isfinite(float(threshold)) or not 0.0 < float(threshold) <= 1.0:
        raise InvalidInput(f"cascade threshold must be a cosine in (0, 1], got {threshold!r}")
    return float(threshold)


def embedding_pairs(vectors: np.ndarray, threshold: float = DEFAULT_COSINE_THRESHOLD, block: int = 4096) -> np.ndarray:
    """All pairs ``(i, j, cos)`` with ``i < j`` and cosine >= threshold, as an (m, 3) float64 array.

    ``vectors``: (N, D) L2-normalised rows. Blockwise exact search: O(N^2 D) flops in
    ``block``-row tiles, so memory stays at ``block * N`` floats.

    >>> v = np.array([[1, 0], [0.99, 0.141], [0, 1]], np.float32)
    >>> embedding_pairs(v, 0.98)[:, :2].tolist()
    [[0.0, 1.0]]
    """
    check_threshold(threshold)
    X = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(X)
    out = []
    for s in range(0, n, block):
        S = X[s : s + block] @ X.T
        r, c = np.nonzero(S >= threshold)
        keep = c > r + s
        out.append(np.column_stack([r[keep] + s, c[keep], S[r[keep], c[keep]]]))
    return np.concatenate(out) if out else np.zeros((0, 3))


def new_links(pairs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Pairs whose members are not already in the same group (``labels``: group id per row)."""
    if not len(pairs):
        return pairs
    i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    return pairs[labels[i] != labels[j]]
