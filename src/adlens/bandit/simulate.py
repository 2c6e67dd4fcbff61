"""A seeded click simulator to compare bandit policies and to check off-policy evaluation.

The :class:`Environment` has K creatives (default 20) and d-dimensional request contexts. The true
click probability is a logistic of a per-arm effect plus a low-rank context x arm interaction::

    p(x, a) = sigmoid(logit(base_ctr) + bias_a + interaction * (x U) . v_a)

with mean CTRs of a few percent. Each arm also has a *predicted quality* in [0, 1] that is a noisy
monotone function of its effect ``bias_a`` (what the student scorer gives the bandit at cold
start), and observed arm features ``f_a = v_a + noise`` (what a contextual model could use).

:func:`run` plays one policy for T requests with online updates of clicks/impressions (and of the
LinUCB state), and records the expected regret against the best arm *for each context*, the clicks,
and the full log (propensities, per-row :class:`ArmSnapshot`) for :mod:`adlens.bandit.ope`.
:func:`compare` runs several policies over several seeds with common random numbers (the same
contexts and click draws per seed) and :func:`regret_svg` draws the curves.

The simulator rewards clicks only, so it uses :data:`SIM_WEIGHTS` (``quality=0, ctr=1,
novelty=0``, no penalties): the composite is then the policy's CTR term alone, and predicted
quality still matters through the cold-start prior (:meth:`Environment.suggested_prior`).

Example::

    >>> env = Environment(n_arms=5, random_state=0)
    >>> res = run(Selector(EpsilonGreedy(0.1), SIM_WEIGHTS, env.suggested_prior(), random_state=0), env, T=200)
    >>> res.regret.shape, bool(res.regret[-1] >= 0)
    ((200,), True)
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .ope import LoggedData
from .policies import (
    UCB1,
    ArmSnapshot,
    EpsilonGreedy,
    LinearState,
    LinUCB,
    Policy,
    Prior,
    Selector,
    ThompsonSampling,
    Weights,
    policy_from_spec,
)

__all__ = ["SIM_WEIGHTS", "DEFAULT_POLICIES", "Environment", "SimResult", "run", "compare", "regret_svg"]

#: Click-only weights for the simulator: the composite is the CTR term alone.
SIM_WEIGHTS = Weights(quality=0.0, ctr=1.0, novelty=0.0, duplicate_penalty=0.0, brand_safety_penalty=0.0)


def _default_policies() -> dict[str, Policy]:
    # UCB1's Hoeffding bonus assumes rewards spread over [0, 1]; clicks at ~3 % have sd ~0.17, so
    # alpha=0.2 is the variance-matched bonus (alpha=1 keeps exploring uniformly for ~10^5 requests).
    # LinUCB's bonus is on the click-probability scale for the same reason.
    return {
        "thompson": ThompsonSampling(),
        "ucb1": UCB1(alpha=0.2),
        "epsilon_greedy": EpsilonGreedy(epsilon=0.1),
        "linucb": LinUCB(alpha=0.1),
    }


DEFAULT_POLICIES: dict[str, Policy] = _default_policies()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class Environment:
    """A seeded bandit environment with contexts, true click probabilities and predicted quality.

    Parameters (all fixed at construction from ``random_state``):

    * ``n_arms`` K, ``n_features`` d (context width), ``rank`` of the context x arm interaction;
    * ``base_ctr`` CTR of an average arm in an average context; ``arm_sd`` spread of the per-arm
      logit effect; ``interaction`` strength of the context effect;
    * ``quality_noise`` noise (in units of ``arm_sd``) between an arm's effect and its predicted
      quality; ``feature_noise`` noise of the observed arm features;
    * ``arm_effects`` (K,) explicit per-arm logit effects instead of random ones (then ``arm_sd``
      is their standard deviation) -- for environments with a known structure.

    Example::

        >>> env = Environment(random_state=0)
        >>> env.click_probs(env.contexts(3, np.random.default_rng(0))).shape
        (3, 20)
    """

    def __init__(self, n_arms: int = 20, n_features: int = 5, rank: int = 2, base_ctr: float = 0.03,
                 arm_sd: float = 0.5, interaction: float = 0.3, quality_noise: float = 0.7,
                 feature_noise: float = 0.3, arm_effects: Sequence[float] | None = None,
                 random_state: int | None = 0) -> None:
        if n_arms < 2 or n_features < 1 or rank < 1:
            raise ValueError(f"Environment needs n_arms >= 2, n_features >= 1, rank >= 1; got {n_arms}, {n_features}, {rank}")
        if not 0 < base_ctr < 1:
            raise ValueError(f"base_ctr must be in (0, 1), got {base_ctr!r}")
        for nm, v in (("arm_sd", arm_sd), ("interaction", interaction), ("quality_noise", quality_noise),
                      ("feature_noise", feature_noise)):
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{nm} must be finite and >= 0, got {v!r}")
        rng = np.random.default_rng(random_state)
        self.n_arms, self.n_features, self.rank = n_arms, n_features, rank
        self.base_ctr, self.interaction = base_ctr, interaction
        self.intercept = math.log(base_ctr / (1 - base_ctr))
        self.bias = rng.normal(0.0, arm_sd, n_arms)
        if arm_effects is not None:
            eff = np.asarray(arm_effects, dtype=float)
            if eff.shape != (n_arms,) or not np.all(np.isfinite(eff)):
                raise ValueError(f"arm_effects must be {n_arms} finite numbers, got shape {eff.shape}")
            self.bias = eff
            arm_sd = float(eff.std()) or 1.0
        self.U = rng.normal(0.0, 1.0 / math.sqrt(n_features), (n_features, rank))
        self.V = rng.normal(0.0, 1.0, (n_arms, rank))
        self.arm_features = self.V + rng.normal(0.0, feature_noise, (n_arms, rank))
        z = self.bias / max(arm_sd, 1e-12) + rng.normal(0.0, quality_noise, n_arms)
        self.quality = _sigmoid(1.7 * z / math.sqrt(1.0 + quality_noise**2))
        self.ids = tuple(f"arm{i:02d}" for i in range(n_arms))
        # mean CTR per arm over the context distribution (fixed Monte Carlo sample)
        self.mean_ctr = self.click_probs(self.contexts(20_000, np.random.default_rng(12345))).mean(0)

    def contexts(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n request contexts, shape (n, d), standard normal."""
        return rng.standard_normal((n, self.n_features))

    def click_probs(self, X: np.ndarray) -> np.ndarray:
        """True click probability of every arm in every context, shape (n, K)."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        logit = self.intercept + self.bias + self.interaction * (X @ self.U) @ self.V.T
        return _sigmoid(logit)

    def suggested_prior(self, strength: float = 20.0) -> Prior:
        """The cold-start prior a team would calibrate from history: a least-squares line of arm
        mean CTR on predicted quality, evaluated at quality 0 and 1 (clipped to sane CTRs)."""
        slope, icpt = np.polyfit(self.quality, self.mean_ctr, 1)
        lo = float(np.clip(icpt, 1e-3, 0.5))
        hi = float(np.clip(icpt + slope, lo, 0.5))
        return Prior(strength=strength, ctr_low=lo, ctr_high=hi)

    def candidate_features(self, x: np.ndarray, posterior_ctr: np.ndarray, ctr_scale: float = 0.05) -> np.ndarray:
        """Features a contextual policy sees for each arm in context x: ``[1, quality,
        posterior-mean CTR / ctr_scale, x (outer) f_a]`` (the outer product lets a linear model
        express the true bilinear context effect). x (d,) -> (K, 3 + d*rank); x (n, d) -> (n, K, 3 + d*rank).
        """
        X = np.asarray(x, dtype=float)
        single = X.ndim == 1
        X = np.atleast_2d(X)
        n, k = X.shape[0], self.n_arms
        inter = (X[:, None, :, None] * self.arm_features[None, :, None, :]).reshape(n, k, -1)
        base = np.column_stack([np.ones(k), self.quality, np.asarray(posterior_ctr, dtype=float) / ctr_scale])
        out = np.concatenate([np.broadcast_to(base, (n, k, 3)), inter], axis=2)
        return out[0] if single else out

    def value(self, X: np.ndarray, target_probs: np.ndarray) -> float:
        """Exact expected reward of a policy on contexts X: ``mean_i sum_a pi(a|i) p(x_i, a)``."""
        return float((np.asarray(target_probs) * self.click_probs(X)).sum(1).mean())


@dataclass
class SimResult:
    """One policy run. Arrays are over the T requests unless noted.

    ``regret`` cumulative expected regret ``sum_t (max_a p(x_t,a) - sum_a pi_t(a) p(x_t,a))``
    (the expectation over the policy's own selection probabilities: same mean as the realised
    pseudo-regret, less noise); ``rewards`` the sampled clicks; ``probs`` (T, K) selection
    probabilities; ``true_probs`` (T, K) p(x_t, a); ``log`` the decisions as :class:`LoggedData`
    (X = contexts, action_features = what LinUCB saw, logging_probs = probs). :meth:`snapshot`
    rebuilds the :class:`ArmSnapshot` the policy saw at request t (``snapshots`` lists them all).
    """

    policy: str
    regret: np.ndarray
    rewards: np.ndarray
    actions: np.ndarray
    probs: np.ndarray
    true_probs: np.ndarray
    contexts: np.ndarray
    log: LoggedData
    clicks: np.ndarray = field(repr=False)
    impressions: np.ndarray = field(repr=False)
    state: LinearState | None = field(default=None, repr=False)
    ids: tuple[str, ...] = field(default=(), repr=False)
    quality: np.ndarray | None = field(default=None, repr=False)
    row_clicks: np.ndarray | None = field(default=None, repr=False)
    row_impressions: np.ndarray | None = field(default=None, repr=False)

    @property
    def final_regret(self) -> float:
        return float(self.regret[-1])

    def value(self, target_probs: np.ndarray) -> float:
        """Exact on-policy value of a target policy on this run's contexts (the OPE ground truth)."""
        return float((np.asarray(target_probs) * self.true_probs).sum(1).mean())

    def snapshot(self, t: int) -> ArmSnapshot:
        """The candidates as the policy saw them at request t (counts before that request's batch)."""
        if self.row_clicks is None:
            raise ValueError("this run was made with keep_snapshots=False")
        return ArmSnapshot(self.ids, self.quality, self.row_clicks[t], self.row_impressions[t],
                           x=self.log.action_features[t])

    @property
    def snapshots(self) -> list[ArmSnapshot]:
        return [self.snapshot(t) for t in range(len(self.rewards))]


