"""Off-policy evaluation: what would a *different* policy have earned on traffic we already logged?

Every decision logged by :class:`adlens.bandit.policies.Selector` carries the probability with which
the served arm was chosen (its propensity ``mu_i``). For a target policy with probabilities
``pi(a | i)`` over the same candidates, with importance weight ``w_i = pi(a_i | i) / mu_i``:

* **IPS**   ``mean(w_i r_i)`` -- unbiased when the logger gave every arm the target uses a
  positive probability; high variance when weights are large;
* **SNIPS** ``sum(w_i r_i) / sum(w_i)`` -- self-normalised: slightly biased, much lower variance;
* **DR**    ``mean(sum_a pi(a|i) q(i,a) + w_i (r_i - q(i,a_i)))`` -- doubly robust: a reward model
  ``q`` (ridge regression, cross-fitted on 2 folds so a row is never predicted by a model that saw
  it) corrects the direct estimate and the weights correct the model.

Confidence intervals are bootstrap percentiles over rows (the reward model is not refitted per
resample). The report also gives the effective sample size ``(sum w)^2 / sum w^2`` and the largest
weight: a tiny ESS means the log says little about the target.

Example::

    >>> log = LoggedData(actions=np.array([0, 1, 1, 0]), rewards=np.array([1.0, 0.0, 1.0, 0.0]),
    ...                  propensities=np.full(4, 0.5), n_actions=2)
    >>> rep = evaluate(log, target_uniform(log), n_boot=200)
    >>> rep["ips"]["value"], rep["snips"]["value"]
    (0.5, 0.5)
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .policies import ArmSnapshot, LinearState, Policy, Prior, Weights, policy_from_spec

__all__ = [
    "LoggedData",
    "read_log",
    "evaluate",
    "fit_reward_model",
    "cross_fit_rewards",
    "target_uniform",
    "target_greedy_model",
    "target_from_policy",
]


@dataclass
class LoggedData:
    """A log of n bandit decisions over candidate sets of at most K actions.

    * ``actions`` (n,) int indices in [0, K) of the served action;
    * ``rewards`` (n,) observed rewards (e.g. click 0/1);
    * ``propensities`` (n,) in (0, 1]: the logging probability of the served action;
    * ``X`` (n, d) optional context features;
    * ``mask`` (n, K) optional bool: which actions were candidates in row i (default all);
    * ``action_features`` (n, K, p) optional per-candidate features (used by the reward model);
    * ``logging_probs`` (n, K) optional full logging distribution (enables the support check);
    * ``n_actions`` K (default: from the arrays above, else ``max(actions) + 1``).

    Example::

        >>> LoggedData(np.array([0, 2]), np.array([1.0, 0.0]), np.array([0.5, 0.25])).n_actions
        3
    """

    actions: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray
    X: np.ndarray | None = None
    mask: np.ndarray | None = None
    action_features: np.ndarray | None = None
    n_actions: int | None = None
    logging_probs: np.ndarray | None = None
    feature_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        a = np.asarray(self.actions)
        if a.ndim != 1 or a.shape[0] == 0:
            raise ValueError(f"LoggedData.actions must be a non-empty 1-D array, got shape {a.shape}")
        if a.dtype.kind == "f":
            if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
                raise ValueError("LoggedData.actions must be integer indices")
        elif a.dtype.kind not in "iu":
            raise ValueError(f"LoggedData.actions must be integer indices, got dtype {a.dtype}")
        self.actions = a.astype(np.int64)
        n = a.shape[0]
        self.rewards = np.asarray(self.rewards, dtype=float)
        self.propensities = np.asarray(self.propensities, dtype=float)
        for name in ("rewards", "propensities"):
            v = getattr(self, name)
            if v.shape != (n,):
                raise ValueError(f"LoggedData.{name} must have shape ({n},), got {v.shape}")
            if not np.all(np.isfinite(v)):
                raise ValueError(f"LoggedData.{name} must be finite (row {int(np.flatnonzero(~np.isfinite(v))[0])})")
        bad = (self.propensities <= 0) | (self.propensities > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"LoggedData.propensities must be in (0, 1]; row {i} has {float(self.propensities[i])!r}")
        if np.any(self.actions < 0):
            raise ValueError("LoggedData.actions must be >= 0")
        ks = []
        if self.X is not None:
            self.X = np.asarray(self.X, dtype=float)
            if self.X.ndim == 1:
                self.X = self.X[:, None]
            if self.X.ndim != 2 or self.X.shape[0] != n or not np.all(np.isfinite(self.X)):
                raise ValueError(f"LoggedData.X must be finite with shape ({n}, d), got {self.X.shape}")
        if self.mask is not None:
            self.mask = np.asarray(self.mask, dtype=bool)
            if self.mask.ndim != 2 or self.mask.shape[0] != n:
                raise ValueError(f"LoggedData.mask must have shape ({n}, K), got {self.mask.shape}")
            ks.append(self.mask.shape[1])
        if self.action_features is not None:
            af = np.asarray(self.action_features, dtype=float)
            if af.ndim != 3 or af.shape[0] != n or not np.all(np.isfinite(af)):
                raise ValueError(f"LoggedData.action_features must be finite with shape ({n}, K, p), got {af.shape}")
            self.action_features = af
            ks.append(af.shape[1])
        if self.logging_probs is not None:
            lp = np.asarray(self.logging_probs, dtype=float)
            if lp.ndim != 2 or lp.shape[0] != n or not np.all(np.isfinite(lp)) or np.any(lp < 0):
                raise ValueError(f"LoggedData.logging_probs must be non-negative with shape ({n}, K), got {lp.shape}")
            self.logging_probs = lp
            ks.append(lp.shape[1])
        if self.n_actions is not None:
            ks.append(int(self.n_actions))
        if len(set(ks)) > 1:
            raise ValueError(f"LoggedData: inconsistent number of actions across arrays: {ks}")
        k = ks[0] if ks else int(self.actions.max()) + 1
        if int(self.actions.max()) >= k:
            raise ValueError(f"LoggedData.actions has index {int(self.actions.max())} but there are only {k} actions")
        self.n_actions = k
        if self.mask is not None and not self.mask[np.arange(n), self.actions].all():
            i = int(np.flatnonzero(~self.mask[np.arange(n), self.actions])[0])
            raise ValueError(f"LoggedData: row {i} served action {int(self.actions[i])}, which its mask marks unavailable")
        self.feature_names = tuple(self.feature_names)

    @property
    def n(self) -> int:
        return int(self.actions.shape[0])

    def available(self) -> np.ndarray:
        """(n, K) bool: the candidates of each row."""
        if self.mask is not None:
            return self.mask
        return np.ones((self.n, self.n_actions), dtype=bool)

    def subset(self, rows: np.ndarray) -> LoggedData:
        """The log restricted to ``rows`` (index array or bool mask)."""
        def take(v):
            return None if v is None else v[rows]

        return replace(self, actions=self.actions[rows], rewards=self.rewards[rows],
                       propensities=self.propensities[rows], X=take(self.X), mask=take(self.mask),
                       action_features=take(self.action_features), logging_probs=take(self.logging_probs))


# --------------------------------------------------------------------------------------------------
# reading logs


def _num(v: Any) -> float | None:
    """A finite-or-not float from a cell, None if it is not a number."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return None
        try:
            return float(s)
        except ValueError:
            return None
    return None


