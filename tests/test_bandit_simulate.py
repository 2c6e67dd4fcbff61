"""Simulator: environment, online runs, policy comparison, SVG chart (adlens.bandit.simulate)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from adlens.bandit import (
    SIM_WEIGHTS,
    UCB1,
    EpsilonGreedy,
    LinUCB,
    Selector,
    ThompsonSampling,
    compare,
    regret_svg,
    run,
)
from adlens.bandit.simulate import Environment

# one clearly best creative (CTR ~15 % vs ~6 % on average), no context effect: the textbook regime in
# which exploring policies must beat epsilon-greedy's fixed 10 % of wasted traffic
CLEAR_BEST = {"n_arms": 10, "base_ctr": 0.05, "interaction": 0.0,
              "arm_effects": [1.2, 0.6, 0.4, 0.2, 0.0, -0.2, -0.4, -0.6, -0.8, -1.0]}


def test_environment_is_seeded_and_realistic():
    a, b, c = Environment(random_state=1), Environment(random_state=1), Environment(random_state=2)
    np.testing.assert_array_equal(a.bias, b.bias)
    np.testing.assert_array_equal(a.quality, b.quality)
    assert not np.array_equal(a.bias, c.bias)
    for env in (a, c):
        assert env.n_arms == 20
        assert 0.02 <= env.mean_ctr.mean() <= 0.05
        assert np.corrcoef(env.quality, env.mean_ctr)[0, 1] > 0.5  # quality is a useful prior signal
        assert ((env.quality > 0) & (env.quality < 1)).all()
        pr = env.suggested_prior()
        assert pr.ctr_low < pr.ctr_high
    P = a.click_probs(a.contexts(50, np.random.default_rng(0)))
    assert P.shape == (50, 20) and ((P > 0) & (P < 1)).all()
    # context matters: the best arm differs between contexts
    assert len(set(a.click_probs(a.contexts(500, np.random.default_rng(0))).argmax(1))) > 1


def test_environment_validation():
    with pytest.raises(ValueError, match="n_arms"):
        Environment(n_arms=1)
    with pytest.raises(ValueError, match="base_ctr"):
        Environment(base_ctr=1.5)
    with pytest.raises(ValueError, match="arm_effects"):
        Environment(n_arms=3, arm_effects=[0.0, 1.0])


@pytest.mark.parametrize("policy, batch", [(ThompsonSampling(n_mc=100), 1), (EpsilonGreedy(0.2), 7),
                                           (LinUCB(alpha=0.1), 1), (LinUCB(alpha=0.1), 5)])
def test_run_bookkeeping(policy, batch):
    env = Environment(n_arms=6, random_state=0)
    T = 300
    res = run(Selector(policy, SIM_WEIGHTS, env.suggested_prior(), random_state=0), env, T=T, random_state=1,
              batch_size=batch)
    assert res.regret.shape == (T,)
    assert np.all(np.diff(np.r_[0.0, res.regret]) >= -1e-12)  # expected regret per step >= 0
    assert res.impressions.sum() == T and res.clicks.sum() == res.rewards.sum()
    np.testing.assert_allclose(res.log.propensities, res.probs[np.arange(T), res.actions])
    np.testing.assert_allclose(res.probs.sum(1), 1.0)
    np.testing.assert_array_equal(np.bincount(res.actions, minlength=6), res.impressions)
    # the snapshot of request t holds the counts before t's batch
    t = T - 1
    s = res.snapshot(t)
    assert s.impressions.sum() == (t // batch) * batch
    np.testing.assert_allclose(res.log.action_features[t][:, 2], (s.x[:, 2]))
    if policy.contextual:
        assert res.state is not None and res.state.n == T


def test_common_random_numbers_and_reproducibility():
    env = Environment(n_arms=5, random_state=0)
    pr = env.suggested_prior()
    r1 = run(Selector(EpsilonGreedy(0.1), SIM_WEIGHTS, pr, random_state=3), env, T=200, random_state=4)
    r2 = run(Selector(EpsilonGreedy(0.1), SIM_WEIGHTS, pr, random_state=3), env, T=200, random_state=4)
    r3 = run(Selector(UCB1(alpha=0.2), SIM_WEIGHTS, pr, random_state=3), env, T=200, random_state=4)
    np.testing.assert_array_equal(r1.actions, r2.actions)
    np.testing.assert_array_equal(r1.contexts, r3.contexts)  # same traffic for every policy
    with pytest.raises(ValueError, match="batch_size"):
        run(Selector(UCB1(), SIM_WEIGHTS, pr), env, T=10, batch_size=0)
    with pytest.raises(ValueError, match="T must be"):
        run(Selector(UCB1(), SIM_WEIGHTS, pr), env, T=0)


def test_thompson_and_ucb_beat_epsilon_greedy_when_one_creative_is_clearly_best():
    env = Environment(random_state=0, **CLEAR_BEST)
    best, second = np.sort(env.mean_ctr)[::-1][:2]
    assert best - second > 0.05  # the regime this test is about
    out = compare({"thompson": ThompsonSampling(n_mc=200), "ucb1": UCB1(alpha=0.2), "eps": EpsilonGreedy(0.1)},
                  env, T=20_000, seeds=(0, 1, 2), batch_size=20)
    fin = {k: np.array(v["final_regrets"]) for k, v in out["policies"].items()}
    # epsilon-greedy wastes ~10 % x (best - mean) per request: ~0.1 * 0.09 * 20k = 180 clicks
    assert fin["eps"].mean() > 150
    assert fin["thompson"].mean() < 0.6 * fin["eps"].mean(), fin
    assert fin["ucb1"].mean() < 0.6 * fin["eps"].mean(), fin
    assert (fin["thompson"] < fin["eps"]).all() and (fin["ucb1"] < fin["eps"]).all()
    # and they collect more clicks
    assert out["policies"]["thompson"]["clicks_mean"] > out["policies"]["eps"]["clicks_mean"]


def test_linucb_uses_context_to_beat_context_free_policies():
    env = Environment(n_arms=8, base_ctr=0.05, interaction=0.8, random_state=1)
    out = compare({"linucb": LinUCB(alpha=0.1), "thompson": ThompsonSampling(n_mc=100)}, env, T=3000, seeds=(0,),
                  batch_size=10)
    assert out["policies"]["linucb"]["final_regret_mean"] < out["policies"]["thompson"]["final_regret_mean"]


def test_compare_structure_and_svg():
    env = Environment(n_arms=5, random_state=0)
    out = compare({"a<b": EpsilonGreedy(0.1), "ucb": "ucb1:alpha=0.2"}, env, T=400, seeds=(0, 1), n_points=50)
    assert out["T"] == 400 and out["seeds"] == [0, 1] and len(out["t"]) == 50 and out["t"][-1] == 400
    for name in ("a<b", "ucb"):
        p = out["policies"][name]
        assert len(p["final_regrets"]) == 2
        assert p["final_regret_mean"] == pytest.approx(np.mean(p["final_regrets"]))
        assert len(out["curves"][name]["mean"]) == 50
        assert out["curves"][name]["mean"][-1] == pytest.approx(p["final_regret_mean"])
    assert out["policies"]["ucb"]["spec"] == {"name": "ucb1", "alpha": 0.2}
    svg = regret_svg(out, title="Regret & friends")
    root = ET.fromstring(svg)  # well-formed, names escaped
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    assert len(root.findall(f"{ns}polyline")) == 2
    assert len(root.findall(f"{ns}polygon")) == 2  # +-1 sd bands (two seeds)
    texts = " ".join(t.text or "" for t in root.iter(f"{ns}text"))
    assert "a<b" in texts and "cumulative regret" in texts and "decisions" in texts and "Regret & friends" in texts
    # a single run draws too
    res = run(Selector(EpsilonGreedy(0.1), SIM_WEIGHTS, env.suggested_prior(), random_state=0), env, T=100)
    assert ET.fromstring(regret_svg(res)).findall(f"{ns}polyline")
    with pytest.raises(ValueError, match="no curves"):
        regret_svg({"t": [1], "curves": {}})
