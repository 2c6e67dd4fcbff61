"""Pair (F) features of (creative, article): exactly seed 000's six, vectorised over many pairs.

Creatives and articles are given once each (:class:`AdSide`, :class:`ArticleSide`) and pairs as
two index arrays, so 29k pairs over 7k ads x 7k articles never copy an embedding per pair.

==========================  ==================================================================
``sim_adtext_article``      cosine of the text embeddings of the ad's words (copy + OCR) and the
                            article; NaN when either side has no embedding (no text)
``sim_adimage_article``     cosine of the ad image and the article text in a joint image-text
                            space (``joint.image_to_joint`` / ``joint.text_to_joint``, e.g. a
                            fitted :class:`adlens.features.joint.JointSpace` or a CLIP model);
                            NaN when no joint space is given or the ad has no image embedding
``entity_overlap_rate``     Jaccard index of the two sets of normalised entity names (case-
                            folded); NaN when both sets are empty (nothing to compare)
``sentiment_alignment``     ``1 - |valence_ad - valence_article| / 2`` in [0, 1] (1 = same
                            valence); the seed's "distance" is ``2 * (1 - alignment)``
``topic_match``             1.0 if the ad's topic equals the article's topic, else 0.0; NaN when
                            either topic is unknown
``contrast``                ``1 - sim_adtext_article`` (the seed's "inverse similarity")
==========================  ==================================================================

Example::

    >>> import numpy as np
    >>> ads = AdSide(text_emb=np.eye(2, dtype=np.float32), entities=[{"apple"}, set()],
    ...              valence=np.array([0.5, -0.5]), topic=["tech", "food"])
    >>> arts = ArticleSide(text_emb=np.eye(2, dtype=np.float32)[:1], entities=[{"apple", "paris"}],
    ...                    valence=np.array([0.5]), topic=["tech"])
    >>> f = pair_features(ads, arts, ad_idx=[0, 1], article_idx=[0, 0])
    >>> f["sim_adtext_article"].tolist(), f["entity_overlap_rate"].tolist(), f["topic_match"].tolist()
    ([1.0, 0.0], [0.5, 0.0], [1.0, 0.0])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from adlens.features.context import normalize_entity
from adlens.features.schema import FeatureSpec

__all__ = ["PAIR_FEATURES", "PAIR_SCHEMA", "AdSide", "ArticleSide", "JointSpaceLike", "jaccard", "joint_rows", "pair_features",
           "pair_features_from_unit", "pair_matrix", "unit_rows"]

PAIR_SCHEMA: tuple[FeatureSpec, ...] = (
    FeatureSpec("sim_adtext_article", "float32", "cosine(text emb of ad copy+OCR, text emb of article); NaN if either missing", True),
    FeatureSpec("sim_adimage_article", "float32", "cosine in the joint image-text space (ad image vs article text); NaN without a joint space", True),
    FeatureSpec("entity_overlap_rate", "float32", "Jaccard of case-folded entity sets; NaN if both empty", True),
    FeatureSpec("sentiment_alignment", "float32", "1 - |valence_ad - valence_article| / 2, in [0, 1]", True),
    FeatureSpec("topic_match", "float32", "1 if ad topic == article topic else 0; NaN if a topic is unknown", True),
    FeatureSpec("contrast", "float32", "1 - sim_adtext_article (inverse similarity)", True),
)
#: Column order used by the student model.
PAIR_FEATURES: tuple[str, ...] = tuple(s.name for s in PAIR_SCHEMA)


@runtime_checkable
class JointSpaceLike(Protocol):
    """A joint image-text space: both maps return ``(N, k)`` rows comparable by cosine."""

    def image_to_joint(self, image_emb: np.ndarray) -> np.ndarray: ...

    def text_to_joint(self, text_emb: np.ndarray) -> np.ndarray: ...


def entity_set(e: Iterable[str] | None) -> frozenset[str] | None:
    """The normalised entity set :func:`jaccard` compares; a ``frozenset`` is taken as already
    normalised (callers that score one creative many times normalise it once)."""
    if e is None or isinstance(e, frozenset):
        return e
    return frozenset(n for n in (normalize_entity(x) for x in e if x) if n)


def _as_sets(ents: Sequence[Iterable[str] | None] | None, n: int, what: str) -> list[frozenset[str] | None]:
    if ents is None:
        return [None] * n
    if len(ents) != n:
        raise ValueError(f"{what}: {len(ents)} entity sets for {n} rows")
    return [entity_set(e) for e in ents]


def _opt_array(x, n: int, what: str, dtype=np.float32) -> np.ndarray | None:
    if x is None:
        return None
    a = np.asarray(x, dtype=dtype)
    if a.shape[0] != n:
        raise ValueError(f"{what}: {a.shape[0]} rows, expected {n}")
    return a


@dataclass
class AdSide:
    """Per-creative inputs (row i = creative i).

    Args:
        text_emb: ``(n_ads, d)`` text embeddings of copy+OCR, or a list with None for missing.
        image_emb: ``(n_ads, D)`` image embeddings (needed for ``sim_adimage_article``).
        entities: per-ad entity names (None = unknown).
        valence: ``(n_ads,)`` copy valence in [-1, 1] (NaN = unknown).
        topic: per-ad topic ids (None / "" = unknown).
    """

    text_emb: Any = None
    image_emb: Any = None
    entities: Sequence[Iterable[str] | None] | None = None
    valence: Any = None
    topic: Sequence[str | None] | None = None

    def __len__(self) -> int:
        for x in (self.text_emb, self.image_emb, self.entities, self.valence, self.topic):
            if x is not None:
                return len(x)
        return 0


@dataclass
class ArticleSide:
    """Per-article inputs (row j = article j): ``text_emb (n_articles, d)``, entities, valence, topic."""

    text_emb: Any = None
    entities: Sequence[Iterable[str] | None] | None = None
    valence: Any = None
    topic: Sequence[str | None] | None = None

    def __len__(self) -> int:
        for x in (self.text_emb, self.entities, self.valence, self.topic):
            if x is not None:
                return len(x)
        return 0


def jaccard(a: Iterable[str] | None, b: Iterable[str] | None) -> float:
    """Jaccard index of two sets; NaN when either is unknown (None) or both are empty.

    >>> jaccard({"apple", "paris"}, {"apple"}), jaccard(set(), {"x"})
    (0.5, 0.0)
    """
    if a is None or b is None:
        return float("nan")
    a, b = set(a), set(b)
    u = len(a | b)
    return float(len(a & b) / u) if u else float("nan")


def _rowwise_cos(A: np.ndarray, ia: np.ndarray, B: np.ndarray, ib: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(len(ia), np.float32)
    for s in range(0, len(ia), chunk):
        out[s:s + chunk] = np.einsum("ij,ij->i", A[ia[s:s + chunk]], B[ib[s:s + chunk]])
    return np.clip(out, -1.0, 1.0)


def pair_features(ads: AdSide, articles: ArticleSide, ad_idx: Sequence[int], article_idx: Sequence[int],
                  *, joint: JointSpaceLike | None = None) -> dict[str, np.ndarray]:
    """The six F features for pairs ``(ads[ad_idx[k]], articles[article_idx[k]])``.

    Returns ``{name: (n_pairs,) float32}`` in :data:`PAIR_FEATURES` order. Missing inputs give
    NaN for the features that need them (never zeros).
    """
    ia, ib = _pair_index(ad_idx, article_idx, len(ads), len(articles))
    At, Bt = unit_rows(ads.text_emb, "ads.text_emb"), unit_rows(articles.text_emb, "articles.text_emb")
    if At is not None and Bt is not None and At.shape[1] != Bt.shape[1]:
        raise ValueError(f"ad text embeddings are {At.shape[1]}-d, article ones {Bt.shape[1]}-d")
    Ji = Jt = None
    Ai = unit_rows(ads.image_emb, "ads.image_emb")
    if joint is not None and Ai is not None and Bt is not None:
        Ji, Jt = joint_rows(joint.image_to_joint, Ai), joint_rows(joint.text_to_joint, Bt)
    return pair_features_from_unit(At, Bt, Ji, Jt, ads, articles, ia, ib)


def _pair_index(ad_idx, article_idx, n_ads: int, n_art: int) -> tuple[np.ndarray, np.ndarray]:
    ia = np.asarray(ad_idx, dtype=np.int64).ravel()
    ib = np.asarray(article_idx, dtype=np.int64).ravel()
    if ia.shape != ib.shape:
        raise ValueError(f"ad_idx has {ia.size} entries, article_idx {ib.size}")
    if ia.size and (ia.min() < 0 or ia.max() >= n_ads):
        raise ValueError(f"ad_idx out of range [0, {n_ads})")
    if ib.size and (ib.min() < 0 or ib.max() >= n_art):
        raise ValueError(f"article_idx out of range [0, {n_art})")
    return ia, ib


def unit_rows(x, what: str = "embeddings") -> np.ndarray | None:
    """Rows scaled to unit length as the pair features compare them (float32; missing (None) or
    all-zero rows -> NaN rows). Row k depends on row k only, so callers may normalise rows once and
    cache them."""
    if x is None:
        return None
    if isinstance(x, np.ndarray):
        a = x.astype(np.float32, copy=False)
    else:
        rows = list(x)
        dim = next((len(r) for r in rows if r is not None), None)
        if dim is None:
            return np.full((len(rows), 1), np.nan, np.float32)
        a = np.stack([np.full(dim, np.nan, np.float32) if r is None else np.asarray(r, np.float32) for r in rows])
    if a.ndim != 2:
        raise ValueError(f"{what} must be 2-D (rows x dim), got shape {a.shape}")
    n = np.linalg.norm(a, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(n > 0, a / n, np.nan)  # zero rows (empty text) -> missing
    return a.astype(np.float32)


def joint_rows(to_joint: Any, unit: np.ndarray) -> np.ndarray:
    """``to_joint`` (``image_to_joint`` / ``text_to_joint``) of the non-NaN ``unit`` rows, unit length;
    NaN rows stay NaN. ``(n, 1)`` of NaN when no row is usable."""
    n = unit.shape[0]
    ok = ~np.isnan(unit).any(axis=1)
    if not ok.any():
        return np.full((n, 1), np.nan, np.float32)
    z = np.asarray(to_joint(unit[ok]), np.float32)
    J = np.full((n, z.shape[1]), np.nan, np.float32)
    J[ok] = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return J


def pair_features_from_unit(At: np.ndarray | None, Bt: np.ndarray | None, Ji: np.ndarray | None, Jt: np.ndarray | None,
                            ads: AdSide, articles: ArticleSide, ia: np.ndarray, ib: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`pair_features` from vectors already prepared: ``At`` / ``Bt`` text rows of ads / articles
    by :func:`unit_rows`, ``Ji`` / ``Jt`` joint-space rows by :func:`joint_rows` (None = absent);
    entities, valence and topics from ``ads`` / ``articles``. The same arithmetic as
    :func:`pair_features`, for callers (the scoring service) that keep the prepared rows cached."""
    n = ia.size
    n_ads, n_art = len(ads), len(articles)
    nan = np.full(n, np.nan, np.float32)
    sim_t = _rowwise_cos(At, ia, Bt, ib) if At is not None and Bt is not None else nan.copy()
    if Ji is not None and Jt is not None and Ji.shape[1] == Jt.shape[1]:
        sim_i = _rowwise_cos(Ji, ia, Jt, ib)
    else:
        sim_i = nan.copy()

    # entities
    Ea = _as_sets(ads.entities, n_ads, "ads.entities")
    Eb = _as_sets(articles.entities, n_art, "articles.entities")
    ent = np.fromiter((jaccard(Ea[i], Eb[j]) for i, j in zip(ia, ib)), np.float32, count=n)

    # sentiment
    va = _opt_array(ads.valence, n_ads, "ads.valence")
    vb = _opt_array(articles.valence, n_art, "articles.valence")
    sent = (1.0 - np.abs(va[ia] - vb[ib]) / 2.0).astype(np.float32) if va is not None and vb is not None else nan.copy()

    # topics
    if ads.topic is not None and articles.topic is not None:
        ta = np.asarray(["" if t is None else str(t) for t in ads.topic], dtype=object)
        tb = np.asarray(["" if t is None else str(t) for t in articles.topic], dtype=object)
        if len(ta) != n_ads or len(tb) != n_art:
            raise ValueError("topic lists must have one entry per ad / article")
        xa, xb = ta[ia], tb[ib]
        known = (xa != "") & (xb != "")
        topic = np.where(known, (xa == xb).astype(np.float32), np.nan).astype(np.float32)
    else:
        topic = nan.copy()

    return {
        "sim_adtext_article": sim_t,
        "sim_adimage_article": sim_i,
        "entity_overlap_rate": ent,
        "sentiment_alignment": sent,
        "topic_match": topic,
        "contrast": (1.0 - sim_t).astype(np.float32),
    }


def pair_matrix(features: dict[str, np.ndarray]) -> np.ndarray:
    """Stack :func:`pair_features` output into ``(n_pairs, 6)`` float32 in :data:`PAIR_FEATURES` order."""
    return np.column_stack([features[k] for k in PAIR_FEATURES]).astype(np.float32)