def _name(v: Any) -> str:
    f = _num(v) if not isinstance(v, str) else None
    if f is not None and math.isfinite(f) and f == int(f):
        return str(int(f))
    return str(v).strip()


def _load_rows(path: Path) -> tuple[list[str], list[dict[str, Any]], str]:
    """(columns, rows, row-label) from CSV/TSV, JSONL or Parquet."""
    suf = path.suffix.lower()
    if suf in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError, ArrowIOError an OSError
            raise ValueError(f"{path}: not a readable Parquet file ({e})") from None
        return list(table.column_names), table.to_pylist(), "row"
    if suf in (".jsonl", ".ndjson", ".json"):
        rows, cols = [], {}
        with path.open(encoding="utf-8") as fh:
            for ln, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: line {ln} is not valid JSON ({e.msg})") from None
                if not isinstance(obj, dict):
                    raise ValueError(f"{path}: line {ln} is not a JSON object")
                rows.append(obj)
                cols.update(dict.fromkeys(obj))
        return list(cols), rows, "row"
    if suf in (".csv", ".tsv", ".txt"):
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suf == ".tsv" else ",")
            rows = list(reader)
            cols = [c.strip() for c in (reader.fieldnames or [])]
        rows = [{(k.strip() if isinstance(k, str) else k): v for k, v in r.items()} for r in rows]
        return cols, rows, "row"
    raise ValueError(f"{path}: unsupported log format {suf!r}; use .csv, .tsv, .jsonl or .parquet")


