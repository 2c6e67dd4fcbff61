"""Refit the composite's weights from logged outcomes (seed 000 step 7, "update weights monthly").

Each logged decision contributes the *served* candidate's terms -- quality in [0, 1], the CTR
estimate the policy used, novelty -- and whether it was clicked. We fit a logistic regression::

    P(click) = sigmoid(b0 + b1 * quality + b2 * ctr / ctr_scale + b3 * novelty)

by Newton's method (IRLS) with an L2 penalty on b1..b3 and the constraint b >= 0 (a term may be
useless, but a creative should never be *preferred* for being worse), then rescale
``(b1, b2, b3)`` so that ``w1 + w2 + w3`` keeps the current sum: the composite's scale, and hence
the meaning of the duplicate and brand-safety penalties, stays the same. Penalties are kept.

The report compares the current and the new composite on a held-out 20 % split (stratified by
click, seeded): AUC of the composite, and log-loss after a 1-D logistic calibration of each
composite fitted on the training split. Bootstrap CIs (over training rows) are given for the raw
coefficients and for the new weights.

Example::

    rows = [{"quality": 0.7, "ctr": 0.03, "novelty": 0.9, "click": 0}, ...]   # >= 50 rows
    new_weights, report = fit_weights(rows, Weights())
    report["holdout"]["auc_after"], report["weights_ci"]["ctr"]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .policies import Weights

__all__ = ["fit_weights", "fit_logistic", "auc", "log_loss", "MIN_ROWS"]

MIN_ROWS = 50
_TERMS = ("quality", "ctr", "novelty")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0, nonneg: bool = False,
                 max_iter: int = 50, tol: float = 1e-8) -> np.ndarray:
    """L2-penalised logistic regression by Newton/IRLS: returns ``[b0, b_1..b_p]`` (intercept free).

    ``nonneg=True`` constrains ``b_1..b_p >= 0`` by an active set: the most negative coefficient is
    pinned to 0 and the fit repeated; a pinned coefficient is released again when the gradient says
    increasing it would help (KKT).

    Example::

        >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1.0])
        >>> bool(fit_logistic(X, y, l2=0.1)[1] > 0)
        True
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    n, p = X.shape
    Z = np.column_stack([np.ones(n), X])
    pen = np.r_[0.0, np.full(p, float(l2))]

    def newton(active: np.ndarray) -> np.ndarray:
        cols = np.r_[True, active]
        Za, pa = Z[:, cols], pen[cols]
        b = np.zeros(cols.sum())
        ybar = min(max(y.mean(), 1e-6), 1 - 1e-6)
        b[0] = math.log(ybar / (1 - ybar))
        for _ in range(max_iter):
            mu = _sigmoid(Za @ b)
            g = Za.T @ (y - mu) - pa * b
            H = (Za * (mu * (1 - mu))[:, None]).T @ Za + np.diag(pa) + 1e-10 * np.eye(len(b))
            step = np.linalg.solve(H, g)
            b += step
            if np.max(np.abs(step)) < tol:
                break
        out = np.zeros(p + 1)
        out[cols] = b
        return out

    active = np.ones(p, dtype=bool)
    b = newton(active)
    if not nonneg:
        return b
    for _ in range(4 * p + 4):
        neg = np.flatnonzero(active & (b[1:] < -1e-12))
        if neg.size:
            active[neg[np.argmin(b[1:][neg])]] = False
            b = newton(active)
            continue
        grad = Z.T @ (y - _sigmoid(Z @ b)) - pen * b
        cand = np.flatnonzero(~active & (grad[1:] > 1e-8))
        if not cand.size:
            break
        active[cand[np.argmax(grad[1:][cand])]] = True
        b = newton(active)
    b[1:][~active] = 0.0
    return np.r_[b[0], np.maximum(b[1:], 0.0)]