def run(selector: Selector, env: Environment, T: int = 5000, random_state: int | None = 0,
        state: LinearState | None = None, batch_size: int = 1, keep_snapshots: bool = True) -> SimResult:
    """Play ``selector`` for T requests in ``env``, feeding clicks back after every ``batch_size`` requests.

    ``batch_size=1`` is fully online; larger batches model a serving tier whose counts are refreshed
    periodically (and make long simulations fast: context-free policies are asked once per batch and
    the batch's arms are sampled from those probabilities). Contexts and click draws come from
    ``random_state`` (two policies run with the same seed see the same traffic and the same luck);
    the policy's own randomness is the selector's. Contextual policies get an empty
    :class:`LinearState` unless ``state`` is given.
    """
    if not (isinstance(T, (int, np.integer)) and T >= 1):
        raise ValueError(f"T must be an integer >= 1, got {T!r}")
    if not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    rng = np.random.default_rng(random_state)
    X = env.contexts(T, rng)
    P = env.click_probs(X)
    u = rng.random(T)
    k = env.n_arms
    prior, w = selector.prior, selector.weights
    contextual = bool(getattr(selector.policy, "contextual", False))
    clicks, imps = np.zeros(k), np.zeros(k)
    d = 3 + env.n_features * env.rank
    if contextual and state is None:
        state = selector.new_state(d)
    probs = np.empty((T, k))
    actions = np.empty(T, dtype=np.int64)
    m0 = prior.mean(env.quality)
    # all but the posterior-CTR column are known up front: build them in one go
    feats = env.candidate_features(X, m0, w.ctr_scale)
    quality = np.asarray(env.quality, dtype=float)
    row_c = np.empty((T, k)) if keep_snapshots else None
    row_n = np.empty((T, k)) if keep_snapshots else None
    for lo in range(0, T, batch_size):
        hi = min(T, lo + batch_size)
        feats[lo:hi, :, 2] = (prior.strength * m0 + clicks) / (prior.strength + imps) / w.ctr_scale
        c0, n0 = clicks.copy(), imps.copy()
        if contextual:
            for t in range(lo, hi):
                ch = selector.select(ArmSnapshot(env.ids, quality, c0, n0, x=feats[t]), state)
                probs[t], actions[t] = ch.probabilities, ch.index
        else:
            p = selector.probabilities(ArmSnapshot(env.ids, quality, c0, n0, x=feats[lo]))
            probs[lo:hi] = p
            actions[lo:hi] = selector.sample_indices(p, hi - lo)
        r = (u[lo:hi] < P[np.arange(lo, hi), actions[lo:hi]]).astype(float)
        np.add.at(clicks, actions[lo:hi], r)
        np.add.at(imps, actions[lo:hi], 1.0)
        if contextual:
            state.partial_fit(feats[np.arange(lo, hi), actions[lo:hi]], r)
        if keep_snapshots:
            row_c[lo:hi], row_n[lo:hi] = c0, n0
    rewards = (u < P[np.arange(T), actions]).astype(float)
    inst = P.max(1) - (probs * P).sum(1)
    log = LoggedData(actions=actions, rewards=rewards, propensities=probs[np.arange(T), actions], X=X,
                     action_features=feats, logging_probs=probs, n_actions=k)
    return SimResult(policy=selector.policy.name, regret=np.cumsum(inst), rewards=rewards, actions=actions,
                     probs=probs, true_probs=P, contexts=X, log=log, clicks=clicks, impressions=imps, state=state,
                     ids=env.ids, quality=quality, row_clicks=row_c, row_impressions=row_n)


