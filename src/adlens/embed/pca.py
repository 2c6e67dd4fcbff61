"""PCA reduction of embeddings (seed 002 compresses banner embeddings to 16 dims).

Fitted from the covariance matrix (``D x D``, accumulated in chunks), so fitting millions of
rows needs ``O(D^2)`` memory and no SVD of the data. Deterministic: eigenvector signs are
fixed so that each component's largest-magnitude coefficient is positive.

Example::

    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 64)).astype(np.float32)
    >>> pca = PCA(n_components=16).fit(X)
    >>> pca.transform(X).shape
    (500, 16)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["PCA"]


class PCA:
    """Principal-component projection, sklearn style.

    Args:
        n_components: output dimension (seed 002: 16).
        whiten: divide each component by its standard deviation.
        normalize: L2-normalise the outputs (so that inner product = cosine, as the index expects).
        max_samples: fit on at most this many rows (a seeded random subset).
        random_state: seed for that subset.

    Learned state: ``mean_`` (D,), ``components_`` (n_components, D), ``explained_variance_``
    (n_components,), ``explained_variance_ratio_`` (n_components,), ``n_features_in_``.
    """

    def __init__(
        self,
        n_components: int = 16,
        *,
        whiten: bool = False,
        normalize: bool = True,
        max_samples: int | None = 1_000_000,
        random_state: int | None = 0,
    ):
        self.n_components = n_components
        self.whiten = whiten
        self.normalize = normalize
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(self, X) -> PCA:
        """Learn the mean and top components of ``X`` ``(N, D)``; returns self."""
        X = np.asarray(X)
        if X.ndim != 2 or len(X) < 2:
            raise ValueError(f"X must be (N >= 2, D), got shape {X.shape}")
        n, d = X.shape
        k = int(self.n_components)
        if not 1 <= k <= d:
            raise ValueError(f"n_components must be in [1, {d}], got {k}")
        if self.max_samples is not None and n > self.max_samples:
            rng = np.random.default_rng(self.random_state)
            X = X[np.sort(rng.choice(n, self.max_samples, replace=False))]
            n = len(X)
        mean = np.zeros(d, dtype=np.float64)
        for s in range(0, n, 65536):
            mean += X[s : s + 65536].astype(np.float64).sum(axis=0)
        mean /= n
        cov = np.zeros((d, d), dtype=np.float64)
        for s in range(0, n, 65536):
            c = X[s : s + 65536].astype(np.float64) - mean
            cov += c.T @ c
        cov /= max(1, n - 1)
        evals, evecs = np.linalg.eigh(cov)
        order = np.argsort(evals)[::-1][:k]
        evals = np.maximum(evals[order], 0.0)
        comps = evecs[:, order].T
        signs = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
        comps *= signs[:, None]
        total = float(np.trace(cov))
        self.mean_ = mean.astype(np.float32)
        self.components_ = comps.astype(np.float32)
        self.explained_variance_ = evals.astype(np.float32)
        self.explained_variance_ratio_ = (evals / total if total > 0 else np.zeros_like(evals)).astype(np.float32)
        self.n_features_in_ = d
        return self

    def _check_fitted(self):
        if not hasattr(self, "components_"):
            raise RuntimeError("PCA is not fitted; call fit(X) first")

    def transform(self, X) -> np.ndarray:
        """``(N, D)`` -> ``(N, n_components)`` float32 (L2-normalised if ``normalize``)."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must be (N, {self.n_features_in_}), got shape {X.shape}")
        Z = (X - self.mean_) @ self.components_.T
        if self.whiten:
            Z /= np.sqrt(np.maximum(self.explained_variance_, 1e-12))
        if self.normalize:
            Z /= np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
        return Z.astype(np.float32, copy=False)

    def fit_transform(self, X) -> np.ndarray:
        return self.fit(X).transform(X)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted state and hyperparameters to an ``.npz`` file."""
        self._check_fitted()
        path = Path(path)
        np.savez(
            path,
            kind=np.array("adlens.PCA/v1"),
            n_components=np.array(self.n_components),
            whiten=np.array(self.whiten),
            normalize=np.array(self.normalize),
            mean_=self.mean_,
            components_=self.components_,
            explained_variance_=self.explained_variance_,
            explained_variance_ratio_=self.explained_variance_ratio_,
        )
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load(cls, path: str | os.PathLike) -> PCA:
        with np.load(path, allow_pickle=False) as z:
            if str(z["kind"]) != "adlens.PCA/v1":
                raise ValueError(f"{path}: not an adlens PCA file")
            obj = cls(int(z["n_components"]), whiten=bool(z["whiten"]), normalize=bool(z["normalize"]))
            obj.mean_ = z["mean_"]
            obj.components_ = z["components_"]
            obj.explained_variance_ = z["explained_variance_"]
            obj.explained_variance_ratio_ = z["explained_variance_ratio_"]
            obj.n_features_in_ = obj.components_.shape[1]
        return obj