def auc(score: np.ndarray, y: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count 1/2); None when only one class is present.

    Example::

        >>> auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
        0.75
    """
    s = np.asarray(score, dtype=float)
    y = np.asarray(y, dtype=bool)
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    ss = s[order]
    # average ranks over ties
    bounds = np.r_[0, np.flatnonzero(np.diff(ss)) + 1, len(ss)]
    for lo, hi in itertools.pairwise(bounds):
        ranks[order[lo:hi]] = (lo + hi + 1) / 2.0
    return float((ranks[y].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy, probabilities clipped to [1e-12, 1 - 1e-12]."""
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    y = np.asarray(y, dtype=float)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _column(rows: Any, key: str, required: bool, default: float = 0.0, none_ok: bool = False) -> np.ndarray:
    if isinstance(rows, Mapping):
        if key not in rows:
            if required:
                raise ValueError(f"fit_weights: missing column {key!r}")
            return None  # type: ignore[return-value]
        vals = list(rows[key])
        return _to_float(vals, key)
    vals = []
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise ValueError(f"fit_weights: row {i} is not a mapping")
        if key not in r or r[key] is None:
            if none_ok and key in r:
                vals.append(np.nan)
            elif required:
                raise ValueError(f"fit_weights: row {i} has no {key!r}")
            else:
                vals.append(default)
        else:
            vals.append(r[key])
    return _to_float(vals, key)


def _to_float(vals: list, key: str) -> np.ndarray:
    out = np.empty(len(vals))
    for i, v in enumerate(vals):
        try:
            out[i] = float(v) if v is not None else np.nan
        except (TypeError, ValueError):
            raise ValueError(f"fit_weights: row {i}, {key!r} = {v!r} is not a number") from None
    return out


def _composite(F: np.ndarray, pen: np.ndarray, w: Weights) -> np.ndarray:
    return F @ np.array([w.quality, w.ctr, w.novelty]) - pen


def _calibrated_loss(score_tr, y_tr, score_te, y_te) -> float:
    """Log-loss on the test rows of a 1-D logistic calibration ``a + b*score`` fitted on train."""
    sd = score_tr.std()
    mu = score_tr.mean()
    sd = sd if sd > 1e-12 else 1.0
    b = fit_logistic(((score_tr - mu) / sd)[:, None], y_tr, l2=1e-6)
    return log_loss(_sigmoid(b[0] + b[1] * (score_te - mu) / sd), y_te)