def _candidates(path: Path, i: int, v: Any) -> list[str]:
    if isinstance(v, (list, tuple, np.ndarray)):
        items = list(v)
    elif isinstance(v, str):
        s = v.strip()
        if s.startswith("["):
            try:
                items = json.loads(s)
            except json.JSONDecodeError:
                raise ValueError(f"{path}: row {i}, column 'candidates': {v!r} is not a JSON list") from None
        else:
            items = [p for p in s.split("|") if p.strip()]
    else:
        raise ValueError(f"{path}: row {i}, column 'candidates': expected a JSON list or 'a|b|c', got {v!r}")
    if not items:
        raise ValueError(f"{path}: row {i}, column 'candidates' is empty")
    return [_name(x) for x in items]


def read_log(path: str | Path) -> tuple[LoggedData, list[str]]:
    """Read a decision log (CSV/TSV, JSONL or Parquet) into :class:`LoggedData` and action names.

    Required columns ``action`` (any label), ``reward`` (number), ``propensity`` (in (0, 1]).
    Context features: the ``x_*`` columns if there are any, else every other column that is numeric
    in every row. Optional ``candidates`` (a JSON list or ``a|b|c``) gives each row's candidate set.
    Actions are indexed in numeric order when every label is an integer, else in sorted order.
    Problems raise ValueError naming the file, the column and the (1-based) row.

    Example::

        # action,reward,propensity,x_age
        # banner_a,1,0.5,0.3
        data, names = read_log("log.csv")   # names == ["banner_a", ...]
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{p}: no such file")
    cols, rows, _ = _load_rows(p)
    if not rows:
        raise ValueError(f"{p}: the log is empty (no data rows)")
    for c in ("action", "reward", "propensity"):
        if c not in cols:
            raise ValueError(f"{p}: missing column {c!r} (columns: {', '.join(map(str, cols)) or 'none'})")
    n = len(rows)
    actions: list[str] = []
    rewards = np.empty(n)
    props = np.empty(n)
    cands: list[list[str]] | None = [] if "candidates" in cols else None
    for i, r in enumerate(rows, 1):
        a = r.get("action")
        if a is None or (isinstance(a, str) and not a.strip()):
            raise ValueError(f"{p}: row {i}, column 'action' is empty")
        actions.append(_name(a))
        rv = _num(r.get("reward"))
        if rv is None or not math.isfinite(rv):
            raise ValueError(f"{p}: row {i}, column 'reward': {r.get('reward')!r} is not a number")
        rewards[i - 1] = rv
        pv = _num(r.get("propensity"))
        if pv is None or not math.isfinite(pv):
            raise ValueError(f"{p}: row {i}, column 'propensity': {r.get('propensity')!r} is not a number")
        if not 0 < pv <= 1:
            raise ValueError(f"{p}: row {i}, column 'propensity': {pv!r} is outside (0, 1]")
        props[i - 1] = pv
        if cands is not None:
            cs = _candidates(p, i, r.get("candidates"))
            if actions[-1] not in cs:
                raise ValueError(f"{p}: row {i}: action {actions[-1]!r} is not among its candidates {cs}")
            cands.append(cs)
    reserved = {"action", "reward", "propensity", "candidates"}
    xcols = [c for c in cols if isinstance(c, str) and c.startswith("x_")]
    if xcols:
        feats = xcols
    else:
        feats = [c for c in cols if c not in reserved and all(_num(r.get(c)) is not None for r in rows)]
    X = None
    if feats:
        X = np.empty((n, len(feats)))
        for i, r in enumerate(rows, 1):
            for j, c in enumerate(feats):
                v = _num(r.get(c))
                if v is None or not math.isfinite(v):
                    raise ValueError(f"{p}: row {i}, column {c!r}: {r.get(c)!r} is not a finite number")
                X[i - 1, j] = v
    labels = set(actions)
    if cands is not None:
        for cs in cands:
            labels.update(cs)
    if all(lbl.lstrip("-").isdigit() for lbl in labels):
        names = sorted(labels, key=int)
    else:
        names = sorted(labels)
    index = {nm: k for k, nm in enumerate(names)}
    mask = None
    if cands is not None:
        mask = np.zeros((n, len(names)), dtype=bool)
        for i, cs in enumerate(cands):
            mask[i, [index[c] for c in cs]] = True
    data = LoggedData(actions=np.array([index[a] for a in actions], dtype=np.int64), rewards=rewards,
                      propensities=props, X=X, mask=mask, n_actions=len(names), feature_names=tuple(feats))
    return data, names


# --------------------------------------------------------------------------------------------------
# reward models


RewardModel = Callable[[LoggedData, LoggedData], np.ndarray]


def _ridge(Z: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    d = Z.shape[1]
    return np.linalg.solve(Z.T @ Z + lam * np.eye(d), Z.T @ y)


def fit_reward_model(train: LoggedData, lam: float = 1.0) -> Callable[[LoggedData], np.ndarray]:
    """Fit a ridge reward model on ``train``; returns ``predict(log) -> (n, K)`` expected rewards.

    With ``action_features``: one shared model of ``r ~ [1, action_features[i, a]]`` (generalises
    across actions). Otherwise one model per action on ``[1, X]`` (just an intercept without X),
    fitted to ``r - mean(r)`` so that the ridge shrinks rare actions toward the overall mean.
    Features are standardised with the training rows' statistics. Predictions are clipped to the
    training rewards' range.
    """
    y = train.rewards
    lo, hi = float(y.min()), float(y.max())
    gm = float(y.mean())
    k = train.n_actions
    if train.action_features is not None:
        f = train.action_features[np.arange(train.n), train.actions]  # (n, p) the served arms
        mu, sd = f.mean(0), f.std(0)
        sd = np.where(sd > 1e-12, sd, 1.0)
        Z = np.column_stack([np.ones(train.n), (f - mu) / sd])
        theta = _ridge(Z, y - gm, lam)

        def predict_shared(log: LoggedData) -> np.ndarray:
            if log.action_features is None or log.action_features.shape[2] != f.shape[1]:
                raise ValueError("reward model was fitted on action_features; the log to predict has none or another width")
            af = (log.action_features - mu) / sd
            q = gm + theta[0] + af @ theta[1:]
            return np.clip(q, lo, hi)

        return predict_shared

    if train.X is not None:
        mu, sd = train.X.mean(0), train.X.std(0)
        sd = np.where(sd > 1e-12, sd, 1.0)
    thetas = np.zeros((k, 1 + (train.X.shape[1] if train.X is not None else 0)))
    for a in range(k):
        rows = train.actions == a
        if not rows.any():
            continue  # theta 0 -> the overall mean
        Z = np.ones((int(rows.sum()), 1))
        if train.X is not None:
            Z = np.column_stack([Z, (train.X[rows] - mu) / sd])
        thetas[a] = _ridge(Z, y[rows] - gm, lam)

    def predict_per_action(log: LoggedData) -> np.ndarray:
        Z = np.ones((log.n, 1))
        if train.X is not None:
            if log.X is None or log.X.shape[1] != train.X.shape[1]:
                raise ValueError("reward model was fitted on X; the log to predict has none or another width")
            Z = np.column_stack([Z, (log.X - mu) / sd])
        q = gm + Z @ thetas.T
        if log.n_actions != k:
            raise ValueError(f"reward model knows {k} actions, the log has {log.n_actions}")
        return np.clip(q, lo, hi)

    return predict_per_action


def cross_fit_rewards(log: LoggedData, reward_model: str | RewardModel = "ridge", n_folds: int = 2,
                      random_state: int | None = 0, lam: float = 1.0) -> np.ndarray:
    """Out-of-fold reward predictions (n, K): each row is predicted by a model fitted on the other folds.

    ``reward_model`` is ``"ridge"`` (:func:`fit_reward_model`) or a callable
    ``(train: LoggedData, test: LoggedData) -> (test.n, K)``.
    """
    if log.n < 2 * n_folds:
        raise ValueError(f"cross-fitting needs at least {2 * n_folds} rows, the log has {log.n}")
    rng = np.random.default_rng(random_state)
    fold = rng.permutation(log.n) % n_folds
    q = np.empty((log.n, log.n_actions))
    for f in range(n_folds):
        tr, te = log.subset(fold != f), log.subset(fold == f)
        if reward_model == "ridge":
            pred = fit_reward_model(tr, lam=lam)(te)
        elif callable(reward_model):
            pred = np.asarray(reward_model(tr, te), dtype=float)
        else:
            raise ValueError(f"unknown reward_model {reward_model!r}; use 'ridge', a callable or None")
        if pred.shape != (te.n, log.n_actions) or not np.all(np.isfinite(pred)):
            raise ValueError(f"reward model returned shape {pred.shape}, expected ({te.n}, {log.n_actions}) finite values")
        q[fold == f] = pred
    return q


# --------------------------------------------------------------------------------------------------
# estimators


def _check_target(log: LoggedData, pi: Any) -> np.ndarray:
    pi = np.asarray(pi, dtype=float)
    if pi.shape != (log.n, log.n_actions):
        raise ValueError(f"target_probs must have shape ({log.n}, {log.n_actions}), got {pi.shape}")
    if not np.all(np.isfinite(pi)) or np.any(pi < 0):
        raise ValueError("target_probs must be finite and non-negative")
    s = pi.sum(1)
    if np.any(np.abs(s - 1) > 1e-6):
        i = int(np.flatnonzero(np.abs(s - 1) > 1e-6)[0])
        raise ValueError(f"target_probs rows must sum to 1; row {i} sums to {s[i]:.6g}")
    if log.mask is not None and np.any(pi[~log.mask] > 1e-12):
        i = int(np.flatnonzero((pi * ~log.mask).sum(1) > 1e-12)[0])
        raise ValueError(f"target_probs puts probability on actions that were not candidates (row {i})")
    return pi


def _ci(boot: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def evaluate(log: LoggedData, target_probs: np.ndarray, reward_model: str | RewardModel | None = "ridge",
             n_boot: int = 1000, alpha: float = 0.05, random_state: int | None = 0) -> dict[str, Any]:
    """IPS, SNIPS and DR estimates of a target policy's mean reward on the logged traffic.

    ``target_probs`` (n, K): the target's probability of every candidate in every logged row.
    ``reward_model``: ``"ridge"`` (cross-fitted, see :func:`fit_reward_model`), a callable
    ``(train, test) -> (test.n, K)`` (cross-fitted the same way) or None (no DR, no DM).

    Returns ``{"n", "mean_logged_reward", "ess", "max_weight", "ips", "snips", "dr", "dm", ...}``
    where each estimator is ``{"value", "ci_low", "ci_high"}`` (``1 - alpha`` bootstrap percentile
    interval over rows, ``n_boot`` resamples; CIs are None when ``n_boot == 0``).

    Example::

        >>> log = LoggedData(np.array([0, 1, 0, 1]), np.array([1.0, 0, 1, 0]), np.full(4, 0.5))
        >>> evaluate(log, np.tile([1.0, 0.0], (4, 1)), reward_model=None, n_boot=0)["ips"]["value"]
        1.0
    """
    pi = _check_target(log, target_probs)
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 0):
        raise ValueError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    n = log.n
    rows = np.arange(n)
    r = log.rewards
    w = pi[rows, log.actions] / log.propensities
    ips_i = w * r
    out: dict[str, Any] = {
        "n": n,
        "mean_logged_reward": float(r.mean()),
        "ess": float(w.sum() ** 2 / (w @ w)) if np.any(w > 0) else 0.0,
        "max_weight": float(w.max()),
        "mean_weight": float(w.mean()),
        "alpha": alpha,
        "n_boot": int(n_boot),
    }
    if log.logging_probs is not None:
        # target mass on actions the logger could never pick: IPS cannot see it (bias)
        out["unsupported_mass"] = float((pi * (log.logging_probs <= 0)).sum(1).mean())
    dr_i = dm_i = None
    if reward_model is not None:
        q = cross_fit_rewards(log, reward_model, random_state=random_state)
        dm_i = (pi * q).sum(1)
        dr_i = dm_i + w * (r - q[rows, log.actions])
        out["reward_model"] = reward_model if isinstance(reward_model, str) else getattr(reward_model, "__name__", "callable")
    else:
        out["reward_model"] = None

    est = {"ips": float(ips_i.mean()), "snips": float(ips_i.sum() / w.sum()) if w.sum() > 0 else 0.0}
    if dr_i is not None:
        est["dr"] = float(dr_i.mean())
        est["dm"] = float(dm_i.mean())
    boots: dict[str, list[np.ndarray]] = {k: [] for k in est}
    if n_boot:
        rng = np.random.default_rng(random_state)
        chunk = max(1, min(n_boot, 2_000_000 // max(n, 1)))  # bounded memory: ~16 MB of indices
        done = 0
        while done < n_boot:
            b = min(chunk, n_boot - done)
            idx = rng.integers(0, n, size=(b, n))
            sw = w[idx].sum(1)
            swr = ips_i[idx].sum(1)
            boots["ips"].append(swr / n)
            boots["snips"].append(np.divide(swr, sw, out=np.zeros(b), where=sw > 0))
            if dr_i is not None:
                boots["dr"].append(dr_i[idx].mean(1))
                boots["dm"].append(dm_i[idx].mean(1))
            done += b
    for k, v in est.items():
        if n_boot:
            lo, hi = _ci(np.concatenate(boots[k]), alpha)
            out[k] = {"value": v, "ci_low": lo, "ci_high": hi}
        else:
            out[k] = {"value": v, "ci_low": None, "ci_high": None}
    if dr_i is None:
        out["dr"] = None
        out["dm"] = None
    return out


# --------------------------------------------------------------------------------------------------
# target policies


def target_uniform(log: LoggedData) -> np.ndarray:
    """Uniform over each row's candidates, shape (n, K)."""
    m = log.available().astype(float)
    return m / m.sum(1, keepdims=True)


