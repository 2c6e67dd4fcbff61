"""Bandit selection over a handful of candidate creatives (seed 000 "BANDIT SYSTEM", step 4-5).

The seed scores every candidate with one composite and serves the best by Thompson sampling or UCB::

    total = w1 * quality + w2 * CTR / ctr_scale + w3 * novelty - duplicate_penalty - brand_penalty

* ``quality`` is the student model's ``score_1_10`` normalised to [0, 1] (:func:`normalise_quality`);
* ``CTR`` is *the policy's* click-rate term: a posterior draw (Thompson), an upper confidence bound
  (UCB1), the posterior mean (epsilon-greedy) or a shared linear model's optimistic prediction
  (LinUCB). Dividing by ``ctr_scale`` (default 0.05) puts a few-percent CTR on the same 0-1 scale
  as the other terms, so the weights are comparable;
* cold start: every arm's CTR posterior is a Beta whose prior mean comes from its predicted quality
  (:class:`Prior`), worth ``strength`` pseudo-impressions. A new creative therefore starts where the
  quality model puts it, not at zero and not at the best arm's level.

Every policy returns *selection probabilities* over the candidates, and :class:`Selector` samples the
served arm from exactly those probabilities, so the logged propensity is the true probability of the
decision -- what off-policy evaluation (:mod:`adlens.bandit.ope`) needs. For Thompson sampling the
probability of each arm is the frequency with which it wins ``n_mc`` joint posterior draws.

Policies are small frozen config objects; state (counts, the LinUCB model) lives in the caller's
database and is passed in as an :class:`ArmSnapshot` (+ :class:`LinearState`).

Example::

    >>> snap = ArmSnapshot(ids=("a", "b", "c"), quality=np.array([0.9, 0.2, np.nan]),
    ...                    clicks=np.array([3.0, 0.0, 0.0]), impressions=np.array([100.0, 50.0, 0.0]))
    >>> sel = Selector(ThompsonSampling(), random_state=0)
    >>> choice = sel.select(snap)
    >>> choice.arm_id in snap.ids, bool(abs(choice.probabilities.sum() - 1) < 1e-9)
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Protocol

import numpy as np

from adlens.bandit import native_thompson

__all__ = [
    "Weights",
    "Prior",
    "ArmSnapshot",
    "normalise_quality",
    "novelty_from_impressions",
    "duplicate_flags",
    "default_features",
    "posterior_mean",
    "composite",
    "Policy",
    "ThompsonSampling",
    "UCB1",
    "EpsilonGreedy",
    "LinUCB",
    "POLICIES",
    "policy_from_spec",
    "LinearState",
    "Choice",
    "Selector",
]


# --------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class Weights:
    """Weights of the seed's composite ``w1*quality + w2*CTR/ctr_scale + w3*novelty - penalties``.

    ``quality`` (w1) multiplies quality in [0, 1]; ``ctr`` (w2) multiplies ``CTR / ctr_scale``;
    ``novelty`` (w3) multiplies novelty in [0, 1]; ``duplicate_penalty`` is subtracted from every
    duplicate that is not its group's best; ``brand_safety_penalty`` multiplies brand risk in [0, 1].

    Example::

        >>> Weights.from_dict({"quality": 0.2, "ctr": 0.8}).novelty
        0.1
    """

    quality: float = 0.3
    ctr: float = 0.6
    novelty: float = 0.1
    duplicate_penalty: float = 0.5
    brand_safety_penalty: float = 1.0
    ctr_scale: float = 0.05

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise ValueError(f"Weights.{f.name} must be a number, got {v!r}")
            if not math.isfinite(float(v)):
                raise ValueError(f"Weights.{f.name} must be finite, got {v!r}")
            if v < 0:
                raise ValueError(f"Weights.{f.name} must be >= 0, got {v!r}")
            object.__setattr__(self, f.name, float(v))
        if self.ctr_scale <= 0:
            raise ValueError(f"Weights.ctr_scale must be > 0, got {self.ctr_scale!r}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Weights:
        """Build from a mapping; missing keys keep their defaults, unknown keys raise ValueError."""
        if not isinstance(d, Mapping):
            raise ValueError(f"weights must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        for k in d:
            if k not in known:
                raise ValueError(f"unknown weight {k!r}; expected one of {sorted(known)}")
        return cls(**dict(d))


@dataclass(frozen=True)
class Prior:
    """Cold-start prior: an arm's CTR starts from its predicted quality, worth ``strength`` impressions.

    Prior mean ``m(q) = ctr_low + (ctr_high - ctr_low) * q`` (unknown quality -> q = 0.5); the
    posterior after ``clicks`` in ``impressions`` is ``Beta(strength*m + clicks,
    strength*(1-m) + impressions - clicks)``.

    Example::

        >>> Prior().mean(np.array([0.0, 1.0, np.nan])).round(4).tolist()
        [0.005, 0.05, 0.0275]
    """

    strength: float = 20.0
    ctr_low: float = 0.005
    ctr_high: float = 0.05

    def __post_init__(self) -> None:
        for name in ("strength", "ctr_low", "ctr_high"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise ValueError(f"Prior.{name} must be a number, got {v!r}")
            object.__setattr__(self, name, float(v))
        # strength 0 would make a never-shown arm's posterior undefined (0/0)
        if not (math.isfinite(self.strength) and self.strength > 0):
            raise ValueError(f"Prior.strength must be > 0, got {self.strength!r}")
        if not (0 < self.ctr_low <= self.ctr_high < 1):
            raise ValueError(
                f"Prior needs 0 < ctr_low <= ctr_high < 1, got ctr_low={self.ctr_low!r}, ctr_high={self.ctr_high!r}"
            )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Prior:
        known = {f.name for f in fields(cls)}
        for k in d:
            if k not in known:
                raise ValueError(f"unknown prior parameter {k!r}; expected one of {sorted(known)}")
        return cls(**dict(d))

    def mean(self, quality: np.ndarray) -> np.ndarray:
        """Prior CTR mean per arm, shape (K,); NaN quality counts as 0.5."""
        q = np.asarray(quality, dtype=float)
        q = np.where(np.isnan(q), 0.5, np.minimum(np.maximum(q, 0.0), 1.0))  # ufuncs: np.clip is slow
        return self.ctr_low + (self.ctr_high - self.ctr_low) * q

    def beta_params(
        self, quality: np.ndarray, clicks: np.ndarray, impressions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior ``(alpha, beta)``, each shape (K,)."""
        m = self.mean(quality)
        c = np.asarray(clicks, dtype=float)
        n = np.asarray(impressions, dtype=float)
        return self.strength * m + c, self.strength * (1.0 - m) + n - c


