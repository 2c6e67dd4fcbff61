"""Re-layout stage: the same photo in another ad size is linked; another photo in the same
template is not; pairs the hash stage grouped and same-aspect pairs are never scored."""

import json

import numpy as np
import pytest
import skimage.data
import sqlalchemy as sa
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from adlens.cli import app
from adlens.dedup.folder import find_duplicates
from adlens.dedup.relayout import (
    DEFAULT_MIN_INLIERS,
    PhotoFeatures,
    candidate_pairs,
    copy_similarity,
    photo_features,
    photo_regions,
    relayout_pairs,
    relayout_score,
)
from adlens.errors import InvalidInput
from adlens.sample import corpus


def soft(photo: np.ndarray) -> np.ndarray:
    """Half-resolution then back up: product photos in banners are usually soft like this."""
    im = Image.fromarray(photo)
    w, h = im.size
    return np.asarray(im.resize((w // 2, h // 2), Image.BILINEAR).resize((w, h), Image.BICUBIC))


CAT, COFFEE = soft(skimage.data.chelsea()), soft(skimage.data.coffee())


def banner(photo, size, box, crop, text="Summer sale -30%"):
    """Flat template + one photo crop in ``box`` + headline + button (like a real banner)."""
    W, H = size
    im = Image.new("RGB", size, (240, 236, 228))
    x0, y0, x1, y1 = box
    h, w = photo.shape[:2]
    c = (crop[0] * w, crop[1] * h, crop[2] * w, crop[3] * h)
    im.paste(Image.fromarray(photo).crop(c).resize((x1 - x0, y1 - y0), Image.LANCZOS), (x0, y0))
    d = ImageDraw.Draw(im)
    d.text((x1 + 10 if x1 < W * 0.7 else 10, H // 3), text, fill=(20, 20, 60), font=corpus._font(max(12, H // 8)))
    d.rounded_rectangle((W - 110, H - 40, W - 10, H - 10), 8, fill=(200, 30, 40))
    return im


def rect(photo):  # 300x250, photo on the left
    return banner(photo, (300, 250), (10, 10, 170, 240), (0.2, 0, 0.7, 1))


def leaderboard(photo, text="Summer sale -30%"):  # 728x90: another crop of the same photo, another aspect
    return banner(photo, (728, 90), (5, 5, 205, 85), (0.15, 0.2, 0.75, 0.6), text=text)


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_photo_region_found_from_pixels():
    boxes = photo_regions(np.asarray(rect(CAT)))
    assert len(boxes) >= 1 and iou(boxes[0], (10, 10, 170, 240)) > 0.8
    boxes = photo_regions(np.asarray(leaderboard(CAT)))
    assert len(boxes) >= 1 and iou(boxes[0], (5, 5, 205, 85)) > 0.8


def test_flat_banner_has_no_photo_and_is_never_a_candidate():
    flat = Image.new("RGB", (300, 250), (30, 90, 200))
    ImageDraw.Draw(flat).text((20, 100), "Only text here", fill=(255, 255, 255), font=corpus._font(24))
    f = photo_features(np.asarray(flat))
    assert f.boxes == [] and f.hist is None and f.feats == []
    g = photo_features(np.asarray(leaderboard(CAT)))
    assert relayout_score(f, g) == 0
    assert len(candidate_pairs([f, g])) == 0


def test_relayout_linked_other_photo_in_same_template_not():
    a, b = photo_features(np.asarray(rect(CAT))), photo_features(np.asarray(leaderboard(CAT)))
    c, d = photo_features(np.asarray(rect(COFFEE))), photo_features(np.asarray(leaderboard(COFFEE)))
    assert relayout_score(a, b) >= DEFAULT_MIN_INLIERS
    assert relayout_score(a, d) < DEFAULT_MIN_INLIERS
    assert relayout_score(b, c) < DEFAULT_MIN_INLIERS
    links = relayout_pairs([a, b, c, d], hist_min=0.0)  # score every differing-aspect pair
    assert [tuple(r[:2]) for r in links] == [(0, 1)]
    assert links[0, 2] == relayout_score(a, b)
    # b also matches a copy of a; a and its copy are one group: one link between the groups
    links = relayout_pairs([a, b, c, d, a], labels=np.array([0, 1, 2, 3, 0]), hist_min=0.0)
    assert len(links) == 1 and {*links[0, :2]} in ({0, 1}, {1, 4}) and links[0, 2] >= DEFAULT_MIN_INLIERS


def test_candidates_skip_same_aspect_grouped_and_unlike_colours():
    a = PhotoFeatures(aspect=1.2, hist=np.array([1, 0], np.float32))
    b = PhotoFeatures(aspect=8.0, hist=np.array([1, 0], np.float32))  # another aspect, same colours
    c = PhotoFeatures(aspect=1.25, hist=np.array([1, 0], np.float32))  # same aspect as a (within 1.25x)
    d = PhotoFeatures(aspect=0.27, hist=np.array([0, 1], np.float32))  # other colours entirely
    assert candidate_pairs([a, b, c, d]).tolist() == [[0, 1], [1, 2]]
    assert candidate_pairs([a, b, c, d], labels=np.array([0, 0, 1, 2])).tolist() == [[1, 2]]
    assert candidate_pairs([a, b, c, d], hist_min=0.0).tolist() == [[0, 1], [0, 3], [1, 2], [1, 3], [2, 3]]
    # incremental: only pairs with a new image
    new = np.array([False, False, False, True])
    assert candidate_pairs([a, b, c, d], hist_min=0.0, new=new).tolist() == [[0, 3], [1, 3], [2, 3]]
    assert candidate_pairs([a, b, c, d], new=np.zeros(4, bool)).tolist() == []


def test_incremental_pairs_with_lazy_descriptors_equal_the_full_run_on_new_pairs():
    imgs = [np.asarray(x) for x in (rect(CAT), leaderboard(CAT), rect(COFFEE), leaderboard(COFFEE))]
    full = [photo_features(x) for x in imgs]
    cheap = [photo_features(x, descriptors=False) for x in imgs]
    assert all(f.boxes and not f.feats for f in cheap)
    assert [(f.boxes, f.hist.tolist()) for f in cheap] == [(f.boxes, f.hist.tolist()) for f in full]
    asked = []

    def describe(i):
        asked.append(i)
        return photo_features(imgs[i])

    everything = relayout_pairs(full, hist_min=0.0)
    lazy = relayout_pairs(cheap, hist_min=0.0, describe=describe)
    assert lazy.tolist() == everything.tolist() and sorted(asked) == [0, 1, 2, 3]
    asked.clear()  # the cat leaderboard is new: its pairs only, SIFT only for the images in them
    new = np.array([False, True, False, False])
    got = relayout_pairs(cheap, hist_min=0.0, describe=describe, new=new)
    assert got.tolist() == [r for r in everything.tolist() if 1 in r[:2]] and len(got) == 1
    assert sorted(asked) == [0, 1, 2]  # (1, 3) have the same aspect: never a candidate
    asked.clear()
    assert relayout_pairs(cheap, hist_min=0.0, describe=describe, new=np.zeros(4, bool)).tolist() == [] and asked == []


def test_copy_similarity_by_hand():
    assert copy_similarity("abcd", "abce") == pytest.approx(1 / 3)  # {abc, bcd} vs {abc, bce}
    assert copy_similarity("Shop Now!", "shopnow") == 1.0  # case, spaces and punctuation ignored
    assert copy_similarity("", "  ") == 1.0  # neither has copy: a photo-only banner
    assert copy_similarity("Sale", "") == 0.0


def test_photo_features_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected an"):
        photo_features(np.zeros((1, 5, 3), np.uint8))


def make_folder(tmp_path):
    d = tmp_path / "banners"
    d.mkdir()
    rect(CAT).save(d / "cat_rect.png")
    rect(CAT).resize((240, 200), Image.LANCZOS).save(d / "cat_rect_small.png")  # a hash duplicate
    leaderboard(CAT).save(d / "cat_leaderboard.jpg", quality=92)
    rect(COFFEE).save(d / "coffee_rect.png")
    leaderboard(COFFEE).save(d / "coffee_leaderboard.jpg", quality=92)
    # the same photo with other copy: another creative, not a re-layout
    banner(CAT, (970, 250), (10, 10, 330, 240), (0.15, 0.1, 0.75, 0.7), text="Winter boots two for one").save(
        d / "cat_other_copy.jpg", quality=92)
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return d


def test_folder_relayout_stage(tmp_path):
    d = make_folder(tmp_path)
    plain = find_duplicates(d)
    assert "relayout_pairs" not in plain
    res = find_duplicates(d, relayout=True)
    assert res["groups"] == plain["groups"]  # hash groups unchanged
    assert [sorted(g) for g in res["groups"]] == [sorted([str(d / "cat_rect.png"), str(d / "cat_rect_small.png")])]
    assert [r["path"] for r in res["rejected"]] == [str(d / "broken.jpg")]
    pairs = res["relayout_pairs"]
    # exactly one link: the leaderboard to the cat group (one member of it, not both: they are grouped)
    assert len(pairs) == 1 and str(d / "cat_leaderboard.jpg") in pairs[0][:2]
    assert {pairs[0][0], pairs[0][1]} - {str(d / "cat_leaderboard.jpg")} <= {str(d / "cat_rect.png"), str(d / "cat_rect_small.png")}
    assert pairs[0][2] >= DEFAULT_MIN_INLIERS
    assert [sorted(g) for g in res["relayout_groups"]] == [
        sorted(str(d / n) for n in ("cat_rect.png", "cat_rect_small.png", "cat_leaderboard.jpg"))]
    assert res["relayout_min_inliers"] == DEFAULT_MIN_INLIERS and res["relayout_errors"] == []
    strict = find_duplicates(d, relayout=True, relayout_min_inliers=10_000)
    assert strict["relayout_pairs"] == [] and strict["relayout_groups"] == []


def test_folder_relayout_needs_ocr(tmp_path, monkeypatch):
    monkeypatch.setattr("adlens.features.creative.get_ocr_backend", lambda name="auto", **kw: None)
    with pytest.raises(InvalidInput, match="needs OCR"):
        find_duplicates(make_folder(tmp_path), relayout=True)


def test_cli_relayout_json_and_report(tmp_path):
    d = make_folder(tmp_path)
    report = tmp_path / "r.html"
    r = CliRunner().invoke(app, ["dedup", "find", str(d), "--relayout", "--json", "--report", str(report)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert len(out["relayout_pairs"]) == 1
    assert "Re-layouts" in report.read_text()
    r = CliRunner().invoke(app, ["dedup", "find", str(d), "--relayout", "--min-inliers", "0"])
    assert r.exit_code != 0 and "min inliers" in r.output


# ------------------------------------------------------------------ in the ledger (adlens run)


def test_ledger_relayout_stage_links_merges_and_is_idempotent(tmp_path):
    import sqlalchemy as sa

    from adlens.config import Settings
    from adlens.ingest.ads import ingest_ads
    from adlens.pipeline import RunContext, stage_relayout
    from adlens.store import schema
    from adlens.store.ledger import duplicate_groups
    from adlens.workspace import init_workspace

    d = make_folder(tmp_path)
    (d / "broken.jpg").unlink()
    day1 = [("cat_rect.png", "CAT1", "2026-11-01"), ("coffee_rect.png", "COF1", "2026-11-01"),
            ("coffee_leaderboard.jpg", "COF2", "2026-11-01")]
    day2 = [("cat_leaderboard.jpg", "CAT2", "2026-11-02")]
    manifests = []
    for k, rows in enumerate((day1, day2)):
        manifests.append(tmp_path / f"ads{k}.csv")
        manifests[-1].write_text("path,ad_id,day\n" + "".join(f"{d / p},{a},{day}\n" for p, a, day in rows))

    off = init_workspace(tmp_path / "ws", Settings(workspace=tmp_path / "ws", workers=2))
    ingest_ads(off, manifests[0])
    assert "skipped" in stage_relayout(RunContext(off))  # off by default
    off.close()

    ws = init_workspace(tmp_path / "ws", Settings(workspace=tmp_path / "ws", workers=2, dedup_relayout=True))
    try:
        first = stage_relayout(RunContext(ws))  # day 1: the coffee photo is too sharp to match (a known limit)
        assert first["images"] == first["new_images"] == 3 and first["new_links"] == 0 and first["errors"] == []
        ingest_ads(ws, manifests[1])
        out = stage_relayout(RunContext(ws))  # day 2: only pairs with the new image are scored
        assert out["images"] == 4 and out["new_images"] == 1 and out["errors"] == []
        # SIFT on the new leaderboard and its candidates (the two rects); never on the other
        # leaderboard: same aspect as the new one, and its pair with the coffee rect is old
        assert out["sift_images"] == 3
        assert out["new_links"] == 1 and {out["links"][0]["ad_a"], out["links"][0]["ad_b"]} == {"CAT1", "CAT2"}
        assert out["links"][0]["inliers"] >= DEFAULT_MIN_INLIERS
        groups = duplicate_groups(ws.engine)
        assert len(groups) == 1 and groups[0]["canonical_ad_id"] == "CAT1"  # earliest day is canonical
        assert sorted(m["ad_id"] for m in groups[0]["members"]) == ["CAT1", "CAT2"]
        with ws.engine.connect() as conn:
            methods = conn.execute(sa.select(schema.dup_links.c.method, schema.dup_links.c.distance)).all()
        assert [m for m, _ in methods] == ["relayout"] and methods[0][1] == pytest.approx(1 / out["links"][0]["inliers"])
        again = stage_relayout(RunContext(ws))  # nothing new: no SIFT at all
        assert again["new_links"] == 0 and again["new_images"] == 0 and again["sift_images"] == 0
    finally:
        ws.close()
    # other settings: everything is scored again (and the merged pair stays one link)
    ws = init_workspace(tmp_path / "ws", Settings(workspace=tmp_path / "ws", workers=2, dedup_relayout=True,
                                                   relayout_min_inliers=DEFAULT_MIN_INLIERS + 1))
    try:
        redo = stage_relayout(RunContext(ws))
        assert redo["new_images"] == 4 and redo["new_links"] == 0
    finally:
        ws.close()


def test_incremental_relayout_retries_images_whose_copy_could_not_be_read(tmp_path, monkeypatch):
    from adlens.config import Settings
    from adlens.dedup import relayout
    from adlens.ingest.ads import ingest_ads
    from adlens.pipeline import RELAYOUT_STATE_KEY, RunContext, stage_relayout
    from adlens.store.db import upsert_meta
    from adlens.workspace import init_workspace

    d = make_folder(tmp_path)
    manifest = tmp_path / "ads.csv"
    manifest.write_text("path,ad_id,day\n" + "".join(
        f"{d / p},{a},2026-11-01\n" for p, a in (("cat_rect.png", "CAT1"), ("cat_leaderboard.jpg", "CAT2"))))
    real, calls = relayout.ocr_reader, {"n": 0}

    def flaky():  # the first read fails, as a busy OCR session might
        read = real()

        def once(rgb):
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("onnx session hiccup")
            return read(rgb)
        once.backend = read.backend
        return once

    monkeypatch.setattr(relayout, "ocr_reader", flaky)
    ws = init_workspace(tmp_path / "ws", Settings(workspace=tmp_path / "ws", workers=2, dedup_relayout=True))
    try:
        ingest_ads(ws, manifest)
        first = stage_relayout(RunContext(ws))
        assert first["new_links"] == 0 and len(first["errors"]) == 1 and "hiccup" in first["errors"][0]["reason"]
        second = stage_relayout(RunContext(ws))  # the image that failed counts as new again
        assert second["new_images"] == 1 and second["new_links"] == 1 and second["errors"] == []
        assert {second["links"][0]["ad_a"], second["links"][0]["ad_b"]} == {"CAT1", "CAT2"}
        third = stage_relayout(RunContext(ws))
        assert third["new_images"] == 0 and third["sift_images"] == 0
        # a state written by other settings (here: another OCR backend) is ignored: everything is new
        with ws.engine.begin() as conn:
            state = json.loads(conn.execute(sa.text("SELECT value FROM meta WHERE key = :k"), {"k": RELAYOUT_STATE_KEY}).scalar())
            upsert_meta(conn, RELAYOUT_STATE_KEY, json.dumps({**state, "settings": {**state["settings"], "ocr": "Other"}}))
        assert stage_relayout(RunContext(ws))["new_images"] == 2
    finally:
        ws.close()
