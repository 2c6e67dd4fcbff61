"""Retrieval metrics for labelled embeddings: arrays in, numbers out.

Two items are *relevant* to each other when they carry the same label (seed 001's notion of a
good recommendation: a product of the same kind).

- :func:`pair_auc` -- ROC AUC of the similarity separating same-label from different-label
  pairs (every unordered pair once; seed 001's metric).
- :func:`retrieval_at_k` -- leave-one-out retrieval: each item queries all others; reports
  precision@k (share of the k neighbours with the query's label), recall@k (share of the
  query's same-label items that are in its top k; small when a class is much larger than k)
  and hit_rate@k (share of queries with at least one same-label item in the top k, which the
  metric-learning literature calls "Recall@K").

Similarities: ``"cosine"`` (rows are normalised here), ``"hamming"`` (bit codes as bool or
packed uint8 arrays; similarity = 1 - distance / bits), or ``"precomputed"`` (pass an
``(N, N)`` similarity matrix as ``X``). Ties are broken at random with ``random_state``, so that
coarse similarities (a 64-bit hash has 65 values) are not flattered by index order.

Example::

    >>> X = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    >>> y = np.array([0, 0, 1, 1])
    >>> pair_auc(X, y)
    1.0
    >>> retrieval_at_k(X, y, k=1)["precision"]
    1.0
"""

from __future__ import annotations

import numpy as np

__all__ = ["pair_auc", "retrieval_at_k", "similarity_matrix", "evaluate_embeddings"]

_METRICS = ("cosine", "hamming", "precomputed")


def _check(X, labels, metric) -> tuple[np.ndarray, np.ndarray]:
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    X = np.asarray(X)
    labels = np.asarray(labels)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    if labels.ndim != 1 or len(labels) != len(X):
        raise ValueError(f"labels must be 1-D with {len(X)} entries, got shape {labels.shape}")
    if metric == "precomputed" and X.shape[0] != X.shape[1]:
        raise ValueError(f"a precomputed similarity must be square, got {X.shape}")
    if len(X) < 2:
        raise ValueError("need at least 2 items")
    return X, labels


