"""`adlens teach --teacher openai` end to end through the real CLI, against a local OpenAI-compatible
server on 127.0.0.1, in a workspace built from a tiny generated sample corpus; then `adlens train`
and `adlens evaluate quality --report` on those labels.

Checks: the labels file, the answer cache (a rerun makes zero HTTP calls), the budget stop (never
over budget, the rest resumable), the cost report, the API key from a named environment variable,
the ad image sent as an image part, and the option validation.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sqlite3
import threading
import xml.etree.ElementTree as ET

import pyarrow.parquet as pq
import pytest
from PIL import Image
from chat_server import ChatServer, completion
from typer.testing import CliRunner

from adlens.features.jobs import ad_records, compute_features
from adlens.ingest.ads import ingest_ads
from adlens.ingest.articles import ingest_articles
from adlens.sample import make_sample

PROMPT_TOKENS, COMPLETION_TOKENS = 1000, 100
PRICE_IN, PRICE_OUT = 2.0, 10.0
PER_CALL = (PROMPT_TOKENS * PRICE_IN + COMPLETION_TOKENS * PRICE_OUT) / 1e6  # $0.003


class LocalLLM(ChatServer):
    """/v1/chat/completions on 127.0.0.1. Score 8 when the ad's brand (first field of the copy) is named
    in the article, else 3. The very first request gets a 429 with Retry-After: 0 (retried at once)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        super().__init__(self.respond)

    def respond(self, body, headers, path):
        with self.lock:
            self.requests.append({"path": path, "auth": headers.get("Authorization"), "body": body})
            first = len(self.requests) == 1
        if first:
            return 429, {"error": "rate limited"}, {"Retry-After": "0"}
        text = body["messages"][1]["content"][0]["text"]
        ad = text.split("AD COPY:\n", 1)[1].split("\n\nARTICLE:\n", 1)[0]
        article = text.split("\n\nARTICLE:\n", 1)[1]
        brand = ad.split("|")[0].strip().lower()
        score = 8 if brand and brand in article.lower() else 3
        content = json.dumps({"score": score, "reasoning": f"brand named: {score == 8}"})
        return 200, completion(content, PROMPT_TOKENS, COMPLETION_TOKENS), None


@pytest.fixture
def llm():
    s = LocalLLM()
    yield s
    s.close()


@pytest.fixture
def sample_ws(ws, tmp_path):
    """A workspace from a generated sample (12 creatives + variants, 100 articles), light features."""
    from test_features_jobs import light_context, light_creative

    out = tmp_path / "sample"
    make_sample(out, n_ads=12, seed=0)
    ingest_ads(ws, out / "ads.csv")
    ingest_articles(ws, out / "articles.jsonl")
    compute_features(ws, "ads", extractor=light_creative)
    compute_features(ws, "articles", extractor=light_context)
    return ws


