"""Bandit state in the catalog database: arms' counters, decisions, feedback events, API keys.

Everything the service learns is a row, written in one transaction with the counters it changes,
so a restart (or a crash between two requests) loses nothing and a retried event counts once:

- a decision row holds the candidates, the policy's probabilities (the propensities), each
  candidate's score components and 0/1 flags ``impression`` / ``clicked`` / ``converted``;
- a feedback event is inserted under the client's ``event_id`` (primary key: a retry is a no-op)
  and flips its decision's flag with ``UPDATE ... WHERE flag = 0``; only when that update changed a
  row does the arm's counter get ``+ 1`` -- so N concurrent copies of a click count once;
- the contextual policy's sufficient statistics (A = ridge*I + sum x x', b = sum r x) are not
  stored: they are rebuilt from the decisions' ``x`` on start-up (:meth:`BanditStore.linear_stats`).

Example::

    store = BanditStore(ws.engine)
    store.record_decision(decision_id="d1", chosen="ad_7", propensity=0.4, candidates=[...], ...)
    store.record_event("e1", "d1", "click")   # -> {"status": "counted", ...}
    store.record_event("e1", "d1", "click")   # -> {"status": "duplicate", ...}
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

from adlens.errors import InvalidInput
from adlens.store.schema import (
    api_keys,
    bandit_arms,
    bandit_decisions,
    bandit_events,
    bandit_state,
)

__all__ = ["ArmCounts", "BanditStore", "DecisionRecord", "decision_record", "EVENT_TYPES", "UnknownDecision", "EventConflict", "hash_key"]

EVENT_TYPES = ("impression", "click", "conversion", "dwell")
# One dwell event longer than a day is a client bug (seconds sent as ms, a tab left open); without a
# bound, repeated huge values sum to inf in the arm's total and break every export of it.
MAX_DWELL_MS = 86_400_000.0
# event type -> (decision flag it sets once, arm counter it increments once)
_ONCE = {"impression": ("impression", "impressions"), "click": ("clicked", "clicks"),
         "conversion": ("converted", "conversions")}


_INSERT_DECISION = sa.insert(bandit_decisions)
_COUNT_IMPRESSION = (sa.update(bandit_arms).where(bandit_arms.c.arm_id == sa.bindparam("arm"))
                     .values(impressions=bandit_arms.c.impressions + 1, updated_at=sa.bindparam("now")))


_SQLITE_INSERT_DECISION = "INSERT INTO bandit_decisions ({}) VALUES ({})".format(
    ", ".join(c.name for c in bandit_decisions.columns), ", ".join("?" for _ in bandit_decisions.columns))
_SQLITE_NEW_ARM = ("INSERT OR IGNORE INTO bandit_arms (arm_id, quality, impressions, clicks, conversions, dwell_ms, "
                   "created_at, updated_at) VALUES (?, ?, 0, 0, 0, 0.0, ?, ?)")
_SQLITE_COUNT_IMPRESSION = "UPDATE bandit_arms SET impressions = impressions + 1, updated_at = ? WHERE arm_id = ?"


class UnknownDecision(InvalidInput):
    """Feedback for a decision id the service never made."""


class EventConflict(InvalidInput):
    """An event id re-used with another decision or type (a client bug, not a retry)."""


@dataclass(frozen=True)
class ArmCounts:
    arm_id: str
    quality: float | None
    impressions: int
    clicks: int
    conversions: int
    dwell_ms: float


def _now() -> datetime:
    return datetime.now(UTC)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _arm(row) -> ArmCounts:
    return ArmCounts(row.arm_id, row.quality, int(row.impressions), int(row.clicks), int(row.conversions),
                     float(row.dwell_ms))


@dataclass(frozen=True)
class DecisionRecord:
    """One decision ready to store: its row and the arms it may create (id -> prior quality)."""
    row: dict[str, Any]
    quality: dict[str, float | None]


def decision_record(*, decision_id: str, chosen: str, propensity: float, candidates: list[dict] | str,
                    policy: Mapping[str, Any] | str, weights: Mapping[str, Any] | str, context_id: str | None,
                    context_hash: str, model_version: str | None = None, x: Sequence[float] | None = None,
                    count_impression: bool = True, quality: Mapping[str, float | None] | None = None,
                    created_at: datetime | None = None, arms_exist: bool = False) -> DecisionRecord:
    """Validate and encode one decision (see :meth:`BanditStore.record_decision` for the arguments;
    ``candidates`` / ``policy`` / ``weights`` may be given as JSON text already)."""
    if not 0.0 < propensity <= 1.0:
        raise InvalidInput(f"propensity must be in (0, 1], got {propensity}")
    row = dict(
        decision_id=decision_id, created_at=created_at or _now(), context_id=context_id, context_hash=context_hash,
        policy=policy if isinstance(policy, str) else json.dumps(dict(policy), sort_keys=True),
        weights=weights if isinstance(weights, str) else json.dumps(dict(weights), sort_keys=True),
        model_version=model_version, chosen=chosen, propensity=float(propensity),
        candidates=candidates if isinstance(candidates, str) else json.dumps(candidates, allow_nan=False),
        x=None if x is None else json.dumps([float(v) for v in x]),
        impression=1 if count_impression else 0, clicked=0, converted=0, dwell_ms=0.0)
    qual = {a: _q(q) for a, q in (quality or {}).items()}
    if not arms_exist:
        qual.setdefault(chosen, None)  # the chosen arm must exist to count its impression
    return DecisionRecord(row, qual)


class BanditStore:
    """Transactional access to the serving tables of one catalog database (see module docstring)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._dt_bind = None
        # the raw connection the SQLite decision writes keep (see _record_decisions_sqlite)
        self._raw = None
        self._raw_lock = threading.Lock()

    def close(self) -> None:
        """Return the kept decision-writer connection to the engine's pool (the store stays usable)."""
        with self._raw_lock:
            if self._raw is not None:
                self._raw.close()
                self._raw = None

    # ------------------------------------------------------------------ arms
    def arms(self, ids: Sequence[str] | None = None) -> dict[str, ArmCounts]:
        """Counters of ``ids`` (all arms when None); unknown ids are absent from the result."""
        q = sa.select(bandit_arms)
        out: dict[str, ArmCounts] = {}
        with self.engine.connect() as conn:
            if ids is None:
                return {r.arm_id: _arm(r) for r in conn.execute(q)}
            ids = list(ids)
            for s in range(0, len(ids), 500):
                for r in conn.execute(q.where(bandit_arms.c.arm_id.in_(ids[s:s + 500]))):
                    out[r.arm_id] = _arm(r)
        return out

    def _ensure_arms(self, conn: sa.Connection, quality: Mapping[str, float | None], now: datetime) -> None:
        """Insert arms not seen before, with their first predicted quality (the cold-start prior shown by
        ``bandit arms``; quality depends on the context, so the policy uses each request's own)."""
        ids = list(quality)
        have = {}
        for s in range(0, len(ids), 500):
            for r in conn.execute(sa.select(bandit_arms.c.arm_id, bandit_arms.c.quality)
                                  .where(bandit_arms.c.arm_id.in_(ids[s:s + 500]))):
                have[r.arm_id] = r.quality
        new = [{"arm_id": a, "quality": _q(quality[a]), "impressions": 0, "clicks": 0, "conversions": 0,
                "dwell_ms": 0.0, "created_at": now, "updated_at": now} for a in ids if a not in have]
        if new:
            conn.execute(sa.insert(bandit_arms), new)

    def ensure_arms(self, quality: Mapping[str, float | None]) -> None:
        with self.engine.begin() as conn:
            self._ensure_arms(conn, quality, _now())

    # ------------------------------------------------------------------ decisions
    def record_decision(self, *, decision_id: str, chosen: str, propensity: float, candidates: list[dict],
                        policy: Mapping[str, Any], weights: Mapping[str, Any], context_id: str | None,
                        context_hash: str, model_version: str | None = None, x: Sequence[float] | None = None,
                        count_impression: bool = True, quality: Mapping[str, float | None] | None = None,
                        created_at: datetime | None = None, arms_exist: bool = False) -> None:
        """Store one decision (and, with ``count_impression``, the chosen arm's impression) atomically.
        ``quality`` (arm id -> normalised predicted quality) creates unseen arms in the same transaction
        (their prior); ``arms_exist`` = the caller knows every other candidate, and the chosen one, exist."""
        self.record_decisions([decision_record(
            decision_id=decision_id, chosen=chosen, propensity=propensity, candidates=candidates, policy=policy,
            weights=weights, context_id=context_id, context_hash=context_hash, model_version=model_version, x=x,
            count_impression=count_impression, quality=quality, created_at=created_at, arms_exist=arms_exist)])

    def record_decisions(self, records: Sequence[DecisionRecord]) -> None:
        """Store many decisions (:func:`decision_record`) in ONE transaction: all or none."""
        if not records:
            return
        now = max(r.row["created_at"] for r in records)
        qual: dict[str, float | None] = {}
        for r in records:  # the first quality seen for an arm is its prior
            for a, q in r.quality.items():
                qual.setdefault(a, q)
        imp = [{"arm": r.row["chosen"], "now": r.row["created_at"]} for r in records if r.row["impression"]]
        write = self._record_decisions_sqlite if self.engine.dialect.name == "sqlite" else self._record_decisions_core
        write(records, qual, imp, now)

    def _record_decisions_core(self, records, qual, imp, now) -> None:
        with self.engine.begin() as conn:  # first statement a write (see record_event)
            conn.execute(_INSERT_DECISION, [r.row for r in records])
            if qual:
                self._ensure_arms(conn, qual, now)
            if imp:
                conn.execute(_COUNT_IMPRESSION, imp)

    def _record_decisions_sqlite(self, records, qual, imp, now) -> None:
        """The same transaction on the raw sqlite3 connection: the hot path of ``/v1/select``, where
        SQLAlchemy's per-statement work was ~0.5 ms of a decision's ~1 ms. Values are converted with
        the dialect's own bind processors, so rows read back exactly as Core-written ones; errors are
        raised as SQLAlchemy's exception classes, like the other path."""
        dt = self._sqlite_datetime()
        cols = [c.name for c in bandit_decisions.columns]
        rows = [tuple(dt(r.row[c]) if c == "created_at" else r.row[c] for c in cols) for r in records]
        t = dt(now)
        statements = [(_SQLITE_INSERT_DECISION, rows)]
        if qual:  # new arms with their prior; existing ones keep theirs
            statements.append((_SQLITE_NEW_ARM, [(a, q, t, t) for a, q in qual.items()]))
        if imp:
            statements.append((_SQLITE_COUNT_IMPRESSION, [(dt(i["now"]), i["arm"]) for i in imp]))
        # One pooled connection is checked out on first use and kept (close() returns it): checking
        # one out and back in per decision cost ~0.1 ms, a tenth of an in-process select.
        with self._raw_lock:
            if self._raw is None:
                self._raw = self.engine.raw_connection()
            raw = self._raw.driver_connection
            try:
                cur = raw.cursor()
                for sql, params in statements:
                    try:
                        cur.executemany(sql, params)
                    except self.engine.dialect.dbapi.Error as e:
                        raise sa.exc.DBAPIError.instance(sql, params[:1], e, self.engine.dialect.dbapi.Error) from e
                raw.commit()
            except BaseException:
                try:
                    raw.rollback()
                finally:  # after a failure, back to the pool as before: the next write checks one out
                    self._raw.close()
                    self._raw = None
                raise

    def _sqlite_datetime(self):
        if self._dt_bind is None:
            typ = bandit_decisions.c.created_at.type.dialect_impl(self.engine.dialect)
            self._dt_bind = typ.bind_processor(self.engine.dialect) or (lambda v: v)
        return self._dt_bind

    def decision(self, decision_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(bandit_decisions).where(bandit_decisions.c.decision_id == decision_id)).first()
        return None if r is None else _decision_dict(r)

    def decisions(self, since: datetime | None = None, batch: int = 5000) -> Iterator[dict[str, Any]]:
        """All decisions in creation order (bounded memory: read in batches)."""
        last = (since or datetime(1970, 1, 1, tzinfo=UTC), "")
        c = bandit_decisions.c
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(bandit_decisions)
                                    .where(sa.or_(c.created_at > last[0],
                                                  sa.and_(c.created_at == last[0], c.decision_id > last[1])))
                                    .order_by(c.created_at, c.decision_id).limit(batch)).fetchall()
            if not rows:
                return
            for r in rows:
                yield _decision_dict(r)
            last = (rows[-1].created_at, rows[-1].decision_id)

    def count(self) -> dict[str, int]:
        """Totals over decisions and events (what `/metrics` and the tests compare)."""
        d = bandit_decisions.c
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(d.impression), 0),
                                       sa.func.coalesce(sa.func.sum(d.clicked), 0),
                                       sa.func.coalesce(sa.func.sum(d.converted), 0))).one()
            ev = conn.execute(sa.select(sa.func.count()).select_from(bandit_events)).scalar_one()
        return {"decisions": int(r[0]), "impressions": int(r[1]), "clicks": int(r[2]), "conversions": int(r[3]),
                "events": int(ev)}

    # ------------------------------------------------------------------ feedback
    def record_event(self, event_id: str, decision_id: str, type: str, value: float | None = None,
                     occurred_at: datetime | None = None, window: timedelta | None = None) -> dict[str, Any]:
        """Record one feedback event exactly once. Returns ``{"status": "counted" | "recorded" |
        "duplicate", "arm_id", "changed": {counter: +n}}``: ``counted`` changed the arm's counters,
        ``recorded`` is stored but changed nothing (a second click on the same decision, or an event
        later than ``window`` after its decision), ``duplicate`` is a retry of a stored event.
        Raises :class:`UnknownDecision` / :class:`EventConflict` / :class:`InvalidInput`."""
        if type not in EVENT_TYPES:
            raise InvalidInput(f"event type must be one of {', '.join(EVENT_TYPES)}; got {type!r}")
        if not event_id or len(event_id) > 128:
            raise InvalidInput("event_id must be 1-128 characters")
        if value is not None:
            try:
                if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
                    raise TypeError
                value = float(value)  # ints beyond float's range raise OverflowError
            except (TypeError, OverflowError):
                raise InvalidInput(f"event value must be a finite number, got {value!r}") from None
            if not math.isfinite(value):
                raise InvalidInput(f"event value must be a finite number, got {value!r}")
        if type == "dwell" and (value is None or not 0 <= value <= MAX_DWELL_MS):
            raise InvalidInput(f"a dwell event needs value = milliseconds in [0, {MAX_DWELL_MS:.0f}] (a day), got {value!r}")
        now = _now()
        d = bandit_decisions.c
        # The first statement of every write transaction here is a write: under SQLite that takes the
        # write lock at once (waiting on the busy timeout) instead of failing a read->write upgrade.
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(bandit_events).values(
                    event_id=event_id, decision_id=decision_id, type=type, value=value, occurred_at=occurred_at,
                    received_at=now, counted=0))
                dec = conn.execute(sa.select(d.chosen, d.created_at).where(d.decision_id == decision_id)).first()
                if dec is None:
                    raise UnknownDecision(f"unknown decision_id {decision_id!r}")
                created = dec.created_at if dec.created_at.tzinfo else dec.created_at.replace(tzinfo=UTC)
                late = window is not None and now - created > window
                changed = {} if late else self._apply(conn, decision_id, dec.chosen, type, value, now)
                if changed:
                    conn.execute(sa.update(bandit_events).where(bandit_events.c.event_id == event_id).values(counted=1))
        except sa.exc.IntegrityError:
            # the event id exists (a retry) or the decision does not (foreign key); nothing was changed
            with self.engine.connect() as conn:
                old = conn.execute(sa.select(bandit_events.c.decision_id, bandit_events.c.type)
                                   .where(bandit_events.c.event_id == event_id)).first()
                dec = conn.execute(sa.select(d.chosen).where(d.decision_id == decision_id)).first()
            if old is None:
                raise UnknownDecision(f"unknown decision_id {decision_id!r}") from None
            if (old.decision_id, old.type) != (decision_id, type):
                raise EventConflict(f"event_id {event_id!r} was already used for a {old.type} on decision "
                                    f"{old.decision_id!r}") from None
            return {"status": "duplicate", "arm_id": dec.chosen if dec else None, "changed": {}}
        status = "counted" if changed else "recorded"
        out = {"status": status, "arm_id": dec.chosen, "changed": changed}
        if late:
            out["reason"] = f"arrived {(now - created).total_seconds():.0f} s after its decision (window {window})"
        return out

    @staticmethod
    def _apply(conn: sa.Connection, decision_id: str, arm: str, type: str, value: float | None,
               now: datetime) -> dict[str, float]:
        d = bandit_decisions.c
        a = bandit_arms.c
        changed: dict[str, float] = {}
        if type == "dwell":
            conn.execute(sa.update(bandit_decisions).where(d.decision_id == decision_id)
                         .values(dwell_ms=d.dwell_ms + float(value)))
            conn.execute(sa.update(bandit_arms).where(a.arm_id == arm).values(dwell_ms=a.dwell_ms + float(value),
                                                                              updated_at=now))
            return {"dwell_ms": float(value)}
        todo = [type] if type != "click" else ["impression", "click"]  # a click implies its impression
        for t in todo:
            flag, counter = _ONCE[t]
            hit = conn.execute(sa.update(bandit_decisions)
                               .where(d.decision_id == decision_id, getattr(d, flag) == 0)
                               .values({flag: 1})).rowcount
            if hit:
                conn.execute(sa.update(bandit_arms).where(a.arm_id == arm)
                             .values({counter: getattr(a, counter) + 1, "updated_at": now}))
                changed[counter] = 1
        return changed

    # ------------------------------------------------------------------ contextual statistics
    def linear_stats(self, dim: int, ridge: float) -> tuple[np.ndarray, np.ndarray, int]:
        """``(A, b, n)`` of the shared linear model rebuilt from decisions with an ``x`` of length ``dim``:
        A = ridge*I + sum over counted impressions of x x', b = sum over clicks of x."""
        A = ridge * np.eye(dim)
        b = np.zeros(dim)
        n = 0
        d = bandit_decisions.c
        with self.engine.connect() as conn:
            for r in conn.execute(sa.select(d.x, d.impression, d.clicked).where(d.x.is_not(None), d.impression == 1)):
                x = np.asarray(json.loads(r.x), float)
                if x.shape != (dim,):
                    continue  # written under another feature layout; not part of this model
                A += np.outer(x, x)
                b += r.clicked * x
                n += 1
        return A, b, n

    # ------------------------------------------------------------------ named state
    def get_state(self, name: str) -> Any:
        with self.engine.connect() as conn:
            v = conn.execute(sa.select(bandit_state.c.value).where(bandit_state.c.name == name)).scalar()
        return None if v is None else json.loads(v)

    def put_state(self, name: str, value: Any) -> None:
        now = _now()
        with self.engine.begin() as conn:
            n = conn.execute(sa.update(bandit_state).where(bandit_state.c.name == name)
                             .values(value=json.dumps(value), updated_at=now)).rowcount
            if not n:
                conn.execute(sa.insert(bandit_state).values(name=name, value=json.dumps(value), updated_at=now))

    # ------------------------------------------------------------------ API keys
    def add_key(self, name: str) -> str:
        """Create an API key called ``name``; returns the key (shown once; only its sha256 is stored)."""
        if not name or len(name) > 100:
            raise InvalidInput("key name must be 1-100 characters")
        key = "adl_" + secrets.token_urlsafe(32)
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(api_keys).values(name=name, key_sha256=hash_key(key), created_at=_now(),
                                                        revoked=0))
        except sa.exc.IntegrityError:
            raise InvalidInput(f"an API key named {name!r} exists; revoke it or pick another name") from None
        return key

    def revoke_key(self, name: str) -> None:
        with self.engine.begin() as conn:
            if not conn.execute(sa.update(api_keys).where(api_keys.c.name == name).values(revoked=1)).rowcount:
                raise InvalidInput(f"no API key named {name!r}")

    def active_key_hashes(self) -> dict[str, str]:
        """``{sha256: name}`` of the keys that are not revoked."""
        with self.engine.connect() as conn:
            return {r.key_sha256: r.name for r in conn.execute(sa.select(api_keys).where(api_keys.c.revoked == 0))}

    def list_keys(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [{"name": r.name, "created_at": r.created_at.isoformat(), "revoked": bool(r.revoked)}
                    for r in conn.execute(sa.select(api_keys).order_by(api_keys.c.name))]


def _q(v: float | None) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def _decision_dict(r) -> dict[str, Any]:
    out = dict(r._mapping)
    for k in ("policy", "weights", "candidates", "x"):
        if out.get(k) is not None:
            out[k] = json.loads(out[k])
    return out