# --------------------------------------------------------------------------------------------------
# the candidates


def _as_1d(name: str, v: Any, k: int | None, dtype=float) -> np.ndarray:
    a = np.asarray(v, dtype=dtype)
    if a.ndim != 1:
        raise ValueError(f"ArmSnapshot.{name} must be 1-D, got shape {a.shape}")
    if k is not None and a.shape[0] != k:
        raise ValueError(f"ArmSnapshot.{name} has {a.shape[0]} entries but there are {k} ids")
    return a


@dataclass
class ArmSnapshot:
    """The K candidates of one decision and what is known about them; every array has shape (K,).

    ``quality`` in [0, 1] (NaN = unknown), ``clicks <= impressions`` (floats: they may be decayed),
    optional ``novelty`` in [0, 1] (default :func:`novelty_from_impressions`), ``duplicate`` flags
    (default all False), ``brand_risk`` in [0, 1] (default 0) and ``x`` (K, d) candidate features for
    contextual policies (default :func:`default_features`). Invalid input raises ValueError.

    Example::

        >>> ArmSnapshot(("a", "b"), np.array([0.5, 0.7]), np.array([1.0, 0.0]), np.array([10.0, 0.0])).k
        2
    """

    ids: tuple[str, ...]
    quality: np.ndarray
    clicks: np.ndarray
    impressions: np.ndarray
    novelty: np.ndarray | None = None
    duplicate: np.ndarray | None = None
    brand_risk: np.ndarray | None = None
    x: np.ndarray | None = None

    def __post_init__(self) -> None:
        # on the serving path: cheap reductions (min/max/fmin) instead of np.all/np.any calls
        ids = self.ids
        if isinstance(ids, str) or not isinstance(ids, (tuple, list, Sequence, np.ndarray)):
            raise ValueError("ArmSnapshot.ids must be a sequence of strings")
        if type(ids) is not tuple or not all(type(i) is str for i in ids):
            ids = self.ids = tuple(str(i) for i in ids)
        k = len(ids)
        if k < 1:
            raise ValueError("ArmSnapshot needs at least one candidate (ids is empty)")
        if len(set(ids)) != k:
            seen: set[str] = set()
            dup = next(i for i in ids if i in seen or seen.add(i))
            raise ValueError(f"ArmSnapshot.ids must be unique; {dup!r} appears more than once")
        q = self.quality = _as_1d("quality", self.quality, k)
        # fmin/fmax skip NaN (= unknown quality) but catch +-inf and out-of-range values
        if np.fmin.reduce(q) < 0 or np.fmax.reduce(q) > 1:
            raise ValueError("ArmSnapshot.quality must lie in [0, 1] (NaN = unknown); use normalise_quality()")
        c = self.clicks = _as_1d("clicks", self.clicks, k)
        n = self.impressions = _as_1d("impressions", self.impressions, k)
        for name, a in (("clicks", c), ("impressions", n)):
            if not (a.min() >= 0 and a.max() < math.inf):  # NaN fails both comparisons
                bad = int(np.flatnonzero(~np.isfinite(a) | (a < 0))[0])
                raise ValueError(f"ArmSnapshot.{name} must be finite and >= 0; arm {ids[bad]!r} has {float(a[bad])!r}")
        if (c > n).any():
            bad = int(np.flatnonzero(c > n)[0])
            raise ValueError(
                f"ArmSnapshot: arm {ids[bad]!r} has more clicks ({c[bad]:g}) than impressions ({n[bad]:g})"
            )
        for name in ("novelty", "brand_risk"):
            v = getattr(self, name)
            if v is not None:
                a = _as_1d(name, v, k)
                if not (a.min() >= 0 and a.max() <= 1):
                    raise ValueError(f"ArmSnapshot.{name} must be finite and in [0, 1]")
                setattr(self, name, a)
        if self.duplicate is not None:
            self.duplicate = _as_1d("duplicate", self.duplicate, k, dtype=bool)
        if self.x is not None:
            x = np.asarray(self.x, dtype=float)
            if x.ndim != 2 or x.shape[0] != k:
                raise ValueError(f"ArmSnapshot.x must have shape (K={k}, d), got {x.shape}")
            if not math.isfinite(x.sum()):
                raise ValueError("ArmSnapshot.x must be finite")
            self.x = x

    @property
    def k(self) -> int:
        return len(self.ids)


