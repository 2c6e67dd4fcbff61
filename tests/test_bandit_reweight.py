"""Refitting the composite's weights from logged clicks (adlens.bandit.reweight)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adlens.bandit import Weights, fit_weights
from adlens.bandit.reweight import auc, fit_logistic, log_loss


def synthetic_rows(n: int, coef=(1.0, 2.0, 0.0), intercept=-3.5, seed=0, scale=0.05):
    """Rows whose click log-odds are ``intercept + coef . (quality, ctr/scale, novelty)``."""
    rng = np.random.default_rng(seed)
    q, ctr, nov = rng.random(n), rng.random(n) * scale, rng.random(n)
    z = intercept + coef[0] * q + coef[1] * ctr / scale + coef[2] * nov
    click = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return [{"quality": float(a), "ctr": float(b), "novelty": float(c), "click": int(d)}
            for a, b, c, d in zip(q, ctr, nov, click)]


def test_fit_logistic_matches_the_closed_form_mle():
    # one binary feature: the MLE is b0 = logit(rate at x=0), b1 = logit(rate at x=1) - b0
    x = np.r_[np.zeros(100), np.ones(100)][:, None]
    y = np.r_[np.ones(20), np.zeros(80), np.ones(50), np.zeros(50)]
    b = fit_logistic(x, y, l2=1e-9)
    def logit(p):
        return math.log(p / (1 - p))

    assert b[0] == pytest.approx(logit(0.2), abs=1e-6)
    assert b[1] == pytest.approx(logit(0.5) - logit(0.2), abs=1e-6)
    # with the non-negativity constraint a negative effect is pinned to 0 (intercept = overall rate)
    bn = fit_logistic(1 - x, y, l2=1e-9, nonneg=True)
    assert bn[1] == 0.0 and bn[0] == pytest.approx(logit(70 / 200), abs=1e-6)


def test_auc_and_log_loss_hand_values():
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5  # a tie counts 1/2
    assert auc(np.array([0.1, 0.2]), np.array([1, 1])) is None
    assert log_loss(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(math.log(2))


def test_recovers_the_direction_of_known_weights():
    rows = synthetic_rows(8000, coef=(1.0, 2.0, 0.0))
    current = Weights(quality=0.5, ctr=0.2, novelty=0.3)  # deliberately wrong
    new, rep = fit_weights(rows, current, random_state=0)
    w = np.array([new.quality, new.ctr, new.novelty])
    assert w.sum() == pytest.approx(1.0)  # current w1+w2+w3 is kept
    cos = w @ np.array([1.0, 2.0, 0.0]) / (np.linalg.norm(w) * math.sqrt(5))
    assert cos > 0.97, w
    assert new.ctr > new.quality > new.novelty
    assert new.duplicate_penalty == current.duplicate_penalty and new.ctr_scale == current.ctr_scale
    h = rep["holdout"]
    assert h["auc_after"] > h["auc_before"]
    assert h["log_loss_after"] < h["log_loss_before"] < h["log_loss_baseline"] + 1e-3
    for t in ("quality", "ctr", "novelty"):
        lo, hi = rep["weights_ci"][t]
        assert lo <= getattr(new, t) + 1e-9 and getattr(new, t) <= hi + 1e-9
    lo, hi = rep["coef_ci"]["ctr"]
    assert lo < 2.0 < hi  # the true coefficient is inside its bootstrap CI
    assert rep["n"] == 8000 and rep["n_holdout"] == pytest.approx(1600, abs=2)
    assert rep["clicks"] == sum(r["click"] for r in rows)


def test_harmful_term_gets_zero_weight_and_penalties_are_used():
    rows = synthetic_rows(6000, coef=(1.5, 1.5, -1.5), seed=1)
    for i, r in enumerate(rows):
        r["duplicate"] = int(i % 10 == 0)
        r["brand_risk"] = 0.0
    new, rep = fit_weights(rows, Weights(), random_state=1)
    assert new.novelty == 0.0 and rep["coef"]["novelty"] == 0.0
    assert new.quality == pytest.approx(new.ctr, rel=0.3)


def test_unknown_quality_counts_as_neutral():
    rows = synthetic_rows(300, seed=4)
    rows[0]["quality"] = None  # e.g. a creative the scorer could not score
    _, rep = fit_weights(rows, Weights(), n_boot=10)
    assert rep["n"] == 300


def test_column_mapping_input_and_conversion_target():
    rows = synthetic_rows(500, seed=2)
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    cols["conversion"] = [int(c and i % 2 == 0) for i, c in enumerate(cols["click"])]
    _, rep = fit_weights(cols, Weights(), n_boot=20)
    assert rep["n"] == 500 and rep["conversions"] == sum(cols["conversion"])
    _, rep_c = fit_weights(cols, Weights(), target="conversion", n_boot=20)
    assert rep_c["target"] == "conversion" and rep_c["positives"] == sum(cols["conversion"])


@pytest.mark.parametrize("mutate, msg", [
    (lambda rows: rows[:49], "at least 50"),
    (lambda rows: [dict(r, click=0) for r in rows], "no clicks"),
    (lambda rows: [dict(r, click=1) for r in rows], "every one"),
    (lambda rows: rows[:3] + [{k: v for k, v in rows[3].items() if k != "ctr"}] + rows[4:], "row 3 has no 'ctr'"),
    (lambda rows: rows[:5] + [dict(rows[5], click=2)] + rows[6:], "row 5, 'click' must be 0 or 1"),
    (lambda rows: rows[:7] + [dict(rows[7], quality=1.5)] + rows[8:], r"row 7, 'quality' = 1.5 is outside"),
    (lambda rows: rows[:7] + [dict(rows[7], novelty="high")] + rows[8:], "'high' is not a number"),
])
def test_errors(mutate, msg):
    rows = synthetic_rows(200, seed=3)
    with pytest.raises(ValueError, match=msg):
        fit_weights(mutate(rows), Weights())
