"""Feature jobs on a tiny workspace built here: rows per ad, coverage, failures, resume, pairs, CLI, report.

Most tests use a light extractor (no OCR, tiny deterministic embedders, heuristic NER) so they
run in milliseconds; one test runs the real default models end to end (loaded once per module).
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import typer
from conftest import banner, encode
from typer.testing import CliRunner

from adlens.features import jobs
from adlens.features.context import (
    DEFAULT_TAXONOMY,
    ContextFeatures,
    EntityExtractor,
    TopicClassifier,
)
from adlens.features.creative import CreativeFeatures, to_rgb_array
from adlens.features.jobs import compute_features, embedding_matrix, load_features
from adlens.features.joint import JointSpace
from adlens.features.store import open_feature_store
from adlens.ingest.ads import ingest_ads
from adlens.ingest.articles import ingest_articles


class FakeImageEmbedder:
    """Mean colour of a 2x2 grid: 12-d, unit norm (no model needed)."""

    dim, model_id, modality = 12, "fake-grid/v1", "image"

    def embed_images(self, images):
        out = []
        for im in images:
            a = to_rgb_array(im).astype(np.float32)
            h, w = a.shape[:2]
            v = np.concatenate([a[y:y + h // 2, x:x + w // 2].mean(axis=(0, 1)) for y in (0, h // 2) for x in (0, w // 2)]) + 1
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, np.float32)


class FakeTextEmbedder:
    """Letter counts of a-h + 1: 8-d, unit norm."""

    dim, model_id, modality = 8, "fake-letters/v1", "text"

    def embed_texts(self, texts):
        v = np.array([[t.lower().count(ch) + 1 for ch in "abcdefgh"] for t in texts], np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def light_creative(threads: int = 1, image_model: str | None = None) -> CreativeFeatures:  # the real one's signature
    text = FakeTextEmbedder()
    return CreativeFeatures(ocr=None, image_embedder=FakeImageEmbedder(), text_embedder=text,
                            entity_extractor=EntityExtractor(backend="heuristic"),
                            topic_classifier=TopicClassifier(DEFAULT_TAXONOMY, embedder=text))


def light_context(threads: int = 1) -> ContextFeatures:
    text = FakeTextEmbedder()
    return ContextFeatures(text_embedder=text, topic_classifier=TopicClassifier(DEFAULT_TAXONOMY, embedder=text),
                           entity_extractor=EntityExtractor(backend="heuristic"))


ADS = [  # ad_id, advertiser, copy; ad5 is ad1's exact content again (shares its cached row)
    ("ad1", "Acme", "Acme running shoes for Paris. SHOP NOW and save 20%", 1),
    ("ad2", "Globex", "Globex flights to Paris. Book now!", 2),
    ("ad3", "", "", 3),
    ("ad4", "Initech", "Initech cloud backup", 4),
    ("ad5", "Acme", "Acme running shoes for Paris. SHOP NOW and save 20%", 1),
]
ARTICLES = [
    {"article_id": "art1", "title": "Running in Paris", "text": "Acme opened a store in Paris for runners.", "ad_id": "ad1"},
    {"article_id": "art2", "title": "Cheap flights", "text": "Globex cut prices on flights to Rome and Paris.", "ad_id": "ad2"},
]


def build_workspace(ws, root):
    folder = root / "in"
    folder.mkdir()
    with open(folder / "ads.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "ad_id", "advertiser", "text", "day"])
        for ad_id, adv, text, seed in ADS:
            name = f"b{seed}.jpg"
            if not (folder / name).exists():
                (folder / name).write_bytes(encode(banner(seed, text="SHOP NOW")))
            w.writerow([name, ad_id, adv, text, "2026-11-01"])
    (folder / "articles.jsonl").write_text("".join(json.dumps(a) + "\n" for a in ARTICLES))
    assert ingest_ads(ws, folder / "ads.csv").added == len(ADS)
    assert ingest_articles(ws, folder / "articles.jsonl").added == len(ARTICLES)
    return ws


def corrupt_blob(ws, ad_id):
    (rec,) = jobs.ad_records(ws, [ad_id])
    ws.blobs.path_for(rec.image_sha256).write_bytes(b"this is not a jpeg any more")


@pytest.fixture
def tiny(ws, tmp_path):
    return build_workspace(ws, tmp_path)


# ---------------------------------------------------------------- ads


def test_ads_rows_per_ad_coverage_and_a_corrupt_blob(tiny):
    corrupt_blob(tiny, "ad4")
    r = compute_features(tiny, "ads", extractor=light_creative, batch_size=2)
    assert (r["total"], r["computed"], r["cached"], r["pending"]) == (5, 4, 0, 0)
    assert r["distinct"] == 4  # ad1 and ad5 share one row (same image, copy, advertiser)
    assert [f["ad_id"] for f in r["failed"]] == ["ad4"] and "not an image" in r["failed"][0]["reason"]
    # coverage is over the 4 ads with rows (ad1, ad2, ad3, ad5), hand-counted
    cov = r["coverage"]
    assert r["rows"] == 4
    assert cov["twist_present"] == 0.0 and cov["twist_resolves_fast"] == 0.0  # LLM-only: really null, not 0
    assert cov["ocr_text"] == 0.0 and cov["ocr_text_area_share"] == 0.0  # no OCR backend in this extractor
    assert cov["face_count"] == 1.0 and cov["clarity"] == 1.0 and cov["image_embedding"] == 1.0
    assert cov["copy_brand_mention"] == 0.75  # ad3 has no advertiser
    assert cov["text_embedding"] == 0.75 and cov["ad_topic"] == 0.75  # ad3 has no words at all
    d = r["distribution"]
    assert d["copy_has_cta"]["share_true"] == 0.75  # "SHOP NOW" x2, "Book now", not ad3
    assert d["face_count"]["min"] == d["face_count"]["max"] == 0 and sum(d["face_count"]["hist"]) == 4
    assert len(d["clarity"]["hist"]) == 10 and len(d["clarity"]["edges"]) == 11
    assert d["clarity"]["min"] <= d["clarity"]["p50"] <= d["clarity"]["max"]
    assert d["image_embedding"]["top"] == [["fake-grid/v1", 4]]

    rows = load_features(tiny, "ads")
    assert [x["ad_id"] for x in rows] == ["ad1", "ad2", "ad3", "ad5"]
    assert rows[0]["copy_has_cta"] is True and math.isnan(rows[0]["twist_present"])
    assert "image_embedding" not in rows[0] and rows[0]["image_embedding_key"] == rows[0]["image_sha256"]
    assert rows[2]["text_embedding_key"] is None and rows[2]["copy_brand_mention"] is None
    # the vectors live in the embedding store and read back by pointer
    M, model = embedding_matrix(tiny, rows, "image_embedding", jobs.AD_IMAGE_KIND)
    assert model == "fake-grid/v1" and M.shape == (4, 12) and np.allclose(M[0], M[3])
    assert np.allclose(np.linalg.norm(M, axis=1), 1, atol=1e-5)

    # second run: nothing to compute, the bad blob is reported again, nothing duplicated
    parts = open_feature_store(tiny).parts("ads")
    r2 = compute_features(tiny, "ads", extractor=light_creative)
    assert (r2["computed"], r2["cached"], len(r2["failed"])) == (0, 4, 1)
    assert open_feature_store(tiny).parts("ads") == parts
    assert r2["coverage"] == cov


@pytest.mark.parametrize("workers", [1, 2])
def test_crash_between_batches_loses_at_most_one_batch(tiny, workers):
    class Crash(Exception):
        pass

    def progress(done, total):
        if done == 3:  # after the first batch of 2 was stored, mid-way through the second
            raise Crash

    with pytest.raises(Crash):
        compute_features(tiny, "ads", extractor=light_creative, batch_size=2, progress=progress, workers=workers)
    assert len(open_feature_store(tiny).keys("ads", jobs.AD_SPECS)) == 2  # the batch in flight is lost
    r = compute_features(tiny, "ads", extractor=light_creative, batch_size=2)
    # 4 distinct creatives: 2 stored before the crash (one of them shared by ad1 + ad5 or not)
    assert r["computed"] + r["cached"] == 5 and r["failed"] == [] and r["cached"] >= 2
    assert len(open_feature_store(tiny).keys("ads", jobs.AD_SPECS)) == 4


def test_limit_and_parallel_threads_give_the_same_rows(tiny):
    r = compute_features(tiny, "ads", extractor=light_creative, limit=1)
    assert r["computed"] >= 1 and r["pending"] >= 1
    r = compute_features(tiny, "ads", extractor=light_creative, workers=2, batch_size=1)
    assert r["pending"] == 0 and r["computed"] + r["cached"] == 5
    seq = compute_features(tiny, "ads", extractor=light_creative, store=jobs.FeatureStore(tiny.root / "other"))
    assert seq["coverage"] == r["coverage"] and seq["distribution"] == r["distribution"]


def test_process_workers(tiny):
    r = compute_features(tiny, "ads", extractor=light_creative, workers=2, executor="process", limit=2)
    assert r["computed"] >= 2 and r["failed"] == []


def test_invalid_arguments(tiny):
    from adlens.errors import InvalidInput

    for kw in ({"workers": 0}, {"limit": -1}, {"pairs": [("ad1", "art1")]}):
        with pytest.raises(InvalidInput):
            compute_features(tiny, "ads", extractor=light_creative, **kw)
    with pytest.raises(InvalidInput, match="unknown kind"):
        compute_features(tiny, "products")


# ---------------------------------------------------------------- articles and pairs


def test_articles_then_pairs(tiny, tmp_path):
    r = compute_features(tiny, "pairs")
    assert r["computed"] == 0 and len(r["failed"]) == 2 and "adlens features ads" in r["failed"][0]["reason"]
    compute_features(tiny, "ads", extractor=light_creative)
    a = compute_features(tiny, "articles", extractor=light_context)
    assert (a["total"], a["computed"], a["failed"]) == (2, 2, [])
    assert a["coverage"]["entities"] == 1.0 and a["coverage"]["text_embedding"] == 1.0
    assert "paris" in dict(a["distribution"]["entities"]["top"])

    p = compute_features(tiny, "pairs")  # default: each ad with the article written for it
    assert (p["total"], p["computed"], p["failed"]) == (2, 2, [])
    assert p["joint"]["status"].startswith("not fitted")  # 4 ads < MIN_JOINT_PAIRS
    cov = p["coverage"]
    assert cov["sim_adtext_article"] == 1.0 and cov["contrast"] == 1.0 and cov["sentiment_alignment"] == 1.0
    assert cov["sim_adimage_article"] == 0.0  # no joint space: null, reported, never zero-filled
    rows = open_feature_store(tiny).rows("pairs", jobs.PAIR_SPECS)
    for row in rows:
        assert row["contrast"] == pytest.approx(1 - row["sim_adtext_article"], abs=1e-6)
        assert 0 < row["entity_overlap_rate"] <= 1  # both mention Paris / the advertiser
    assert compute_features(tiny, "pairs")["computed"] == 0

    # an explicit list from CSV, with an unknown article; a given joint space fills sim_adimage_article
    f = tmp_path / "pairs.csv"
    f.write_text("ad_id,article_id\nad1,art2\nad3,art1\nad1,nope\n")
    js = JointSpace(dim=4, random_state=0).init_untrained(12, 8)
    p = compute_features(tiny, "pairs", pairs=f, joint=js)
    assert (p["total"], p["computed"]) == (3, 2)
    assert [x["reason"] for x in p["failed"]] == ["unknown article_id 'nope'"]
    assert p["coverage"]["sim_adimage_article"] == 1.0
    assert p["coverage"]["sim_adtext_article"] == 0.5  # ad3 has no words


def test_bad_pair_file(tiny, tmp_path):
    from adlens.errors import InvalidInput

    f = tmp_path / "p.csv"
    f.write_text("ad,article\nad1,art1\n")
    with pytest.raises(InvalidInput, match="ad_id and article_id"):
        compute_features(tiny, "pairs", pairs=f)
    with pytest.raises(InvalidInput, match="not found"):
        compute_features(tiny, "pairs", pairs=tmp_path / "missing.csv")


# ---------------------------------------------------------------- stage and report


def test_stage_and_report_section(tiny, monkeypatch):
    from adlens.pipeline import RunContext
    from adlens.report import _env

    monkeypatch.setattr(jobs, "default_creative_features", light_creative)
    monkeypatch.setattr(jobs, "default_context_features", light_context)
    ctx = RunContext(tiny)
    section = jobs.stage_features(ctx)
    assert set(section) == {"ads", "articles", "pairs"} and section["pairs"]["computed"] == 2
    json.dumps(section)  # goes into the run summary as is
    extra = jobs.report_features(ctx, section)
    html = _env.get_template("section_features.html").render(features={**section, **extra})
    assert html.count("<svg") >= 10 and "<rect" in html  # inline histograms, not escaped
    assert "&lt;svg" not in html
    assert "LLM-only" in html and "twist_present" in html


def test_histogram_svg():
    svg = jobs.histogram_svg([0, 5, 10], [0.0, 1.0, 2.0, 3.0], width=30, height=20)
    assert svg.count("<rect") == 3 and 'height="18.0"' in svg and 'height="0.0"' in svg
    assert "2 – 3: 10" in svg


# ---------------------------------------------------------------- CLI


@pytest.fixture
def cli_app():
    from adlens.cli_features import register

    app = typer.Typer()

    @app.callback()
    def _root():
        pass

    register(app)
    return app


def test_cli(tiny, cli_app, monkeypatch, tmp_path):
    monkeypatch.setattr(jobs, "default_creative_features", light_creative)
    monkeypatch.setattr(jobs, "default_context_features", light_context)
    runner = CliRunner()
    w = ["-w", str(tiny.root)]

    def invoke(*args, code=0):
        res = runner.invoke(cli_app, ["features", *map(str, args), *w])
        assert res.exit_code == code, res.output
        return res

    out = json.loads(invoke("ads", "--workers", 2, "--json").stdout)
    assert out["computed"] == 5 and out["coverage"]["twist_present"] == 0.0
    assert "coverage" in invoke("articles").stdout
    out = json.loads(invoke("pairs", "--json").stdout)
    assert out["computed"] == 2
    f = tmp_path / "pairs.csv"
    f.write_text("ad_id,article_id\nad2,art1\n")
    assert json.loads(invoke("pairs", "--pairs", f, "--json").stdout)["computed"] == 1
    out = json.loads(invoke("all", "--json").stdout)
    assert [out[k]["computed"] for k in ("ads", "articles", "pairs")] == [0, 0, 0]

    show = json.loads(invoke("show", "ad1", "--json").stdout)
    assert show["ad_id"] == "ad1" and show["copy_has_cta"] is True and show["twist_present"] is None
    assert not any(isinstance(v, list) and len(v) > 50 for v in show.values())  # no vectors
    assert "copy_has_cta" in invoke("show", "ad2").stdout
    assert "unknown ad_id" in invoke("show", "nope", code=2).output
    assert "not found" in invoke("pairs", "--pairs", tmp_path / "missing.csv", code=2).output


# ---------------------------------------------------------------- the real models, once


@pytest.fixture(scope="module")
def real_extractors():
    pytest.importorskip("cv2")
    from adlens.features.creative import RapidOcrBackend

    if not RapidOcrBackend.available():
        pytest.skip("rapidocr-onnxruntime not installed")
    try:
        fx = jobs.default_creative_features(threads=1)
        fx.warmup()
    except Exception as e:  # noqa: BLE001 - models not installed on this machine
        pytest.skip(f"default models unavailable: {e}")
    return fx, jobs.default_context_features(threads=1)


def test_real_models_end_to_end(tiny, real_extractors):
    fx, cx = real_extractors
    r = compute_features(tiny, "ads", extractor=lambda: fx)
    assert r["computed"] == 5 and r["failed"] == []
    cov = r["coverage"]
    assert cov["twist_present"] == 0.0 and cov["llm_model_id"] == 0.0
    assert cov["ocr_text"] == 1.0 and cov["image_embedding"] == 1.0 and cov["is_ad"] == 1.0
    assert r["distribution"]["ocr_backend"]["top"][0][0] in ("rapidocr", "tesseract")
    rows = {x["ad_id"]: x for x in load_features(tiny, "ads")}
    assert "SHOP" in (rows["ad3"]["ocr_text"] or "").upper()  # the banner's button, read from the pixels
    assert rows["ad3"]["copy_has_cta"] is True  # ... which makes the copy-less ad3 a CTA ad
    M, model = embedding_matrix(tiny, list(rows.values()), "image_embedding", jobs.AD_IMAGE_KIND)
    assert M.shape == (5, 1280) and model.startswith("efficientnet-lite0")
    a = compute_features(tiny, "articles", extractor=lambda: cx)
    assert a["computed"] == 2 and a["coverage"]["topic"] == 1.0
    assert "paris" in dict(a["distribution"]["entities"]["top"])
    p = compute_features(tiny, "pairs")
    assert p["computed"] == 2 and p["coverage"]["sim_adtext_article"] == 1.0 and p["coverage"]["topic_match"] == 1.0
