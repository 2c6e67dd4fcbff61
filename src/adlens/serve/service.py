"""The serving library: score, select, feedback, arms -- what ``adlens serve`` exposes over HTTP.

:class:`Service` owns one workspace, one :class:`~adlens.serve.scoring.ContextScorer`, one bandit
:class:`~adlens.bandit.policies.Selector` and the :class:`~adlens.bandit.state.BanditStore`. The
HTTP layer (:mod:`adlens.serve.app`) only parses and calls these methods.

Consistency model: the database is the truth; the service keeps a write-through copy of the arms'
counters and of the contextual policy's statistics so that a decision needs one write and no read.
With one process that copy is exact. With several processes on one workspace (``adlens serve
--workers N``, ``ServeConfig.refresh_s`` > 0) every process re-reads the counters from the database
in the background every ``refresh_s`` seconds, so a policy decides on counts at most that stale
(every decision still logs the counts it used, and the database's counts stay exact); the
contextual policy (LinUCB), whose statistics live in one process, needs a single process.

Example::

    svc = Service(ws, ServeConfig(policy="thompson"))
    d = svc.select({"article_id": "art_1"}, ["ad_1", "ad_2", "ad_3"])
    svc.feedback(event_id="e-1", decision_id=d["decision_id"], type="click")
"""

from __future__ import annotations

import json
import math
import operator
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa

from adlens.bandit import native_thompson
from adlens.bandit.jobs import current_weights
from adlens.bandit.policies import (
    ArmSnapshot,
    LinearState,
    LinUCB,
    Prior,
    Selector,
    ThompsonSampling,
    Weights,
    default_features,
    duplicate_flags,
    normalise_quality,
    policy_from_spec,
)
from adlens.bandit.state import BanditStore, DecisionRecord, decision_record
from adlens.errors import AdlensError, InvalidInput
from adlens.serve.scoring import ContextScorer


class ServiceClosed(AdlensError):
    """A write arrived after :meth:`Service.close` (e.g. a request racing the server's shutdown)."""

__all__ = ["ServeConfig", "Service"]

