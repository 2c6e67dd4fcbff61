"""Off-policy evaluation: estimators, reward models, targets, log reading (adlens.bandit.ope)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adlens.bandit import (
    SIM_WEIGHTS,
    UCB1,
    EpsilonGreedy,
    LoggedData,
    Selector,
    ThompsonSampling,
    cross_fit_rewards,
    evaluate,
    read_log,
    run,
    target_from_policy,
    target_greedy_model,
    target_uniform,
)
from adlens.bandit.simulate import Environment

# ------------------------------------------------------------------ LoggedData


def tiny_log(**kw) -> LoggedData:
    base = {"actions": np.array([0, 1, 1, 2]), "rewards": np.array([1.0, 0.0, 1.0, 0.0]),
            "propensities": np.array([0.5, 0.25, 0.25, 0.25]), "n_actions": 3}
    base.update(kw)
    return LoggedData(**base)


@pytest.mark.parametrize("kw, msg", [
    ({"propensities": np.array([0.5, 0.0, 0.25, 0.25])}, r"propensities must be in \(0, 1\]; row 1"),
    ({"propensities": np.array([0.5, 1.5, 0.25, 0.25])}, "row 1"),
    ({"rewards": np.array([1.0, np.nan, 0, 0])}, "rewards must be finite"),
    ({"actions": np.array([0, 1, 1, 3])}, "index 3 but there are only 3"),
    ({"actions": np.array([0, 1, 1])}, r"shape \(3,\)"),
    ({"actions": np.array([0.5, 1, 1, 2])}, "integer"),
    ({"mask": np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1], [1, 1, 1]], bool)}, "row 1 served action 1"),
    ({"mask": np.ones((4, 4), bool)}, "inconsistent number of actions"),
    ({"X": np.ones((3, 2))}, "X must be finite"),
])
def test_logged_data_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        tiny_log(**kw)


# ------------------------------------------------------------------ hand-computed estimators


def test_ips_snips_hand_computed():
    log = tiny_log()
    pi = np.tile([0.0, 1.0, 0.0], (4, 1))  # always action 1
    rep = evaluate(log, pi, reward_model=None, n_boot=0)
    # weights: 0, 1/0.25, 1/0.25, 0 = [0, 4, 4, 0]; w*r = [0, 0, 4, 0]
    assert rep["ips"]["value"] == pytest.approx(4 / 4)
    assert rep["snips"]["value"] == pytest.approx(4 / 8)
    assert rep["ess"] == pytest.approx(8**2 / 32)
    assert rep["max_weight"] == 4.0
    assert rep["mean_logged_reward"] == 0.5
    assert rep["dr"] is None and rep["ips"]["ci_low"] is None


def test_dr_hand_computed_with_a_callable_model():
    log = tiny_log()
    q_const = np.array([0.2, 0.3, 0.1])

    def model(train, test):
        return np.tile(q_const, (test.n, 1))

    pi = np.tile([0.5, 0.5, 0.0], (4, 1))
    rep = evaluate(log, pi, reward_model=model, n_boot=0)
    dm = 0.5 * 0.2 + 0.5 * 0.3
    w = np.array([0.5 / 0.5, 0.5 / 0.25, 0.5 / 0.25, 0.0])
    resid = np.array([1 - 0.2, 0 - 0.3, 1 - 0.3, 0 - 0.1])
    assert rep["dm"]["value"] == pytest.approx(dm)
    assert rep["dr"]["value"] == pytest.approx(dm + np.mean(w * resid))
    assert rep["reward_model"] == "model"


def test_target_validation():
    log = tiny_log()
    with pytest.raises(ValueError, match=r"shape \(4, 3\)"):
        evaluate(log, np.ones((4, 2)) / 2)
    with pytest.raises(ValueError, match="row 0 sums to 0.9"):
        evaluate(log, np.array([[0.5, 0.4, 0.0]] + [[1 / 3] * 3] * 3))
    masked = tiny_log(mask=np.array([[1, 1, 0]] * 4, bool), actions=np.array([0, 1, 1, 0]))
    with pytest.raises(ValueError, match="not candidates"):
        evaluate(masked, np.full((4, 3), 1 / 3))
    np.testing.assert_allclose(target_uniform(masked), np.array([[0.5, 0.5, 0.0]] * 4))


def test_cross_fitting_never_predicts_a_row_with_a_model_that_saw_it():
    n = 40
    log = LoggedData(actions=np.arange(n) % 2, rewards=np.zeros(n), propensities=np.full(n, 0.5),
                     X=np.arange(n, dtype=float)[:, None])
    seen = []

    def model(train, test):
        overlap = set(train.X[:, 0]) & set(test.X[:, 0])
        seen.append((len(train.X), len(test.X), len(overlap)))
        return np.zeros((test.n, 2))

    cross_fit_rewards(log, model, random_state=0)
    assert [s[2] for s in seen] == [0, 0] and sum(s[1] for s in seen) == n


def test_ridge_reward_model_recovers_per_action_effects():
    rng = np.random.default_rng(0)
    n = 4000
    X = rng.normal(size=(n, 2))
    a = rng.integers(0, 3, n)
    truth = np.column_stack([0.2 + 0.1 * X[:, 0], 0.5 - 0.1 * X[:, 1], np.full(n, 0.3)])
    r = truth[np.arange(n), a] + rng.normal(0, 0.05, n)
    log = LoggedData(actions=a, rewards=r, propensities=np.full(n, 1 / 3), X=X)
    q = cross_fit_rewards(log)
    assert np.abs(q - truth).mean() < 0.02
    greedy = target_greedy_model(log, epsilon=0.0)
    assert np.mean(greedy.argmax(1) == truth.argmax(1)) > 0.95
    smooth = target_greedy_model(log, epsilon=0.3)
    np.testing.assert_allclose(smooth.sum(1), 1.0)
    assert smooth.min() == pytest.approx(0.1)


# ------------------------------------------------------------------ simulation: estimates vs exact truth


@pytest.fixture(scope="module")
def logged_run():
    """An epsilon-greedy logger on a contextual environment; the truth comes from p(x, a)."""
    env = Environment(n_arms=8, base_ctr=0.05, arm_sd=0.6, interaction=0.6, random_state=3)
    sel = Selector(EpsilonGreedy(0.3), SIM_WEIGHTS, env.suggested_prior(), random_state=3)
    return env, run(sel, env, T=6000, random_state=3, batch_size=10)


def _targets(env, res):
    snaps = res.snapshots
    pr = env.suggested_prior()
    return {
        "uniform": target_uniform(res.log),
        "thompson_replay": target_from_policy(ThompsonSampling(n_mc=200), snaps, SIM_WEIGHTS, pr, random_state=0),
        "ucb_replay": target_from_policy(UCB1(alpha=0.2), snaps, SIM_WEIGHTS, pr),
        # the best arm for each context -- far from the logger, so IPS has to work for it
        "oracle_greedy": np.eye(res.probs.shape[1])[res.true_probs.argmax(1)],
    }


def test_ope_estimates_cover_the_true_on_policy_value(logged_run):
    env, res = logged_run
    for name, pi in _targets(env, res).items():
        truth = res.value(pi)
        rep = evaluate(res.log, pi, n_boot=500, random_state=0)
        for est in ("ips", "snips", "dr"):
            e = rep[est]
            assert e["ci_low"] <= truth <= e["ci_high"], (name, est, truth, e)
            assert e["ci_low"] <= e["value"] <= e["ci_high"]
        assert rep["unsupported_mass"] == 0.0  # epsilon-greedy gives every arm probability


def test_ope_is_informative_not_vacuous(logged_run):
    """The CIs are narrow enough to tell policies apart, and the naive logged mean is wrong."""
    _, res = logged_run
    pi = np.eye(res.probs.shape[1])[res.true_probs.argmax(1)]
    truth = res.value(pi)
    rep = evaluate(res.log, pi, n_boot=500, random_state=0)
    naive = rep["mean_logged_reward"]
    assert not rep["dr"]["ci_low"] <= naive <= rep["dr"]["ci_high"], (naive, rep["dr"])
    assert rep["dr"]["ci_high"] - rep["dr"]["ci_low"] < 0.5 * truth
    # the reward model on action features reduces variance relative to plain IPS
    assert rep["dr"]["ci_high"] - rep["dr"]["ci_low"] < rep["ips"]["ci_high"] - rep["ips"]["ci_low"]
    uni = evaluate(res.log, target_uniform(res.log), n_boot=500, random_state=0)
    assert uni["dr"]["ci_high"] < rep["dr"]["ci_low"]  # oracle clearly beats uniform


def test_bootstrap_is_reproducible(logged_run):
    _, res = logged_run
    sub = res.log.subset(np.arange(500))
    a = evaluate(sub, target_uniform(sub), n_boot=100, random_state=5)
    b = evaluate(sub, target_uniform(sub), n_boot=100, random_state=5)
    assert a == b


def test_target_from_policy_aligns_by_action_names():
    from adlens.bandit import ArmSnapshot

    snaps = [ArmSnapshot(("b", "a"), [0.9, 0.1], [0.0, 0.0], [0.0, 0.0])]
    pi = target_from_policy(EpsilonGreedy(0.0), snaps, action_names=["a", "b", "c"])
    np.testing.assert_allclose(pi, [[0.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match="'b' is not in action_names"):
        target_from_policy(EpsilonGreedy(0.0), snaps, action_names=["a", "c"])


# ------------------------------------------------------------------ read_log


def test_read_log_csv_with_candidates_and_x_columns(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text(
        "action,reward,propensity,x_age,x_night,note,candidates\n"
        'b,1,0.5,0.3,1,hello,"[""a"", ""b""]"\n'
        "a,0,0.25,0.1,0,x,a|b|c\n"
        "c,0,1,0.9,0,y,c\n"
    )
    data, names = read_log(p)
    assert names == ["a", "b", "c"]
    assert data.actions.tolist() == [1, 0, 2]
    np.testing.assert_allclose(data.rewards, [1, 0, 0])
    np.testing.assert_allclose(data.propensities, [0.5, 0.25, 1.0])
    assert data.feature_names == ("x_age", "x_night")
    np.testing.assert_allclose(data.X, [[0.3, 1], [0.1, 0], [0.9, 0]])
    assert data.mask.tolist() == [[True, True, False], [True, True, True], [False, False, True]]


def test_read_log_jsonl_and_parquet_numeric_features(tmp_path):
    rows = [{"action": 2, "reward": 1, "propensity": 0.5, "age": 30, "site": "x"},
            {"action": 10, "reward": 0, "propensity": 0.2, "age": 41, "site": "y"},
            {"action": 2, "reward": 0, "propensity": 0.5, "age": 22, "site": "z"}]
    pj = tmp_path / "log.jsonl"
    pj.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    pp = tmp_path / "log.parquet"
    pq.write_table(pa.Table.from_pylist(rows), pp)
    for path in (pj, pp):
        data, names = read_log(path)
        assert names == ["2", "10"]  # integer labels sort numerically
        assert data.actions.tolist() == [0, 1, 0]
        assert data.feature_names == ("age",)  # non-numeric 'site' is not a feature
        np.testing.assert_allclose(data.X[:, 0], [30, 41, 22])
        assert data.mask is None


@pytest.mark.parametrize("name, text, msg", [
    ("a.csv", "", "empty"),
    ("a.csv", "action,reward,propensity\n", "empty"),
    ("a.csv", "action,reward\nx,1\n", "missing column 'propensity'"),
    ("a.csv", "action,reward,propensity\nx,1,0.5\ny,1,0\n", r"row 2, column 'propensity': 0.0 is outside \(0, 1\]"),
    ("a.csv", "action,reward,propensity\nx,1,1.5\n", "row 1, column 'propensity'"),
    ("a.csv", "action,reward,propensity\nx,1,0.5\nx,abc,0.5\n", "row 2, column 'reward': 'abc' is not a number"),
    ("a.csv", "action,reward,propensity\nx,,0.5\n", "row 1, column 'reward'"),
    ("a.csv", "action,reward,propensity\n,1,0.5\n", "row 1, column 'action' is empty"),
    ("a.csv", "action,reward,propensity,x_a\nx,1,0.5,q\n", "row 1, column 'x_a'"),
    ("a.csv", "action,reward,propensity,candidates\nx,1,0.5,a|b\n", "row 1: action 'x' is not among"),
    ("a.jsonl", '{"action": "x", "reward": 1, "propensity": 0.5}\n{oops\n', "line 2 is not valid JSON"),
    ("a.jsonl", "[1, 2]\n", "line 1 is not a JSON object"),
    ("a.txt.gz", "x", "unsupported log format"),
    ("a.parquet", "not parquet", "not a readable Parquet"),
])
def test_read_log_errors_name_file_column_and_row(tmp_path, name, text, msg):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ValueError, match=msg) as e:
        read_log(p)
    assert str(p) in str(e.value)


def test_read_log_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        read_log(tmp_path / "nope.csv")
