"""Pair (F) features: hand-computed values, NaN rules, vectorisation and the joint space."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adlens.features.joint import JointSpace, retrieval_recall
from adlens.features.pair import (
    PAIR_FEATURES,
    AdSide,
    ArticleSide,
    jaccard,
    joint_rows,
    pair_features,
    pair_features_from_unit,
    pair_matrix,
    unit_rows,
)


def _sides():
    s = 1 / math.sqrt(2)
    ads = AdSide(
        text_emb=np.array([[1, 0, 0], [s, s, 0], [0, 0, 0]], np.float32),  # ad 2: no text (zero row)
        image_emb=np.array([[1, 0], [0, 1], [1, 1]], np.float32),
        entities=[{"Apple", "Paris"}, set(), None],
        valence=np.array([0.8, -0.4, 0.0]),
        topic=["tech", "travel", None],
    )
    arts = ArticleSide(
        text_emb=np.array([[1, 0, 0], [0, 1, 0]], np.float32),
        entities=[["apple", "The Louvre"], []],
        valence=np.array([0.2, -0.4]),
        topic=["tech", "food"],
    )
    return ads, arts


def test_hand_computed_values():
    ads, arts = _sides()
    f = pair_features(ads, arts, ad_idx=[0, 0, 1, 1, 2], article_idx=[0, 1, 0, 1, 0])
    assert list(f) == list(PAIR_FEATURES)
    s = 1 / math.sqrt(2)
    np.testing.assert_allclose(f["sim_adtext_article"][:4], [1, 0, s, s], atol=1e-6)
    assert math.isnan(f["sim_adtext_article"][4])  # ad without text
    np.testing.assert_allclose(f["contrast"][:4], 1 - f["sim_adtext_article"][:4])
    # {apple, paris} vs {apple, louvre}: 1 shared of 3
    np.testing.assert_allclose(f["entity_overlap_rate"][:3], [1 / 3, 0.0, 0.0], atol=1e-6)
    assert math.isnan(f["entity_overlap_rate"][3]) and math.isnan(f["entity_overlap_rate"][4])  # both empty / unknown
    np.testing.assert_allclose(f["sentiment_alignment"], [1 - 0.6 / 2, 1 - 1.2 / 2, 1 - 0.6 / 2, 1.0, 1 - 0.2 / 2], atol=1e-6)
    np.testing.assert_array_equal(f["topic_match"][:4], [1, 0, 0, 0])
    assert math.isnan(f["topic_match"][4])
    assert np.isnan(f["sim_adimage_article"]).all()  # no joint space given
    assert pair_matrix(f).shape == (5, 6) and pair_matrix(f).dtype == np.float32


def test_missing_inputs_give_nan_not_zero():
    f = pair_features(AdSide(valence=[0.1]), ArticleSide(valence=[0.1]), [0], [0])
    assert f["sentiment_alignment"][0] == 1.0
    for k in ("sim_adtext_article", "sim_adimage_article", "entity_overlap_rate", "topic_match", "contrast"):
        assert math.isnan(f[k][0]), k


def test_list_embeddings_with_none():
    ads = AdSide(text_emb=[np.array([3.0, 4.0]), None])
    arts = ArticleSide(text_emb=[np.array([3.0, 4.0])])
    f = pair_features(ads, arts, [0, 1], [0, 0])
    assert f["sim_adtext_article"][0] == pytest.approx(1.0) and math.isnan(f["sim_adtext_article"][1])


class Identity:
    def image_to_joint(self, x):
        return np.asarray(x)[:, :2]

    def text_to_joint(self, x):
        return np.asarray(x)[:, :2]


def test_joint_space_similarity():
    ads, arts = _sides()
    f = pair_features(ads, arts, [0, 1, 2], [0, 0, 1], joint=Identity())
    np.testing.assert_allclose(f["sim_adimage_article"], [1.0, 0.0, 1 / math.sqrt(2)], atol=1e-6)


@pytest.mark.parametrize("ia,ib,err", [([0, 1], [0], "entries"), ([5], [0], "ad_idx out of range"),
                                       ([0], [-1], "article_idx out of range")])
def test_bad_indices(ia, ib, err):
    ads, arts = _sides()
    with pytest.raises(ValueError, match=err):
        pair_features(ads, arts, ia, ib)


def test_dimension_mismatch():
    with pytest.raises(ValueError, match="-d"):
        pair_features(AdSide(text_emb=np.ones((1, 3))), ArticleSide(text_emb=np.ones((1, 4))), [0], [0])


def test_vectorised_matches_loop():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(50, 16)), rng.normal(size=(40, 16))
    ia, ib = rng.integers(0, 50, 1000), rng.integers(0, 40, 1000)
    f = pair_features(AdSide(text_emb=A), ArticleSide(text_emb=B), ia, ib)
    An, Bn = A / np.linalg.norm(A, axis=1, keepdims=True), B / np.linalg.norm(B, axis=1, keepdims=True)
    np.testing.assert_allclose(f["sim_adtext_article"], [An[i] @ Bn[j] for i, j in zip(ia, ib)], atol=1e-5)


def test_jaccard():
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert math.isnan(jaccard(set(), set())) and math.isnan(jaccard(None, {"a"}))


# ---------------------------------------------------------------- joint space


def _pairs(n, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 8))
    Xi = z @ rng.normal(size=(8, 96)) + 0.5 * rng.normal(size=(n, 96))
    Xt = z @ rng.normal(size=(8, 48)) + 0.5 * rng.normal(size=(n, 48))
    return Xi, Xt


def test_joint_space_beats_untrained_baseline(tmp_path):
    Xi, Xt = _pairs(500)
    js = JointSpace(dim=16, epochs=40, batch_size=128, lr=3e-3, random_state=0).fit(Xi[:400], Xt[:400])
    trained = retrieval_recall(js.image_to_joint(Xi[400:]), js.text_to_joint(Xt[400:]))
    base = JointSpace(dim=16, random_state=0).init_untrained(96, 48)
    untrained = retrieval_recall(base.image_to_joint(Xi[400:]), base.text_to_joint(Xt[400:]))
    assert trained["recall@1"] > 0.5 > 0.2 > untrained["recall@1"]
    assert trained["recall@10"] >= trained["recall@1"]
    assert js.history_ and 0.01 <= js.tau_ <= 1.0

    p = js.save(tmp_path / "joint.npz", image_model="fake-img", text_model="fake-txt")
    back = JointSpace.load(p)
    np.testing.assert_allclose(back.image_to_joint(Xi[:5]), js.image_to_joint(Xi[:5]), atol=1e-5)
    np.testing.assert_allclose(back.text_to_joint(Xt[:5]), js.text_to_joint(Xt[:5]), atol=1e-5)
    assert back.meta_ == {"image_model": "fake-img", "text_model": "fake-txt"}
    # it plugs into the pair features
    f = pair_features(AdSide(image_emb=Xi[400:410]), ArticleSide(text_emb=Xt[400:410]), np.arange(10), np.arange(10), joint=js)
    assert np.all(np.isfinite(f["sim_adimage_article"]))


def test_joint_space_errors(tmp_path):
    with pytest.raises(RuntimeError, match="not fitted"):
        JointSpace().image_to_joint(np.ones((1, 3)))
    with pytest.raises(ValueError):
        JointSpace().fit(np.ones((10, 3)), np.ones((9, 3)))
    with pytest.raises(ValueError):
        JointSpace().fit(np.full((10, 3), np.nan), np.ones((10, 3)))
    with pytest.raises(ValueError):
        JointSpace(temperature=0)
    bad = tmp_path / "x.npz"
    np.savez(bad, info=np.array('{"kind": "other"}'))
    with pytest.raises(ValueError, match="not a"):
        JointSpace.load(bad)
    assert retrieval_recall(np.eye(4), np.eye(4), ks=(1,))["recall@1"] == 1.0


class _Elementwise:
    """A joint space whose rows do not depend on the batch (a BLAS product of 1 row and of 8 rows
    may differ in the last bit; the service maps each row alone in both paths anyway)."""

    def __init__(self, wi, wt):
        self.wi, self.wt = wi, wt

    def image_to_joint(self, x):
        return np.tanh(x[:, : len(self.wi)] * self.wi)

    def text_to_joint(self, x):
        return np.tanh(x[:, : len(self.wt)] * self.wt)


def test_pair_features_from_unit_rows_cached_one_by_one_equal_pair_features_exactly():
    # the scoring service normalises / projects each creative's and context's rows once, alone, and
    # reuses them; that must give bit-identical features to the batch computation over all rows
    rng = np.random.default_rng(3)
    n_ads, n_art, d, D, k = 9, 4, 16, 24, 8
    At = rng.normal(size=(n_ads, d)).astype(np.float32)
    At[2] = 0.0  # empty text -> missing
    Ai = rng.normal(size=(n_ads, D)).astype(np.float32)
    Ai[5] = np.nan  # no image vector
    Bt = rng.normal(size=(n_art, d)).astype(np.float32)
    joint = _Elementwise(rng.normal(size=k).astype(np.float32), rng.normal(size=k).astype(np.float32))
    ads = AdSide(text_emb=At, image_emb=Ai, entities=[{"Apple"}, None, set(), {"x", "y"}, {"apple"}, {"z"}, None, {"q"}, {"y"}],
                 valence=rng.uniform(-1, 1, n_ads), topic=["a", None, "b", "a", "c", "a", "b", "", "c"])
    arts = ArticleSide(text_emb=Bt, entities=[{"apple", "y"}, None, {"q"}, set()], valence=rng.uniform(-1, 1, n_art),
                       topic=["a", "b", None, "c"])
    ia = np.repeat(np.arange(n_ads), n_art)
    ib = np.tile(np.arange(n_art), n_ads)
    want = pair_features(ads, arts, ia, ib, joint=joint)

    def one_by_one(rows, fn=None):
        out = [joint_rows(fn, unit_rows(r[None, :]))[0] if fn else unit_rows(r[None, :])[0] for r in rows]
        width = max(len(v) for v in out)  # a missing row comes back 1-wide: pad it as the service does
        return np.stack([v if len(v) == width else np.full(width, np.nan, np.float32) for v in out])

    got = pair_features_from_unit(one_by_one(At), one_by_one(Bt), one_by_one(Ai, joint.image_to_joint),
                                  one_by_one(Bt, joint.text_to_joint), ads, arts, ia, ib)
    for name in PAIR_FEATURES:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert np.isnan(want["sim_adtext_article"][ia == 2]).all()  # the zero text row stays missing
    assert np.isnan(want["sim_adimage_article"][ia == 5]).all()
    assert np.isfinite(want["sim_adimage_article"][ia != 5]).all()