def _cli(monkeypatch, ws):
    from adlens.cli import app

    monkeypatch.setenv("ADLENS_WORKSPACE", str(ws.root))
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_teach_openai_cli_end_to_end(sample_ws, llm, monkeypatch, tmp_path):
    ws = sample_ws
    run = _cli(monkeypatch, ws)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ADLENS_LLM_API_KEY", raising=False)
    monkeypatch.setenv("MY_LLM_KEY", "sk-local-test")
    r = run("pairs", "--json")
    assert r.exit_code == 0, r.output
    n_pairs = json.loads(r.stdout)["n_pairs"]
    assert n_pairs >= 20
    base = ["teach", "--teacher", "openai", "--base-url", llm.url, "--model", "fake-vlm", "--api-key-env", "MY_LLM_KEY",
            "--price-in", str(PRICE_IN), "--price-out", str(PRICE_OUT), "--timeout", "10"]
    labels_path = ws.artifacts / "quality" / "labels-openai.parquet"
    cache_path = ws.artifacts / "quality" / "cache" / "openai.sqlite"

    # 1) budget for exactly 3 calls at the estimated $0.003: stops before exceeding it
    r = run(*base, "--budget", "0.01", "--est-cost", str(PER_CALL), "--workers", "1")
    assert r.exit_code == 0, r.output
    assert "cost report" in r.output and "budget reached" in r.output and f"{n_pairs - 3} pairs not sent" in r.output
    assert len(llm.requests) == 4  # 429 once + 3 answers
    rows = pq.read_table(labels_path).to_pylist()
    assert len(rows) == n_pairs
    scored = [x for x in rows if x["score"] is not None]
    assert len(scored) == 3 and all(x["score"] in (3.0, 8.0) for x in scored)
    assert all(x["teacher"] == "openai/fake-vlm/quality-v1" and x["cost"] == pytest.approx(PER_CALL) for x in scored)
    assert [x["error"] for x in rows if x["score"] is None] == ["budget exhausted"] * (n_pairs - 3)
    assert sum(x["cost"] for x in rows) == pytest.approx(3 * PER_CALL) and sum(x["cost"] for x in rows) <= 0.01
    with sqlite3.connect(cache_path) as db:
        assert db.execute("SELECT count(*) FROM answers WHERE model='fake-vlm'").fetchone()[0] == 3

    # protocol: POST to /v1/chat/completions, key from --api-key-env, the ad's own image as an image part
    req = llm.requests[1]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-local-test"
    assert req["body"]["model"] == "fake-vlm" and req["body"]["response_format"] == {"type": "json_object"}
    url = req["body"]["messages"][1]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/")
    img = base64.b64decode(url.split(",", 1)[1])
    assert hashlib.sha256(img).hexdigest() in {a.image_sha256 for a in ad_records(ws)}
    Image.open(io.BytesIO(img)).verify()

    # 2) no budget: resumes, only the pairs not answered yet are sent
    r = run(*base, "--workers", "2", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    rep = out["report"]
    assert len(llm.requests) == 4 + n_pairs - 3
    assert rep["cached"] == 3 and rep["ok"] == n_pairs - 3 and rep["http_attempts"] == n_pairs - 3
    assert rep["spent_usd"] == pytest.approx((n_pairs - 3) * PER_CALL) and not rep["stopped_by_budget"]
    assert out["n_scored"] == n_pairs and out["total_cost"] == pytest.approx((n_pairs - 3) * PER_CALL)

    # 3) everything cached: zero HTTP calls, nothing paid
    r = run(*base, "--budget", "0.001", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)["report"]
    assert len(llm.requests) == 4 + n_pairs - 3
    assert rep["http_attempts"] == 0 and rep["cached"] == n_pairs and rep["spent_usd"] == 0 and not rep["stopped_by_budget"]
    rows = pq.read_table(labels_path).to_pylist()
    assert all(x["cached"] and x["score"] in (3.0, 8.0) for x in rows)
    by_type = {}
    for x in rows:
        by_type.setdefault(x["pair_type"], []).append(x["score"])
    assert sum(by_type["positive"]) / len(by_type["positive"]) > sum(by_type["random_negative"]) / len(by_type["random_negative"])

    # the chain goes on with these labels: train, then evaluate with an HTML report
    r = run("train", "--teacher", "openai", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["teacher_id"] == "openai/fake-vlm/quality-v1"
    page = tmp_path / "out" / "quality.html"
    r = run("evaluate", "quality", "--report", str(page))
    assert r.exit_code == 0, r.output
    assert "calibration" in r.output and str(page) in r.output.replace("\n", "")
    html = page.read_text()
    assert "Held-out metrics" in html and "positive" in html and "Top feature importances" in html
    svg = ET.fromstring(html[html.index("<svg"): html.index("</svg>") + len("</svg>")])
    assert len([e for e in svg.iter() if e.get("class") == "bin"]) >= 2


def test_teach_openai_cli_option_errors(sample_ws, llm, monkeypatch):
    run = _cli(monkeypatch, sample_ws)
    assert run("pairs").exit_code == 0
    base = ["teach", "--teacher", "openai", "--base-url", llm.url, "--model", "m"]
    r = run(*base, "--budget", "1")
    assert r.exit_code == 2 and "--price-in" in r.output
    monkeypatch.delenv("NOT_SET_KEY_VAR", raising=False)
    r = run(*base, "--api-key-env", "NOT_SET_KEY_VAR")
    assert r.exit_code == 2 and "NOT_SET_KEY_VAR" in r.output
    r = run("teach", "--teacher", "openai", "--model", "m")
    assert r.exit_code == 2 and "--base-url" in r.output
    r = run("teach", "--teacher", "openai", "--base-url", "127.0.0.1:9/v1", "--model", "m")
    assert r.exit_code == 2 and "http://" in r.output
    assert llm.requests == []
