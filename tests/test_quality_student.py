from __future__ import annotations

import json

import numpy as np
import pytest

from adlens.quality.fast import FastScorer
from adlens.quality.registry import ModelRegistry
from adlens.quality.student import QualityStudent, group_kfold, group_split, spearman, train_quality

PT = ["positive", "random_negative", "random_negative", "safe_contrast"]


def synthetic(n_ads: int = 400, seed: int = 0, noise: float = 0.2):
    rng = np.random.default_rng(seed)
    ads = np.repeat(np.arange(n_ads), 4)
    n = len(ads)
    pt = np.tile(PT, n_ads)
    sim = rng.uniform(0, 1, n) + 0.4 * (pt == "positive")
    clarity = np.repeat(rng.uniform(0, 1, n_ads), 4)  # an ad-level (M) feature
    emo = np.repeat(rng.choice(["smiling", "neutral", "none"], n_ads), 4)
    c = rng.normal(0, 1, n)
    c[rng.uniform(size=n) < 0.05] = np.nan
    y = 2 + 4 * sim + 2 * clarity ** 2 + 1.0 * (emo == "smiling") + 0.3 * np.nan_to_num(np.sin(2 * c)) + rng.normal(0, noise, n)
    table = {"ad_id": [f"ad{i}" for i in ads], "sim_adtext_article": sim, "clarity": clarity,
             "face_emotion": list(emo), "c": c}
    return table, y, table["ad_id"], list(pt)


def test_group_split_never_leaks():
    groups = [f"g{i % 37}" for i in range(500)]
    for seed in range(5):
        tr, te = group_split(groups, 0.2, seed)
        assert not {groups[i] for i in tr} & {groups[i] for i in te}
        assert len(tr) + len(te) == 500 and len({groups[i] for i in te}) == round(0.2 * 37)
    seen = []
    for tr, te in group_kfold(groups, 5):
        assert not {groups[i] for i in tr} & {groups[i] for i in te}
        seen.extend(te)
    assert sorted(seen) == list(range(500))


def test_spearman_matches_definition():
    a = [1, 2, 3, 4, 5, 5]
    b = [2, 1, 4, 3, 6, 6]
    try:
        from scipy.stats import spearmanr
        assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    except ImportError:  # pragma: no cover
        pass
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)


def test_recovers_known_function_r2_and_report(tmp_path):
    table, y, groups, pt = synthetic()
    student, rep = train_quality(table, y, groups, pair_types=pt, test_size=0.2, random_state=0)
    assert rep["split"]["shared_ads"] == 0 and rep["split"]["n_test_ads"] == 80
    assert rep["overall"]["r2"] >= 0.9, rep["overall"]
    assert set(rep["per_pair_type"]) == set(PT)
    assert rep["gap_positive_vs_negative"]["pred"] > 0.5
    assert student.encoders == {"face_emotion": {"neutral": 0, "none": 1, "smiling": 2}}
    assert "ad_id" not in student.features
    assert abs(sum(rep["feature_importance"].values()) - 1) < 1e-6
    assert rep["fit"]["early_stopping"] and len(rep["calibration"]) == 10
    json.dumps(rep)  # serialisable
    # unknown category -> -1, missing -> NaN, prediction still works
    one = {k: [v[0]] for k, v in table.items()}
    one["face_emotion"] = ["angry"]
    assert student.matrix(one)[0, student.features.index("face_emotion")] == -1
    # registry round-trip
    reg = ModelRegistry(tmp_path / "reg")
    v1 = reg.register(student, metrics=rep, card={"teacher": "synthetic"})
    v2 = reg.register(student, metrics=rep)
    assert (v1, v2) == ("v0001", "v0002") and reg.latest() == "v0002"
    assert [e["version"] for e in reg.list()] == ["v0001", "v0002"] and reg.list()[0]["card"]["teacher"] == "synthetic"
    loaded = reg.load()
    np.testing.assert_array_equal(loaded.predict(table), student.predict(table))
    # fast scorer == xgboost to 1e-5, both backends, incl. NaNs
    X = student.matrix(table)
    ref = student.predict_matrix(X)
    for backend in ("auto", "numpy"):
        fs = FastScorer.from_student(loaded, backend=backend)
        np.testing.assert_allclose(fs.score(X), ref, atol=1e-5, rtol=0)
    fs = FastScorer.from_student(student)
    fs.buffer(20)[:] = X[:20]
    np.testing.assert_allclose(fs.score_buffer(20), ref[:20], atol=1e-5, rtol=0)


def test_seeded_runs_reproduce_same_model():
    table, y, groups, _ = synthetic(n_ads=120, seed=3)
    a = QualityStudent(n_estimators=40, random_state=5).fit(table, y, groups)
    b = QualityStudent(n_estimators=40, random_state=5).fit(table, y, groups)
    assert a.booster.save_raw("json") == b.booster.save_raw("json")
    np.testing.assert_array_equal(a.predict(table), b.predict(table))
    c = QualityStudent(n_estimators=40, random_state=6).fit(table, y, groups)  # different early-stop split
    assert c.fit_info["n_valid"] > 0


def test_fast_scorer_edge_cases():
    import xgboost as xgb

    rng = np.random.default_rng(1)
    X = rng.uniform(size=(300, 5)).astype(np.float32)
    X[rng.uniform(size=X.shape) < 0.2] = np.nan
    y = np.nan_to_num(X[:, 0]) * 3 + (X[:, 1] > 0.5)
    m = xgb.XGBRegressor(n_estimators=30, max_depth=4, n_jobs=1, base_score=0.7).fit(X, y)
    for backend in ("auto", "numpy"):
        fs = FastScorer.from_booster(m.get_booster(), backend=backend)
        np.testing.assert_allclose(fs.score(X), m.predict(X), atol=1e-5, rtol=0)
        assert fs.score(X[:0]).shape == (0,)
    with pytest.raises(ValueError):
        fs.score(X[:, :3])


def test_fast_scorer_from_model_file_matches_xgboost(tmp_path):
    """The no-Booster path (one JSON parse) gives XGBoost's predictions, with an iteration range,
    uneven tree depths, NaNs, and degenerate single-leaf trees."""
    import xgboost as xgb

    rng = np.random.default_rng(2)
    X = rng.uniform(size=(400, 6)).astype(np.float32)
    X[rng.uniform(size=X.shape) < 0.1] = np.nan
    y = np.where(np.nan_to_num(X[:, 0]) > 0.8, 5.0, 0.0) + np.nan_to_num(X[:, 1]) + 0.1 * rng.normal(size=400)
    m = xgb.XGBRegressor(n_estimators=40, max_depth=6, min_child_weight=20, n_jobs=1).fit(X, y)
    path = tmp_path / "model.json"
    m.get_booster().save_model(str(path))
    for backend in ("auto", "numpy"):
        fs = FastScorer.from_model_file(path, iteration_range=(0, 25), backend=backend)
        np.testing.assert_allclose(fs.score(X), m.predict(X, iteration_range=(0, 25)), atol=1e-5, rtol=0)
    # a constant target: every tree is a lone leaf (depth 0)
    c = xgb.XGBRegressor(n_estimators=5, n_jobs=1).fit(X, np.full(400, 3.0))
    c.get_booster().save_model(str(path))
    for backend in ("auto", "numpy"):
        np.testing.assert_allclose(FastScorer.from_model_file(path, backend=backend).score(X[:7]), c.predict(X[:7]),
                                   atol=1e-5, rtol=0)