def normalise_quality(score_1_10: Any) -> np.ndarray:
    """Student score on the seed's 1-10 scale -> [0, 1]: ``(s - 1) / 9`` clipped; NaN/None stay NaN.

    Example::

        >>> normalise_quality([1, 5.5, 10, 12, None]).tolist()
        [0.0, 0.5, 1.0, 1.0, nan]
    """
    s = np.asarray(score_1_10, dtype=float)
    return np.minimum(np.maximum((s - 1.0) / 9.0, 0.0), 1.0)  # keeps NaN, like np.clip (~5x cheaper on 20 values)


def novelty_from_impressions(impressions: Any, scale: float = 1000.0) -> np.ndarray:
    """Novelty in (0, 1]: ``1 / (1 + impressions / scale)`` -- a fresh creative is 1, worn-out -> 0."""
    if not scale > 0:
        raise ValueError(f"novelty scale must be > 0, got {scale!r}")
    return 1.0 / (1.0 + np.asarray(impressions, dtype=float) / scale)


def duplicate_flags(group_ids: Sequence[str | None], scores: np.ndarray) -> np.ndarray:
    """True for every member of a duplicate group except the group's best-scored one.

    ``group_ids[i]`` is the near-duplicate group of candidate i (None = no group); NaN scores count as
    worst; ties go to the first. Returns a bool array of shape (K,).

    Example::

        >>> duplicate_flags(["g", None, "g", "g"], np.array([0.2, 0.9, 0.7, 0.7])).tolist()
        [True, False, False, True]
    """
    s = np.asarray(scores, dtype=float)
    if s.ndim != 1 or s.shape[0] != len(group_ids):
        raise ValueError(f"duplicate_flags: {len(group_ids)} group ids but scores has shape {s.shape}")
    s = np.where(np.isnan(s), -np.inf, s)
    out = np.zeros(len(group_ids), dtype=bool)
    best: dict[str, int] = {}
    for i, g in enumerate(group_ids):
        if g is None:
            continue
        j = best.get(g)
        if j is None:
            best[g] = i
        elif s[i] > s[j]:
            out[j] = True
            best[g] = i
        else:
            out[i] = True
    return out


def posterior_mean(snap: ArmSnapshot, prior: Prior) -> np.ndarray:
    """Posterior mean CTR per arm, shape (K,): ``(strength*m + clicks) / (strength + impressions)``."""
    a, b = prior.beta_params(snap.quality, snap.clicks, snap.impressions)
    return a / (a + b)


def default_features(snap: ArmSnapshot, prior: Prior, ctr_scale: float = 0.05) -> np.ndarray:
    """Candidate features for LinUCB when ``snap.x`` is None, shape (K, 4).

    Columns: ``[1, quality (0.5 if unknown), posterior-mean CTR / ctr_scale, novelty]``. The shared
    linear model learns how much each of these really predicts a click, so a brand-new arm gets a
    sensible score from its quality and prior alone.
    """
    q = np.where(np.isnan(snap.quality), 0.5, snap.quality)
    nov = snap.novelty if snap.novelty is not None else novelty_from_impressions(snap.impressions)
    return np.column_stack([np.ones(snap.k), q, posterior_mean(snap, prior) / ctr_scale, nov])


# --------------------------------------------------------------------------------------------------
# composite


def _fixed_terms(snap: ArmSnapshot, w: Weights) -> dict[str, np.ndarray]:
    """The non-CTR parts of the composite (they do not depend on the policy)."""
    k = snap.k
    q = np.where(np.isnan(snap.quality), 0.5, snap.quality)  # unknown quality is neutral, as in the prior
    nov = snap.novelty if snap.novelty is not None else novelty_from_impressions(snap.impressions)
    dup = w.duplicate_penalty * snap.duplicate.astype(float) if snap.duplicate is not None else np.zeros(k)
    brand = w.brand_safety_penalty * snap.brand_risk if snap.brand_risk is not None else np.zeros(k)
    fixed = w.quality * q + w.novelty * nov - dup - brand
    return {"quality": q, "novelty": nov, "duplicate_penalty": dup, "brand_penalty": brand, "_fixed": fixed}


def composite(snap: ArmSnapshot, weights: Weights, ctr: np.ndarray) -> np.ndarray:
    """The seed's composite for a given CTR term, shape (K,)."""
    return _fixed_terms(snap, weights)["_fixed"] + weights.ctr * np.asarray(ctr, dtype=float) / weights.ctr_scale


