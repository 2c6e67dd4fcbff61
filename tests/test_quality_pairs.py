from __future__ import annotations

import numpy as np
import pytest

from adlens.quality.pairs import make_pairs

TOPICS = ["cars", "food", "travel", "tech"]


def _world(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ads, arts = [], []
    for i in range(n):
        v = float(rng.uniform(-1, 1))
        ads.append({"ad_id": f"ad{i:03d}", "topic": TOPICS[i % 4], "valence": v, "positive_article_id": f"art{i:03d}"})
        arts.append({"article_id": f"art{i:03d}", "topic": TOPICS[i % 4], "valence": v})
    return ads, arts


def test_tiny_hand_checked():
    ads = [{"ad_id": "a1", "topic": "cars", "valence": 0.2, "positive_article_id": "p1"}]
    arts = [
        {"article_id": "p1", "topic": "cars", "valence": 0.3},
        {"article_id": "x1", "topic": "food", "valence": 0.1},   # only safe contrast (diff topic, |dv|=0.1)
        {"article_id": "x2", "topic": "food", "valence": -0.9},  # diff topic but |dv|=1.1
        {"article_id": "x3", "topic": "cars", "valence": 0.2},   # same topic
        {"article_id": "x4", "topic": "food", "valence": 0.7},   # |dv| = 0.5 exactly: not < 0.5
    ]
    ps = make_pairs(ads, arts)
    assert [p["pair_type"] for p in ps] == ["positive", "random_negative", "random_negative", "safe_contrast"]
    assert ps[0]["article_id"] == "p1" and ps[3]["article_id"] == "x1"
    assert {p["article_id"] for p in ps[1:3]} <= {"x2", "x3", "x4"}  # never the positive nor the contrast
    assert len({p["article_id"] for p in ps}) == 4
    assert ps.shortfalls == {}
    assert ps[0]["pair_id"] == "a1::p1"


def test_shortfall_recorded_when_no_contrast_qualifies():
    ads = [{"ad_id": "a1", "topic": "cars", "valence": 0.9, "positive_article_id": "p1"},
           {"ad_id": "a2", "topic": "food", "valence": None, "positive_article_id": "p2"}]
    arts = [{"article_id": "p1", "topic": "cars", "valence": 0.9},
            {"article_id": "p2", "topic": "food", "valence": -0.9},
            {"article_id": "q", "topic": "cars", "valence": 0.8}]
    ps = make_pairs(ads, arts)
    c = ps.counts()
    # a1: contrast needs a non-cars article within 0.5 of 0.9: none -> 0; a2: unknown valence -> 0
    assert c == {"positive": 2, "random_negative": 4, "safe_contrast": 0}
    assert ps.shortfalls == {"a1": {"safe_contrast": 1}, "a2": {"safe_contrast": 1}}
    assert ps.summary()["missing_per_type"]["safe_contrast"] == 2


def test_counts_scale_linearly_and_deterministic():
    ads, arts = _world(200)
    ps = make_pairs(ads, arts, random_state=7)
    assert len(ps) == 800 and ps.counts() == {"positive": 200, "random_negative": 400, "safe_contrast": 200}
    assert list(ps) == list(make_pairs(ads, arts, random_state=7))
    assert list(ps) != list(make_pairs(ads, arts, random_state=8))
    # an ad's pairs do not depend on the other ads (keyed by ad_id)
    sub = make_pairs(ads[:50][::-1], arts, random_state=7)
    first = [p for p in ps if p["ad_id"] == "ad010"]
    assert first == [p for p in sub if p["ad_id"] == "ad010"]
    # safe-contrast constraints hold
    by_art = {a["article_id"]: a for a in arts}
    by_ad = {a["ad_id"]: a for a in ads}
    for p in ps:
        if p["pair_type"] == "safe_contrast":
            ad, art = by_ad[p["ad_id"]], by_art[p["article_id"]]
            assert art["topic"] != ad["topic"] and abs(art["valence"] - ad["valence"]) < 0.5
        if p["pair_type"] != "positive":
            assert p["article_id"] != by_ad[p["ad_id"]]["positive_article_id"]
    assert len({(p["ad_id"], p["article_id"]) for p in ps}) == len(ps)


def test_column_dict_input_and_aliases():
    ads = {"ad_id": ["x", "y"], "ad_topic": ["cars", "food"], "copy_emotion_valence": [0.0, 0.0]}
    arts = {"article_id": ["x", "y", "z"], "topic_category": ["cars", "food", "tech"], "sentiment_valence": [0.0, 0.1, 0.2]}
    ps = make_pairs(ads, arts)  # positive defaults to article_id == ad_id (seed convention)
    assert [p["article_id"] for p in ps if p["pair_type"] == "positive"] == ["x", "y"]
    assert ps.counts()["safe_contrast"] == 2
    with pytest.raises(ValueError):
        make_pairs([{"ad_id": "x"}, {"ad_id": "x"}], arts)