def compare(policies: Mapping[str, Policy | str] | None = None, env: Environment | None = None, T: int = 5000,
            seeds: Sequence[int] = (0, 1, 2), weights: Weights = SIM_WEIGHTS, prior: Prior | None = None,
            batch_size: int = 1, n_points: int = 100) -> dict[str, Any]:
    """Run every policy on every seed (common random numbers) and summarise the regret.

    Returns ``{"T", "seeds", "env", "prior", "policies": {name: {"spec", "final_regret_mean",
    "final_regret_sd", "final_regrets", "clicks_mean", "ctr_mean"}}, "t": [...], "curves": {name:
    {"mean": [...], "sd": [...]}}}`` -- JSON-friendly (curves at ``n_points`` checkpoints).

    Example::

        summary = compare({"ts": ThompsonSampling(), "eps": EpsilonGreedy(0.1)}, Environment(), T=2000)
        summary["policies"]["ts"]["final_regret_mean"]
    """
    pols = {str(k): policy_from_spec(v) for k, v in (policies or DEFAULT_POLICIES).items()}
    if not pols:
        raise ValueError("compare needs at least one policy")
    if not seeds:
        raise ValueError("compare needs at least one seed")
    env = env if env is not None else Environment(random_state=0)
    prior = prior if prior is not None else env.suggested_prior()
    ts = np.unique(np.linspace(1, T, min(n_points, T)).round().astype(int))
    out: dict[str, Any] = {"T": int(T), "seeds": [int(s) for s in seeds], "prior": prior.to_dict(),
                           "batch_size": int(batch_size),
                           "weights": weights.to_dict(), "t": ts.tolist(), "policies": {}, "curves": {},
                           "env": {"n_arms": env.n_arms, "n_features": env.n_features,
                                   "best_arm_mean_ctr": float(env.mean_ctr.max()),
                                   "mean_ctr": float(env.mean_ctr.mean())}}
    for name, pol in pols.items():
        curves, finals, clicks = [], [], []
        for s in seeds:
            res = run(Selector(pol, weights, prior, random_state=s), env, T, random_state=s,
                      batch_size=batch_size, keep_snapshots=False)
            curves.append(res.regret[ts - 1])
            finals.append(res.final_regret)
            clicks.append(float(res.rewards.sum()))
        c = np.array(curves)
        out["policies"][name] = {
            "spec": pol.to_dict(),
            "final_regret_mean": float(np.mean(finals)),
            "final_regret_sd": float(np.std(finals, ddof=1)) if len(finals) > 1 else 0.0,
            "final_regrets": finals,
            "clicks_mean": float(np.mean(clicks)),
            "ctr_mean": float(np.mean(clicks) / T),
        }
        out["curves"][name] = {"mean": c.mean(0).tolist(),
                               "sd": (c.std(0, ddof=1) if len(seeds) > 1 else np.zeros(len(ts))).tolist()}
    return out


