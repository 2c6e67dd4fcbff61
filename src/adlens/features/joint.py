"""A joint image-text space learned LiT-style over frozen image and text embeddings.

No CLIP weights can be had offline, so ``sim_adimage_article`` needs a space of our own: two
linear projection heads, ``z_img = norm(x_img W_img)`` and ``z_txt = norm(x_txt W_txt)``,
trained on matching (ad image embedding, ad copy/OCR text embedding) pairs with the symmetric
InfoNCE loss of CLIP (Radford et al. 2021), the towers themselves frozen as in LiT (Zhai et al.
2022 lock the image tower; here both are locked and only the heads learn):

    logits = z_img @ z_txt.T / tau
    loss   = (CE(logits, diag) + CE(logits.T, diag)) / 2

``tau`` is learned (as ``log tau``, clipped to [0.01, 1]) unless ``learn_temperature=False``.
Training is plain numpy (minibatch Adam with decoupled weight decay, seeded, early stopping on
a held-out split); inference is one matrix product per side and needs no torch. Heads start
from a random orthogonal-ish Gaussian, so an *unfitted* space with the same seed is the
"untrained baseline" of :func:`retrieval_recall`.

A real CLIP model a user has on disk fits the same interface: any object with
``image_to_joint`` and ``text_to_joint`` (see :class:`adlens.features.pair.JointSpaceLike`).

Example::

    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(400, 8))
    >>> Xi = z @ rng.normal(size=(8, 64)) + 0.1 * rng.normal(size=(400, 64))
    >>> Xt = z @ rng.normal(size=(8, 32)) + 0.1 * rng.normal(size=(400, 32))
    >>> js = JointSpace(dim=16, epochs=60, random_state=0).fit(Xi[:300], Xt[:300])
    >>> r = retrieval_recall(js.image_to_joint(Xi[300:]), js.text_to_joint(Xt[300:]), ks=(1,))
    >>> r["recall@1"] > 0.5
    True
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["JointSpace", "retrieval_recall"]

_FILE_KIND = "adlens.JointSpace/v1"


def _l2n(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    n = np.maximum(n, 1e-12)
    return x / n, n


def retrieval_recall(img_joint: np.ndarray, txt_joint: np.ndarray, ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """Image->text retrieval recall@k for aligned rows (row i of each side is a true pair).

    For each image, texts are ranked by cosine; recall@k = share of images whose own text is in
    the top k (ties broken against the true text). Also returns text->image as ``t2i_recall@k``.

    >>> retrieval_recall(np.eye(3), np.eye(3), ks=(1,))
    {'recall@1': 1.0, 't2i_recall@1': 1.0}
    """
    A, _ = _l2n(np.asarray(img_joint, np.float64))
    B, _ = _l2n(np.asarray(txt_joint, np.float64))
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"{A.shape[0]} images vs {B.shape[0]} texts: rows must be aligned pairs")
    S = A @ B.T
    diag = np.diag(S)
    rank_i2t = (S > diag[:, None]).sum(axis=1) + (S == diag[:, None]).sum(axis=1) - 1  # ties count against
    rank_t2i = (S > diag[None, :]).sum(axis=0) + (S == diag[None, :]).sum(axis=0) - 1
    out = {}
    for k in ks:
        out[f"recall@{k}"] = float(np.mean(rank_i2t < k))
    for k in ks:
        out[f"t2i_recall@{k}"] = float(np.mean(rank_t2i < k))
    return out


class JointSpace:
    """Linear projection heads for image and text embeddings into a shared ``dim``-d space.

    Args:
        dim: joint space size.
        temperature: initial softmax temperature ``tau``.
        learn_temperature: learn ``tau`` (else fixed).
        epochs: passes over the training pairs (early stopping may end sooner).
        batch_size: pairs per step (the in-batch negatives are the other pairs).
        lr: Adam learning rate. weight_decay: decoupled L2 on the heads.
        val_fraction: share of pairs held out for early stopping (0 disables it).
        patience: epochs without validation improvement before stopping.
        center: subtract the training mean of each tower's embeddings first (recommended:
            frozen ImageNet/MiniLM features share a large common component).
        random_state: seed for the init, shuffling and the validation split.
    """

    def __init__(self, dim: int = 256, *, temperature: float = 0.07, learn_temperature: bool = True,
                 epochs: int = 100, batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-4,
                 val_fraction: float = 0.1, patience: int = 10, center: bool = True, random_state: int | None = 0):
        if dim < 1:
            raise ValueError("dim must be >= 1")
        if not (0 < temperature <= 1):
            raise ValueError("temperature must be in (0, 1]")
        self.dim = int(dim)
        self.temperature = float(temperature)
        self.learn_temperature = bool(learn_temperature)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.val_fraction = float(val_fraction)
        self.patience = int(patience)
        self.center = bool(center)
        self.random_state = random_state

    # -- state -----------------------------------------------------------------
    def _init(self, d_img: int, d_txt: int) -> None:
        rng = np.random.default_rng(self.random_state)
        self.W_img_ = (rng.normal(size=(d_img, self.dim)) / np.sqrt(d_img)).astype(np.float64)
        self.W_txt_ = (rng.normal(size=(d_txt, self.dim)) / np.sqrt(d_txt)).astype(np.float64)
        self.mu_img_ = np.zeros(d_img)
        self.mu_txt_ = np.zeros(d_txt)
        self.log_tau_ = float(np.log(self.temperature))

    def init_untrained(self, d_img: int, d_txt: int) -> JointSpace:
        """The untrained baseline: random heads with this seed, no centring learned."""
        self._init(d_img, d_txt)
        self.history_ = []
        return self

    @property
    def tau_(self) -> float:
        return float(np.exp(self.log_tau_))

    def _check_fitted(self) -> None:
        if not hasattr(self, "W_img_"):
            raise RuntimeError("JointSpace is not fitted: call fit() (or init_untrained() for the baseline)")

    # -- training ----------------------------------------------------------------
    def _loss_grad(self, Xi, Xt, need_grad=True):
        Ui = Xi @ self.W_img_
        Ut = Xt @ self.W_txt_
        Zi, ni = _l2n(Ui)
        Zt, nt = _l2n(Ut)
        tau = np.exp(self.log_tau_)
        L = Zi @ Zt.T / tau
        n = L.shape[0]
        # log-softmax over rows (image -> text) and columns (text -> image), computed stably
        lse_r = L.max(axis=1, keepdims=True)
        lse_r = lse_r + np.log(np.exp(L - lse_r).sum(axis=1, keepdims=True))
        lse_c = L.max(axis=0, keepdims=True)
        lse_c = lse_c + np.log(np.exp(L - lse_c).sum(axis=0, keepdims=True))
        idx = np.arange(n)
        loss = -0.5 * ((L[idx, idx] - lse_r[:, 0]).mean() + (L[idx, idx] - lse_c[0, :]).mean())
        Pr = np.exp(L - lse_r)
        Pc = np.exp(L - lse_c)
        if not need_grad:
            return loss, None
        G = 0.5 * ((Pr - np.eye(n)) + (Pc - np.eye(n))) / n  # dloss/dL
        dZi = G @ Zt / tau
        dZt = G.T @ Zi / tau
        dlog_tau = -float((G * L).sum())
        # through the L2 normalisation: dU = (dZ - Z * <dZ, Z>) / |U|
        dUi = (dZi - Zi * (dZi * Zi).sum(axis=1, keepdims=True)) / ni
        dUt = (dZt - Zt * (dZt * Zt).sum(axis=1, keepdims=True)) / nt
        return loss, {"W_img": Xi.T @ dUi, "W_txt": Xt.T @ dUt, "log_tau": dlog_tau}

    def fit(self, image_emb: np.ndarray, text_emb: np.ndarray) -> JointSpace:
        """Train the heads on aligned pairs: row i of ``image_emb (N, Di)`` goes with row i of ``text_emb (N, Dt)``."""
        Xi = np.asarray(image_emb, np.float64)
        Xt = np.asarray(text_emb, np.float64)
        if Xi.ndim != 2 or Xt.ndim != 2 or Xi.shape[0] != Xt.shape[0]:
            raise ValueError(f"need aligned 2-D arrays, got {Xi.shape} and {Xt.shape}")
        if Xi.shape[0] < 4:
            raise ValueError("need at least 4 pairs to train a contrastive space")
        if not (np.isfinite(Xi).all() and np.isfinite(Xt).all()):
            raise ValueError("embeddings contain NaN or inf")
        self._init(Xi.shape[1], Xt.shape[1])
        rng = np.random.default_rng(None if self.random_state is None else self.random_state + 1)
        if self.center:
            self.mu_img_ = Xi.mean(axis=0)
            self.mu_txt_ = Xt.mean(axis=0)
        Xi = Xi - self.mu_img_
        Xt = Xt - self.mu_txt_
        n = Xi.shape[0]
        perm = rng.permutation(n)
        n_val = int(round(self.val_fraction * n)) if self.val_fraction > 0 and n >= 20 else 0
        val, tr = perm[:n_val], perm[n_val:]
        params = {"W_img": self.W_img_, "W_txt": self.W_txt_}
        m = {k: np.zeros_like(v) for k, v in params.items()}
        v2 = {k: np.zeros_like(v) for k, v in params.items()}
        mt = vt = 0.0
        b1, b2, eps = 0.9, 0.999, 1e-8
        t = 0
        best, best_state, bad = np.inf, None, 0
        self.history_ = []
        bs = max(2, min(self.batch_size, len(tr)))
        for epoch in range(self.epochs):
            order = rng.permutation(tr)
            losses = []
            for s in range(0, len(order) - 1, bs):
                b = order[s:s + bs]
                if len(b) < 2:
                    continue
                loss, g = self._loss_grad(Xi[b], Xt[b])
                losses.append(loss)
                t += 1
                for k in params:
                    m[k] = b1 * m[k] + (1 - b1) * g[k]
                    v2[k] = b2 * v2[k] + (1 - b2) * g[k] ** 2
                    params[k] -= self.lr * ((m[k] / (1 - b1**t)) / (np.sqrt(v2[k] / (1 - b2**t)) + eps) + self.weight_decay * params[k])
                if self.learn_temperature:
                    mt = b1 * mt + (1 - b1) * g["log_tau"]
                    vt = b2 * vt + (1 - b2) * g["log_tau"] ** 2
                    self.log_tau_ -= self.lr * 10 * (mt / (1 - b1**t)) / (np.sqrt(vt / (1 - b2**t)) + eps)
                    self.log_tau_ = float(np.clip(self.log_tau_, np.log(0.01), 0.0))
            rec = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan"), "tau": self.tau_}
            if n_val:
                vl, _ = self._loss_grad(Xi[val], Xt[val], need_grad=False)
                rec["val_loss"] = float(vl)
                if vl < best - 1e-4:
                    best, bad = vl, 0
                    best_state = (self.W_img_.copy(), self.W_txt_.copy(), self.log_tau_)
                else:
                    bad += 1
            self.history_.append(rec)
            if n_val and bad >= self.patience:
                break
        if best_state is not None:
            self.W_img_[...], self.W_txt_[...] = best_state[0], best_state[1]
            self.log_tau_ = best_state[2]
        return self

    # -- inference ---------------------------------------------------------------
    def image_to_joint(self, image_emb: np.ndarray) -> np.ndarray:
        """``(N, Di)`` image embeddings -> ``(N, dim)`` float32 unit rows."""
        self._check_fitted()
        X = np.asarray(image_emb, np.float64)
        if X.ndim == 1:
            X = X[None, :]
        return _l2n((X - self.mu_img_) @ self.W_img_)[0].astype(np.float32)

    def text_to_joint(self, text_emb: np.ndarray) -> np.ndarray:
        """``(N, Dt)`` text embeddings -> ``(N, dim)`` float32 unit rows."""
        self._check_fitted()
        X = np.asarray(text_emb, np.float64)
        if X.ndim == 1:
            X = X[None, :]
        return _l2n((X - self.mu_txt_) @ self.W_txt_)[0].astype(np.float32)

    def similarity(self, image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
        """Row-wise cosine of aligned image/text rows in the joint space, ``(N,)``."""
        return np.einsum("ij,ij->i", self.image_to_joint(image_emb), self.text_to_joint(text_emb))

    # -- persistence --------------------------------------------------------------
    def save(self, path: str | os.PathLike, **meta) -> Path:
        """Write an ``.npz`` (heads, means, temperature, hyperparameters, ``meta`` such as the
        embedders' model ids). Loading needs numpy only."""
        self._check_fitted()
        p = Path(path)
        info = {"kind": _FILE_KIND, "dim": self.dim, "tau": self.tau_, "params": self._params(), "meta": meta}
        with open(p, "wb") as f:
            np.savez(f, W_img=self.W_img_.astype(np.float32), W_txt=self.W_txt_.astype(np.float32),
                     mu_img=self.mu_img_.astype(np.float32), mu_txt=self.mu_txt_.astype(np.float32),
                     info=np.array(json.dumps(info)))
        return p

    @classmethod
    def load(cls, path: str | os.PathLike) -> JointSpace:
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["info"]))
            if info.get("kind") != _FILE_KIND:
                raise ValueError(f"{path} is not a {_FILE_KIND} file")
            js = cls(**info["params"])
            js.W_img_ = z["W_img"].astype(np.float64)
            js.W_txt_ = z["W_txt"].astype(np.float64)
            js.mu_img_ = z["mu_img"].astype(np.float64)
            js.mu_txt_ = z["mu_txt"].astype(np.float64)
        js.log_tau_ = float(np.log(info["tau"]))
        js.meta_ = info.get("meta", {})
        return js

    def _params(self) -> dict:
        return {k: getattr(self, k) for k in ("dim", "temperature", "learn_temperature", "epochs", "batch_size", "lr",
                                                "weight_decay", "val_fraction", "patience", "center", "random_state")}