# per-candidate fields stored with each decision
_LOGGED = ("id", "p", "score", "impressions", "clicks", "duplicate", "brand_risk", "quality", "ctr", "novelty",
           "duplicate_penalty", "brand_penalty", "total")


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one service instance (CLI flags of ``adlens serve``; documented in the README).

    policy: policy spec (``thompson``, ``ucb1:alpha=0.5``, ``epsilon_greedy:epsilon=0.1``, ``linucb``).
    weights: composite weights; None = the workspace's current ones (``adlens bandit reweight``) or defaults.
    prior: cold-start prior of a new arm's CTR from its predicted quality.
    model_version: quality model to load (default latest).
    max_candidates: most candidates per request.
    max_body_bytes: largest request body accepted (base64 images count).
    impression_on_select: a decision counts as an impression of the chosen creative when made
        (serving = showing). False: impressions count only from ``impression`` / ``click`` events.
    feedback_window_s: events later than this after their decision are stored but not counted.
    random_state: seed of the selector (None = fresh entropy).
    preload: load every creative's and article's features at start (no first-sight reads later).
    precompute_pairs: with ``preload``, score every (creative, article) pair at start when there are
        at most this many (a float32 table; 0 = never): a select for them is then a lookup.
    refresh_s: re-read the arms' counters from the database every this many seconds (0 = never:
        one process, whose write-through copy is exact). Needed when several processes serve one
        workspace (``adlens serve --workers N``): each then also sees the others' decisions and clicks.
    """
    policy: str | Mapping[str, Any] = "thompson"
    weights: Weights | None = None
    prior: Prior = field(default_factory=Prior)
    model_version: str | None = None
    max_candidates: int = 200
    max_body_bytes: int = 8 * 1024 * 1024
    impression_on_select: bool = True
    feedback_window_s: float = 7 * 24 * 3600.0
    random_state: int | None = None
    preload: bool = True
    precompute_pairs: int = 2_000_000
    refresh_s: float = 0.0


class Service:
    """Score / select / feedback over one workspace (see module docstring)."""

    def __init__(self, ws, config: ServeConfig | None = None, context_extractor: Any = None,
                 creative_extractor: Any = None):
        self.ws = ws
        self.config = config or ServeConfig()
        self._engine, self._checkpointer = _writer_engine(ws.engine)
        self.store = BanditStore(self._engine)
        self.policy = policy_from_spec(self.config.policy)
        if isinstance(self.policy, ThompsonSampling) and not self.policy.exact:
            native_thompson.available()  # compile (or load) the kernel now, not in the first request
        self.weights = self.config.weights or current_weights(self.store)
        self.selector = Selector(self.policy, self.weights, self.config.prior, random_state=self.config.random_state)
        self._policy_json = json.dumps(self.policy.to_dict(), sort_keys=True)  # logged with every decision
        self._weights_json = json.dumps(self.weights.to_dict(), sort_keys=True)
        self.scorer = ContextScorer(ws, self.config.model_version, context_extractor=context_extractor)
        if self.config.preload:
            self.scorer.preload()
            self.scorer.precompute(self.config.precompute_pairs)
        self._creative_fx = creative_extractor
        self._lock = threading.RLock()  # one decision / one event at a time updates the caches
        self._write_lock = threading.Lock()  # one transaction at a time: SQLite has one writer anyway
        self._fx_lock = threading.Lock()
        self._arms: dict[str, list[float]] = {}  # id -> [impressions, clicks]
        self._in_db: set[str] = set()  # arms known to exist in the database
        self._groups: dict[str, str | None] = {}
        self.linear: LinearState | None = None
        self._linear_dim: int | None = None
        self.started = time.time()
        if self.config.refresh_s and self.contextual:
            raise InvalidInput(f"policy {self.policy.name} keeps its statistics in one process: "
                               "serve it with one worker (refresh_s = 0)")
        if self.config.refresh_s and self._checkpointer is not None:
            self._checkpointer.also(self.refresh_counts, self.config.refresh_s)
        self.counters = {"decisions": 0, "events_counted": 0, "events_duplicate": 0, "events_recorded": 0}
        self.closed = False  # set by close(); checked under _write_lock before every write

    def refresh_counts(self) -> int:
        """Re-read the counters of every arm this process has seen from the database (the other
        processes' decisions and events). Returns the arms refreshed."""
        with self._lock:
            ids = list(self._arms)
        got = self.store.arms(ids) if ids else {}
        with self._lock:
            for i, a in got.items():
                self._arms[i] = [float(a.impressions), float(a.clicks)]
        return len(got)

    # ------------------------------------------------------------------ helpers
    @property
    def contextual(self) -> bool:
        return isinstance(self.policy, LinUCB)

    def _window(self) -> timedelta | None:
        w = self.config.feedback_window_s
        return None if w is None or w <= 0 else timedelta(seconds=w)

    def _counts(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        missing = [i for i in ids if i not in self._arms]
        if missing:
            got = self.store.arms(missing)
            for i in missing:
                a = got.get(i)
                self._arms[i] = [float(a.impressions), float(a.clicks)] if a else [0.0, 0.0]
                if a:
                    self._in_db.add(i)
        imp = np.array([self._arms[i][0] for i in ids])
        clk = np.array([self._arms[i][1] for i in ids])
        return imp, clk

    def _duplicate_groups(self, ids: Sequence[str]) -> list[str | None]:
        """Canonical image (dedup ledger) of each creative: candidates sharing one are duplicates."""
        missing = [i for i in ids if i not in self._groups]
        if missing:
            from adlens.store.schema import creatives, ledger

            q = (sa.select(creatives.c.ad_id, ledger.c.canonical_id)
                 .join(ledger, ledger.c.image_id == creatives.c.image_id, isouter=True)
                 .where(creatives.c.ad_id.in_(missing)))
            with self.ws.engine.connect() as conn:
                found = {r.ad_id: (None if r.canonical_id is None else str(r.canonical_id)) for r in conn.execute(q)}
            for i in missing:
                self._groups[i] = found.get(i)
        return [self._groups[i] for i in ids]

    def _linear_state(self, dim: int) -> LinearState:
        if self.linear is None or self._linear_dim != dim:
            A, b, _ = self.store.linear_stats(dim, self.policy.ridge)
            self.linear = LinearState(A=A, b=b)
            self._linear_dim = dim
        return self.linear

    @staticmethod
    def _parse_candidates(candidates: Sequence[Any], max_n: int) -> tuple[list[str], dict[str, float], dict[str, float]]:
        """ids, given 1-10 quality overrides and brand risks from ``["id", {"id":, "quality":, "brand_risk":}]``."""
        if not isinstance(candidates, list | tuple) or not candidates:
            raise InvalidInput("candidates must be a non-empty list")
        if len(candidates) > max_n:
            raise InvalidInput(f"{len(candidates)} candidates; at most {max_n} per request")
        ids: list[str] = []
        qual: dict[str, float] = {}
        risk: dict[str, float] = {}
        for c in candidates:
            if isinstance(c, str):
                cid = c
            elif isinstance(c, Mapping) and isinstance(c.get("id"), str):
                cid = c["id"]
                if c.get("quality") is not None:
                    q = float(c["quality"])
                    if not (math.isfinite(q) and 1.0 <= q <= 10.0):
                        raise InvalidInput(f"candidate {cid!r}: quality must be a score in [1, 10], got {c['quality']!r}")
                    qual[cid] = q
                if c.get("brand_risk") is not None:
                    r = float(c["brand_risk"])
                    if not (math.isfinite(r) and 0.0 <= r <= 1.0):
                        raise InvalidInput(f"candidate {cid!r}: brand_risk must be in [0, 1], got {c['brand_risk']!r}")
                    risk[cid] = r
            else:
                raise InvalidInput(f"each candidate must be an id string or an object with an 'id'; got {c!r}")
            if not cid or len(cid) > 200:
                raise InvalidInput("candidate ids must be 1-200 characters")
            ids.append(cid)
        dup = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
        if dup:
            raise InvalidInput(f"candidate ids repeated: {', '.join(dup)}")
        return ids, qual, risk

    def fast_path(self, context: Mapping[str, Any] | None, candidates: Sequence[Any] = ()) -> bool:
        """True when a select needs nothing read or computed first: the context (article or text)
        and every candidate creative were seen before (their features are in memory)."""
        if not isinstance(context, Mapping):
            return True  # invalid: fails fast either way
        if context.get("text") is not None and not self.scorer.has_text(context["text"]):
            return False
        if context.get("article_id") is not None and not self.scorer.has_article(context["article_id"]):
            return False
        ids = (c if isinstance(c, str) else c.get("id") if isinstance(c, Mapping) else None for c in candidates)
        return self.scorer.has_ads(i for i in ids if isinstance(i, str))

    def context(self, context: Mapping[str, Any] | None):
        if not isinstance(context, Mapping):
            raise InvalidInput("context must be an object with 'article_id' or 'text'")
        extra = set(context) - {"article_id", "text"}
        if extra:
            raise InvalidInput(f"unknown context field(s): {', '.join(sorted(extra))}")
        return self.scorer.context(context.get("article_id"), context.get("text"))

    # ------------------------------------------------------------------ score
    def score(self, context: Mapping[str, Any], candidates: Sequence[Any], include_features: bool = True) -> dict[str, Any]:
        """Quality scores for catalog ids and/or new creatives ``{"image_b64", "text", "advertiser"}``."""
        if not isinstance(candidates, list | tuple) or not candidates:
            raise InvalidInput("candidates must be a non-empty list")
        if len(candidates) > self.config.max_candidates:
            raise InvalidInput(f"{len(candidates)} candidates; at most {self.config.max_candidates} per request")
        ctx = self.context(context)
        ids = [c if isinstance(c, str) else c.get("id") for c in candidates if isinstance(c, str) or
               (isinstance(c, Mapping) and "image_b64" not in c)]
        if any(not isinstance(i, str) for i in ids):
            raise InvalidInput("each candidate must be an id string, {'id': ...} or {'image_b64': ..., 'text': ...}")
        known = self.scorer.score(ids, ctx, with_features=include_features) if ids else {"scores": [], "features": []}
        new = [c for c in candidates if isinstance(c, Mapping) and "image_b64" in c]
        fresh = self._score_new(new, ctx) if new else {"scores": [], "features": [], "errors": []}
        results, ki, ni = [], 0, 0
        for c in candidates:
            if isinstance(c, Mapping) and "image_b64" in c:
                err = fresh["errors"][ni]
                s = fresh["scores"][ni]
                r = {"id": c.get("id") or f"new-{ni}", "new": True}
                if err:
                    r["error"] = err
                else:
                    r.update(_score_fields(s), features=fresh["features"][ni] if include_features else None)
                ni += 1
            else:
                s = known["scores"][ki]
                r = {"id": ids[ki], "new": False, **_score_fields(s)}
                if include_features:
                    r["features"] = known["features"][ki]
                ki += 1
            results.append(r)
        return {"model_version": self.scorer.version, "teacher": self.scorer.teacher,
                "context": {"key": ctx.key, "article_id": ctx.article_id}, "results": results}

    def _score_new(self, items: Sequence[Mapping[str, Any]], ctx) -> dict[str, Any]:
        import base64
        import binascii

        from adlens.ingest.validate import load_image

        fx = self._creative_extractor()
        rows, errors = [], []
        for n, c in enumerate(items):
            name = f"candidate {c.get('id') or n} image"
            try:
                raw = c.get("image_b64")
                if not isinstance(raw, str) or not raw:
                    raise InvalidInput(f"{name}: image_b64 must be a non-empty base64 string")
                try:
                    data = base64.b64decode(raw, validate=True)
                except (binascii.Error, ValueError):
                    raise InvalidInput(f"{name}: not valid base64") from None
                _, img = load_image(data, name, self.ws.settings.max_image_pixels)
                with self._fx_lock:  # OCR / embedding sessions: one creative at a time
                    rows.append(fx.extract(img, str(c.get("text") or ""), c.get("advertiser")))
                errors.append(None)
            except InvalidInput as e:  # one bad image must not fail the others
                rows.append(None)
                errors.append(str(e))
        good = [r for r in rows if r is not None]
        scored = self.scorer.score_new(good, ctx) if good else {"scores": [], "features": []}
        it = iter(range(len(good)))
        scores, feats = [], []
        for r in rows:
            if r is None:
                scores.append(math.nan)
                feats.append(None)
            else:
                j = next(it)
                scores.append(float(scored["scores"][j]))
                feats.append(scored["features"][j])
        return {"scores": scores, "features": feats, "errors": errors}

    def _creative_extractor(self):
        with self._lock:
            if self._creative_fx is None:
                from adlens.embed.jobs import image_model
                from adlens.features.jobs import default_creative_features

                self._creative_fx = default_creative_features(image_model=image_model(self.ws))
            elif callable(self._creative_fx) and not hasattr(self._creative_fx, "extract"):
                self._creative_fx = self._creative_fx()
            return self._creative_fx

    # ------------------------------------------------------------------ select
    def select(self, context: Mapping[str, Any], candidates: Sequence[Any]) -> dict[str, Any]:
        """Choose one candidate for ``context``; log the decision with its propensity (returns once
        the decision is committed: no client can hold a decision id the database does not know)."""
        out, rec, ids = self._decide(context, candidates)
        # Written in the calling thread, one transaction at a time: a write-queue thread with group
        # commit was measured too (BENCHMARKS.md) -- at 200 req/s its GIL hand-offs cost more than
        # the ~0.15 ms raw-SQLite commit it moved off the event loop.
        with self._write_lock:
            try:
                self._check_open()
                self.store.record_decisions([rec])
            except BaseException:
                self._undo(rec)
                raise
        with self._lock:
            self._in_db.update(ids)
            self.counters["decisions"] += 1
        return out

    def _check_open(self) -> None:
        # after close() the writer engine is disposed and its checkpointer stopped: a write would
        # silently open a new connection whose WAL nobody checkpoints
        if self.closed:
            raise ServiceClosed("the service is closed (shutting down): the request was not recorded")

    def _undo(self, rec: DecisionRecord) -> None:
        """A decision's write failed: take back the impression the policy counted when it decided."""
        with self._lock:
            if rec.row["impression"]:
                self._arms[rec.row["chosen"]][0] -= 1
            self.linear = None  # rebuilt from the log on next use

    def _decide(self, context: Mapping[str, Any], candidates: Sequence[Any]) -> tuple[dict[str, Any], DecisionRecord, list[str]]:
        ids, given_q, risk = self._parse_candidates(candidates, self.config.max_candidates)
        ctx = self.context(context)
        need = [i for i in ids if i not in given_q]
        scores = np.full(len(ids), np.nan)
        if need:
            s = self.scorer.score(need, ctx)["scores"]
            pos = {i: k for k, i in enumerate(need)}
            scores = np.array([given_q[i] if i in given_q else s[pos[i]] for i in ids], dtype=np.float64)
        else:
            scores = np.array([given_q[i] for i in ids], dtype=np.float64)
        quality = normalise_quality(scores)
        groups = self._duplicate_groups(ids)
        with self._lock:
            imp, clk = self._counts(ids)
            snap = ArmSnapshot(ids=tuple(ids), quality=quality, clicks=clk, impressions=imp,
                               duplicate=duplicate_flags(groups, np.where(np.isnan(quality), 0.5, quality)),
                               brand_risk=np.array([risk.get(i, 0.0) for i in ids]))
            x_all = default_features(snap, self.config.prior) if self.contextual else None
            if x_all is not None:
                snap.x = x_all
            state = self._linear_state(x_all.shape[1]) if x_all is not None else None
            choice = self.selector.select(snap, state)
            x = None if x_all is None else x_all[choice.index]
            if self.config.impression_on_select:  # counted now, undone if the write fails
                self._arms[choice.arm_id][0] += 1
                if state is not None:
                    state.partial_fit(x, np.zeros(1))
            new_q = {i: _finite(quality[k]) for k, i in enumerate(ids) if i not in self._in_db}
        decision_id = uuid.uuid4().hex
        # counts at decision time + inputs: enough to replay any policy on this row off-line (OPE)
        cols = {"p": choice.probabilities, "score": scores, "impressions": imp, "clicks": clk,
                "brand_risk": snap.brand_risk, **choice.components}
        names = ["id", "duplicate", *cols]
        columns = [ids, np.asarray(snap.duplicate, bool).tolist(), *_columns(cols.values())]
        rows = list(zip(*columns))  # one tuple per candidate, in ``names`` order
        cands = [dict(zip(names, r)) for r in rows]
        # the log keeps what OPE / reweight / replay need (the weighted terms follow from weights)
        keep = [k for k, n in enumerate(names) if k < 2 or n in _LOGGED]
        log_names, pick = [names[k] for k in keep], operator.itemgetter(*keep)
        logged = [dict(zip(log_names, pick(r))) for r in rows]
        rec = decision_record(
            decision_id=decision_id, chosen=choice.arm_id, propensity=float(choice.propensity),
            candidates=orjson.dumps(logged).decode(), policy=self._policy_json, weights=self._weights_json,
            context_id=ctx.article_id, context_hash=ctx.key, model_version=self.scorer.version, x=x,
            count_impression=self.config.impression_on_select, quality=new_q, arms_exist=True)
        out = {"decision_id": decision_id, "chosen": choice.arm_id, "propensity": float(choice.propensity),
               "policy": self.policy.to_dict(), "model_version": self.scorer.version,
               "context": {"key": ctx.key, "article_id": ctx.article_id}, "candidates": cands}
        return out, rec, ids

    # ------------------------------------------------------------------ feedback
    def feedback(self, *, event_id: str, decision_id: str, type: str, value: float | None = None,
                 occurred_at: datetime | None = None) -> dict[str, Any]:
        """Record one event (idempotent by ``event_id``; late events accepted, see ServeConfig)."""
        with self._write_lock:
            self._check_open()
            r = self.store.record_event(event_id, decision_id, type, value, occurred_at, window=self._window())
        ch = r["changed"]
        fresh = self.store.arms([r["arm_id"]]).get(r["arm_id"]) if self.config.refresh_s and ch else None
        with self._lock:
            arm = self._arms.get(r["arm_id"])
            if arm is not None and fresh is not None:  # other processes count too: take the database's
                arm[:] = [float(fresh.impressions), float(fresh.clicks)]
            elif arm is not None:  # keep the write-through copy equal to the database
                arm[0] += ch.get("impressions", 0)
                arm[1] += ch.get("clicks", 0)
            if self.linear is not None and ("impressions" in ch or "clicks" in ch):
                x = self.store.decision(decision_id).get("x")
                if x is not None and len(x) == self._linear_dim:
                    xv = np.asarray(x, float)
                    if "impressions" in ch:
                        self.linear.partial_fit(xv, np.zeros(1))
                    if "clicks" in ch:
                        self.linear.b = self.linear.b + xv  # reward of an already-counted impression
            self.counters["events_" + ("duplicate" if r["status"] == "duplicate" else
                                       "counted" if r["status"] == "counted" else "recorded")] += 1
        return {"event_id": event_id, "decision_id": decision_id, **r}

    # ------------------------------------------------------------------ arms
    def arms(self, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Counters and posterior of every arm (or ``ids``), best posterior mean first."""
        from adlens.bandit.jobs import arms_table

        return arms_table(self.ws, ids, self.config.prior)

    def close(self) -> None:
        """Stop the background checkpointer (after a last checkpoint) and release the writer engine.
        Writes in flight finish first; later selects and feedback raise :class:`ServiceClosed`
        (HTTP 503). Calling it again does nothing."""
        with self._write_lock:
            if self.closed:
                return
            self.closed = True
        try:
            if self._checkpointer is not None:
                self._checkpointer.stop()  # its last checkpoint can fail (database busy): release anyway
        finally:
            self.store.close()
            if self._engine is not self.ws.engine:
                self._engine.dispose()

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "pid": os.getpid(), "model_version": self.scorer.version, "policy": self.policy.to_dict(),
                "weights": self.weights.to_dict(), "uptime_s": round(time.time() - self.started, 1),
                **self.counters}


class _Checkpointer:
    """Moves SQLite's WAL into the database file every ``interval`` s from a daemon thread, so that
    no request pays for a checkpoint's fsync (the writer engine has autocheckpoint off)."""

    def __init__(self, engine: sa.Engine, interval: float = 1.0):
        self.engine, self.interval = engine, interval
        self._extra: list[list] = []  # [fn, every_s, last_run]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="adlens-wal-checkpoint", daemon=True)
        self._thread.start()

    def checkpoint(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def also(self, fn, every_s: float) -> None:
        """Run ``fn()`` from this thread too, every ``every_s`` seconds (e.g. re-reading counters)."""
        self._extra.append([fn, float(every_s), time.monotonic()])
        self.interval = min(self.interval, float(every_s))

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            for job in self._extra:
                if now - job[2] >= job[1]:
                    job[2] = now
                    try:
                        job[0]()
                    except sa.exc.OperationalError:
                        pass  # busy: next round
            if now - last < 1.0:
                continue
            last = now
            try:
                self.checkpoint()
            except sa.exc.OperationalError:
                pass  # busy: the next round will do it

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.checkpoint()


def _writer_engine(engine: sa.Engine):
    """The engine the service writes through: for SQLite, a second engine on the same file with
    commit-time checkpoints off plus a background checkpointer; otherwise ``engine`` itself."""
    if engine.dialect.name != "sqlite":
        return engine, None
    from adlens.store.db import make_engine

    w = make_engine(engine.url.render_as_string(hide_password=False), wal_autocheckpoint=0)
    return w, _Checkpointer(w)


def _columns(arrays) -> list[list]:
    """Per-candidate arrays -> JSON-ready float lists (NaN / inf -> None), one pass over a (columns, K) block."""
    M = np.array([np.asarray(a, np.float64) for a in arrays])
    out = M.tolist()
    if not np.isfinite(M).all():
        out = [[v if math.isfinite(v) else None for v in c] for c in out]
    return out


def _finite(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _score_fields(s: float) -> dict[str, Any]:
    s = float(s)
    return {"score": _finite(s), "quality": _finite(normalise_quality(s))}
