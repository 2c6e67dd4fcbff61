"""Tests for the synthetic demo corpus (adlens.sample)."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
from pathlib import Path

import pytest
from PIL import Image

from adlens.sample import AD_SIZES, HASH_KINDS, make_sample
from adlens.sample.corpus import phash_bits

N_ADS = 30
ADS_COLUMNS = ["path", "ad_id", "advertiser", "campaign", "text", "landing_url", "day"]
VALID_SIZES = set(AD_SIZES.values())
# Kinds whose pixel size legitimately differs from the standard sizes.
RESIZED_KINDS = {"resize", "crop", "rerender_2x"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sample")
    calls = []
    summary = make_sample(out, n_ads=N_ADS, seed=0, progress=lambda *a: calls.append(a))
    summary["_progress_calls"] = calls
    return out, summary


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _kinds(dup: dict) -> dict[str, str]:
    return {m["ad_id"]: m["kind"] for g in dup["groups"] for m in g["members"]}


def test_deterministic_bytes(sample, tmp_path):
    out, _ = sample
    make_sample(tmp_path / "again", n_ads=N_ADS, seed=0)
    assert _digest_tree(out) == _digest_tree(tmp_path / "again")


def test_other_seed_differs(sample, tmp_path):
    out, _ = sample
    make_sample(tmp_path / "other", n_ads=N_ADS, seed=1)
    assert (out / "ads.csv").read_bytes() != (tmp_path / "other" / "ads.csv").read_bytes()


def test_summary_and_progress(sample):
    out, summary = sample
    counts = summary["counts"]
    assert counts["creatives"] == N_ADS
    assert counts["invalid"] == 4
    assert counts["ads"] == N_ADS + counts["variants"] + counts["invalid"]
    assert counts["articles"] >= 100 and counts["products"] >= 100 and counts["requests"] >= 2000
    for key, path in summary["paths"].items():
        assert Path(path).exists(), key
    steps = {c[0] for c in summary["_progress_calls"]}
    assert {"ads", "articles", "products", "events"} <= steps
    done, total = summary["_progress_calls"][-1][1:]
    assert done == total


def test_manifest_columns_and_paths(sample):
    out, summary = sample
    rows = _read_csv(out / "ads.csv")
    assert list(rows[0]) == ADS_COLUMNS
    assert len(rows) == summary["counts"]["ads"]
    assert len({r["ad_id"] for r in rows}) == len(rows)
    for r in rows:
        assert (out / r["path"]).is_file(), r["path"]
        assert r["text"].count(" | ") == 3
        assert r["landing_url"].startswith("https://")
    days = {r["day"] for r in rows}
    assert 3 <= len(days) <= 5
    advertisers = {r["advertiser"] for r in rows}
    assert len(advertisers) >= 20


def test_ground_truth_consistent(sample):
    out, _ = sample
    dup = json.loads((out / "duplicates.json").read_text())
    rows = {r["ad_id"]: r for r in _read_csv(out / "ads.csv")}
    assert dup["hash_kinds"] == HASH_KINDS
    assert dup["groups"]
    seen = set()
    for g in dup["groups"]:
        assert len(g["members"]) >= 2
        assert sum(m["kind"] == "original" for m in g["members"]) == 1
        for m in g["members"]:
            assert m["ad_id"] in rows and rows[m["ad_id"]]["path"] == m["path"]
            assert m["ad_id"] not in seen
            seen.add(m["ad_id"])
    kinds = {m["kind"] for g in dup["groups"] for m in g["members"]}
    assert set(HASH_KINDS) <= kinds and "relayout" in kinds
    # Variants never appear before their original's day.
    for g in dup["groups"]:
        orig_day = next(rows[m["ad_id"]]["day"] for m in g["members"] if m["kind"] == "original")
        assert all(rows[m["ad_id"]]["day"] >= orig_day for m in g["members"])


def test_invalid_files_are_invalid(sample):
    out, _ = sample
    dup = json.loads((out / "duplicates.json").read_text())
    manifest_paths = {r["path"] for r in _read_csv(out / "ads.csv")}
    assert len(dup["invalid"]) == 4
    assert any((out / i["path"]).stat().st_size == 0 for i in dup["invalid"])
    for item in dup["invalid"]:
        path = out / item["path"]
        assert item["path"] in manifest_paths
        assert path.stat().st_size < 1_000_000
        with pytest.raises(Exception):
            with Image.open(path) as im:
                im.load()


def test_image_modes_and_sizes(sample):
    out, _ = sample
    dup = json.loads((out / "duplicates.json").read_text())
    invalid = {i["path"] for i in dup["invalid"]}
    kinds = _kinds(dup)
    modes = set()
    for r in _read_csv(out / "ads.csv"):
        if r["path"] in invalid:
            continue
        with Image.open(out / r["path"]) as im:
            im.load()
            modes.add((im.format, im.mode))
            if kinds.get(r["ad_id"], "original") not in RESIZED_KINDS:
                assert im.size in VALID_SIZES, (r["path"], im.size)
    assert {("JPEG", "CMYK"), ("PNG", "P"), ("PNG", "RGBA"), ("JPEG", "RGB")} <= modes


def test_articles(sample):
    out, _ = sample
    ad_ids = {r["ad_id"] for r in _read_csv(out / "ads.csv")}
    lines = (out / "articles.jsonl").read_text(encoding="utf-8").splitlines()
    articles = [json.loads(x) for x in lines]
    assert len(articles) >= 100
    assert len({a["article_id"] for a in articles}) == len(articles)
    assert len({a["topic"] for a in articles}) >= 8
    for a in articles:
        assert {"article_id", "title", "text", "topic", "ad_id", "url"} <= set(a)
        assert a["ad_id"] in ad_ids
        assert a["text"].count("\n\n") >= 2
    assert {a["tone"] for a in articles} == {"positive", "neutral", "negative"}


def test_products(sample):
    out, _ = sample
    rows = _read_csv(out / "products.csv")
    assert list(rows[0]) == ["product_id", "title", "category", "url", "path"]
    assert len(rows) >= 100 and len({r["category"] for r in rows}) >= 8
    assert len({r["product_id"] for r in rows}) == len(rows)
    for r in rows:
        with Image.open(out / r["path"]) as im:
            assert im.size == (256, 256)


def test_events(sample):
    out, _ = sample
    events = _read_csv(out / "events.csv")
    assert list(events[0]) == ["event_id", "ts", "request_id", "article_id", "ad_id", "event"]
    assert len({e["event_id"] for e in events}) == len(events)
    by_kind = {k: [e for e in events if e["event"] == k] for k in ("request", "impression", "click")}
    assert len(by_kind["request"]) >= 2000
    assert len({e["request_id"] for e in by_kind["request"]}) == len(by_kind["request"])
    assert by_kind["impression"] and by_kind["click"]
    ad_ids = {r["ad_id"] for r in _read_csv(out / "ads.csv")}
    article_ids = {json.loads(x)["article_id"] for x in (out / "articles.jsonl").read_text().splitlines()}
    for e in by_kind["impression"] + by_kind["click"]:
        assert e["ad_id"] in ad_ids and e["article_id"] in article_ids
        assert e["ts"].endswith("Z")
    impressed = {e["request_id"] for e in by_kind["impression"]}
    assert all(e["request_id"] in impressed for e in by_kind["click"])


def test_phash_separates_duplicates(sample):
    """Hash-kind pairs are close, distinct creatives are far (the corpus' key property)."""
    imagehash = pytest.importorskip("imagehash")
    out, _ = sample
    dup = json.loads((out / "duplicates.json").read_text())
    invalid = {i["path"] for i in dup["invalid"]}
    group = {m["ad_id"]: g["group_id"] for g in dup["groups"] for m in g["members"]}
    kinds = _kinds(dup)
    hashes = {}
    for r in _read_csv(out / "ads.csv"):
        if r["path"] not in invalid:
            with Image.open(out / r["path"]) as im:
                hashes[r["ad_id"]] = imagehash.phash(im.convert("RGB"))
    pos, neg = [], []
    for a, b in itertools.combinations(sorted(hashes), 2):
        same = a in group and group.get(a) == group.get(b)
        if same and kinds[a] in HASH_KINDS and kinds[b] in HASH_KINDS:
            pos.append(hashes[a] - hashes[b])
        elif not same:
            neg.append(hashes[a] - hashes[b])
    threshold = 12
    recall = sum(d <= threshold for d in pos) / len(pos)
    false_pos = sum(d <= threshold for d in neg)
    true_pos = sum(d <= threshold for d in pos)
    assert recall >= 0.95
    assert true_pos / (true_pos + false_pos) >= 0.99


def test_own_phash_matches_imagehash(sample):
    imagehash = pytest.importorskip("imagehash")
    out, _ = sample
    for p in sorted((out / "ads").glob("*.jpg"))[:10]:
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
        except OSError:
            continue
        assert (phash_bits(im) == imagehash.phash(im).hash.flatten()).all()


def test_refuses_foreign_non_empty_dir(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        make_sample(tmp_path, n_ads=3)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
