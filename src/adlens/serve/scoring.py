"""Quality scores of candidate creatives for one context, loaded once and cached for the service.

The batch path (:func:`adlens.quality.jobs.score`) reads the feature store per call; a service
cannot. :class:`ContextScorer` keeps, in memory:

- the latest registered student compiled into a :class:`~adlens.quality.fast.FastScorer`;
- per creative (loaded on first sight, in one batch per request): its M feature row and the vectors
  the pair features need (copy text embedding, image embedding, entities, valence, topic);
- per context: the article's stored features (``article_id``) or, for free text, features computed
  once and kept in an LRU keyed by the text's sha256;
- per (model, creative, context): the score, in an LRU -- the same candidates for the same page
  are scored once.

New creatives sent as images (``/v1/score``) are featurised on the spot with the default creative
extractor (OCR + embeddings: ~0.2-0.5 s each) and never cached under an id.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adlens.errors import InvalidInput
from adlens.features.pair import entity_set

__all__ = ["ContextScorer", "Context", "UnknownIds"]


class UnknownIds(InvalidInput):
    """Candidate or article ids the workspace does not know."""

    def __init__(self, what: str, ids: Sequence[str]):
        self.ids = list(ids)
        shown = ", ".join(repr(i) for i in self.ids[:10]) + (" ..." if len(self.ids) > 10 else "")
        super().__init__(f"unknown {what}: {shown}")


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_(self, k):
        v = self.get(k)
        if v is not None:
            self.move_to_end(k)
        return v

    def put(self, k, v) -> None:
        self[k] = v
        self.move_to_end(k)
        while len(self) > self.size:
            self.popitem(last=False)


@dataclass(frozen=True)
class _Side:
    """What the pair features need from one creative or one context."""
    text_emb: np.ndarray | None
    image_emb: np.ndarray | None  # already in the joint space (None without one)
    entities: Any
    valence: float | None
    topic: str | None
    m_row: dict[str, Any] | None = None  # creatives only
    units: dict = field(default_factory=dict, compare=False, repr=False)  # cache of ContextScorer._unit


@dataclass(frozen=True)
class Context:
    """A resolved context: ``key`` identifies it in caches and logs (article id or text sha256)."""
    key: str
    article_id: str | None
    side: _Side


class ContextScorer:
    """Scores ``(creative ids) x context`` with the workspace's latest quality model.

    Args:
        ws: an open workspace.
        version: model version to load (default: latest). No registered model -> scores are NaN and
            :attr:`version` is None (the bandit then falls back to its prior).
        context_extractor: factory or :class:`~adlens.features.context.ContextFeatures` for free-text
            contexts (default: the workspace's default models, built on first use).
        cache_size: entries of each LRU (scores, text contexts).
    """

    def __init__(self, ws, version: str | None = None, context_extractor: Any = None, cache_size: int = 100_000):
        from adlens.features.jobs import JOINT_FILE

        self.ws = ws
        self._ctx_fx = context_extractor
        self._lock = threading.Lock()  # caches are shared by the service's worker threads
        self._score_lock = threading.Lock()
        self._fx_lock = threading.Lock()
        self._ads: dict[str, _Side] = {}
        self._articles: dict[str, Context] = {}
        self._texts = _LRU(min(cache_size, 4096))
        self._scores = _LRU(cache_size)
        self._mvec: dict[str, np.ndarray] = {}  # creative id -> encoded M part of its model row
        self._table = None  # (version, ad id -> column, context key -> row, scores) from precompute()
        self.student = self.fast = self.version = None
        self.teacher = None
        self.joint = None
        from adlens.quality.jobs import registry

        reg = registry(ws)
        try:
            path = reg.path(version)
        except FileNotFoundError:
            if version is not None:
                raise InvalidInput(f"quality model {version!r} is not registered") from None
            path = None
        if path is not None:
            import json

            from adlens.quality.fast import FastScorer

            self.student = reg.load(path.name)
            self.fast = FastScorer.from_student(self.student)
            self.version = path.name
            card = path / "card.json"
            self.teacher = json.loads(card.read_text()).get("teacher") if card.exists() else None
        jp = ws.models_dir / JOINT_FILE
        if jp.exists():  # only a saved joint space: fitting one here would stall a request
            from adlens.features.joint import JointSpace

            self.joint = JointSpace.load(jp)

    # ------------------------------------------------------------------ creatives
    def known_ads(self, ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """``(known, unknown)`` ids: known = in the catalog (whether or not featurised)."""
        self._load_ads(ids)
        unknown = [i for i in ids if i not in self._ads]
        return [i for i in ids if i in self._ads], unknown

    def _load_ads(self, ids: Sequence[str]) -> None:
        missing = [i for i in dict.fromkeys(ids) if i not in self._ads]
        if not missing:
            return
        from adlens.features.jobs import AD_IMAGE_KIND, AD_WORDS_KIND, ad_records, embedding_matrix, load_features
        from adlens.quality.jobs import _m_row

        recs = {r.ad_id for r in ad_records(self.ws, missing)}
        rows = {r["ad_id"]: r for r in load_features(self.ws, "ads", recs)} if recs else {}
        got = [rows[i] for i in missing if i in rows]
        Xt = embedding_matrix(self.ws, got, "text_embedding", AD_WORDS_KIND)[0] if got else None
        Xi = embedding_matrix(self.ws, got, "image_embedding", AD_IMAGE_KIND)[0] if got else None
        with self._lock:
            for k, r in enumerate(got):
                self._ads[r["ad_id"]] = _Side(_row_vec(Xt, k), self._project(_row_vec(Xi, k)), entity_set(r.get("ad_entities")),
                                             r.get("copy_valence"), r.get("ad_topic"), _m_row(r))
            for i in recs - set(rows):  # in the catalog, not featurised yet: scored as missing features
                self._ads[i] = _Side(None, None, None, None, None, None)

    def _project(self, image_emb: np.ndarray | None) -> np.ndarray | None:
        """A creative's image vector in the joint space, computed once per creative (not per request)."""
        if image_emb is None or self.joint is None:
            return None
        return np.asarray(self.joint.image_to_joint(image_emb[None, :])[0], np.float32)

    # ------------------------------------------------------------------ contexts
    def context(self, article_id: str | None = None, text: str | None = None) -> Context:
        """Resolve a context given by ``article_id`` (stored features) or ``text`` (computed, cached)."""
        if (article_id is None) == (text is None):
            raise InvalidInput("give exactly one of article_id or text as the context")
        if article_id is not None:
            return self._article(article_id)
        if not text.strip():
            raise InvalidInput("context text is empty")
        key = "text:" + hashlib.sha256(text.encode()).hexdigest()
        hit = self._texts.get_(key)
        if hit is not None:
            return hit
        fx = self._context_extractor()
        with self._fx_lock:  # one extraction at a time: the NLP pipeline is not shared across threads
            art = fx.extract(text)
        emb = art.get("text_embedding")
        ctx = Context(key, None, _Side(None if emb is None else np.asarray(emb, np.float32), None, entity_set(art.get("entities")),
                                       art.get("valence"), art.get("topic")))
        with self._lock:
            self._texts.put(key, ctx)
        return ctx

    def has_text(self, text: str) -> bool:
        """Whether the features of this free-text context are cached."""
        return ("text:" + hashlib.sha256(text.encode()).hexdigest()) in self._texts

    def has_article(self, article_id: str) -> bool:
        return article_id in self._articles

    def has_ads(self, ids) -> bool:
        return all(i in self._ads for i in ids)

    def _article(self, article_id: str) -> Context:
        ctx = self._articles.get(article_id)
        if ctx is None:
            self._load_articles([article_id])
            ctx = self._articles.get(article_id)
            if ctx is None:
                raise UnknownIds("article_id", [article_id])
        return ctx

    def _load_articles(self, ids: Sequence[str] | None) -> None:
        """Load the stored features of articles ``ids`` (all when None) in one batch."""
        from adlens.features.jobs import ARTICLE_TEXT_KIND, article_records, embedding_matrix, load_features

        recs = {r.article_id for r in article_records(self.ws, ids)}
        if not recs:
            return
        rows = load_features(self.ws, "articles", recs)
        Bt = embedding_matrix(self.ws, rows, "text_embedding", ARTICLE_TEXT_KIND)[0] if rows else None
        got = {}
        for k, r in enumerate(rows):
            got[r["article_id"]] = _Side(_row_vec(Bt, k), None, entity_set(r.get("entities")), r.get("valence"),
                                         r.get("topic"))
        with self._lock:
            for a in recs:  # an article without features yet is scored with missing context features
                self._articles[a] = Context(f"article:{a}", a, got.get(a, _Side(None, None, None, None, None)))

    def preload(self, max_items: int = 200_000) -> dict[str, int]:
        """Load every creative's and article's features now (service start), so that no request pays
        for a first sight. Workspaces larger than ``max_items`` per kind are left to lazy loading."""
        from adlens.features.jobs import ad_records, article_records

        ads = [r.ad_id for r in ad_records(self.ws)]
        arts = [r.article_id for r in article_records(self.ws)]
        if len(ads) <= max_items:
            self._load_ads(ads)
        if len(arts) <= max_items:
            self._load_articles(None)
        if self.student is not None and self._ads:
            ids = [a for a in self._ads if a not in self._mvec]
            self._matrix_m(ids)
        return {"ads": len(self._ads), "articles": len(self._articles)}

    def precompute(self, max_pairs: int = 2_000_000) -> int:
        """Score every (loaded creative, loaded article) pair now, into one float32 table, so that a
        request for them is a lookup: what an ad server does with a catalogue it knows. Creatives or
        articles seen later, and free-text contexts, are scored per request as before. Skipped (0)
        above ``max_pairs`` pairs (4 bytes each) or without a model. Returns the pairs scored.
        The scores are the per-request path's exactly (same rows, same evaluator)."""
        if self.fast is None or not self._ads or not self._articles:
            return 0
        ids, arts = list(self._ads), list(self._articles)
        if len(ids) * len(arts) > max_pairs:
            return 0
        sides = [self._ads[a] for a in ids]
        table = np.empty((len(arts), len(ids)), np.float32)
        for j, a in enumerate(arts):
            X = self._matrix(ids, sides, self._articles[a].side)
            with self._score_lock:
                table[j] = self.fast.score(X)
        self._table = (self.version, {a: i for i, a in enumerate(ids)},
                       {self._articles[a].key: j for j, a in enumerate(arts)}, table)
        return table.size

    def _lookup(self, ad_ids: Sequence[str], ctx: Context) -> np.ndarray | None:
        """Scores of ``ad_ids`` for ``ctx`` from the precomputed table; None if any pair is not in it."""
        if self._table is None:
            return None
        version, cols, rows, table = self._table
        j = rows.get(ctx.key)
        if j is None or version != self.version:
            return None
        try:
            idx = [cols[a] for a in ad_ids]
        except KeyError:
            return None
        return table[j, idx].astype(np.float64)

    def _context_extractor(self):
        with self._lock:
            if self._ctx_fx is None or (callable(self._ctx_fx) and not hasattr(self._ctx_fx, "extract")):
                if self._ctx_fx is None:
                    from adlens.features.jobs import default_context_features

                    self._ctx_fx = default_context_features()
                else:
                    self._ctx_fx = self._ctx_fx()
            return self._ctx_fx

    # ------------------------------------------------------------------ scoring
    def score(self, ad_ids: Sequence[str], ctx: Context, with_features: bool = False) -> dict[str, Any]:
        """Scores (1-10; NaN without a model) of catalog creatives ``ad_ids`` for ``ctx``.

        Returns ``{"scores": (K,) float64, "features": [dict] | None, "cached": int}``; unknown ids
        raise :class:`UnknownIds`."""
        if not with_features:
            pre = self._lookup(ad_ids, ctx)
            if pre is not None:  # every id is in the table, hence known
                return {"scores": pre, "features": None, "cached": len(ad_ids)}
        _, unknown = self.known_ads(ad_ids)
        if unknown:
            raise UnknownIds("creative id(s)", unknown)
        K = len(ad_ids)
        scores = np.full(K, np.nan)
        if self.fast is None:
            return {"scores": scores, "features": [None] * K if with_features else None, "cached": 0}
        todo: list[int] = []
        feats: list[dict | None] = [None] * K
        for k, a in enumerate(ad_ids):
            hit = self._scores.get_((self.version, a, ctx.key))
            if hit is not None and (not with_features or hit[1] is not None):
                scores[k] = hit[0]
                feats[k] = hit[1]
            else:
                todo.append(k)
        if todo:
            sides = [self._ads[ad_ids[k]] for k in todo]
            if with_features:
                rows = self._rows(sides, ctx.side)
                X = self.student.matrix(rows)
            else:  # the hot path of /v1/select: encoded creative rows + the pair feature columns
                rows = None
                X = self._matrix([ad_ids[k] for k in todo], sides, ctx.side)
            with self._score_lock:  # FastScorer reuses one input/output buffer
                vals = self.fast.score(X)
            with self._lock:
                for j, k in enumerate(todo):
                    scores[k] = float(vals[j])
                    feats[k] = _clean(rows[j], self.student.features) if with_features else None
                    self._scores.put((self.version, ad_ids[k], ctx.key), (scores[k], feats[k]))
        return {"scores": scores, "features": feats if with_features else None, "cached": K - len(todo)}

    def score_new(self, rows: Sequence[Mapping[str, Any]], ctx: Context) -> dict[str, Any]:
        """Scores of creatives featurised on the spot (rows of :meth:`CreativeFeatures.extract`)."""
        from adlens.quality.jobs import _m_row

        sides = [_Side(_vec(r.get("text_embedding")), self._project(_vec(r.get("image_embedding"))), r.get("ad_entities"),
                       r.get("copy_valence"), r.get("ad_topic"), _m_row(r)) for r in rows]
        full = self._rows(sides, ctx.side)
        if self.fast is None:
            return {"scores": np.full(len(rows), np.nan), "features": [_clean(r, list(r)) for r in full]}
        X = self.student.matrix(full)
        with self._score_lock:
            vals = self.fast.score(X)
        return {"scores": vals.astype(np.float64), "features": [_clean(r, self.student.features) for r in full]}

    def _matrix(self, ad_ids: Sequence[str], sides: Sequence[_Side], art: _Side) -> np.ndarray:
        """The encoded ``(K, n_features)`` matrix without building per-row dicts: each creative's
        encoded M part is computed once and cached; the F columns are filled per request."""
        self._matrix_m([a for a in ad_ids if a not in self._mvec])
        X = np.stack([self._mvec[a] for a in ad_ids])
        F = self._pair(sides, art)
        for j, n in enumerate(self.student.features):
            if n in F:
                X[:, j] = F[n]
        return X

    def _matrix_m(self, ad_ids: Sequence[str]) -> None:
        """Encode and cache the M part of the model row of creatives ``ad_ids``."""
        if not ad_ids:
            return
        enc = self.student.matrix(self._rows_m([self._ads[a] for a in ad_ids]))
        with self._lock:
            for a, row in zip(ad_ids, enc):
                self._mvec[a] = row

    def _rows_m(self, sides: Sequence[_Side]) -> list[dict[str, Any]]:
        out = []
        for s in sides:
            row = dict(s.m_row) if s.m_row is not None else {}
            for n in self.student.features:
                row.setdefault(n, math.nan)
            out.append(row)
        return out

    def _pair(self, sides: Sequence[_Side], art: _Side) -> dict[str, np.ndarray]:
        """Pair features of ``sides`` x one context from unit rows cached per creative and per
        context (normalising and projecting ~1,300 floats per candidate per request was most of a
        select's scoring time); the arithmetic is :func:`~adlens.features.pair.pair_features`'s."""
        from adlens.features.pair import AdSide, ArticleSide, pair_features_from_unit

        K = len(sides)
        units = [self._unit(s, False) for s in sides]
        bt, jt = self._unit(art, True)
        At = _stack([u[0] for u in units])
        Ji = _stack([u[1] for u in units])
        Bt = None if bt is None else bt[None, :]
        if At is not None and Bt is not None and At.shape[1] != Bt.shape[1]:
            At = None  # different text models: similarity undefined, left NaN
        Jt = None if jt is None or Ji is None else jt[None, :]
        return pair_features_from_unit(
            At if Bt is not None else None, Bt, Ji, Jt,
            AdSide(entities=[s.entities for s in sides], valence=[s.valence for s in sides], topic=[s.topic for s in sides]),
            ArticleSide(entities=[art.entities], valence=[art.valence], topic=[art.topic]),
            np.arange(K), np.zeros(K, np.int64))

    def _unit(self, side: _Side, context: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(unit text row, unit joint row) of a creative (joint: its projected image) or a context
        (joint: its text mapped by the joint space), computed once per object."""
        hit = side.units.get("rows")
        if hit is not None:
            return hit
        from adlens.features.pair import joint_rows, unit_rows

        t = None if side.text_emb is None else unit_rows(side.text_emb[None, :])
        j = None
        if self.joint is not None:
            if context and t is not None:
                j = joint_rows(self.joint.text_to_joint, t)
            elif not context and side.image_emb is not None:
                j = joint_rows(lambda z: z, unit_rows(side.image_emb[None, :]))
        out = (None if t is None or np.isnan(t).any() else t[0], None if j is None or np.isnan(j).any() else j[0])
        side.units["rows"] = out  # one dict item store: atomic under the GIL
        return out

    def _rows(self, sides: Sequence[_Side], art: _Side) -> list[dict[str, Any]]:
        from adlens.quality.jobs import F_FEATURES

        F = self._pair(sides, art)
        out = []
        for k, s in enumerate(sides):
            row = dict(s.m_row) if s.m_row is not None else {}
            row.update({n: float(F[n][k]) for n in F_FEATURES if n in F})
            if self.student is not None:
                for n in self.student.features:
                    row.setdefault(n, math.nan)
            out.append(row)
        return out


class _Projected:
    """The joint space for creatives whose image vectors are already projected (see ``_project``)."""

    def __init__(self, joint):
        self.joint = joint

    @staticmethod
    def image_to_joint(z: np.ndarray) -> np.ndarray:
        return z

    def text_to_joint(self, x: np.ndarray) -> np.ndarray:
        return self.joint.text_to_joint(x)


def _vec(v) -> np.ndarray | None:
    return None if v is None else np.asarray(v, np.float32)


def _row_vec(M: np.ndarray | None, k: int) -> np.ndarray | None:
    if M is None or np.isnan(M[k]).any():
        return None
    return M[k]


def _stack(vs: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """``(K, d)`` with NaN rows for missing vectors; None when no vector is present."""
    d = next((v.shape[0] for v in vs if v is not None), None)
    if d is None:
        return None
    M = np.full((len(vs), d), np.nan, np.float32)
    for k, v in enumerate(vs):
        if v is not None and v.shape[0] == d:
            M[k] = v
    return M


def _clean(row: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """Features as JSON-safe values (NaN -> None), in the model's order."""
    out = {}
    for n in names:
        v = row.get(n)
        if isinstance(v, float | np.floating) and not math.isfinite(v):
            v = None
        elif isinstance(v, np.generic):
            v = v.item()
        out[n] = v
    return out
