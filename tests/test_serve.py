"""The HTTP service over a tiny trained workspace: score, select, feedback, arms, health, metrics,
API keys, size limits, bad requests (4xx with a message), exact counts under concurrent load,
restart without loss."""

from __future__ import annotations

import base64
import random
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from conftest import banner, encode, run_in_threads
from fastapi.testclient import TestClient

from adlens.bandit.state import BanditStore
from adlens.errors import InvalidInput
from adlens.serve import ServeConfig, Service, create_app
from adlens.workspace import open_workspace


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workspace with 24 featurised ads, their articles and a registered quality model."""
    from test_quality_jobs import FAST, build

    from adlens.config import Settings
    from adlens.quality import jobs as q
    from adlens.workspace import init_workspace

    root = tmp_path_factory.mktemp("serve")
    settings = Settings(workspace=root / "ws", workers=2)
    ws = init_workspace(settings.workspace, settings)
    build(ws, root)
    q.build_pairs(ws, random_state=0)
    q.compute_pair_features(ws)
    q.teach(ws, "rubric")
    q.train(ws, **FAST)
    ws.close()
    return settings


def _service(settings, **cfg):
    from test_quality_jobs import light

    cr, cx = light()
    ws = open_workspace(settings.workspace, settings)
    return ws, Service(ws, ServeConfig(random_state=0, **cfg), context_extractor=cx, creative_extractor=cr)


@pytest.fixture()
def client(trained):
    ws, svc = _service(trained)
    with TestClient(create_app(svc)) as c:
        c.service = svc
        yield c
    svc.close()
    ws.close()


ADS = [f"ad{i:02d}" for i in range(24)]


def test_score_known_ids_matches_the_batch_scorer(client, trained):
    from adlens.quality.jobs import score as batch_score

    r = client.post("/v1/score", json={"context": {"article_id": "art03"}, "candidates": ["ad03", "ad05"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "v0001"
    res = {x["id"]: x for x in body["results"]}
    with open_workspace(trained.workspace, trained) as ws:
        for a in ("ad03", "ad05"):
            want = batch_score(ws, a, "art03")
            assert res[a]["score"] == pytest.approx(want["score"], abs=1e-3)
            assert res[a]["quality"] == pytest.approx((want["score"] - 1) / 9, abs=1e-3)
            assert set(res[a]["features"]) == set(want["features"])


def test_score_new_creative_from_base64_and_bad_image_in_same_batch(client):
    good = base64.b64encode(encode(banner(7))).decode()
    bad = base64.b64encode(b"<html>not an image</html>").decode()
    r = client.post("/v1/score", json={"context": {"text": "Runners train for the marathon in Paris."},
                                       "candidates": [{"id": "new1", "image_b64": good, "text": "Acme shoes SHOP NOW"},
                                                      {"id": "new2", "image_b64": bad}, "ad01"]})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["id"] for x in res] == ["new1", "new2", "ad01"]
    assert 1.0 <= res[0]["score"] <= 10.0 and res[0]["new"] is True
    assert "error" in res[1] and "new2" in res[1]["error"]
    assert res[2]["score"] is not None


def test_select_returns_a_candidate_with_propensity_and_logs_it(client):
    cands = ADS[:20]
    r = client.post("/v1/select", json={"context": {"article_id": "art00"}, "candidates": cands})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["chosen"] in cands and 0 < d["propensity"] <= 1
    ps = {c["id"]: c["p"] for c in d["candidates"]}
    assert list(ps) == cands and sum(ps.values()) == pytest.approx(1.0)
    assert ps[d["chosen"]] == pytest.approx(d["propensity"])
    for c in d["candidates"]:
        assert {"quality", "ctr", "novelty", "duplicate_penalty", "brand_penalty", "total", "score"} <= set(c)
    logged = client.service.store.decision(d["decision_id"])
    assert logged["chosen"] == d["chosen"] and logged["propensity"] == pytest.approx(d["propensity"])
    assert logged["impression"] == 1


def test_cold_start_prior_comes_from_predicted_quality(client):
    """With no clicks anywhere, Thompson sampling prefers the creative the model scores higher."""
    r = client.post("/v1/select", json={"context": {"article_id": "art01"},
                                        "candidates": [{"id": "ad01", "quality": 10.0}, {"id": "ad02", "quality": 1.0}]})
    ps = {c["id"]: c["p"] for c in r.json()["candidates"]}
    assert ps["ad01"] > 0.9


def test_feedback_is_idempotent_and_late_clicks_count(client):
    d = client.post("/v1/select", json={"context": {"article_id": "art02"}, "candidates": ADS[:5]}).json()
    ev = {"event_id": "click-x", "decision_id": d["decision_id"], "type": "click"}

    def clicks():
        return {a["arm_id"]: a for a in client.get("/v1/arms").json()["arms"]}[d["chosen"]]["clicks"]

    def age(decision_id, delta):  # as if the decision had been made ``delta`` ago
        with client.service.ws.engine.begin() as conn:
            conn.execute(sa.text("UPDATE bandit_decisions SET created_at = :t WHERE decision_id = :d"),
                         {"t": datetime.now(UTC) - delta, "d": decision_id})

    before = clicks()
    age(d["decision_id"], timedelta(minutes=20))  # clicks arrive minutes after the decision
    r1 = client.post("/v1/feedback", json=ev)
    r2 = client.post("/v1/feedback", json=ev)
    assert r1.status_code == r2.status_code == 200
    assert r1.json()["status"] == "counted" and r2.json()["status"] == "duplicate"
    assert clicks() == before + 1
    assert client.post("/v1/feedback", json={**ev, "type": "conversion"}).status_code == 409
    # later than the feedback window (7 days by default): stored, not counted
    d2 = client.post("/v1/select", json={"context": {"article_id": "art03"}, "candidates": ADS[:5]}).json()
    age(d2["decision_id"], timedelta(days=8))
    arm = {a["arm_id"]: a for a in client.get("/v1/arms").json()["arms"]}[d2["chosen"]]["clicks"]
    r = client.post("/v1/feedback", json={"event_id": "click-late", "decision_id": d2["decision_id"], "type": "click"})
    assert r.status_code == 200 and r.json()["status"] == "recorded"
    assert client.service.store.decision(d2["decision_id"])["clicked"] == 0
    assert {a["arm_id"]: a for a in client.get("/v1/arms").json()["arms"]}[d2["chosen"]]["clicks"] == arm
    for bad in (True, "12", None):  # a dwell value must be a JSON number
        r = client.post("/v1/feedback", json={"event_id": f"dw-{bad}", "decision_id": d2["decision_id"], "type": "dwell",
                                              "value": bad})
        assert r.status_code == 422 and ("value" in r.json()["detail"] or "dwell" in r.json()["detail"]), r.text


@pytest.mark.parametrize("path, body, status, match", [
    ("/v1/select", {"context": {"article_id": "art00"}, "candidates": []}, 422, "candidates"),
    ("/v1/select", {"context": {"article_id": "art00"}, "candidates": ["ad01", "ad01"]}, 422, "repeated"),
    ("/v1/select", {"context": {"article_id": "art00"}, "candidates": ["ad01", "nope"]}, 404, "nope"),
    ("/v1/select", {"context": {"article_id": "missing"}, "candidates": ["ad01"]}, 404, "missing"),
    ("/v1/select", {"context": {}, "candidates": ["ad01"]}, 422, "article_id or text"),
    ("/v1/select", {"context": {"article_id": "art00", "text": "x"}, "candidates": ["ad01"]}, 422, "exactly one"),
    ("/v1/select", {"context": {"text": "   "}, "candidates": ["ad01"]}, 422, "empty"),
    ("/v1/select", {"context": {"article_id": "art00"}, "candidates": [{"id": "ad01", "quality": 11}]}, 422, "quality"),
    ("/v1/select", {"context": {"article_id": "art00"}, "candidates": [{"id": "ad01", "brand_risk": 2}]}, 422,
     "brand_risk"),
    ("/v1/select", {"candidates": ["ad01"]}, 422, "context"),
    ("/v1/feedback", {"event_id": "e", "decision_id": "nope", "type": "click"}, 404, "unknown decision_id"),
    ("/v1/feedback", {"event_id": "e", "decision_id": "d", "type": "like"}, 422, "type"),
    ("/v1/score", {"context": {"article_id": "art00"}, "candidates": [{"image_b64": "!!!"}]}, 200, ""),
])
def test_bad_requests_get_4xx_with_a_message(client, path, body, status, match):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    if status != 200:
        assert match in r.json()["detail"]
    else:
        assert "not valid base64" in r.json()["results"][0]["error"]


def test_malformed_json_and_huge_bodies(trained):
    ws, svc = _service(trained, max_body_bytes=2048)
    with TestClient(create_app(svc)) as c:
        r = c.post("/v1/select", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"].startswith("request body: invalid JSON at character 1")
        r = c.post("/v1/feedback", content=b"", headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"] == "request body: a JSON object is required"
        r = c.post("/v1/feedback", json={"decision_id": "d", "type": "click"})
        assert r.status_code == 422 and r.json()["detail"] == "event_id: Field required"
        r = c.post("/v1/select", content=b"{}", headers={"content-type": "application/json", "content-length": "abc"})
        assert r.status_code == 400 and "Content-Length must be a number" in r.json()["detail"]
        r = c.post("/v1/select", json={"context": {"text": "x" * 5000}, "candidates": ["ad01"]})
        assert r.status_code == 413 and "larger than 2048" in r.json()["detail"]
        r = c.post("/v1/select", json={"context": {"article_id": "art00"}, "candidates": ADS[:3] * 1})
        assert r.status_code == 200
    svc.close()
    ws.close()
    ws, svc = _service(trained, max_candidates=2)
    with TestClient(create_app(svc)) as c:
        r = c.post("/v1/select", json={"context": {"article_id": "art00"}, "candidates": ADS[:3]})
        assert r.status_code == 422 and "at most 2" in r.json()["detail"]
    svc.close()
    ws.close()


def test_api_keys_are_required_once_configured(trained):
    ws, svc = _service(trained)
    store = BanditStore(ws.engine)
    key = store.add_key("test-client")
    try:
        with TestClient(create_app(svc)) as c:
            body = {"context": {"article_id": "art00"}, "candidates": ADS[:3]}
            assert c.post("/v1/select", json=body).status_code == 401
            assert c.post("/v1/select", json=body, headers={"x-api-key": "wrong"}).status_code == 401
            assert c.post("/v1/select", json=body, headers={"x-api-key": key}).status_code == 200
            assert c.post("/v1/select", json=body, headers={"authorization": f"Bearer {key}"}).status_code == 200
            assert c.get("/healthz").status_code == 200  # liveness stays open
            assert c.get("/metrics").status_code == 401
    finally:
        store.revoke_key("test-client")
        svc.close()
        ws.close()


def test_health_metrics_and_openapi(client):
    client.post("/v1/select", json={"context": {"article_id": "art00"}, "candidates": ADS[:4]})
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["model_version"] == "v0001" and h["policy"]["name"] == "thompson"
    m = client.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    assert 'adlens_decisions_total{policy="thompson"}' in m.text
    assert 'adlens_http_requests_total{route="/v1/select",status="200"}' in m.text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/score", "/v1/select", "/v1/feedback", "/v1/arms", "/healthz", "/metrics"} <= set(paths)


@pytest.mark.parametrize("policy", ["thompson", "ucb1", "epsilon_greedy:epsilon=0.2", "linucb"])
def test_every_policy_serves_and_learns(trained, policy):
    """Two arms; the one the policy favours less at first is clicked every time it is served, the
    other never: after 100 decisions every policy serves the clicked one with probability >= 0.5."""
    ws, svc = _service(trained, policy=policy)
    pair, ctx = ADS[22:24], {"article_id": "art05"}

    def p_of(d):
        return {x["id"]: x["p"] for x in d["candidates"]}

    with TestClient(create_app(svc)) as c:
        first = c.post("/v1/select", json={"context": ctx, "candidates": pair}).json()
        underdog = min(pair, key=lambda a: (p_of(first)[a], a))
        p0, clicks = p_of(first)[underdog], 0
        for i in range(100):
            d = c.post("/v1/select", json={"context": ctx, "candidates": pair}).json()
            assert sum(x["p"] for x in d["candidates"]) == pytest.approx(1.0)
            if d["chosen"] == underdog:
                clicks += 1
                assert c.post("/v1/feedback", json={"event_id": f"learn-{policy}-{i}", "decision_id": d["decision_id"],
                                                    "type": "click"}).json()["status"] == "counted"
        last = c.post("/v1/select", json={"context": ctx, "candidates": pair}).json()
    svc.close()
    ws.close()
    assert clicks > 0 and p_of(last)[underdog] >= 0.5 and p_of(last)[underdog] > p0, (p0, clicks, p_of(last))


def test_concurrent_select_and_feedback_over_http_lose_nothing(trained):
    """8 client threads: 240 selects, clicks on a third of them, every click sent twice."""
    ws, svc = _service(trained)
    base = svc.store.count()
    clicked: list[str] = []
    lock = threading.Lock()
    with TestClient(create_app(svc)) as c:
        def worker(t):
            rng = random.Random(t)
            for i in range(30):
                d = c.post("/v1/select", json={"context": {"article_id": f"art{rng.randrange(24):02d}"},
                                               "candidates": rng.sample(ADS, 20)}).json()
                if i % 3 == 0:
                    ev = {"event_id": f"t{t}-{i}", "decision_id": d["decision_id"], "type": "click"}
                    statuses = {c.post("/v1/feedback", json=ev).json()["status"] for _ in range(2)}
                    assert statuses == {"counted", "duplicate"}
                    with lock:
                        clicked.append(d["chosen"])

        assert run_in_threads(worker, range(8)) == []
    now = svc.store.count()
    assert now["decisions"] - base["decisions"] == 240
    assert now["clicks"] - base["clicks"] == len(clicked) == 80
    # the in-memory copy equals the database
    db = svc.store.arms()
    for a, (imp, clk) in svc._arms.items():
        assert (db[a].impressions, db[a].clicks) == (imp, clk)
    svc.close()
    ws.close()


def test_restart_keeps_arms_and_linucb_statistics(trained):
    ws, svc = _service(trained, policy="linucb")
    for i in range(10):
        d = svc.select({"article_id": "art00"}, ADS[:4])
        if i % 2:
            svc.feedback(event_id=f"r{i}", decision_id=d["decision_id"], type="click")
    A, b = svc.linear.A.copy(), svc.linear.b.copy()
    arms = {a["arm_id"]: (a["impressions"], a["clicks"]) for a in svc.arms()}
    svc.close()
    ws.close()
    ws2, svc2 = _service(trained, policy="linucb")
    d2 = svc2.select({"article_id": "art00"}, ADS[:4])  # rebuilds the statistics from the log
    A2, b2 = svc2.linear.A, svc2.linear.b
    # rebuilt from the log = what the first process had, plus the new decision's impression
    xl = np.asarray(svc2.store.decision(d2["decision_id"])["x"])
    np.testing.assert_allclose(A2, A + np.outer(xl, xl), rtol=1e-9)
    np.testing.assert_allclose(b2, b, rtol=1e-9)
    arms2 = {a["arm_id"]: (a["impressions"], a["clicks"]) for a in svc2.arms()}
    assert sum(v[0] for v in arms2.values()) == sum(v[0] for v in arms.values()) + 1
    assert sum(v[1] for v in arms2.values()) == sum(v[1] for v in arms.values())
    svc2.close()
    ws2.close()


# ---------------------------------------------------------------------------- adlens bandit / keys CLI
def _run(*args):
    from typer.testing import CliRunner

    from adlens.cli import app

    return CliRunner().invoke(app, list(args))


def test_bandit_cli_arms_export_ope_reweight(trained, tmp_path):
    import json

    ws, svc = _service(trained, policy="epsilon_greedy:epsilon=0.5")
    rng = random.Random(3)
    for i in range(400):
        d = svc.select({"article_id": f"art{rng.randrange(24):02d}"}, rng.sample(ADS, 5))
        # clicks depend on the creative: even ids click far more often
        p = 0.5 if int(d["chosen"][2:]) % 2 == 0 else 0.05
        if rng.random() < p:
            svc.feedback(event_id=f"cli-{i}", decision_id=d["decision_id"], type="click")
    svc.close()
    ws.close()
    w = ["--workspace", str(trained.workspace)]
    r = _run("bandit", "arms", "--json", *w)
    assert r.exit_code == 0, r.output
    arms = json.loads(r.stdout)
    assert {a["arm_id"] for a in arms} <= set(ADS) and all(a["impressions"] >= a["clicks"] for a in arms)
    assert [a["posterior_mean"] for a in arms] == sorted((a["posterior_mean"] for a in arms), reverse=True)

    log = tmp_path / "log.jsonl"
    r = _run("bandit", "export", str(log), *w)
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    with open_workspace(trained.workspace, trained) as ws2:
        assert len(lines) == BanditStore(ws2.engine).count()["decisions"]
    assert len({x["decision_id"] for x in lines}) == len(lines)

    r = _run("bandit", "ope", "--policy", "uniform", "--json", "--bootstrap", "200", *w)
    assert r.exit_code == 0, r.output
    o = json.loads(r.stdout)
    for k in ("ips", "snips", "dr"):
        assert o[k]["ci_low"] <= o[k]["value"] <= o[k]["ci_high"]
    r = _run("bandit", "ope", "--policy", "thompson", "--json", "--bootstrap", "200", *w)
    assert r.exit_code == 0, r.output
    # Thompson on the logged snapshots favours the arms that were clicked: worth more than uniform
    ts = json.loads(r.stdout)
    assert ts["snips"]["value"] > o["snips"]["value"]
    # --weights: the current weights given explicitly change nothing; CTR weight 0 stops it favouring clicked arms
    wfile = tmp_path / "weights.json"
    wfile.write_text(json.dumps({"weights": ts["weights"]}))
    r = _run("bandit", "ope", "--policy", "thompson", "--json", "--bootstrap", "200", "--weights", str(wfile), *w)
    assert r.exit_code == 0, r.output
    assert {k: json.loads(r.stdout)[k] for k in ("ips", "snips", "dr")} == {k: ts[k] for k in ("ips", "snips", "dr")}
    wfile.write_text(json.dumps({**ts["weights"], "ctr": 0.0}))
    r = _run("bandit", "ope", "--policy", "thompson", "--json", "--bootstrap", "200", "--weights", str(wfile), *w)
    blind = json.loads(r.stdout)
    assert r.exit_code == 0 and blind["weights"]["ctr"] == 0.0 and blind["snips"]["value"] < ts["snips"]["value"]
    r = _run("bandit", "ope", str(log), "--policy", "uniform", "--weights", str(wfile))
    assert r.exit_code == 2 and "not to a log file" in r.output
    r = _run("bandit", "ope", "--policy", "greedy-model", "--weights", str(wfile), *w)
    assert r.exit_code == 2 and "not to greedy-model" in r.output

    r = _run("bandit", "reweight", "--json", "--apply", "--report", str(tmp_path / "rw.html"), *w)
    assert r.exit_code == 0, r.output
    rw = json.loads(r.stdout)
    assert rw["applied"] and set(rw["weights"]) >= {"quality", "ctr", "novelty"}
    assert (tmp_path / "rw.html").read_text().startswith("<!doctype html>")
    with open_workspace(trained.workspace, trained) as ws3:
        svc3 = Service(ws3, ServeConfig())
        assert svc3.weights.to_dict() == rw["weights"]  # the next service uses the fitted weights
        svc3.close()
        BanditStore(ws3.engine).put_state("weights", {"weights": rw["previous"]})


def test_bandit_cli_errors_are_clear(trained, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("action,reward\na,1\n")
    r = _run("bandit", "ope", str(bad), "--policy", "uniform")
    assert r.exit_code == 2 and "propensity" in r.output
    r = _run("bandit", "ope", str(bad), "--policy", "thompson")
    assert r.exit_code == 2
    r = _run("bandit", "simulate", "--policies", "nope")
    assert r.exit_code == 2 and "unknown policy" in r.output
    good = tmp_path / "good.csv"
    good.write_text("action,reward,propensity,x\na,1,0.5,0.1\nb,0,0.5,0.2\na,0,0.5,0.3\nb,1,0.5,0.4\n")
    for spec in ("greedy-model:0.1", "greedy-model:epsilon=2", "greedy-model:eps=0.1", "uniform:foo=1"):
        r = _run("bandit", "ope", str(good), "--policy", spec)  # was an IndexError traceback / silently accepted
        assert r.exit_code == 2 and spec in r.output and "Traceback" not in r.output, (spec, r.output)
    r = _run("bandit", "ope", str(good), "--policy", "greedy-model:epsilon=0.1", "--json")
    assert r.exit_code == 0, r.output
    w = tmp_path / "w.json"
    w.write_text("[1, 2]")
    r = _run("serve", "--workspace", str(trained.workspace), "--weights", str(w))  # was an AttributeError
    assert r.exit_code == 2 and "not a weights object" in r.output, r.output


def test_bandit_simulate_report(tmp_path):
    import json

    rep = tmp_path / "sim.html"
    r = _run("bandit", "simulate", "--policies", "thompson,epsilon_greedy", "--steps", "400", "--seeds", "1",
             "--arms", "5", "--report", str(rep), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert set(out["policies"]) == {"thompson", "epsilon_greedy"}
    assert "<svg" in rep.read_text()


def test_keys_cli(trained):
    w = ["--workspace", str(trained.workspace)]
    r = _run("keys", "add", "cli-key", *w)
    assert r.exit_code == 0 and r.stdout.strip().startswith("adl_")
    assert "cli-key" in _run("keys", "list", *w).stdout
    assert _run("keys", "revoke", "cli-key", *w).exit_code == 0
    assert "revoked" in _run("keys", "list", *w).stdout
    assert _run("keys", "revoke", "nope", *w).exit_code == 2


def test_select_fast_path_scores_equal_the_feature_path(trained):
    """The cached-encoding path of /v1/select gives the same scores as building feature rows."""
    from adlens.serve.scoring import ContextScorer

    with open_workspace(trained.workspace, trained) as ws:
        a, b = ContextScorer(ws), ContextScorer(ws)
        for art in ("art00", "art07", "zz1"):
            fast = a.score(ADS, a.context(article_id=art), with_features=False)["scores"]
            slow = b.score(ADS, b.context(article_id=art), with_features=True)["scores"]
            np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-6)
            assert np.isfinite(fast).all()


class _RandomJoint:
    """A fixed random linear joint space of any input width (seeded by the width)."""

    @staticmethod
    def _map(x):
        return x @ np.random.default_rng(x.shape[1]).normal(size=(x.shape[1], 8)).astype(np.float32)

    image_to_joint = text_to_joint = _map


def test_cached_unit_rows_give_exactly_the_pair_features_of_the_batch_function(trained):
    """ContextScorer keeps each creative's / context's normalised rows; the features must equal
    pair_features over the same vectors bit for bit (the model's splits see these values)."""
    from adlens.features.pair import AdSide, ArticleSide, pair_features
    from adlens.serve.scoring import ContextScorer, _Projected, _stack

    with open_workspace(trained.workspace, trained) as ws:
        sc = ContextScorer(ws)
        assert sc.joint is None  # no joint space saved in this workspace: give it one
        sc.joint = _RandomJoint()  # so that the image-article feature is exercised too
        sc.known_ads(ADS)
        sides = [sc._ads[a] for a in ADS]
        for art in ("art00", "art07", "zz1"):
            ctx = sc.context(article_id=art)
            got = sc._pair(sides, ctx.side)
            again = sc._pair(sides, ctx.side)  # from the cached rows
            want = pair_features(
                AdSide(text_emb=_stack([s.text_emb for s in sides]), image_emb=_stack([s.image_emb for s in sides]),
                       entities=[s.entities for s in sides], valence=[s.valence for s in sides],
                       topic=[s.topic for s in sides]),
                ArticleSide(text_emb=ctx.side.text_emb[None, :], entities=[ctx.side.entities], valence=[ctx.side.valence],
                            topic=[ctx.side.topic]),
                list(range(len(ADS))), [0] * len(ADS), joint=_Projected(sc.joint))
            for name, v in want.items():
                np.testing.assert_array_equal(got[name], v, err_msg=name)
                np.testing.assert_array_equal(again[name], v, err_msg=name)
            assert np.isfinite(got["sim_adimage_article"]).all() and np.isfinite(got["sim_adtext_article"]).all()


def test_a_failed_decision_write_raises_and_undoes_the_in_memory_count(trained):
    ws, svc = _service(trained)
    try:
        ctx = {"article_id": "art02"}
        n0 = svc.store.count()["decisions"]  # the module's workspace is shared with other tests
        svc.select(ctx, ADS[:5])
        before = {a: list(v) for a, v in svc._arms.items()}
        real = svc.store.record_decisions

        def broken(records):
            raise sa.exc.OperationalError("INSERT", {}, Exception("database or disk is full"))

        svc.store.record_decisions = broken
        with pytest.raises(sa.exc.OperationalError, match="disk is full"):
            svc.select(ctx, ADS[:5])
        assert {a: list(v) for a, v in svc._arms.items()} == before  # the optimistic +1 was undone
        svc.store.record_decisions = real
        d = svc.select(ctx, ADS[:5])
        db = svc.store.arms(ADS[:5])
        for a in ADS[:5]:
            assert svc._arms[a] == [db[a].impressions, db[a].clicks]
        assert svc.store.count()["decisions"] == n0 + 2 and svc.counters["decisions"] == 2
        assert svc.feedback(event_id="f1", decision_id=d["decision_id"], type="click")["status"] == "counted"
    finally:
        svc.close()
        ws.close()


def test_after_close_writes_are_refused_with_503_and_nothing_is_logged(trained):
    ws, svc = _service(trained)
    try:
        ctx = {"article_id": "art04"}
        d = svc.select(ctx, ADS[:4])
        n = svc.store.count()
        before = {a: list(v) for a, v in svc._arms.items()}
        app = create_app(svc)
        svc.close()
        svc.close()  # idempotent
        with TestClient(app) as c:
            for body in ({"context": ctx, "candidates": ADS[:4]},  # the lean route
                         {"context": ctx, "candidates": [{"id": a} for a in ADS[:4]]}):  # the validated one
                r = c.post("/v1/select", json=body)
                assert r.status_code == 503 and "closed" in r.json()["detail"]
            r = c.post("/v1/feedback", json={"event_id": "late", "decision_id": d["decision_id"], "type": "click"})
            assert r.status_code == 503 and "not recorded" in r.json()["detail"]
        assert {a: list(v) for a, v in svc._arms.items()} == before  # the refused decisions' +1 undone
        assert BanditStore(ws.engine).count() == n  # read through the workspace's own engine
    finally:
        svc.close()
        ws.close()


def test_precomputed_pair_table_equals_live_scores_and_falls_back(trained):
    from adlens.serve.scoring import ContextScorer, UnknownIds

    with open_workspace(trained.workspace, trained) as ws:
        pre, live = ContextScorer(ws), ContextScorer(ws)
        pre.preload()
        n = pre.precompute()
        assert n == len(pre._ads) * len(pre._articles) > 0
        assert ContextScorer(ws).precompute() == 0  # nothing loaded: nothing to table
        for art in ("art00", "art05", "zz1"):
            got = pre.score(ADS, pre.context(article_id=art))
            want = live.score(ADS, live.context(article_id=art))["scores"]
            assert got["cached"] == len(ADS)  # served from the table
            np.testing.assert_array_equal(got["scores"], want)
        small = ContextScorer(ws)
        small.preload()
        assert small.precompute(max_pairs=10) == 0 and small._table is None  # above the cap: skipped
        with pytest.raises(UnknownIds, match="nope"):
            pre.score(["ad00", "nope"], pre.context(article_id="art00"))


def test_plain_select_shape_and_model_validated_shape_answer_alike(client):
    """The plain request shape is served without FastAPI's validation; every other shape goes through
    the pydantic route. Both must give the same statuses and messages."""
    ctx = {"article_id": "art04"}
    for plain, other in (
        (["ad01", "ad02"], [{"id": "ad01"}, "ad02"]),
        (["ad01", "nope"], [{"id": "ad01"}, {"id": "nope"}]),
        (["ad01", "ad01"], [{"id": "ad01"}, {"id": "ad01"}]),
    ):
        a = client.post("/v1/select", json={"context": ctx, "candidates": plain})
        b = client.post("/v1/select", json={"context": ctx, "candidates": other})
        assert a.status_code == b.status_code, (a.text, b.text)
        if a.status_code == 200:
            ka, kb = a.json(), b.json()
            assert ka["decision_id"] != kb["decision_id"] and {c["id"] for c in ka["candidates"]} == {"ad01", "ad02"}
            assert set(ka) == set(kb) and set(ka["candidates"][0]) == set(kb["candidates"][0])
        else:
            assert a.json()["detail"] == b.json()["detail"]
    # shapes the lean path leaves to the model: extra keys, non-string ids, too-long ids, bad JSON values
    for body, status in (({"context": ctx, "candidates": ["ad01"], "x": 1}, 422),
                         ({"context": ctx, "candidates": ["ad01", 7]}, 422),
                         ({"context": {"article_id": "a" * 201}, "candidates": ["ad01"]}, 422),
                         ({"context": {"article_id": 5}, "candidates": ["ad01"]}, 422)):
        r = client.post("/v1/select", json=body)
        assert r.status_code == status and r.json()["detail"], r.text
    r = client.post("/v1/select", content=b'{"context": {"article_id": "art04"}, "candidates": [NaN]}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_an_unexpected_failure_is_a_json_500_on_both_select_routes_and_the_service_goes_on(trained, caplog):
    ws, svc = _service(trained)
    try:
        with TestClient(create_app(svc)) as c:  # raise_server_exceptions: nothing may escape the app
            real, real_arms = svc.select, svc.arms

            def broken(*a, **k):
                raise RuntimeError("boom")

            svc.select = svc.arms = broken
            with caplog.at_level("ERROR", logger="adlens.serve.app"):
                for cands in (["ad01", "ad02"], [{"id": "ad01"}, "ad02"]):  # lean path, FastAPI route
                    r = c.post("/v1/select", json={"context": {"article_id": "art01"}, "candidates": cands})
                    assert r.status_code == 500 and r.json() == {"detail": "Internal Server Error"}, r.text
                r = c.get("/v1/arms")
                assert r.status_code == 500 and r.json() == {"detail": "Internal Server Error"}
            boom = [rec for rec in caplog.records if rec.exc_info and "boom" in str(rec.exc_info[1])]
            assert len(boom) == 3  # each failure logged once, with its traceback
            svc.select, svc.arms = real, real_arms
            r = c.post("/v1/select", json={"context": {"article_id": "art01"}, "candidates": ["ad01", "ad02"]})
            assert r.status_code == 200 and r.json()["chosen"] in ("ad01", "ad02")
            m = c.get("/metrics").text
            assert 'adlens_http_requests_total{route="/v1/select",status="500"} 2.0' in m
            assert 'adlens_http_requests_total{route="/v1/select",status="200"} 1.0' in m
    finally:
        svc.close()
        ws.close()


def test_two_processes_on_one_workspace_see_each_others_counts_after_a_refresh(trained):
    """What `adlens serve --workers N` relies on: each Service re-reads the database's counters."""
    ws1, a = _service(trained, refresh_s=60.0)  # long period: refreshed by hand below
    ws2, b = _service(trained, refresh_s=60.0)
    try:
        ids = ADS[:4]
        for i in range(6):
            d = (a if i % 2 else b).select({"article_id": "art09"}, ids)
            if i < 4:
                (b if i % 2 else a).feedback(event_id=f"two-{i}", decision_id=d["decision_id"], type="click")
        assert a.refresh_counts() >= 4 and b.refresh_counts() >= 4
        db = a.store.arms(ids)
        for svc in (a, b):
            for i in ids:
                assert svc._arms[i] == [db[i].impressions, db[i].clicks]
        with pytest.raises(InvalidInput, match="one process"):
            _service(trained, refresh_s=1.0, policy="linucb")
    finally:
        for svc, w in ((a, ws1), (b, ws2)):
            svc.close()
            w.close()


def test_serve_cli_with_two_workers_counts_exactly(trained, tmp_path):
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    ws_path = tmp_path / "ws"
    shutil.copytree(trained.workspace, ws_path)
    with open_workspace(ws_path, trained) as ws:
        before = BanditStore(ws.engine).count()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("adlens")
    proc = subprocess.Popen([str(exe), "serve", "--workspace", str(ws_path), "--port", str(port), "--workers", "2",
                             "--refresh", "0.2", "--seed", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError(proc.stdout.read().decode()[-2000:])
        pids, decisions, clicks = set(), [], 0
        with httpx.Client(base_url=url, timeout=10) as c:
            for i in range(60):
                with httpx.Client(base_url=url, timeout=10) as fresh:  # new connections spread over workers
                    r = fresh.post("/v1/select", json={"context": {"article_id": f"art{i % 24:02d}"}, "candidates": ADS[:5]})
                    assert r.status_code == 200, r.text
                    decisions.append(r.json()["decision_id"])
                    pids.add(fresh.get("/healthz").json()["pid"])
            for i, d in enumerate(decisions[:20]):
                for _ in range(2):  # every click sent twice: counted once
                    assert c.post("/v1/feedback", json={"event_id": f"w-{i}", "decision_id": d, "type": "click"}).status_code == 200
                clicks += 1
            assert len(set(decisions)) == 60
            totals = c.get("/v1/arms").json()["totals"]
        assert len(pids) == 2, pids  # both workers answered
        assert totals["decisions"] == before["decisions"] + 60 and totals["clicks"] == before["clicks"] + clicks
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 0, proc.stdout.read().decode()[-2000:]
    with open_workspace(ws_path, trained) as ws:
        store = BanditStore(ws.engine)
        for d in decisions:
            assert store.decision(d) is not None  # every answered decision is stored
        assert sum(store.decision(d)["clicked"] for d in decisions[:20]) == 20
    # the CLI refuses a contextual policy with several workers, with a reason
    r = _run("serve", "--workspace", str(ws_path), "--workers", "2", "--policy", "linucb")
    assert r.exit_code != 0 and "one process" in r.output
