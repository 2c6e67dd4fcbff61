"""Quality jobs on a tiny workspace built here (24 ads, each with its article, + 2 stray articles):
pairs -> rubric -> train -> score, hand-counted pair types, no ad on both sides, CLI, stage/report."""

from __future__ import annotations

import csv
import json

import pytest
import typer
from conftest import banner, encode
from typer.testing import CliRunner

from adlens.errors import InvalidInput
from adlens.features.jobs import compute_features
from adlens.ingest.ads import ingest_ads
from adlens.ingest.articles import ingest_articles
from adlens.quality import jobs as q

N_ADS = 24
TOPICS = [  # (ad copy, article title, article text)
    ("Acme running shoes, SHOP NOW", "Marathon training", "Runners in Paris train for the marathon with new shoes."),
    ("Globex flights to Rome. Book now!", "Cheap flights", "Airlines cut prices on flights to Rome and Paris."),
    ("Initech cloud backup for your files", "Data safety", "Companies back up their files to the cloud every night."),
    ("Fresh pizza delivered hot", "Food trends", "Chefs bake pizza and bread in wood ovens across the city."),
]


def light():
    from test_features_jobs import (  # light extractors, no models
        light_context,
        light_creative,
    )
    return light_creative, light_context


def build(ws, root, n_ads=N_ADS):
    folder = root / "in"
    folder.mkdir()
    arts = []
    with open(folder / "ads.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "ad_id", "advertiser", "text", "day"])
        for i in range(n_ads):
            copy, title, text = TOPICS[i % len(TOPICS)]
            (folder / f"b{i}.jpg").write_bytes(encode(banner(100 + i, text="SHOP NOW")))
            w.writerow([f"b{i}.jpg", f"ad{i:02d}", f"Adv{i}", f"{copy} #{i}", "2026-11-01"])
            arts.append({"article_id": f"art{i:02d}", "title": title, "text": f"{text} Story {i}.", "ad_id": f"ad{i:02d}"})
    arts += [{"article_id": "zz1", "title": "Weather", "text": "Rain and wind tomorrow."},
             {"article_id": "zz2", "title": "Chess", "text": "A long game of chess ended in a draw."}]
    (folder / "articles.jsonl").write_text("".join(json.dumps(a) + "\n" for a in arts))
    ingest_ads(ws, folder / "ads.csv")
    ingest_articles(ws, folder / "articles.jsonl")
    cr, cx = light()
    compute_features(ws, "ads", extractor=cr)
    compute_features(ws, "articles", extractor=cx)
    return ws


@pytest.fixture
def tiny(ws, tmp_path):
    return build(ws, tmp_path)


FAST = {"n_estimators": 20}


def expected_counts(ws):
    """By hand: 1 positive per ad; 2 random per ad (26 articles, plenty); 1 safe contrast per ad that
    has an article of another known topic with |valence difference| < 0.5 (not its positive)."""
    from adlens.features.jobs import load_features

    ads = {r["ad_id"]: r for r in load_features(ws, "ads")}
    arts = load_features(ws, "articles")
    n_contrast = 0
    for i in range(N_ADS):
        a = ads[f"ad{i:02d}"]
        ok = [b for b in arts if b["article_id"] != f"art{i:02d}" and b["topic"] and a["ad_topic"]
              and b["topic"] != a["ad_topic"] and abs(b["valence"] - a["copy_valence"]) < 0.5]
        n_contrast += bool(ok)
    return {"positive": N_ADS, "random_negative": 2 * N_ADS, "safe_contrast": n_contrast}


def test_chain_pairs_rubric_train_score(tiny):
    r = q.build_pairs(tiny)
    assert r["per_type"] == expected_counts(tiny)
    assert r["n_ads"] == N_ADS and r["ads_without_article"] == 0
    pairs = q.load_pairs(tiny)
    assert len(pairs) == r["n_pairs"]
    assert {p["article_id"] for p in pairs if p["pair_type"] == "positive"} == {f"art{i:02d}" for i in range(N_ADS)}
    assert all(p["article_id"] == p["ad_id"].replace("ad", "art") for p in pairs if p["pair_type"] == "positive")

    lab = q.teach(tiny, "rubric")
    assert lab["n_scored"] == r["n_pairs"] and lab["teacher_id"].startswith("rubric/") and "not a judge" in lab["note"]
    assert (q.quality_dir(tiny) / "labels-rubric.parquet").exists()

    rep = q.train(tiny, **FAST)
    split = rep["metrics"]["split"]
    assert split["shared_ads"] == 0 and split["n_train_ads"] + split["n_test_ads"] == N_ADS
    assert rep["version"] == "v0001" and rep["teacher"] == "rubric"
    assert "m_contrast" in rep["features"] and "contrast" in rep["features"] and "sim_adtext_article" in rep["features"]
    assert "twist_present" in rep["features_dropped_all_null"]  # LLM-only feature, null here
    assert set(rep["features"]) <= set(q.SEED_FEATURES) and len(q.SEED_FEATURES) == 21
    assert set(rep["metrics"]["per_pair_type"]) <= {"positive", "random_negative", "safe_contrast"}
    assert (q.quality_dir(tiny) / "dataset.parquet").exists() and (q.quality_dir(tiny) / "report.json").exists()

    # no ad in both train and test: recompute the split independently
    import numpy as np

    from adlens.quality.student import group_split
    g = [p["ad_id"] for p in pairs]
    tr, te = group_split(g, 0.2, 0)
    assert not ({g[i] for i in tr} & {g[i] for i in te})

    s = q.score(tiny, "ad00", "art00")
    assert 1 <= s["score"] <= 10 and s["version"] == "v0001" and set(s["features"]) == set(rep["features"])
    # identical to the registered student's XGBoost prediction
    st = q.registry(tiny).load()
    assert abs(float(st.predict([{k: (np.nan if v is None else v) for k, v in s["features"].items()}])[0]) - s["score"]) < 1e-3
    _, cx = light()
    t = q.score(tiny, "ad00", "Runners in Paris train for the marathon.", extractor=cx)
    assert t["article_id"] is None and 1 <= t["score"] <= 10

    with pytest.raises(InvalidInput, match="unknown ad_id 'nope'"):
        q.score(tiny, "nope", "art00")
    ev = q.evaluate_latest(tiny)
    assert ev["version"] == "v0001" and ev["metrics"]["split"]["shared_ads"] == 0


def test_errors_before_anything(ws):
    with pytest.raises(InvalidInput, match="adlens pairs"):
        q.teach(ws, "rubric")
    with pytest.raises(InvalidInput, match="unknown teacher"):
        q.teach(ws, "oracle")
    with pytest.raises(InvalidInput, match="adlens train"):
        q.evaluate_latest(ws)


def test_labels_teacher_and_stage_report(tiny, tmp_path):
    from adlens.pipeline import RunContext

    q.build_pairs(tiny)
    f = tmp_path / "ratings.csv"
    f.write_text("ad,art,stars\n" + "".join(f"ad{i:02d},art{i:02d},{1 + i % 5}\n" for i in range(N_ADS)))
    lab = q.teach(tiny, "labels", labels_file=f, columns={"ad_id": "ad", "article_id": "art", "score": "stars"},
                  scale=(1, 5))
    assert lab["n_scored"] == N_ADS and lab["n_errors"] == lab["n"] - N_ADS  # only positives are rated

    sec = q.stage_quality(RunContext(ws=tiny), **FAST)  # reuses the labels file, no rubric
    assert sec["teacher"] == "labels" and sec["labels"]["reused"] and "note" not in sec
    assert sec["pairs"]["per_type"]["positive"] == N_ADS
    rep = q.report_quality(None, sec)
    assert rep["pair_rows"][0]["type"] == "positive" and rep["metric_rows"][0]["name"].startswith("all")
    from jinja2 import Environment, PackageLoader
    html = Environment(loader=PackageLoader("adlens", "templates")).get_template("section_quality.html").render(
        quality={**sec, **rep})
    assert "Held-out metrics" in html and "positive" in html
    # the calibration plot is inlined as SVG (not escaped) and has one point per calibration bin
    import xml.etree.ElementTree as ET
    assert "Calibration" in html and "&lt;svg" not in html
    svg = ET.fromstring(html[html.index("<svg"): html.index("</svg>") + 6])
    pts = [e for e in svg.iter("{http://www.w3.org/2000/svg}circle") if e.get("class") == "bin"]
    assert len(pts) == len(sec["metrics"]["calibration"]) >= 1


def test_stage_skips_small_workspace(ws, tmp_path):
    from adlens.pipeline import RunContext

    assert "skipped" in q.stage_quality(RunContext(ws=ws))
    assert q.report_quality(None, {"skipped": "x"}) == {}


def test_cli(tiny, monkeypatch):
    from adlens import cli_quality

    app, ev = typer.Typer(), typer.Typer()
    app.add_typer(ev, name="evaluate")
    cli_quality.register(app, ev)
    monkeypatch.setenv("ADLENS_WORKSPACE", str(tiny.root))
    run = CliRunner().invoke
    r = run(app, ["pairs", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["per_type"]["positive"] == N_ADS
    r = run(app, ["teach", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["teacher"] == "rubric"
    monkeypatch.setattr(q, "train", lambda ws, teacher=None, random_state=0, _t=q.train: _t(ws, teacher, random_state, **FAST))
    r = run(app, ["train"])
    assert r.exit_code == 0, r.output
    assert "v0001" in r.output
    r = run(app, ["evaluate", "quality", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["version"] == "v0001"
    r = run(app, ["score", "ad01", "art01", "--json"])
    assert r.exit_code == 0, r.output
    assert 1 <= json.loads(r.stdout)["score"] <= 10
    r = run(app, ["score", "nope", "art01"])
    assert r.exit_code == 2 and "unknown ad_id" in r.output
    r = run(app, ["teach", "--teacher", "labels"])
    assert r.exit_code == 2 and "labels file" in r.output
