from __future__ import annotations

import json
import time

import pytest
from chat_server import ChatServer, completion

from adlens.quality.teachers import LabelsTeacher, OpenAITeacher, RubricTeacher, label_summary, parse_answer


class FakeLLM(ChatServer):
    """OpenAI-compatible /v1/chat/completions on 127.0.0.1; behaviour chosen by a MODE tag in the ad copy."""

    def __init__(self):
        self.calls: list[str] = []
        self.seen: dict[str, int] = {}
        self.bodies: list[dict] = []
        super().__init__(self.respond)

    def respond(self, body, _headers, _path):
        self.bodies.append(body)
        text = body["messages"][1]["content"][0]["text"]
        mode = text.split("MODE:")[1].split()[0] if "MODE:" in text else "ok"
        self.calls.append(mode)
        n = self.seen[mode] = self.seen.get(mode, 0) + 1
        if mode == "429once" and n == 1:
            return 429, {"error": "slow down"}, None
        if mode == "500":
            return 500, {"error": "boom"}, None
        if mode == "timeout":
            time.sleep(0.6)
        content = {"malformed": "{score: 7, oops", "range": json.dumps({"score": 42, "reasoning": "x"})}.get(
            mode, json.dumps({"score": 7, "reasoning": f"fine {mode}"}))
        return 200, completion(content), None


@pytest.fixture
def llm():
    s = FakeLLM()
    yield s
    s.close()


def _pairs(modes):
    return [{"pair_id": f"p{i}", "ad_id": f"a{i}", "article_id": f"r{i}", "ad_text": f"Buy now MODE:{m}",
             "article_text": "An article.", "image_bytes": b"\x89PNG fake"} for i, m in enumerate(modes)]


def _teacher(llm, tmp_path, **kw):
    args = dict(base_url=llm.url, model="fake-vlm", cache_path=tmp_path / "cache.sqlite", max_workers=2,
                timeout=0.3, max_retries=2, backoff=0.01, price_in_per_mtok=2.0, price_out_per_mtok=10.0)
    args.update(kw)
    return OpenAITeacher(**args)


def test_openai_teacher_failures_retries_cache(llm, tmp_path):
    pairs = _pairs(["ok", "429once", "500", "timeout", "malformed", "range"])
    t = _teacher(llm, tmp_path)
    out = t.label(pairs)
    by = {r["pair_id"]: r for r in out}
    assert by["p0"]["score"] == 7 and by["p0"]["teacher"] == "openai/fake-vlm/quality-v1" and by["p0"]["error"] is None
    assert by["p1"]["score"] == 7 and llm.seen["429once"] == 2            # retried after 429
    assert by["p2"]["score"] is None and "http 500" in by["p2"]["error"] and llm.seen["500"] == 3
    assert by["p3"]["score"] is None and "timeout" in by["p3"]["error"] and llm.seen["timeout"] == 3
    assert by["p4"]["score"] is None and by["p4"]["error"].startswith("bad answer")
    assert by["p5"]["score"] is None and "[1, 10]" in by["p5"]["error"]
    assert by["p0"]["cost"] == pytest.approx((1000 * 2 + 100 * 10) / 1e6)
    # protocol: image part as base64 data URL, four criteria in the prompt
    body = llm.bodies[0]
    parts = body["messages"][1]["content"]
    assert parts[1]["type"] == "image_url" and parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert "under 2 seconds" in parts[0]["text"] and "Contextual relevance" in parts[0]["text"]
    rep = t.report()
    assert rep["ok"] == 2 and rep["failed"] == 4 and rep["retries"] >= 5
    t.close()
    # rerun (e.g. after a crash): cached answers make no call; only failures are retried
    n_before = len(llm.calls)
    t2 = _teacher(llm, tmp_path)
    out2 = t2.label(pairs[:2])
    assert len(llm.calls) == n_before and all(r["cached"] for r in out2) and [r["score"] for r in out2] == [7, 7]
    assert t2.report()["cached"] == 2
    t2.close()


def test_openai_teacher_budget_stops_before_exceeding(llm, tmp_path):
    per_call = (1000 * 2 + 100 * 10) / 1e6  # 0.003
    t = _teacher(llm, tmp_path, budget_usd=0.01, est_cost_per_call=per_call, max_workers=1)
    out = t.label(_pairs(["ok"] * 6))
    rep = t.report()
    assert rep["ok"] == 3 and rep["skipped_budget"] == 3 and rep["stopped_by_budget"]
    assert rep["spent_usd"] <= 0.01
    assert [r["error"] for r in out[3:]] == ["budget exhausted"] * 3
    t.close()


def test_parse_answer():
    assert parse_answer('```json\n{"score": 8, "reasoning": "ok"}\n```') == (8.0, "ok")
    for bad in ['{"score": "8", "reasoning": "x"}', '[1]', '{"score": 0, "reasoning": "x"}', 'nope']:
        with pytest.raises(ValueError):
            parse_answer(bad)


def test_rubric_teacher_marked_and_monotone():
    good = {"pair_id": "g", "ad_id": "a", "article_id": "x", "sim_adtext_article": 0.8, "topic_match": 1.0,
            "entity_overlap_rate": 0.5, "sentiment_alignment": 0.9, "clarity": 6.0, "face_emotion": "smiling"}
    bad = {**good, "pair_id": "b", "sim_adtext_article": 0.0, "topic_match": 0.0, "entity_overlap_rate": 0.0,
           "sentiment_alignment": 0.1}
    empty = {"pair_id": "e", "ad_id": "a", "article_id": "y"}
    out = RubricTeacher().label([good, bad, empty])
    assert all(r["teacher"] == "rubric/1" for r in out)
    assert 1 <= out[1]["score"] < out[0]["score"] <= 10 and out[2]["score"] == 5.5
    assert "relevance=" in out[0]["reasoning"]


def test_labels_teacher_ratings_and_clicks(tmp_path):
    csv = tmp_path / "ratings.csv"
    csv.write_text("ad,art,stars\na1,x,5\na1,x,3\na2,y,1\na3,z,5\n")
    t = LabelsTeacher.from_file(csv, columns={"ad_id": "ad", "article_id": "art", "score": "stars"}, scale=(1, 5))
    out = t.label([{"ad_id": "a1", "article_id": "x"}, {"ad_id": "a2", "article_id": "y"},
                   {"ad_id": "a3", "article_id": "z"}, {"ad_id": "a9", "article_id": "q"}])
    assert [r["score"] for r in out] == [7.75, 1.0, 10.0, None] and out[3]["error"] == "no label"
    assert out[0]["teacher"] == "labels/ratings"
    clicks = {"ad_id": ["a1", "a2", "a3"], "clicks": [10, 5, 0], "impressions": [100, 100, 0]}
    tc = LabelsTeacher(clicks)  # no article column: applies per ad
    oc = tc.label([{"ad_id": "a1", "article_id": "anything"}, {"ad_id": "a2", "article_id": "b"},
                   {"ad_id": "a3", "article_id": "c"}])
    assert oc[0]["score"] == 10.0 and oc[1]["score"] == 5.5 and oc[2]["score"] is None  # 0 impressions
    assert tc.teacher_id == "labels/clicks"
    s = label_summary(out + oc)
    assert s["n"] == 7 and s["n_errors"] == 2 and s["histogram"]["10"] == 2