def _prepare(X: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        X = X.astype(np.float32, copy=False)
        return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    if metric == "hamming":
        bits = np.unpackbits(X, axis=1) if X.dtype == np.uint8 else X.astype(bool)
        # +-1 codes: dot product = bits - 2 * hamming distance
        return (bits.astype(np.float32) * 2 - 1) / np.sqrt(bits.shape[1])
    return X


def _sim_rows(P: np.ndarray, rows: slice, metric: str) -> np.ndarray:
    if metric == "precomputed":
        return np.asarray(P[rows], dtype=np.float64)
    s = P[rows] @ P.T
    if metric == "hamming":
        s = (s + 1.0) / 2.0  # 1 - d / bits
    return s.astype(np.float64)


def similarity_matrix(X, metric: str = "cosine") -> np.ndarray:
    """``(N, N)`` similarity matrix (float64) under ``metric``."""
    X = np.asarray(X)
    P = _prepare(X, metric)
    return _sim_rows(P, slice(None), metric)


def _auc_from_scores(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted as one half."""
    scores = np.concatenate([pos, neg])
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average rank over ties
    boundaries = np.flatnonzero(np.diff(s)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(s)]])
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each tie block
    ranks[order] = np.repeat(avg, ends - starts)
    n_pos, n_neg = len(pos), len(neg)
    r_pos = ranks[:n_pos].sum()
    return float((r_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def pair_auc(
    X,
    labels,
    *,
    metric: str = "cosine",
    max_pairs: int | None = 5_000_000,
    random_state: int | None = 0,
) -> float:
    """AUC of pair similarity for same-label (positive) vs different-label (negative) pairs.

    Args:
        X: ``(N, D)`` embeddings / codes, or ``(N, N)`` similarities with ``metric="precomputed"``.
        labels: ``(N,)`` labels (any hashable dtype).
        metric: ``"cosine"`` | ``"hamming"`` | ``"precomputed"``.
        max_pairs: above this many unordered pairs, a uniform random sample of pairs is scored.
        random_state: seed for the pair sample.

    Returns:
        AUC in [0, 1]; 0.5 is chance.
    """
    X, labels = _check(X, labels, metric)
    n = len(X)
    _, y = np.unique(labels, return_inverse=True)
    P = _prepare(X, metric)
    n_pairs = n * (n - 1) // 2
    if max_pairs is None or n_pairs <= max_pairs:
        pos_parts, neg_parts = [], []
        step = max(1, 2_000_000 // n)
        for s in range(0, n, step):
            rows = slice(s, min(n, s + step))
            S = _sim_rows(P, rows, metric)
            r = np.arange(rows.start, rows.stop)[:, None]
            c = np.arange(n)[None, :]
            upper = c > r
            same = y[rows][:, None] == y[None, :]
            pos_parts.append(S[upper & same])
            neg_parts.append(S[upper & ~same])
        pos, neg = np.concatenate(pos_parts), np.concatenate(neg_parts)
    else:
        rng = np.random.default_rng(random_state)
        i = rng.integers(0, n, size=max_pairs)
        j = rng.integers(0, n - 1, size=max_pairs)
        j = j + (j >= i)  # j != i
        if metric == "precomputed":
            s = np.asarray(P[i, j], dtype=np.float64)
        else:
            s = np.einsum("ij,ij->i", P[i], P[j]).astype(np.float64)
            if metric == "hamming":
                s = (s + 1.0) / 2.0
        same = y[i] == y[j]
        pos, neg = s[same], s[~same]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("need both same-label and different-label pairs")
    return _auc_from_scores(pos, neg)


def retrieval_at_k(
    X,
    labels,
    k: int = 10,
    *,
    metric: str = "cosine",
    random_state: int | None = 0,
) -> dict[str, float]:
    """Leave-one-out top-k retrieval scored by label match.

    Each item queries all the others. Items whose label occurs once have no relevant item;
    they count in precision and hit rate (as misses) but not in recall.

    Returns:
        ``{"precision": .., "recall": .., "hit_rate": .., "k": k}`` (means over queries).
    """
    X, labels = _check(X, labels, metric)
    n = len(X)
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}], got {k}")
    _, y = np.unique(labels, return_inverse=True)
    class_size = np.bincount(y)
    P = _prepare(X, metric)
    rng = np.random.default_rng(random_state)
    jitter_scale = 1e-9
    hits = np.zeros(n, dtype=np.float64)
    step = max(1, 2_000_000 // n)
    for s in range(0, n, step):
        rows = slice(s, min(n, s + step))
        S = _sim_rows(P, rows, metric)
        idx = np.arange(rows.start, rows.stop)
        S[np.arange(len(idx)), idx] = -np.inf
        # random tie-break: a jitter far below any real similarity gap
        S = S + rng.random(S.shape) * jitter_scale
        top = np.argpartition(-S, k, axis=1)[:, :k]
        hits[idx] = (y[top] == y[idx][:, None]).sum(axis=1)
    n_rel = class_size[y] - 1
    has_rel = n_rel > 0
    return {
        "precision": float(np.mean(hits / k)),
        "recall": float(np.mean(hits[has_rel] / n_rel[has_rel])) if has_rel.any() else float("nan"),
        "hit_rate": float(np.mean(hits > 0)),
        "k": int(k),
    }


def evaluate_embeddings(X, labels, k: int = 10, *, metric: str = "cosine", random_state: int | None = 0) -> dict:
    """:func:`pair_auc` and :func:`retrieval_at_k` in one dict: auc, precision, recall, hit_rate, k."""
    out = {"auc": pair_auc(X, labels, metric=metric, random_state=random_state)}
    out.update(retrieval_at_k(X, labels, k, metric=metric, random_state=random_state))
    return out
