"""Step 5 of seed 000: ad x article training pairs (positives, random negatives, safe contrasts).

For every ad (defaults = the seed's numbers):

* 1 ``positive``: the article written for the ad (``positive_article_id``; when absent the seed's
  convention ``article_id == ad_id`` is tried);
* ``n_random`` ``random_negative``: any other article, uniformly, without replacement;
* ``n_contrast`` ``safe_contrast``: an article of a *different topic* whose sentiment valence is
  within ``sentiment_threshold`` of the ad's (``|v_ad - v_article| < threshold``) -- hard negatives.

Differences from the seed script (deliberate, documented):

* an (ad, article) pair is never emitted twice: safe contrasts are drawn first (they are the scarce
  kind) and random negatives are drawn from the remaining articles;
* an unknown topic or valence (None / NaN) never qualifies as a safe contrast (the seed defaulted
  to "other" / 0.0, which silently manufactures "similar tone" matches);
* randomness is keyed by ``(random_state, ad_id)``: the pairs of one ad do not change when other
  ads are added or reordered, and a run is reproducible bit for bit.

When an ad has fewer candidates than requested, it gets fewer pairs of that kind and the shortfall
is recorded in :attr:`PairSet.shortfalls` (and summarised by :meth:`PairSet.summary`).

Example::

    >>> ads = [{"ad_id": "a1", "topic": "cars", "valence": 0.2, "positive_article_id": "p1"}]
    >>> arts = [{"article_id": "p1", "topic": "cars", "valence": 0.3},
    ...         {"article_id": "x1", "topic": "food", "valence": 0.1},
    ...         {"article_id": "x2", "topic": "food", "valence": -0.9},
    ...         {"article_id": "x3", "topic": "cars", "valence": 0.9}]
    >>> ps = make_pairs(ads, arts)
    >>> [(p["article_id"], p["pair_type"]) for p in ps if p["pair_type"] != "random_negative"]
    [('p1', 'positive'), ('x1', 'safe_contrast')]
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["PAIR_TYPES", "PairSet", "make_pairs", "as_records", "pair_id"]

PAIR_TYPES: tuple[str, ...] = ("positive", "random_negative", "safe_contrast")

# Accepted aliases for input columns (first match wins).
_AD_TOPIC = ("topic", "ad_topic", "topic_category")
_AD_VALENCE = ("valence", "copy_emotion_valence", "sentiment_valence")
_ART_TOPIC = ("topic", "topic_category", "article_topic")
_ART_VALENCE = ("valence", "sentiment_valence", "article_valence")


def pair_id(ad_id: Any, article_id: Any) -> str:
    """Stable string key of a pair (used by caches and the dataset)."""
    return f"{ad_id}::{article_id}"


def as_records(table: Any) -> list[dict[str, Any]]:
    """Accept a list of mappings, a dict of equal-length columns, or anything with ``to_dict("records")``
    / ``to_pylist()`` (pandas DataFrame / pyarrow Table) and return a list of dicts."""
    if hasattr(table, "to_pylist"):
        return list(table.to_pylist())
    if hasattr(table, "to_dict") and not isinstance(table, Mapping):
        return list(table.to_dict("records"))
    if isinstance(table, Mapping):
        cols = {k: list(v) for k, v in table.items()}
        n = {len(v) for v in cols.values()}
        if len(n) > 1:
            raise ValueError(f"columns of unequal length: { {k: len(v) for k, v in cols.items()} }")
        m = n.pop() if n else 0
        return [{k: cols[k][i] for k in cols} for i in range(m)]
    return [dict(r) for r in table]


def _get(rec: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for k in keys:
        if k in rec:
            return rec[k]
    return None


def _valence(v: Any) -> float:
    if v is None:
        return math.nan
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def _topic(t: Any) -> str | None:
    if t is None or (isinstance(t, float) and math.isnan(t)) or t == "":
        return None
    return str(t)


def _ad_rng(random_state: int, ad_id: Any) -> np.random.Generator:
    h = int.from_bytes(hashlib.blake2b(str(ad_id).encode(), digest_size=8).digest(), "little")
    return np.random.default_rng([int(random_state) & 0xFFFFFFFF, h & 0xFFFFFFFF, h >> 32])


class PairSet(list):
    """A list of pair records ``{pair_id, ad_id, article_id, pair_type}`` plus bookkeeping.

    Attributes:
        shortfalls: ``{ad_id: {pair_type: n_missing}}`` for ads that got fewer pairs than asked.
        params: the arguments of :func:`make_pairs` (for the dataset card).
    """

    def __init__(self, records: Iterable[dict[str, Any]] = (), shortfalls: dict | None = None,
                 params: dict | None = None):
        super().__init__(records)
        self.shortfalls: dict[Any, dict[str, int]] = shortfalls or {}
        self.params: dict[str, Any] = params or {}

    def counts(self) -> dict[str, int]:
        c = Counter(p["pair_type"] for p in self)
        return {t: int(c.get(t, 0)) for t in PAIR_TYPES}

    def summary(self) -> dict[str, Any]:
        missing = Counter()
        for d in self.shortfalls.values():
            missing.update(d)
        return {
            "n_pairs": len(self),
            "n_ads": len({p["ad_id"] for p in self}),
            "per_type": self.counts(),
            "ads_with_shortfall": len(self.shortfalls),
            "missing_per_type": {t: int(missing.get(t, 0)) for t in PAIR_TYPES},
            "params": dict(self.params),
        }


def make_pairs(ads: Any, articles: Any, n_random: int = 2, n_contrast: int = 1,
               sentiment_threshold: float = 0.5, random_state: int = 0) -> PairSet:
    """Build the training pairs (seed 000, Step 5).

    Args:
        ads: records (or a column dict / DataFrame) with ``ad_id``, ``topic`` (alias ``ad_topic``),
            ``valence`` (alias ``copy_emotion_valence``) and ``positive_article_id`` (optional;
            defaults to ``ad_id`` when that is an article id).
        articles: records with ``article_id``, ``topic`` (alias ``topic_category``), ``valence``
            (alias ``sentiment_valence``).
        n_random: random negatives per ad.
        n_contrast: safe-contrast negatives per ad.
        sentiment_threshold: strict upper bound of ``|valence_ad - valence_article|`` for a safe contrast.
        random_state: seed; same inputs + seed -> identical output.

    Returns:
        a :class:`PairSet` (a list of dicts ``pair_id, ad_id, article_id, pair_type``), ordered by ad
        then positive, random negatives, safe contrasts.
    """
    ad_recs = as_records(ads)
    art_recs = as_records(articles)
    art_ids = [r["article_id"] for r in art_recs]
    if len(set(art_ids)) != len(art_ids):
        raise ValueError("duplicate article_id in articles")
    index = {a: i for i, a in enumerate(art_ids)}
    n_art = len(art_ids)
    topic_code: dict[str, int] = {}
    art_topic = np.array([-1 if (t := _topic(_get(r, _ART_TOPIC))) is None else topic_code.setdefault(t, len(topic_code))
                          for r in art_recs], dtype=np.int64)
    art_known_topic = art_topic >= 0
    art_val = np.array([_valence(_get(r, _ART_VALENCE)) for r in art_recs], dtype=np.float64)
    art_val[np.isnan(art_val)] = np.inf  # unknown valence never qualifies as "similar tone"

    out: list[dict[str, Any]] = []
    shortfalls: dict[Any, dict[str, int]] = {}
    seen_ads: set = set()
    for ad in ad_recs:
        ad_id = ad["ad_id"]
        if ad_id in seen_ads:
            raise ValueError(f"duplicate ad_id {ad_id!r}")
        seen_ads.add(ad_id)
        rng = _ad_rng(random_state, ad_id)
        miss: dict[str, int] = {}
        pos_id = ad.get("positive_article_id")
        if pos_id is None and ad_id in index:
            pos_id = ad_id
        pos = index.get(pos_id) if pos_id is not None else None
        excluded = np.zeros(n_art, dtype=bool)
        if pos is not None:
            excluded[pos] = True
        else:
            miss["positive"] = 1

        # safe contrasts first (scarce): different known topic, |dv| < threshold, not the positive.
        contrast: list[int] = []
        a_topic = _topic(_get(ad, _AD_TOPIC))
        a_val = _valence(_get(ad, _AD_VALENCE))
        if n_contrast > 0:
            if a_topic is not None and not math.isnan(a_val):
                ok = art_known_topic & (art_topic != topic_code.get(a_topic, -2)) & (np.abs(art_val - a_val) < sentiment_threshold)
                ok &= ~excluded
                cands = np.flatnonzero(ok)
            else:
                cands = np.empty(0, dtype=np.int64)
            k = min(n_contrast, cands.size)
            if k:
                contrast = [int(i) for i in rng.choice(cands, size=k, replace=False)]
                excluded[contrast] = True
            if k < n_contrast:
                miss["safe_contrast"] = n_contrast - k

        # random negatives among the remaining articles.
        randoms: list[int] = []
        if n_random > 0:
            n_free = n_art - int(pos is not None) - len(contrast)
            k = min(n_random, n_free)
            if k and n_free > 4 * k:  # rejection sampling: O(k) instead of O(n_articles)
                while len(randoms) < k:
                    i = int(rng.integers(n_art))
                    if not excluded[i]:
                        excluded[i] = True
                        randoms.append(i)
            elif k:
                randoms = [int(i) for i in rng.choice(np.flatnonzero(~excluded), size=k, replace=False)]
            if k < n_random:
                miss["random_negative"] = n_random - k

        if pos is not None:
            out.append({"pair_id": pair_id(ad_id, art_ids[pos]), "ad_id": ad_id, "article_id": art_ids[pos], "pair_type": "positive"})
        for i in randoms:
            out.append({"pair_id": pair_id(ad_id, art_ids[i]), "ad_id": ad_id, "article_id": art_ids[i], "pair_type": "random_negative"})
        for i in contrast:
            out.append({"pair_id": pair_id(ad_id, art_ids[i]), "ad_id": ad_id, "article_id": art_ids[i], "pair_type": "safe_contrast"})
        if miss:
            shortfalls[ad_id] = miss
    params = {"n_random": n_random, "n_contrast": n_contrast, "sentiment_threshold": sentiment_threshold,
              "random_state": random_state, "n_ads": len(ad_recs), "n_articles": n_art}
    return PairSet(out, shortfalls, params)