def _components(terms: dict[str, np.ndarray], w: Weights, ctr: np.ndarray, **extra: np.ndarray) -> dict[str, np.ndarray]:
    total = terms["_fixed"] + w.ctr * ctr / w.ctr_scale
    out = {
        "quality": terms["quality"],
        "ctr": ctr,
        "novelty": terms["novelty"],
        "duplicate_penalty": terms["duplicate_penalty"],
        "brand_penalty": terms["brand_penalty"],
        "total": total,
        # weighted contributions: quality_term + ctr_term + novelty_term - penalties == total
        "quality_term": w.quality * terms["quality"],
        "ctr_term": w.ctr * ctr / w.ctr_scale,
        "novelty_term": w.novelty * terms["novelty"],
    }
    out.update(extra)
    return out


def _argmax_split(total: np.ndarray) -> np.ndarray:
    """Indicator of the maximum, ties split evenly; shape (K,), sums to 1."""
    m = total.max()
    # a relative tolerance so that equal composites computed in different orders still tie
    best = total >= m - 1e-12 * max(1.0, abs(m))
    return best / best.sum()


# --------------------------------------------------------------------------------------------------
# fast Thompson propensities
#
# numpy's Generator.beta costs ~70 ns per draw here (1.4 ms for 1000 x 20 draws) and exp/log/pow
# cost ~10 ns per element, while a plain float32 multiply costs ~0.25 ns. So we read windows of a
# fixed table of N(0,1) and Exp(1) variates at offsets drawn from the caller's rng, and turn them
# into Gamma draws with the Wilson-Hilferty cube transform (a polynomial; the table's normals are
# clipped at -2.6 so that the cube root stays positive for every shape >= 1), boosting shapes < 1
# with Gamma(a) = Gamma(a+1) * U^(1/a) (the only exp, and only for those arms). Within one call the
# draws are iid; the propensities match exact Beta sampling to ~0.002 (tested). The decision is
# still *exactly* the logged propensity, because the arm is sampled from the returned probabilities.
# Arrays are laid out (K, n): per-arm constants broadcast down columns and the per-draw maximum is
# a fast reduction over rows.
# When the C kernel of :mod:`adlens.bandit.native_thompson` is available (a C compiler on the
# machine, ADLENS_NATIVE not 0) the same draws are turned into win counts in one call instead.

_POOL_SIZE = 1 << 18
_Z_CLIP = -2.6
_POOL: tuple[np.ndarray, np.ndarray] | None = None


def _pool() -> tuple[np.ndarray, np.ndarray]:
    global _POOL
    if _POOL is None:
        g = np.random.default_rng(0xADC0FFEE)  # a constant table; per-call randomness is the offsets
        z = np.maximum(g.standard_normal(_POOL_SIZE, dtype=np.float32), np.float32(_Z_CLIP))
        _POOL = (z, g.standard_exponential(_POOL_SIZE, dtype=np.float32))
    return _POOL


def _std_draws(rng: np.random.Generator, k: int, n: int, kind: int) -> np.ndarray:
    """(k, n) standard normals (kind 0, clipped) or exponentials (kind 1), float32, read-only."""
    m = n * k
    if m > _POOL_SIZE // 2:  # too large for the table: fresh draws (2K x n: K > 65 arms at n = 1000)
        if kind == 0:
            return np.maximum(rng.standard_normal((k, n), dtype=np.float32), np.float32(_Z_CLIP))
        return rng.standard_exponential((k, n), dtype=np.float32)
    o = int(rng.integers(0, _POOL_SIZE - m + 1))
    return _pool()[kind][o : o + m].reshape(k, n)