_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _nice_ticks(hi: float, n: int = 5) -> list[float]:
    if hi <= 0:
        return [0.0, 1.0]
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(math.ceil(hi / step) + 1)]


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.2g}"


def regret_svg(result: Mapping[str, Any] | SimResult, title: str = "Cumulative regret", width: int = 720,
               height: int = 420) -> str:
    """A self-contained SVG line chart of cumulative regret curves (mean line, +-1 sd band, legend).

    ``result`` is the dict from :func:`compare` or a single :class:`SimResult`.
    """
    if isinstance(result, SimResult):
        ts = np.arange(1, len(result.regret) + 1)
        sel = np.unique(np.linspace(1, len(ts), min(200, len(ts))).round().astype(int)) - 1
        result = {"t": ts[sel].tolist(), "curves": {result.policy: {"mean": result.regret[sel].tolist(),
                                                                    "sd": [0.0] * len(sel)}},
                  "policies": {result.policy: {"final_regret_mean": result.final_regret, "final_regret_sd": 0.0}}}
    t = np.asarray(result["t"], dtype=float)
    curves = result["curves"]
    if not curves or t.size == 0:
        raise ValueError("regret_svg: the result has no curves")
    ml, mr, mt, mb = 70, 20, 40, 55
    pw, ph = width - ml - mr, height - mt - mb
    ymax = max(float(np.max(np.asarray(c["mean"]) + np.asarray(c["sd"]))) for c in curves.values())
    yt = _nice_ticks(ymax * 1.02)
    xt = _nice_ticks(float(t.max()))
    x_hi, y_hi = xt[-1], yt[-1]

    def px(v):
        return ml + pw * np.asarray(v, dtype=float) / x_hi

    def py(v):
        return mt + ph * (1 - np.asarray(v, dtype=float) / y_hi)

    e = html.escape
    parts = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
         'font-family="sans-serif" font-size="12">'),
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2:.1f}" y="22" text-anchor="middle" font-size="15">{e(title)}</text>',
    ]
    if result.get("seeds"):
        parts.append(f'<text x="{ml + pw:.1f}" y="{mt + ph - 8}" text-anchor="end" fill="#666">final regret: mean '
                     f'\u00b1 sd over {len(result["seeds"])} seed(s)</text>')
    for v in yt:
        y = float(py(v))
        parts.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{ml + pw}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    for v in xt:
        x = float(px(v))
        parts.append(f'<line x1="{x:.1f}" y1="{mt + ph}" x2="{x:.1f}" y2="{mt + ph + 5}" stroke="#333"/>')
        parts.append(f'<text x="{x:.1f}" y="{mt + ph + 18}" text-anchor="middle">{_fmt(v)}</text>')
    parts.append(f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{mt + ph}" stroke="#333"/>')
    parts.append(f'<line x1="{ml}" y1="{mt + ph}" x2="{ml + pw}" y2="{mt + ph}" stroke="#333"/>')
    parts.append(f'<text x="{ml + pw / 2:.1f}" y="{height - 12}" text-anchor="middle">decisions (requests served)</text>')
    parts.append(f'<text transform="translate(16 {mt + ph / 2:.1f}) rotate(-90)" text-anchor="middle">'
                 'cumulative regret (expected clicks lost)</text>')
    pol = result.get("policies", {})
    for i, (name, c) in enumerate(curves.items()):
        col = _COLOURS[i % len(_COLOURS)]
        m, s = np.asarray(c["mean"], dtype=float), np.asarray(c["sd"], dtype=float)
        xs = px(t)
        if np.any(s > 0):
            upper = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, py(m + s)))
            lower = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs[::-1], py(np.maximum(m - s, 0))[::-1]))
            parts.append(f'<polygon points="{upper} {lower}" fill="{col}" fill-opacity="0.15" stroke="none"/>')
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, py(m)))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{col}" stroke-width="2"><title>{e(name)}</title></polyline>')
        ly = mt + 14 + 18 * i
        info = pol.get(name, {})
        label = name
        if "final_regret_mean" in info:
            label += f"  {info['final_regret_mean']:.1f}"
            if info.get("final_regret_sd"):
                label += f" \u00b1 {info['final_regret_sd']:.1f}"
        parts.append(f'<line x1="{ml + 12}" y1="{ly}" x2="{ml + 36}" y2="{ly}" stroke="{col}" stroke-width="3"/>')
        parts.append(f'<text x="{ml + 42}" y="{ly + 4}">{e(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