def fit_weights(rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]], current: Weights = Weights(),
                target: str = "click", l2: float = 1.0, holdout: float = 0.2, n_boot: int = 200,
                random_state: int | None = 0) -> tuple[Weights, dict[str, Any]]:
    """Refit ``(quality, ctr, novelty)`` weights from logged outcomes; returns ``(Weights, report)``.

    ``rows``: one mapping per served decision with ``quality`` ([0, 1]; None/NaN -> 0.5), ``ctr``
    (the CTR estimate used, e.g. 0.031), ``novelty`` ([0, 1]) and ``click`` (0/1); optional
    ``duplicate`` (0/1), ``brand_risk`` ([0, 1]) and ``conversion`` (0/1; ``target="conversion"``
    fits on it instead). A mapping of equal-length columns works too.

    Raises ValueError with fewer than 50 rows, without any positive (or any negative) outcome, or
    on a malformed row.
    """
    if target not in ("click", "conversion"):
        raise ValueError(f"target must be 'click' or 'conversion', got {target!r}")
    if not isinstance(current, Weights):
        raise ValueError(f"current must be a Weights, got {type(current).__name__}")
    if not 0 < holdout < 0.5:
        raise ValueError(f"holdout must be in (0, 0.5), got {holdout!r}")
    n = len(next(iter(rows.values()))) if isinstance(rows, Mapping) and rows else len(rows)
    if n < MIN_ROWS:
        raise ValueError(f"fit_weights needs at least {MIN_ROWS} logged decisions, got {n}")
    q = _column(rows, "quality", True, none_ok=True)  # unknown quality -> 0.5, as in the composite
    ctr = _column(rows, "ctr", True)
    nov = _column(rows, "novelty", True)
    y = _column(rows, target, True)
    dup = _column(rows, "duplicate", False)
    brand = _column(rows, "brand_risk", False)
    conv = _column(rows, "conversion", False) if target == "click" else None
    for name, v in (("quality", q), ("ctr", ctr), ("novelty", nov), (target, y)):
        if v.shape[0] != n:
            raise ValueError(f"fit_weights: column {name!r} has {v.shape[0]} values, expected {n}")
    q = np.where(np.isnan(q), 0.5, q)
    # ctr may exceed 1 when it was an upper confidence bound; it only has to be a finite rate >= 0
    for name, v, hi in (("quality", q, 1.0), ("ctr", ctr, math.inf), ("novelty", nov, 1.0)):
        bad = ~np.isfinite(v) | (v < 0) | (v > hi)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"fit_weights: row {i}, {name!r} = {float(v[i])!r} is outside [0, {hi:g}]")
    if np.any((y != 0) & (y != 1)):
        i = int(np.flatnonzero((y != 0) & (y != 1))[0])
        raise ValueError(f"fit_weights: row {i}, {target!r} must be 0 or 1, got {float(y[i])!r}")
    pos = int(y.sum())
    if pos == 0:
        raise ValueError(f"fit_weights: no {target}s among the {n} rows; nothing to learn weights from")
    if pos == n:
        raise ValueError(f"fit_weights: every one of the {n} rows has a {target}; nothing to contrast")

    F = np.column_stack([q, ctr / current.ctr_scale, nov])
    pen = np.zeros(n)
    if dup is not None:
        pen += current.duplicate_penalty * np.nan_to_num(dup)
    if brand is not None:
        pen += current.brand_safety_penalty * np.nan_to_num(brand)

    # stratified split so both classes appear on each side
    rng = np.random.default_rng(random_state)
    test = np.zeros(n, dtype=bool)
    for cls in (0.0, 1.0):
        idx = rng.permutation(np.flatnonzero(y == cls))
        test[idx[: round(holdout * idx.size)]] = True
    tr, te = ~test, test

    total = current.quality + current.ctr + current.novelty

    def to_weights(b: np.ndarray) -> np.ndarray:
        s = b[1:].sum()
        return b[1:] * (total / s) if s > 0 else np.array([current.quality, current.ctr, current.novelty])

    b = fit_logistic(F[tr], y[tr], l2=l2, nonneg=True)
    w_new = to_weights(b)
    no_signal = not b[1:].sum() > 0
    new = Weights(quality=float(w_new[0]), ctr=float(w_new[1]), novelty=float(w_new[2]),
                  duplicate_penalty=current.duplicate_penalty, brand_safety_penalty=current.brand_safety_penalty,
                  ctr_scale=current.ctr_scale)

    s_before, s_after = _composite(F, pen, current), _composite(F, pen, new)
    holdout_rep = {
        "auc_before": auc(s_before[te], y[te]),
        "auc_after": auc(s_after[te], y[te]),
        "log_loss_before": _calibrated_loss(s_before[tr], y[tr], s_before[te], y[te]),
        "log_loss_after": _calibrated_loss(s_after[tr], y[tr], s_after[te], y[te]),
        "log_loss_model": log_loss(_sigmoid(b[0] + F[te] @ b[1:]), y[te]),
        "log_loss_baseline": log_loss(np.full(int(te.sum()), y[tr].mean()), y[te]),
    }

    coef_boot, w_boot = [], []
    tr_idx = np.flatnonzero(tr)
    for _ in range(int(n_boot)):
        bi = rng.choice(tr_idx, size=tr_idx.size, replace=True)
        if y[bi].min() == y[bi].max():
            continue  # a resample without both classes says nothing
        bb = fit_logistic(F[bi], y[bi], l2=l2, nonneg=True)
        coef_boot.append(bb)
        w_boot.append(to_weights(bb))

    def ci(a: list[np.ndarray], j: int) -> list[float] | None:
        if not a:
            return None
        lo, hi = np.quantile(np.array(a)[:, j], [0.025, 0.975])
        return [float(lo), float(hi)]

    report: dict[str, Any] = {
        "n": n,
        "n_train": int(tr.sum()),
        "n_holdout": int(te.sum()),
        "target": target,
        "positives": pos,
        "clicks": int(_column(rows, "click", True).sum()) if target == "conversion" else pos,
        "positive_rate": pos / n,
        "conversions": None if conv is None else int(np.nansum(conv)),
        "coef": {"intercept": float(b[0]), **{t: float(b[j + 1]) for j, t in enumerate(_TERMS)}},
        "coef_ci": {"intercept": ci(coef_boot, 0), **{t: ci(coef_boot, j + 1) for j, t in enumerate(_TERMS)}},
        "weights_before": current.to_dict(),
        "weights_after": new.to_dict(),
        "weights_ci": {t: ci(w_boot, j) for j, t in enumerate(_TERMS)},
        "holdout": holdout_rep,
        "l2": l2,
        "n_boot": len(coef_boot),
        "random_state": random_state,
        "no_signal": no_signal,
        "note": ("all fitted coefficients are 0: the current weights are kept" if no_signal else
                 "weights rescaled so quality+ctr+novelty keeps the current sum; penalties unchanged"),
    }
    return new, report