def _gamma_wh(shape: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Wilson-Hilferty Gamma(shape_k) draws from normals z (K, n); shape >= 1.

    ``a * (1 - 1/(9a) + z/(3 sqrt a))^3`` with ``a^(1/3)`` folded into the coefficients.
    """
    c = np.cbrt(shape)
    c1 = (c / (3.0 * np.sqrt(shape))).astype(np.float32)[:, None]
    c0 = (c * (1.0 - 1.0 / (9.0 * shape))).astype(np.float32)[:, None]
    t = z * c1
    t += c0
    g = t * t
    g *= t
    return g


def _beta_draws(alpha: np.ndarray, beta: np.ndarray, n: int, rng: np.random.Generator, exact: bool = False) -> np.ndarray:
    """n independent draws of Beta(alpha_k, beta_k) per arm, shape (K, n)."""
    if exact:
        return rng.beta(alpha[:, None], beta[:, None], size=(alpha.shape[0], n))
    k = alpha.shape[0]
    small = alpha < 1.0
    m = int(np.count_nonzero(small))
    # arms with shape < 1 first, so that their U^(1/a) boost is one in-place pass over a row block
    order = np.argsort(~small, kind="stable") if 0 < m < k else None
    a, b, boost = (alpha, beta, small) if order is None else (alpha[order], beta[order], small[order])
    # both Gamma draws of every arm in one (2K, n) pass
    g = _gamma_wh(np.concatenate([np.where(boost, a + 1.0, a), b]), _std_draws(rng, 2 * k, n, 0))
    ga, gb = g[:k], g[k:]
    if m:
        e = _std_draws(rng, m, n, 1) * (-1.0 / a[:m]).astype(np.float32)[:, None]
        ga[:m] *= np.exp(e, out=e)
    gb += ga
    # gb > 0: the clipped normals keep every cube strictly positive
    ga /= gb
    if order is not None:
        out = np.empty_like(ga)
        out[order] = ga
        return out
    return ga


def _win_frequencies(draws: np.ndarray, scale: float, fixed: np.ndarray) -> np.ndarray:
    """How often each arm has the largest ``scale * draw + fixed`` over the n draws; (K,) sums to 1.

    ``draws`` (K, n) is overwritten (it is a fresh array from :func:`_beta_draws`).
    """
    tot = draws
    tot *= tot.dtype.type(scale)
    tot += fixed.astype(tot.dtype)[:, None]
    top = tot == tot.max(axis=0)
    # uint8 row sums: ~2x faster than count_nonzero(axis=1) on (20, 1000)
    wins = np.add.reduce(top.view(np.uint8), axis=1, dtype=np.int64)
    return wins / wins.sum()  # exact ties (float32) are counted for both arms, hence .sum()


# --------------------------------------------------------------------------------------------------
# policies


class Policy(Protocol):
    name: ClassVar[str]
    contextual: ClassVar[bool]

    def to_dict(self) -> dict[str, Any]: ...

    def probabilities(
        self,
        snap: ArmSnapshot,
        weights: Weights,
        prior: Prior,
        rng: np.random.Generator,
        state: LinearState | None = None,
        total_impressions: float | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...


def _policy_dict(p: Any) -> dict[str, Any]:
    return {"name": p.name, **{f.name: getattr(p, f.name) for f in fields(p)}}


@dataclass(frozen=True)
class ThompsonSampling:
    """Thompson sampling on the composite: the probability of an arm is how often it wins ``n_mc``
    joint draws from the Beta posteriors (Monte Carlo propensity, >= 1/n_mc when chosen).

    ``exact=True`` uses numpy's Beta sampler (~5x slower) instead of the fast pooled one.

    Example::

        >>> p, comp = ThompsonSampling(n_mc=2000).probabilities(
        ...     ArmSnapshot(("a", "b"), [0.5, 0.5], [50.0, 0.0], [100.0, 100.0]),
        ...     Weights(), Prior(), np.random.default_rng(0))
        >>> p.round(2).tolist()
        [1.0, 0.0]
    """

    n_mc: int = 1000
    exact: bool = False
    name: ClassVar[str] = "thompson"
    contextual: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if isinstance(self.n_mc, bool) or not isinstance(self.n_mc, (int, np.integer)) or self.n_mc < 1:
            raise ValueError(f"thompson: n_mc must be an integer >= 1, got {self.n_mc!r}")

    def to_dict(self) -> dict[str, Any]:
        return _policy_dict(self)

    def probabilities(self, snap, weights, prior, rng, state=None, total_impressions=None):
        terms = _fixed_terms(snap, weights)
        a, b = prior.beta_params(snap.quality, snap.clicks, snap.impressions)
        mean = a / (a + b)
        comps = _components(terms, weights, mean, ctr_mean=mean)
        k = snap.k
        s = weights.ctr / weights.ctr_scale
        if k == 1:
            return np.ones(1), comps
        if s == 0.0:  # the CTR does not enter the composite: nothing to sample
            return _argmax_split(comps["total"]), comps
        if not isinstance(rng, np.random.Generator):  # an int seed or None
            rng = np.random.default_rng(rng)
        n = int(self.n_mc)
        if not self.exact and native_thompson.available():  # same draws, one C call (its docs)
            z = _std_draws(rng, 2 * k, n, 0)
            m = int(np.count_nonzero(a < 1.0))
            wins = native_thompson.win_counts(a, b, z, _std_draws(rng, m, n, 1) if m else None, s, terms["_fixed"])
            return wins / wins.sum(), comps
        draws = _beta_draws(a, b, n, rng, exact=self.exact)
        return _win_frequencies(draws, s, terms["_fixed"]), comps


def _check_nonneg(policy: str, name: str, v: Any, upper: float | None = None) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{policy}: {name} must be a finite number >= 0, got {v!r}")
    if upper is not None and v > upper:
        raise ValueError(f"{policy}: {name} must be <= {upper}, got {v!r}")


@dataclass(frozen=True)
class UCB1:
    """UCB1 on the composite with the Beta posterior as the estimate.

    ``ctr_ucb = posterior_mean + alpha * sqrt(2 ln N / n_eff)`` with ``n_eff = impressions +
    strength`` and ``N = total impressions + sum of strengths``; deterministic argmax, ties split.
    The bound is Hoeffding's for rewards in [0, 1]; clicks at a few percent have a standard deviation
    of ~0.2, so ``alpha ~ 0.2`` is the variance-matched setting (alpha=1 explores for a long time).

    Example (hand-computed in the tests)::

        >>> p, comp = UCB1().probabilities(
        ...     ArmSnapshot(("a", "b"), [0.5, 0.5], [5.0, 0.0], [80.0, 0.0]),
        ...     Weights(quality=0, novelty=0), Prior(), None)
        >>> p.tolist()
        [0.0, 1.0]
    """

    alpha: float = 1.0
    name: ClassVar[str] = "ucb1"
    contextual: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_nonneg("ucb1", "alpha", self.alpha)

    def to_dict(self) -> dict[str, Any]:
        return _policy_dict(self)

    def probabilities(self, snap, weights, prior, rng=None, state=None, total_impressions=None):
        terms = _fixed_terms(snap, weights)
        a, b = prior.beta_params(snap.quality, snap.clicks, snap.impressions)
        mean = a / (a + b)
        n_eff = snap.impressions + prior.strength
        total = float(snap.impressions.sum()) if total_impressions is None else float(total_impressions)
        if not (math.isfinite(total) and total >= 0):
            raise ValueError(f"ucb1: total_impressions must be finite and >= 0, got {total_impressions!r}")
        big_n = total + prior.strength * snap.k
        bonus = self.alpha * np.sqrt(2.0 * math.log(max(big_n, 1.0)) / n_eff)
        comps = _components(terms, weights, mean + bonus, ctr_mean=mean, ctr_bonus=bonus)
        return _argmax_split(comps["total"]), comps


@dataclass(frozen=True)
class EpsilonGreedy:
    """Greedy on the posterior-mean composite with probability 1-epsilon, uniform with epsilon.

    ``p = epsilon / K + (1 - epsilon) * [argmax]`` (ties split).
    """

    epsilon: float = 0.1
    name: ClassVar[str] = "epsilon_greedy"
    contextual: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_nonneg("epsilon_greedy", "epsilon", self.epsilon, upper=1.0)

    def to_dict(self) -> dict[str, Any]:
        return _policy_dict(self)

    def probabilities(self, snap, weights, prior, rng=None, state=None, total_impressions=None):
        terms = _fixed_terms(snap, weights)
        mean = posterior_mean(snap, prior)
        comps = _components(terms, weights, mean, ctr_mean=mean)
        p = self.epsilon / snap.k + (1.0 - self.epsilon) * _argmax_split(comps["total"])
        return p, comps


@dataclass(frozen=True)
class LinUCB:
    """LinUCB with ONE ridge model shared by all candidates (reward = click).

    ``theta = A^-1 b``; the CTR term of arm k is ``theta . x_k + alpha * sqrt(x_k^T A^-1 x_k)``
    over its features ``x_k`` (``snap.x`` or :func:`default_features`). Sharing the model is what
    lets a brand-new creative be scored from its features. Deterministic argmax, ties split.
    The bonus is on the click-probability scale, so ``alpha`` well below 1 suits CTRs of a few %.
    """

    alpha: float = 1.0
    ridge: float = 1.0
    name: ClassVar[str] = "linucb"
    contextual: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_nonneg("linucb", "alpha", self.alpha)
        _check_nonneg("linucb", "ridge", self.ridge)
        if self.ridge <= 0:
            raise ValueError(f"linucb: ridge must be > 0, got {self.ridge!r}")

    def to_dict(self) -> dict[str, Any]:
        return _policy_dict(self)

    def features(self, snap: ArmSnapshot, prior: Prior, weights: Weights) -> np.ndarray:
        return snap.x if snap.x is not None else default_features(snap, prior, weights.ctr_scale)

    def probabilities(self, snap, weights, prior, rng=None, state=None, total_impressions=None):
        p, comps, _ = self.probabilities_and_features(snap, weights, prior, state)
        return p, comps

    def probabilities_and_features(self, snap, weights, prior, state=None):
        """Like :meth:`probabilities`, also returning the (K, d) features used (one computation)."""
        terms = _fixed_terms(snap, weights)
        x = self.features(snap, prior, weights)
        if state is None:  # no feedback yet: theta = 0, A^-1 = I / ridge
            pred = np.zeros(snap.k)
            var = (x * x).sum(axis=1) / self.ridge
        else:
            if state.d != x.shape[1]:
                raise ValueError(f"linucb: the state has d={state.d} but the candidate features have d={x.shape[1]}")
            a_inv = state.a_inv()
            pred = x @ (a_inv @ state.b)
            var = ((x @ a_inv) * x).sum(axis=1)
        bonus = self.alpha * np.sqrt(np.maximum(var, 0.0))
        comps = _components(terms, weights, pred + bonus, ctr_pred=pred, ctr_bonus=bonus)
        return _argmax_split(comps["total"]), comps, x


POLICIES: dict[str, type] = {
    "thompson": ThompsonSampling,
    "ucb1": UCB1,
    "epsilon_greedy": EpsilonGreedy,
    "linucb": LinUCB,
}
_ALIASES = {"ts": "thompson", "thompson_sampling": "thompson", "ucb": "ucb1", "egreedy": "epsilon_greedy",
            "epsilon-greedy": "epsilon_greedy"}


def _parse_value(policy: str, cls: type, key: str, raw: Any) -> Any:
    types = {f.name: f.type for f in fields(cls)}
    if key not in types:
        raise ValueError(f"policy {policy!r} has no parameter {key!r}; expected one of {sorted(types)}")
    t = types[key] if isinstance(types[key], str) else types[key].__name__
    if not isinstance(raw, str):
        return raw
    s = raw.strip()
    try:
        if t == "int":
            return int(s)
        if t == "float":
            return float(s)
        if t == "bool":
            if s.lower() in ("1", "true", "yes"):
                return True
            if s.lower() in ("0", "false", "no"):
                return False
            raise ValueError(s)
    except ValueError:
        raise ValueError(f"policy {policy!r}: parameter {key}={raw!r} is not a valid {t}") from None
    return s


def policy_from_spec(spec: str | Mapping[str, Any] | Policy) -> Policy:
    """Build a policy from ``"name"``, ``"name:key=value,key=value"`` or ``{"name": ..., **params}``.

    Names: ``thompson``, ``ucb1``, ``epsilon_greedy``, ``linucb``. A bad spec raises ValueError naming it.

    Example::

        >>> policy_from_spec("ucb1:alpha=0.5")
        UCB1(alpha=0.5)
        >>> policy_from_spec({"name": "thompson", "n_mc": 500}).n_mc
        500
    """
    if any(isinstance(spec, c) for c in POLICIES.values()):
        return spec  # type: ignore[return-value]
    if isinstance(spec, str):
        name, _, rest = spec.strip().partition(":")
        params: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            k, eq, v = part.partition("=")
            if not eq or not k.strip():
                raise ValueError(f"bad policy spec {spec!r}: expected key=value, got {part!r}")
            params[k.strip()] = v
    elif isinstance(spec, Mapping):
        if "name" not in spec:
            raise ValueError(f"bad policy spec {dict(spec)!r}: missing 'name'")
        name = spec["name"]
        params = {k: v for k, v in spec.items() if k not in ("name", "params")}
        if isinstance(spec.get("params"), Mapping):
            params.update(spec["params"])
    else:
        raise ValueError(f"bad policy spec {spec!r}: expected a string or a mapping")
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in POLICIES:
        raise ValueError(f"unknown policy {name!r} in spec {spec!r}; expected one of {sorted(POLICIES)}")
    cls = POLICIES[key]
    kwargs = {k: _parse_value(key, cls, k, v) for k, v in params.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # e.g. a wrong type that slipped through
        raise ValueError(f"bad policy spec {spec!r}: {e}") from None


# --------------------------------------------------------------------------------------------------
# LinUCB state


@dataclass
class LinearState:
    """Sufficient statistics of the shared ridge model: ``A = ridge*I + sum x x^T`` (d, d), ``b = sum r x`` (d,).

    Update ``A`` only through :meth:`partial_fit` (it keeps the cached ``A^-1`` in sync); ``b`` may
    also grow through :meth:`add_reward` when a click arrives after its impression was counted.

    Example::

        >>> s = LinearState.empty(2, ridge=1.0).partial_fit(np.array([[1.0, 0.0]]), np.array([1.0]))
        >>> s.theta().tolist()
        [0.5, 0.0]
    """

    A: np.ndarray
    b: np.ndarray
    n: int = 0
    _a_inv: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    _sm_updates: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.A = np.array(self.A, dtype=float)
        self.b = np.array(self.b, dtype=float)
        d = self.b.shape[0] if self.b.ndim == 1 else -1
        if d < 1 or self.A.shape != (d, d):
            raise ValueError(f"LinearState: A must be (d, d) and b (d,), got {self.A.shape} and {self.b.shape}")
        if not (np.all(np.isfinite(self.A)) and np.all(np.isfinite(self.b))):
            raise ValueError("LinearState: A and b must be finite")
        if not np.allclose(self.A, self.A.T, rtol=1e-9, atol=1e-9):
            raise ValueError("LinearState: A must be symmetric")

    @property
    def d(self) -> int:
        return self.b.shape[0]

    @classmethod
    def empty(cls, d: int, ridge: float = 1.0) -> LinearState:
        if d < 1 or not ridge > 0:
            raise ValueError(f"LinearState.empty needs d >= 1 and ridge > 0, got d={d}, ridge={ridge}")
        return cls(A=ridge * np.eye(d), b=np.zeros(d))

    def a_inv(self) -> np.ndarray:
        """``A^-1``, cached until the next update."""
        if self._a_inv is None:
            self._a_inv = np.linalg.inv(self.A)
        return self._a_inv

    def theta(self) -> np.ndarray:
        return self.a_inv() @ self.b

    def partial_fit(self, x: np.ndarray, rewards: Any) -> LinearState:
        """Add observations: ``x`` (d,) or (n, d), ``rewards`` scalar or (n,). Returns self."""
        x = np.asarray(x, dtype=float)
        if x.ndim == 1:
            x = x[None, :]
        r = np.atleast_1d(np.asarray(rewards, dtype=float))
        if x.ndim != 2 or x.shape[1] != self.d or r.shape != (x.shape[0],):
            raise ValueError(f"LinearState.partial_fit: x must be (n, {self.d}) and rewards (n,), got {x.shape} and {r.shape}")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(r))):
            raise ValueError("LinearState.partial_fit: x and rewards must be finite")
        if x.shape[0] == 1 and self._a_inv is not None and self._sm_updates < 1000:
            # Sherman-Morrison keeps the per-feedback update O(d^2); a fresh inverse every 1000
            # updates stops round-off from accumulating
            v = self._a_inv @ x[0]
            self._a_inv = self._a_inv - np.outer(v, v) / (1.0 + x[0] @ v)
            self._sm_updates += 1
        else:
            self._a_inv = None
            self._sm_updates = 0
        self.A += x.T @ x
        self.b += x.T @ r
        self.n += x.shape[0]
        return self

    def add_reward(self, x: np.ndarray, reward: float) -> LinearState:
        """Add a reward that arrives after its impression was already counted: ``b += reward * x``.

        (``A`` only changes through :meth:`partial_fit`, which keeps the cached inverse in sync.)
        """
        x = np.asarray(x, dtype=float)
        if x.shape != (self.d,) or not np.all(np.isfinite(x)) or not math.isfinite(reward):
            raise ValueError(f"LinearState.add_reward: x must be ({self.d},) finite and reward finite")
        self.b = self.b + reward * x
        return self

    def to_json(self) -> dict[str, Any]:
        return {"d": self.d, "n": self.n, "A": self.A.tolist(), "b": self.b.tolist()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LinearState:
        try:
            return cls(A=np.asarray(d["A"], dtype=float), b=np.asarray(d["b"], dtype=float), n=int(d.get("n", 0)))
        except KeyError as e:
            raise ValueError(f"LinearState.from_json: missing key {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            if isinstance(e, ValueError) and str(e).startswith("LinearState"):
                raise
            raise ValueError(f"LinearState.from_json: {e}") from None


# --------------------------------------------------------------------------------------------------
# the façade


@dataclass(frozen=True)
class Choice:
    """One decision: the served arm, its logging propensity, and the full distribution it came from.

    ``features`` is the chosen arm's feature row for contextual policies (feed it to
    ``LinearState.partial_fit`` when the click or non-click arrives), else None.
    """

    index: int
    arm_id: str
    propensity: float
    probabilities: np.ndarray
    components: dict[str, np.ndarray]
    policy: str = ""
    features: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (arrays -> lists)."""
        return {
            "index": self.index,
            "arm_id": self.arm_id,
            "propensity": self.propensity,
            "policy": self.policy,
            "probabilities": self.probabilities.tolist(),
            "components": {k: np.asarray(v).tolist() for k, v in self.components.items()},
            "features": None if self.features is None else self.features.tolist(),
        }


