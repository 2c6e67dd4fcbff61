"""BanditStore: decisions, idempotent feedback, exact counts under concurrency, restart, API keys."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from conftest import run_in_threads

from adlens.bandit.state import (
    BanditStore,
    EventConflict,
    UnknownDecision,
    decision_record,
    hash_key,
)
from adlens.errors import InvalidInput
from adlens.store.db import make_engine, migrate
from adlens.store.schema import api_keys


@pytest.fixture()
def engine(tmp_path):
    e = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(e)
    yield e
    e.dispose()


def _decide(store, did, chosen="a", count=True, x=None, when=None):
    store.record_decision(decision_id=did, chosen=chosen, propensity=0.5,
                          candidates=[{"id": "a", "p": 0.5}, {"id": "b", "p": 0.5}],
                          policy={"name": "thompson"}, weights={"quality": 0.3}, context_id="art1",
                          context_hash="article:art1", x=x, count_impression=count,
                          quality={"a": 0.8, "b": 0.2}, created_at=when)


def test_decision_creates_arms_with_quality_and_counts_the_impression(engine):
    s = BanditStore(engine)
    _decide(s, "d1")
    arms = s.arms()
    assert set(arms) == {"a", "b"}
    assert arms["a"].impressions == 1 and arms["b"].impressions == 0
    assert arms["a"].quality == pytest.approx(0.8) and arms["b"].quality == pytest.approx(0.2)
    d = s.decision("d1")
    assert d["chosen"] == "a" and d["propensity"] == 0.5 and d["candidates"][1]["id"] == "b"
    assert d["impression"] == 1 and d["clicked"] == 0


def test_click_counts_once_and_retries_are_duplicates(engine):
    s = BanditStore(engine)
    _decide(s, "d1")
    assert s.record_event("e1", "d1", "click")["status"] == "counted"
    assert s.record_event("e1", "d1", "click")["status"] == "duplicate"
    # a second, different click on the same decision is stored but the reward stays 0/1
    r = s.record_event("e2", "d1", "click")
    assert r["status"] == "recorded" and r["changed"] == {}
    a = s.arms(["a"])["a"]
    assert (a.impressions, a.clicks) == (1, 1)
    assert s.count() == {"decisions": 1, "impressions": 1, "clicks": 1, "conversions": 0, "events": 2}


def test_click_implies_impression_when_impressions_come_from_events(engine):
    s = BanditStore(engine)
    _decide(s, "d1", count=False)
    assert s.arms(["a"])["a"].impressions == 0
    r = s.record_event("c1", "d1", "click")
    assert r["changed"] == {"impressions": 1, "clicks": 1}
    # the impression event arriving after the click changes nothing
    assert s.record_event("i1", "d1", "impression")["status"] == "recorded"
    a = s.arms(["a"])["a"]
    assert (a.impressions, a.clicks) == (1, 1)


def test_conversion_and_dwell(engine):
    s = BanditStore(engine)
    _decide(s, "d1")
    s.record_event("v1", "d1", "conversion")
    s.record_event("w1", "d1", "dwell", 1500.0)
    s.record_event("w2", "d1", "dwell", 500.0)
    s.record_event("w3", "d1", "dwell", 0)  # ints and the bounds themselves are fine
    a = s.arms(["a"])["a"]
    assert a.conversions == 1 and a.dwell_ms == 2000.0
    assert s.decision("d1")["dwell_ms"] == 2000.0


@pytest.mark.parametrize("kwargs, err, match", [
    ({"event_id": "e", "decision_id": "nope", "type": "click"}, UnknownDecision, "unknown decision_id 'nope'"),
    ({"event_id": "e", "decision_id": "d1", "type": "like"}, InvalidInput, "event type must be one of"),
    ({"event_id": "", "decision_id": "d1", "type": "click"}, InvalidInput, "event_id"),
    ({"event_id": "e", "decision_id": "d1", "type": "dwell"}, InvalidInput, "dwell event needs value"),
    ({"event_id": "e", "decision_id": "d1", "type": "dwell", "value": -3.0}, InvalidInput, "dwell"),
    # unbounded dwell sums overflowed to inf and broke `bandit export` / `arms --json`
    ({"event_id": "e", "decision_id": "d1", "type": "dwell", "value": 1e308}, InvalidInput, "a day"),
    ({"event_id": "e", "decision_id": "d1", "type": "dwell", "value": 86_400_001.0}, InvalidInput, "a day"),
    ({"event_id": "e", "decision_id": "d1", "type": "conversion", "value": float("nan")}, InvalidInput, "finite"),
    ({"event_id": "e", "decision_id": "d1", "type": "click", "value": "12"}, InvalidInput, "finite number"),
    ({"event_id": "e", "decision_id": "d1", "type": "conversion", "value": 10**400}, InvalidInput, "finite number"),
    ({"event_id": "e", "decision_id": "d1", "type": "conversion", "value": np.complex128(1j)}, InvalidInput, "finite"),
])
def test_bad_events_are_rejected_and_change_nothing(engine, kwargs, err, match):
    s = BanditStore(engine)
    _decide(s, "d1")
    before = s.count()
    with pytest.raises(err, match=match):
        s.record_event(kwargs.pop("event_id"), kwargs.pop("decision_id"), kwargs.pop("type"), **kwargs)
    assert s.count() == before


def test_event_id_reused_for_another_event_is_a_conflict(engine):
    s = BanditStore(engine)
    _decide(s, "d1")
    _decide(s, "d2")
    s.record_event("e1", "d1", "click")
    with pytest.raises(EventConflict, match="already used for a click on decision 'd1'"):
        s.record_event("e1", "d2", "click")
    with pytest.raises(EventConflict):
        s.record_event("e1", "d1", "conversion")
    assert s.arms(["a"])["a"].clicks == 1


def test_late_event_is_stored_but_not_counted(engine):
    s = BanditStore(engine)
    _decide(s, "old", when=datetime.now(UTC) - timedelta(days=10))
    r = s.record_event("e1", "old", "click", window=timedelta(days=7))
    assert r["status"] == "recorded" and "after its decision" in r["reason"]
    assert s.arms(["a"])["a"].clicks == 0 and s.count()["events"] == 1
    # within the window (minutes late) it counts
    _decide(s, "recent", when=datetime.now(UTC) - timedelta(minutes=30))
    assert s.record_event("e2", "recent", "click", window=timedelta(days=7))["status"] == "counted"


def test_concurrent_feedback_counts_exactly(engine):
    """8 threads send every event 3 times in random order: each click counts exactly once."""
    s = BanditStore(engine)
    n = 120
    for i in range(n):
        _decide(s, f"d{i}", chosen="a" if i % 2 else "b")
    clicked = [i for i in range(n) if i % 3 == 0]
    events = [(f"click-{i}", f"d{i}", "click") for i in clicked] * 3 + [(f"conv-{i}", f"d{i}", "conversion")
                                                                          for i in clicked[:10]] * 3
    random.Random(0).shuffle(events)
    chunks = [events[k::8] for k in range(8)]
    statuses: list[str] = []
    lock = threading.Lock()

    def worker(chunk):
        store = BanditStore(engine)
        for e in chunk:
            st = store.record_event(*e)["status"]
            with lock:
                statuses.append(st)

    assert run_in_threads(worker, chunks) == []
    assert statuses.count("counted") == len(clicked) + 10
    assert statuses.count("duplicate") == 2 * (len(clicked) + 10)
    arms = s.arms()
    assert arms["a"].clicks + arms["b"].clicks == len(clicked)
    assert arms["a"].clicks == sum(1 for i in clicked if i % 2)
    assert arms["a"].conversions + arms["b"].conversions == 10
    assert s.count() == {"decisions": n, "impressions": n, "clicks": len(clicked), "conversions": 10,
                         "events": len(clicked) + 10}


def test_state_survives_a_restart_and_linear_stats_rebuild(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    e1 = make_engine(url)
    migrate(e1)
    s = BanditStore(e1)
    xs = {"d0": [1.0, 0.5], "d1": [1.0, -1.0], "d2": [1.0, 2.0]}
    for did, x in xs.items():
        _decide(s, did, x=x)
    s.record_event("c", "d1", "click")
    s.put_state("weights", {"weights": {"quality": 0.5}})
    e1.dispose()
    e2 = make_engine(url)
    s2 = BanditStore(e2)
    assert s2.arms(["a"])["a"].impressions == 3 and s2.arms(["a"])["a"].clicks == 1
    assert s2.get_state("weights") == {"weights": {"quality": 0.5}}
    A, b, n = s2.linear_stats(2, ridge=1.0)
    X = np.array(list(xs.values()))
    assert n == 3
    np.testing.assert_allclose(A, np.eye(2) + X.T @ X)
    np.testing.assert_allclose(b, [1.0, -1.0])
    assert s2.linear_stats(3, 1.0)[2] == 0  # a different layout is ignored, not mixed in
    assert [d["decision_id"] for d in s2.decisions(batch=2)] == ["d0", "d1", "d2"]
    e2.dispose()


def test_invalid_propensity_is_rejected(engine):
    s = BanditStore(engine)
    with pytest.raises(InvalidInput, match="propensity"):
        s.record_decision(decision_id="d", chosen="a", propensity=0.0, candidates=[], policy={}, weights={},
                          context_id=None, context_hash="x")
    assert s.count()["decisions"] == 0


def test_api_keys_are_stored_hashed_and_revocable(engine):
    s = BanditStore(engine)
    key = s.add_key("partner")
    assert key.startswith("adl_") and len(key) > 30
    with engine.connect() as conn:
        stored = conn.execute(sa.select(api_keys.c.key_sha256)).scalar_one()
    assert stored == hash_key(key) and key not in stored
    assert s.active_key_hashes() == {hash_key(key): "partner"}
    with pytest.raises(InvalidInput, match="exists"):
        s.add_key("partner")
    s.revoke_key("partner")
    assert s.active_key_hashes() == {}
    with pytest.raises(InvalidInput, match="no API key named"):
        s.revoke_key("other")


def _record(did, chosen="a", quality=None):
    return decision_record(decision_id=did, chosen=chosen, propensity=0.5, candidates=[{"id": "a"}, {"id": "b"}],
                           policy={"name": "thompson"}, weights={}, context_id=None, context_hash="text:x",
                           quality=quality if quality is not None else {"a": 0.8, "b": 0.2})


def test_record_decisions_is_one_transaction_all_or_none(engine):
    s = BanditStore(engine)
    s.record_decisions([_record(f"d{i}", chosen="ab"[i % 2]) for i in range(10)])
    assert s.count()["decisions"] == 10
    assert (s.arms()["a"].impressions, s.arms()["b"].impressions) == (5, 5)
    with pytest.raises(sa.exc.IntegrityError):  # d3 exists: the whole batch is rolled back
        s.record_decisions([_record("n1"), _record("d3"), _record("n2")])
    assert s.count()["decisions"] == 10 and s.decision("n1") is None
    assert s.arms()["a"].impressions == 5


def test_kept_writer_connection_recovers_from_a_failed_write_and_is_thread_safe(engine):
    import threading

    s = BanditStore(engine)
    s.record_decisions([_record("d0")])
    with pytest.raises(sa.exc.IntegrityError):
        s.record_decisions([_record("n1"), _record("d0")])
    s.record_decisions([_record("after")])  # the kept connection was rolled back, not left mid-transaction
    assert s.decision("after") is not None and s.decision("n1") is None

    def write(t):
        for i in range(25):
            s.record_decisions([_record(f"t{t}-{i}", chosen="ab"[i % 2])])

    assert run_in_threads(write, range(4)) == []
    assert s.count()["decisions"] == 2 + 100
    # i = 0..24: 13 "a" and 12 "b" per thread, plus d0 and "after" for "a"
    assert s.arms()["a"].impressions == 2 + 4 * 13 and s.arms()["b"].impressions == 4 * 12
    s.close()  # back to the pool; the store stays usable
    s.record_decisions([_record("reopened")])
    assert s.decision("reopened") is not None
    s.close()


def test_decision_record_validates_and_encodes():
    with pytest.raises(InvalidInput, match="propensity"):
        decision_record(decision_id="x", chosen="a", propensity=0.0, candidates=[], policy={}, weights={},
                        context_id=None, context_hash="h")
    r = decision_record(decision_id="x", chosen="z", propensity=1.0, candidates='[{"id": "z"}]', policy='{"a": 1}',
                        weights={"w": 1}, context_id=None, context_hash="h", quality={"y": float("nan")})
    assert r.row["candidates"] == '[{"id": "z"}]' and r.row["policy"] == '{"a": 1}' and r.row["weights"] == '{"w": 1}'
    assert r.quality == {"y": None, "z": None}  # NaN prior -> unknown; the chosen arm is created too


def test_raw_sqlite_decision_path_writes_exactly_what_the_core_path_writes(tmp_path):
    when = datetime(2026, 11, 22, 5, 6, 7, 891011, tzinfo=UTC)
    recs = [decision_record(decision_id=f"d{i}", chosen="ab"[i % 2], propensity=0.25 + 0.5 * (i % 2),
                            candidates=[{"id": "a", "p": 0.25}, {"id": "b", "p": 0.75}], policy={"name": "ucb1"},
                            weights={"quality": 0.3}, context_id="art1", context_hash="article:art1",
                            x=[1.0, 0.5] if i else None, count_impression=i != 2,
                            quality={"a": 0.7, "b": None, "c": 0.1}, created_at=when + timedelta(seconds=i))
            for i in range(4)]
    out = []
    for name, path in (("_record_decisions_sqlite", "raw.db"), ("_record_decisions_core", "core.db")):
        e = make_engine(f"sqlite:///{tmp_path / path}")
        migrate(e)
        s = BanditStore(e)
        qual = {"a": 0.7, "b": None, "c": 0.1}
        imp = [{"arm": r.row["chosen"], "now": r.row["created_at"]} for r in recs if r.row["impression"]]
        getattr(s, name)(recs, qual, imp, recs[-1].row["created_at"])
        with e.connect() as c:
            tables = [c.execute(sa.text(f"SELECT * FROM {t} ORDER BY 1")).fetchall() for t in ("bandit_decisions", "bandit_arms")]
        out.append((tables, [s.decision(f"d{i}") for i in range(4)], s.arms()))
        e.dispose()
    assert out[0] == out[1]
    arms = out[0][2]
    assert (arms["a"].impressions, arms["b"].impressions, arms["c"].impressions) == (1, 2, 0)
    assert out[0][1][3]["created_at"].replace(tzinfo=UTC) == when + timedelta(seconds=3)
