"""Learn a similarity from a labelled catalogue and apply it to products never seen.

Generic ImageNet features group photos by what ImageNet cared about (colour, texture,
background); a shop wants "same kind of product". :class:`CatalogProjection` is fitted on
embeddings of labelled products and maps any embedding into a space where cosine similarity
follows the labels -- it generalises to new products (the test below never sees them), it is
not a lookup of known ones.

Methods (``method=``):

- ``"lda"`` -- the closed-form baseline: centre, then Fisher LDA with shrinkage (whitening of
  the within-class scatter), ``min(n_classes - 1, n_components)`` dims.
- ``"linear"`` -- a linear map trained with the normalised-softmax (proxy) loss: each class
  has a learned unit "proxy"; the loss is the cross-entropy of cosine(z, proxy) / temperature.
  (Zhai & Wu, *Classification is a Strong Baseline for Deep Metric Learning*, 2019.)
- ``"mlp"`` (default) -- the same loss through a one-hidden-layer MLP (ReLU) with a linear
  skip path, input dropout and Gaussian feature noise for regularisation.

Outputs (``output=``): ``"embedding"`` -- the learned unit vector; ``"posterior"`` -- the
class-probability vector (softmax over proxies, or the LDA Gaussian posterior), L2-normalised:
cosine then asks "are these two products probably of the same kind?", which is what the
same-label pair AUC measures, but it forgets how two products of one kind differ;
``"hybrid"`` (default) -- both, concatenated with weights so that
``cos = posterior_weight * cos(posterior) + (1 - posterior_weight) * cos(embedding)``.
On the clothing benchmark the posterior lifts pair AUC most, the embedding keeps precision@10,
and the hybrid gets most of both (``benchmarks/eval_similar_clothing.py``).

Training is plain numpy (AdamW, minibatches, warm-up + cosine learning rate, seeded);
inference is a few matrix products. ``fit`` accepts several rows per product (e.g. embeddings
of augmented views: flips, crops), which regularises like data augmentation.

Example::

    >>> rng = np.random.default_rng(0)
    >>> centers = rng.normal(size=(3, 32))
    >>> y = np.repeat([0, 1, 2], 50)
    >>> X = centers[y] + rng.normal(scale=2.0, size=(150, 32))
    >>> proj = CatalogProjection(n_components=8, epochs=30).fit(X, y)
    >>> proj.transform(X).shape
    (150, 8)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["CatalogProjection"]

_METHODS = ("lda", "linear", "mlp")
_OUTPUTS = ("embedding", "posterior", "hybrid")
_FILE_KIND = "adlens.CatalogProjection/v1"


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _savable(a) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(str) if a.dtype == object else a


class _Adam:
    def __init__(self, params: dict[str, np.ndarray], lr: float, weight_decay: float, decay_keys: set[str]):
        self.p = params
        self.lr = lr
        self.wd = weight_decay
        self.decay = decay_keys
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, grads: dict[str, np.ndarray], lr_scale: float = 1.0) -> None:
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        lr = self.lr * lr_scale
        c1 = 1 - b1**self.t
        c2 = 1 - b2**self.t
        for k, g in grads.items():
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            upd = (self.m[k] / c1) / (np.sqrt(self.v[k] / c2) + eps)
            if k in self.decay:  # decoupled weight decay (AdamW)
                upd = upd + self.wd * self.p[k]
            self.p[k] -= lr * upd


class CatalogProjection:
    """A learned projection of embeddings in which cosine similarity follows product labels.

    Args:
        method: ``"mlp"`` | ``"linear"`` | ``"lda"`` (module docs).
        n_components: output dimension.
        hidden: hidden units of the MLP.
        temperature: softmax temperature of the proxy loss (smaller = tighter classes).
        epochs: passes over the training rows (raised so that training makes at least
            ``min_steps`` Adam steps: small catalogues need more passes).
        min_steps: lower bound on the number of Adam steps.
        batch_size: rows per Adam step.
        lr: Adam learning rate (cosine-decayed to 0 over training).
        weight_decay: decoupled L2 on the weight matrices.
        input_dropout: dropout rate on the (centred, normalised) input features while training.
        noise: std of Gaussian noise added to the input features while training.
        shrinkage: ``"lda"`` only -- within-class covariance shrinkage in [0, 1].
        output: ``"embedding"`` | ``"posterior"`` | ``"hybrid"`` (module docs).
        posterior_weight: share of the cosine that comes from the posterior in ``"hybrid"``.
        random_state: seed for initialisation, batches, dropout and noise.

    Learned state: ``mean_``, ``classes_``, ``W_`` (+ ``W1_``, ``b1_``, ``W2_`` for the MLP),
    ``proxies_`` (proxy methods) or ``class_means_`` + ``class_log_prior_`` (LDA),
    ``loss_curve_``, ``n_features_in_``.
    """

    def __init__(
        self,
        method: str = "mlp",
        *,
        n_components: int = 128,
        hidden: int = 1024,
        temperature: float = 0.1,
        epochs: int = 60,
        min_steps: int = 300,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        input_dropout: float = 0.2,
        noise: float = 0.0,
        shrinkage: float = 0.5,
        output: str = "hybrid",
        posterior_weight: float = 0.8,
        random_state: int | None = 0,
    ):
        self.method = method
        self.n_components = n_components
        self.hidden = hidden
        self.temperature = temperature
        self.epochs = epochs
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.input_dropout = input_dropout
        self.noise = noise
        self.shrinkage = shrinkage
        self.output = output
        self.posterior_weight = posterior_weight
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting

    def _validate(self, X, labels) -> tuple[np.ndarray, np.ndarray]:
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}")
        X = np.asarray(X, dtype=np.float32)
        labels = np.asarray(labels)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (N, D), got shape {X.shape}")
        if labels.ndim != 1 or len(labels) != len(X):
            raise ValueError(f"labels must be 1-D with {len(X)} entries, got shape {labels.shape}")
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinite values")
        if len(np.unique(labels)) < 2:
            raise ValueError("need at least 2 distinct labels")
        if int(self.n_components) < 1:
            raise ValueError(f"n_components must be >= 1, got {self.n_components}")
        if not 0 <= self.input_dropout < 1:
            raise ValueError(f"input_dropout must be in [0, 1), got {self.input_dropout}")
        if self.output not in _OUTPUTS:
            raise ValueError(f"output must be one of {_OUTPUTS}, got {self.output!r}")
        if not 0 <= self.posterior_weight <= 1:
            raise ValueError(f"posterior_weight must be in [0, 1], got {self.posterior_weight}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        return X, labels

    def _prep(self, X: np.ndarray) -> np.ndarray:
        # Centre on the catalogue mean, then unit length: removes the direction every ImageNet
        # embedding shares, which otherwise dominates cosine similarity.
        return _l2n(X - self.mean_)

    def fit(self, X, labels) -> CatalogProjection:
        """Fit on ``X`` ``(N, D)`` embeddings with ``labels`` ``(N,)``; returns self."""
        X, labels = self._validate(X, labels)
        self.classes_, y = np.unique(labels, return_inverse=True)
        self.n_features_in_ = X.shape[1]
        self.mean_ = X.mean(axis=0).astype(np.float32)
        Z = self._prep(X)
        if self.method == "lda":
            self._fit_lda(Z, y)
        else:
            self._fit_proxy(Z, y)
        return self

    def _fit_lda(self, Z: np.ndarray, y: np.ndarray) -> None:
        n, d = Z.shape
        C = len(self.classes_)
        Z = Z.astype(np.float64)
        mu = Z.mean(axis=0)
        means = np.stack([Z[y == c].mean(axis=0) for c in range(C)])
        Zc = Z - means[y]
        Sw = Zc.T @ Zc / n
        a = float(self.shrinkage)
        Sw = (1 - a) * Sw + a * np.eye(d) * np.trace(Sw) / d
        counts = np.bincount(y, minlength=C).astype(np.float64)
        Mb = (means - mu) * np.sqrt(counts / n)[:, None]
        # whiten Sw, then PCA of the whitened between-class scatter
        ew, Vw = np.linalg.eigh(Sw)
        Wh = Vw / np.sqrt(np.maximum(ew, 1e-12))
        B = Mb @ Wh
        _, s, Vt = np.linalg.svd(B, full_matrices=False)
        k = int(min(self.n_components, C - 1, len(s)))
        self.W_ = (Wh @ Vt[:k].T).astype(np.float32)
        # within-class covariance is ~identity in this space: Gaussian posterior = softmax of
        # -|z - mean_c|^2 / 2 + log prior_c
        self.class_means_ = (means @ self.W_).astype(np.float32)
        self.class_log_prior_ = np.log(counts / n).astype(np.float32)
        self.loss_curve_ = []

    def _init_params(self, d: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        k = int(self.n_components)
        C = len(self.classes_)
        p: dict[str, np.ndarray] = {}
        p["W"] = (rng.normal(size=(d, k)) / np.sqrt(d)).astype(np.float32)
        if self.method == "mlp":
            h = int(self.hidden)
            p["W1"] = (rng.normal(size=(d, h)) * np.sqrt(2.0 / d)).astype(np.float32)
            p["b1"] = np.zeros(h, np.float32)
            p["W2"] = (rng.normal(size=(h, k)) * np.sqrt(1.0 / h) * 0.5).astype(np.float32)
        p["P"] = _l2n(rng.normal(size=(C, k))).astype(np.float32)
        return p

    def _forward(self, p, Z):
        out = Z @ p["W"]
        cache = {}
        if "W1" in p:
            H = Z @ p["W1"] + p["b1"]
            A = np.maximum(H, 0)
            out = out + A @ p["W2"]
            cache["H"], cache["A"] = H, A
        return out, cache

    def _fit_proxy(self, Z: np.ndarray, y: np.ndarray) -> None:
        rng = np.random.default_rng(self.random_state)
        n, d = Z.shape
        p = self._init_params(d, rng)
        opt = _Adam(p, self.lr, self.weight_decay, decay_keys={"W", "W1", "W2"})
        T = float(self.temperature)
        bs = int(min(self.batch_size, n))
        steps_per_epoch = int(np.ceil(n / bs))
        epochs = max(int(self.epochs), int(np.ceil(int(self.min_steps) / steps_per_epoch)))
        total = max(1, epochs * steps_per_epoch)
        warm = max(1, total // 20)
        losses = []
        step = 0
        for _ in range(epochs):
            perm = rng.permutation(n)
            ep_loss = 0.0
            for s in range(0, n, bs):
                idx = perm[s : s + bs]
                xb = Z[idx]
                if self.input_dropout > 0:
                    keep = rng.random(xb.shape, dtype=np.float32) >= self.input_dropout
                    xb = xb * keep / (1 - self.input_dropout)
                if self.noise > 0:
                    xb = xb + rng.normal(scale=self.noise, size=xb.shape).astype(np.float32)
                yb = y[idx]
                loss, grads = self._loss_grad(p, xb, yb, T)
                lr_scale = (step + 1) / warm if step < warm else 0.5 * (1 + np.cos(np.pi * (step - warm) / max(1, total - warm)))
                opt.step(grads, lr_scale)
                # keep proxies on the sphere
                p["P"] = _l2n(p["P"]).astype(np.float32)
                ep_loss += loss * len(idx)
                step += 1
            losses.append(ep_loss / n)
        self.W_ = p["W"]
        if self.method == "mlp":
            self.W1_, self.b1_, self.W2_ = p["W1"], p["b1"], p["W2"]
        self.proxies_ = p["P"]
        self.loss_curve_ = losses

    def _loss_grad(self, p, xb, yb, T):
        out, cache = self._forward(p, xb)
        nrm = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        u = out / nrm
        Pn = p["P"]
        logits = (u @ Pn.T) / T
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        prob = e / e.sum(axis=1, keepdims=True)
        b = len(xb)
        loss = float(-np.log(prob[np.arange(b), yb] + 1e-12).mean())
        g_logits = prob
        g_logits[np.arange(b), yb] -= 1.0
        g_logits /= b * T
        g_u = g_logits @ Pn
        g_P = g_logits.T @ u
        # through the normalisation u = out / |out|
        g_out = (g_u - u * np.sum(g_u * u, axis=1, keepdims=True)) / nrm
        grads = {"P": g_P.astype(np.float32), "W": (xb.T @ g_out).astype(np.float32)}
        if "W1" in p:
            g_A = g_out @ p["W2"].T
            g_H = g_A * (cache["H"] > 0)
            grads["W2"] = (cache["A"].T @ g_out).astype(np.float32)
            grads["W1"] = (xb.T @ g_H).astype(np.float32)
            grads["b1"] = g_H.sum(axis=0).astype(np.float32)
        return loss, grads

    # ------------------------------------------------------------------ inference

    def _check_fitted(self):
        if not hasattr(self, "W_"):
            raise RuntimeError("CatalogProjection is not fitted; call fit(X, labels) first")

    def _raw(self, X) -> np.ndarray:
        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must be (N, {self.n_features_in_}), got shape {X.shape}")
        Z = self._prep(X)
        out = Z @ self.W_
        if self.method == "mlp":
            out = out + np.maximum(Z @ self.W1_ + self.b1_, 0) @ self.W2_
        return out

    def _logits(self, raw: np.ndarray) -> np.ndarray:
        if self.method == "lda":
            d2 = ((raw[:, None, :] - self.class_means_[None]) ** 2).sum(axis=-1)
            return -0.5 * d2 + self.class_log_prior_
        return (_l2n(raw) @ self.proxies_.T) / float(self.temperature)

    def predict_proba(self, X) -> np.ndarray:
        """``(N, n_classes)`` class probabilities (columns follow ``classes_``)."""
        L = self._logits(self._raw(X))
        L = L - L.max(axis=1, keepdims=True)
        e = np.exp(L)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def predict(self, X) -> np.ndarray:
        """Most probable label of each row."""
        return np.asarray(self.classes_)[np.argmax(self.predict_proba(X), axis=1)]

    def transform(self, X) -> np.ndarray:
        """``(N, D)`` embeddings -> ``(N, dim_)`` float32 unit rows (per ``output``).

        ``dim_`` is ``n_components`` (LDA: at most n_classes - 1) for ``"embedding"``,
        n_classes for ``"posterior"``, and their sum for ``"hybrid"``.
        """
        raw = self._raw(X)
        if self.output == "embedding":
            return _l2n(raw).astype(np.float32)
        L = self._logits(raw)
        L = L - L.max(axis=1, keepdims=True)
        P = np.exp(L)
        P = _l2n(P / P.sum(axis=1, keepdims=True))
        if self.output == "posterior":
            return P.astype(np.float32)
        w = float(self.posterior_weight)
        return np.concatenate([np.sqrt(w) * P, np.sqrt(1 - w) * _l2n(raw)], axis=1).astype(np.float32)

    def fit_transform(self, X, labels) -> np.ndarray:
        return self.fit(X, labels).transform(X)

    @property
    def dim_(self) -> int:
        """Output dimension of :meth:`transform`."""
        self._check_fitted()
        k, c = int(self.W_.shape[1]), len(self.classes_)
        return {"embedding": k, "posterior": c, "hybrid": k + c}[self.output]

    # ------------------------------------------------------------------ persistence

    _HYPER = ("method", "n_components", "hidden", "temperature", "epochs", "min_steps", "batch_size", "lr",
              "weight_decay", "input_dropout", "noise", "shrinkage", "output", "posterior_weight",
              "random_state")

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in self._HYPER}

    def save(self, path: str | os.PathLike) -> Path:
        """Write hyperparameters and learned state to an ``.npz`` (no pickle, no torch)."""
        self._check_fitted()
        path = Path(path)
        state = {"kind": np.array(_FILE_KIND), "mean_": self.mean_, "W_": self.W_,
                 "classes_": _savable(self.classes_)}
        if self.method == "mlp":
            state.update(W1_=self.W1_, b1_=self.b1_, W2_=self.W2_)
        if hasattr(self, "proxies_"):
            state["proxies_"] = self.proxies_
        if self.method == "lda":
            state.update(class_means_=self.class_means_, class_log_prior_=self.class_log_prior_)
        for k, v in self.get_params().items():
            state[f"param__{k}"] = np.array("none" if v is None else v)
        np.savez(path, **state)
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load(cls, path: str | os.PathLike) -> CatalogProjection:
        """Read a projection written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            if "kind" not in z.files or str(z["kind"]) != _FILE_KIND:
                raise ValueError(f"{path}: not an adlens CatalogProjection file")
            params = {}
            for k in cls._HYPER:
                v = z[f"param__{k}"].item()
                params[k] = None if v == "none" else v
            obj = cls(**params)
            obj.mean_ = z["mean_"]
            obj.W_ = z["W_"]
            obj.classes_ = z["classes_"]
            if obj.method == "mlp":
                obj.W1_, obj.b1_, obj.W2_ = z["W1_"], z["b1_"], z["W2_"]
            if "proxies_" in z.files:
                obj.proxies_ = z["proxies_"]
            if obj.method == "lda":
                obj.class_means_, obj.class_log_prior_ = z["class_means_"], z["class_log_prior_"]
            obj.n_features_in_ = obj.W_.shape[0] if obj.method != "mlp" else obj.W1_.shape[0]
            obj.loss_curve_ = []
        return obj