class Selector:
    """Policy + weights + prior + rng: turns an :class:`ArmSnapshot` into a sampled :class:`Choice`.

    ``policy`` may be a policy object or a spec accepted by :func:`policy_from_spec`.

    Example::

        >>> sel = Selector("epsilon_greedy:epsilon=0.2", random_state=1)
        >>> snap = ArmSnapshot(("a", "b"), [0.9, 0.1], [0.0, 0.0], [0.0, 0.0])
        >>> sel.probabilities(snap).tolist()
        [0.9, 0.1]
    """

    def __init__(self, policy: Policy | str | Mapping[str, Any], weights: Weights = Weights(), prior: Prior = Prior(),
                 random_state: int | np.random.Generator | None = None) -> None:
        self.policy = policy_from_spec(policy)
        if not isinstance(weights, Weights):
            raise ValueError(f"weights must be a Weights, got {type(weights).__name__}")
        if not isinstance(prior, Prior):
            raise ValueError(f"prior must be a Prior, got {type(prior).__name__}")
        self.weights = weights
        self.prior = prior
        self.rng = np.random.default_rng(random_state)

    def __repr__(self) -> str:
        return f"Selector({self.policy!r}, {self.weights!r}, {self.prior!r})"

    def _probs(self, snap: ArmSnapshot, state, total_impressions):
        if not isinstance(snap, ArmSnapshot):
            raise ValueError(f"expected an ArmSnapshot, got {type(snap).__name__}")
        return self.policy.probabilities(snap, self.weights, self.prior, self.rng, state=state,
                                         total_impressions=total_impressions)

    def probabilities(self, snap: ArmSnapshot, state: LinearState | None = None,
                      total_impressions: float | None = None) -> np.ndarray:
        """Selection probabilities, shape (K,), summing to 1."""
        return self._probs(snap, state, total_impressions)[0]

    def select(self, snap: ArmSnapshot, state: LinearState | None = None,
               total_impressions: float | None = None) -> Choice:
        """Sample the arm to serve from the policy's probabilities (so the propensity is exact)."""
        feats = None
        if getattr(self.policy, "contextual", False):
            if not isinstance(snap, ArmSnapshot):
                raise ValueError(f"expected an ArmSnapshot, got {type(snap).__name__}")
            p, comps, x = self.policy.probabilities_and_features(snap, self.weights, self.prior, state)
            i = int(self.sample_indices(p))
            feats = x[i].copy()
        else:
            p, comps = self._probs(snap, state, total_impressions)
            i = int(self.sample_indices(p))
        return Choice(index=i, arm_id=snap.ids[i], propensity=float(p[i]), probabilities=p, components=comps,
                      policy=self.policy.name, features=feats)

    def sample_indices(self, p: np.ndarray, size: int | None = None) -> np.ndarray | int:
        """Draw arm indices from probabilities p (K,) with this selector's rng (an int when size is None)."""
        c = np.cumsum(p)
        u = self.rng.random(size) * c[-1]
        # side="right" never lands on a zero-probability arm (its cumsum equals its predecessor's)
        i = np.minimum(np.searchsorted(c, u, side="right"), len(p) - 1)
        if size is None:
            i = int(i)
            while p[i] <= 0:  # only reachable through float round-off at the very end
                i -= 1
            return i
        bad = p[i] <= 0
        while bad.any():
            i[bad] -= 1
            bad = p[i] <= 0
        return i

    def new_state(self, d: int) -> LinearState:
        """An empty :class:`LinearState` for this selector's policy (ridge from LinUCB, else 1)."""
        return LinearState.empty(d, getattr(self.policy, "ridge", 1.0))