def target_greedy_model(log: LoggedData, epsilon: float = 0.0, reward_model: str | RewardModel = "ridge",
                        fit_on: LoggedData | None = None) -> np.ndarray:
    """Greedy on a reward model (ties split), epsilon-smoothed over each row's candidates; (n, K).

    The model is fitted on ``fit_on`` (default: the log itself). Evaluating a policy learned on the
    same rows is optimistic; pass a separate ``fit_on`` split for an honest estimate.
    """
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
    src = log if fit_on is None else fit_on
    if reward_model == "ridge":
        q = fit_reward_model(src)(log)
    elif callable(reward_model):
        q = np.asarray(reward_model(src, log), dtype=float)
    else:
        raise ValueError(f"unknown reward_model {reward_model!r}")
    avail = log.available()
    q = np.where(avail, q, -np.inf)
    best = q >= q.max(1, keepdims=True) - 1e-12
    greedy = best / best.sum(1, keepdims=True)
    uni = target_uniform(log)
    return (1 - epsilon) * greedy + epsilon * uni


def target_from_policy(policy: Policy, snapshots: Sequence[ArmSnapshot], weights: Weights = Weights(),
                       prior: Prior = Prior(), states: Sequence[LinearState | None] | None = None,
                       random_state: int | None = 0, action_names: Sequence[str] | None = None) -> np.ndarray:
    """Replay a bandit policy on the per-row snapshots of a log: its probabilities, shape (n, K).

    Without ``action_names`` every snapshot must list the same K arms in the log's column order;
    with them, each snapshot's arms are placed in the column of their id (others get 0).
    """
    pol = policy_from_spec(policy)
    if states is not None and len(states) != len(snapshots):
        raise ValueError(f"{len(states)} states for {len(snapshots)} snapshots")
    if not snapshots:
        raise ValueError("target_from_policy needs at least one snapshot")
    rng = np.random.default_rng(random_state)
    if action_names is not None:
        col = {str(nm): j for j, nm in enumerate(action_names)}
        k = len(col)
    else:
        k = snapshots[0].k
    out = np.zeros((len(snapshots), k))
    for i, s in enumerate(snapshots):
        p, _ = pol.probabilities(s, weights, prior, rng, state=None if states is None else states[i])
        if action_names is None:
            if s.k != k:
                raise ValueError(f"snapshot {i} has {s.k} arms, expected {k}; pass action_names to align them")
            out[i] = p
        else:
            try:
                out[i, [col[a] for a in s.ids]] = p
            except KeyError as e:
                raise ValueError(f"snapshot {i}: arm {e.args[0]!r} is not in action_names") from None
    return out

