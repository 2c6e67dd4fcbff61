"""The cascade's pixel check: a crop of a creative is linked from the grey zone, another product or
other copy in the same template is not."""

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from skimage import data

from adlens.dedup.cascade import verified_pairs
from adlens.dedup.verify import (
    EDITS,
    OVERLAY_MAX_AREA,
    Agreement,
    pixel_agreement,
    prepare,
)
from adlens.errors import InvalidInput


def _font(size: int):
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def template(photo: np.ndarray, text: str = "Summer sale on every jacket") -> Image.Image:
    """A 320x250 banner: a photo on the left, a gradient panel with copy and a button on the right --
    the same template for every photo and copy."""
    img = Image.new("RGB", (320, 250))
    panel = np.linspace(200, 240, 160).astype(np.uint8)
    img.paste(Image.fromarray(np.dstack([np.tile(panel, (250, 1))] * 3)), (160, 0))
    img.paste(Image.fromarray(photo).resize((160, 250)), (0, 0))
    d = ImageDraw.Draw(img)
    words = text.split()
    for k in range(0, len(words), 2):
        d.text((170, 30 + 14 * k), " ".join(words[k:k + 2]), fill=(20, 20, 60), font=_font(16))
    d.rounded_rectangle([180, 190, 300, 225], 8, fill=(200, 40, 40))
    d.text((200, 198), "SHOP NOW", fill=(255, 255, 255), font=_font(14))
    return img


def jpeg(img: Image.Image, q: int = 85) -> np.ndarray:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


@pytest.fixture(scope="module")
def banners():
    a = template(data.astronaut())
    return {
        "a": jpeg(a),
        "crop15": jpeg(a.crop((20, 12, 292, 225))),  # 15 % off each dimension
        "crop_scaled": jpeg(a.crop((16, 12, 304, 238)).resize((320, 250), Image.BICUBIC)),
        "other_photo": jpeg(template(data.chelsea())),  # another product, same template and copy
        "other_copy": jpeg(template(data.astronaut(), "Winter boots now half price today")),
    }


def test_a_crop_agrees_pixel_for_pixel(banners):
    for name in ("crop15", "crop_scaled"):
        got = pixel_agreement(banners["a"], banners[name])
        assert got.is_crop(), (name, got)
        assert got.texture >= 0.95 and got.edges >= 0.95 and got.inliers >= 20
    assert pixel_agreement(banners["a"], banners["crop15"]).scale == pytest.approx(1.0, abs=0.01)
    assert pixel_agreement(banners["a"], banners["crop_scaled"]).scale == pytest.approx(288 / 320, abs=0.02)


def test_same_template_with_another_photo_or_other_copy_is_not_a_crop(banners):
    other = pixel_agreement(banners["a"], banners["other_photo"])
    assert not other.is_crop() and other.texture < 0.8  # the template agrees, the photo does not
    copy = pixel_agreement(banners["a"], banners["other_copy"])
    assert not copy.is_crop() and copy.texture >= 0.95 and copy.edges < 0.95  # same photo, other text


def _sticker(img: Image.Image, box, text="-30%") -> Image.Image:
    out = img.copy()
    d = ImageDraw.Draw(out)
    d.ellipse(box, fill=(220, 30, 40), outline=(255, 255, 255), width=2)
    d.text((box[0] + 15, (box[1] + box[3]) // 2 - 8), text, fill=(255, 255, 255), font=_font(16))
    return out


def _leaderboard(photo: np.ndarray) -> Image.Image:
    """728x90: a 90x90 photo (12 % of the area) beside a gradient with copy and a button."""
    img = Image.new("RGB", (728, 90))
    g = np.linspace(190, 245, 638).astype(np.uint8)
    img.paste(Image.fromarray(np.dstack([np.tile(g, (90, 1))] * 3)), (90, 0))
    img.paste(Image.fromarray(photo).resize((90, 90)), (0, 0))
    d = ImageDraw.Draw(img)
    d.text((110, 20), "Summer sale on every jacket, shop the collection now", fill=(20, 20, 60), font=_font(18))
    d.rounded_rectangle([600, 25, 710, 65], 8, fill=(200, 40, 40))
    d.text((615, 35), "SHOP NOW", fill=(255, 255, 255), font=_font(14))
    return img


def test_a_sticker_or_strip_over_the_creative_is_an_overlay(banners):
    a = template(data.astronaut())
    strip = a.copy()
    ImageDraw.Draw(strip).rectangle([0, 212, 320, 250], fill=(20, 20, 20))  # bottom 15 %
    ImageDraw.Draw(strip).text((8, 220), "FREE SHIPPING TODAY", fill=(250, 250, 250), font=_font(16))
    lead = _leaderboard(data.astronaut())
    for name, x, y in (("sticker", a, _sticker(a, [40, 150, 110, 220])), ("strip", a, strip),
                       ("leaderboard sticker", lead, _sticker(lead, [300, 10, 370, 80]))):
        got = pixel_agreement(jpeg(x), jpeg(y))
        assert not got.is_crop() and got.is_overlay() and got.verdict() == "overlay", (name, got)
        assert got.outside >= 0.98 and got.changed_area <= OVERLAY_MAX_AREA and got.linked() == ("overlay", got.outside)
    # the changed region is where the sticker is: ~70x70 of 320x250 (6 %), plus a rim
    assert 0.05 < pixel_agreement(jpeg(a), jpeg(_sticker(a, [40, 150, 110, 220]))).changed_area < 0.12
    # a sticker covering 60 % of the banner is no longer "the same creative": more pixels disagree
    # than any overlay allows, so the region is not even mapped
    big = pixel_agreement(jpeg(a), jpeg(_sticker(a, [0, 0, 250, 250])))
    assert big.changed_area is None and big.verdict() is None
    # 25 % of it: mapped, and too large
    large = pixel_agreement(jpeg(a), jpeg(_sticker(a, [20, 20, 170, 170])))
    assert large.changed_area > OVERLAY_MAX_AREA and large.verdict() is None


def test_another_product_in_the_same_template_is_not_an_overlay(banners):
    """The changed region is then the photo box itself: rejected even when the photo is a small
    part of a leaderboard (12 %) and everything else agrees."""
    assert pixel_agreement(banners["a"], banners["other_photo"]).verdict() is None
    lead = jpeg(_leaderboard(data.astronaut()))
    for photo in (data.chelsea(), data.coffee()):
        got = pixel_agreement(lead, jpeg(_leaderboard(photo)))
        assert got.changed_area <= OVERLAY_MAX_AREA and got.outside >= 0.98  # small and local ...
        assert got.photo_changed >= 0.5 and not got.is_overlay() and got.verdict() is None  # ... but the photo


def test_prepared_images_give_the_same_answer(banners):
    pa, pb = prepare(banners["a"]), prepare(banners["crop15"])
    assert pixel_agreement(pa, pb) == pixel_agreement(banners["a"], banners["crop15"])


def test_a_crop_of_a_flat_lossless_design_is_judged_on_its_edges():
    """Solid fills and text only (a PNG): no detail pixels to compare, so the edges decide."""
    img = Image.new("RGB", (320, 250), (240, 240, 230))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, 140, 250], fill=(30, 90, 160))
    d.text((160, 40), "Flat design sale", fill=(20, 20, 20), font=_font(20))
    d.text((160, 80), "Everything 30 % off", fill=(200, 40, 40), font=_font(18))
    d.ellipse([20, 60, 120, 160], fill=(250, 200, 40))
    d.rounded_rectangle([180, 190, 300, 225], 8, fill=(200, 40, 40))
    d.text((200, 198), "SHOP NOW", fill=(255, 255, 255), font=_font(14))
    a = np.asarray(img)
    got = pixel_agreement(a, a[15:235, 12:300])
    assert got.texture is None and got.edges >= 0.95 and got.is_crop()
    ImageDraw.Draw(img).text((160, 120), "New words here", fill=(20, 20, 20), font=_font(18))
    assert not pixel_agreement(a, np.asarray(img)[15:235, 12:300]).is_crop()  # other copy


def test_featureless_and_bad_images():
    flat = np.full((100, 100, 3), 128, np.uint8)
    got = pixel_agreement(flat, flat)
    assert got == Agreement(None, None, 0, 0.0) and not got.is_crop()
    with pytest.raises(ValueError, match="8x8"):
        pixel_agreement(np.zeros((5, 5, 3), np.uint8), flat)
    for bad in (np.zeros((50, 50), np.uint8), np.zeros((50, 50, 1), np.uint8), np.zeros((50, 50, 3), np.float32)):
        with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
            prepare(bad)


def test_verified_pairs_checks_only_the_grey_zone_and_reports_bad_images(banners):
    images = [banners["a"], banners["crop15"], banners["other_photo"], banners["crop_scaled"], None, banners["a"]]
    # cosines by construction (V[k] . V[m] = c[k] * c[m] for k, m > 0): 0-1 0.90, 0-2 0.90, 0-4 0.85,
    # 1-2 0.81, 1-3 0.873, 2-3 0.873, 3-4 0.8245 are in the grey zone [0.8, 0.95); 0-3 0.97 is above
    # it (the cosine stage's link, not checked); 1-4 0.765 and 2-4 below; image 5 is orthogonal to all
    c = {1: 0.90, 2: 0.90, 3: 0.97, 4: 0.85}
    V = np.zeros((6, 6))
    V[0, 0] = V[5, 5] = 1.0
    for k, cos in c.items():
        V[k, 0], V[k, k] = cos, np.sqrt(1 - cos ** 2)
    loaded, errors = [], []

    def load(i):
        loaded.append(i)
        if images[i] is None:
            raise OSError("truncated file")
        return images[i]

    got = verified_pairs(V, load, threshold=0.95, verify_min=0.8, on_error=lambda i, r: errors.append((i, r)))
    # the two crops of image 0 agree with it and with each other; the other product never does
    assert [(int(i), int(j)) for i, j, *_ in got] == [(0, 1), (1, 3)]
    assert got[:, 2] == pytest.approx([0.90, 0.90 * 0.97], abs=1e-6) and (got[:, 3] >= 0.95).all()
    assert (got[:, 4] == EDITS.index("crop")).all()
    assert errors == [(4, "truncated file")]
    assert sorted(loaded) == [0, 1, 2, 3, 4]  # image 5 is in no grey-zone pair: never loaded
    # already in one group: not checked; no grey zone: nothing; a bad setting is refused
    assert len(verified_pairs(V, load, labels=np.array([0, 0, 1, 0, 2, 3]), on_error=lambda i, r: None)) == 0
    assert len(verified_pairs(V, load, threshold=0.95, verify_min=0.95)) == 0
    with pytest.raises(InvalidInput, match="cosine"):
        verified_pairs(V, load, verify_min=float("nan"))


def test_dedup_find_links_a_crop_by_the_pixel_check(tmp_path, banners):
    """With the cosine threshold out of reach (0.999), only the pixel check can link the crop; the
    other product in the same template stays apart; the report and the CLI say so."""

    from typer.testing import CliRunner

    from adlens.cli import app
    from adlens.dedup.folder import find_duplicates, write_folder_report

    for name in ("a", "crop15", "other_photo"):
        Image.fromarray(banners[name]).save(tmp_path / f"{name}.png")
    res = find_duplicates(tmp_path, cascade=True, cascade_threshold=0.999, verify_min=0.5)
    assert res["embedding_pairs"] == []  # nothing reaches 0.999
    assert [(a.split("/")[-1], b.split("/")[-1]) for a, b, _, _ in res["crop_pairs"]] == [("a.png", "crop15.png")]
    assert res["overlay_pairs"] == []
    assert 0.5 <= res["crop_pairs"][0][2] < 0.999 and res["crop_pairs"][0][3] >= 0.95
    assert [sorted(p.split("/")[-1] for p in g) for g in res["embedding_groups"]] == [["a.png", "crop15.png"]]
    assert res["verify_min"] == 0.5 and res["embedding_errors"] == []
    assert "pixels show a crop" in write_folder_report(res, tmp_path / "r.html").read_text()
    # the check switched off: verify_min at the threshold
    off = find_duplicates(tmp_path, cascade=True, cascade_threshold=0.999, verify_min=0.999)
    assert off["crop_pairs"] == [] and off["embedding_groups"] == []
    r = CliRunner().invoke(app, ["dedup", "find", str(tmp_path), "--cascade", "--threshold", "0.999",
                                 "--verify-min", "0.5", "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["crop_pairs"]) == 1
    bad = CliRunner().invoke(app, ["dedup", "find", str(tmp_path), "--cascade", "--verify-min", "1.5"])
    assert bad.exit_code != 0 and "cosine in (0, 1]" in bad.output


def test_dedup_find_reports_an_overlay_apart_from_crops(tmp_path, banners):
    from adlens.dedup.folder import find_duplicates

    Image.fromarray(banners["a"]).save(tmp_path / "a.png")
    Image.fromarray(jpeg(_sticker(template(data.astronaut()), [40, 150, 110, 220]))).save(tmp_path / "sticker.png")
    Image.fromarray(banners["other_photo"]).save(tmp_path / "other.png")
    # hash radius 0: the hashes would catch this small sticker (they catch about half of real ones)
    res = find_duplicates(tmp_path, phash_radius=0, dhash_radius=0, cascade=True, cascade_threshold=0.999, verify_min=0.5)
    assert res["groups"] == [] and res["crop_pairs"] == [] and res["embedding_pairs"] == []
    assert [(a.split("/")[-1], b.split("/")[-1]) for a, b, _, _ in res["overlay_pairs"]] == [("a.png", "sticker.png")]
    assert res["overlay_pairs"][0][3] >= 0.98  # the agreement outside the sticker
    assert [sorted(p.split("/")[-1] for p in g) for g in res["embedding_groups"]] == [["a.png", "sticker.png"]]


def test_ledger_cascade_links_a_crop_in_the_grey_zone(tmp_path, banners):
    """stage_cascade with stored vectors (no model run) at cosine 0.90: the crop is linked by the
    pixel check, the other product is not; a second run adds nothing; verify_min at the threshold
    switches the check off."""
    import sqlalchemy as sa

    from adlens.config import Settings
    from adlens.embed.base import get_embedder
    from adlens.embed.jobs import image_model, image_shas
    from adlens.ingest.ads import ingest_ads
    from adlens.pipeline import RunContext, stage_cascade
    from adlens.store import schema
    from adlens.store.ledger import duplicate_groups
    from adlens.workspace import init_workspace

    d = tmp_path / "ads"
    d.mkdir()
    names = {"AD0": "a", "AD1": "crop15", "AD2": "other_photo"}
    for ad, name in names.items():
        Image.fromarray(banners[name]).save(d / f"{ad}.png")
    (tmp_path / "ads.csv").write_text("path,ad_id\n" + "".join(f"{d / f'{ad}.png'},{ad}\n" for ad in names))

    def run(verify_min: float) -> dict:
        ws = init_workspace(tmp_path / f"ws{verify_min}", Settings(workspace=tmp_path / f"ws{verify_min}", workers=2,
                                                                    cascade_verify_min=verify_min))
        try:
            ingest_ads(ws, tmp_path / "ads.csv")
            assert duplicate_groups(ws.engine) == []  # the hashes miss the 15 % crop
            with ws.engine.connect() as conn:
                sha_of = dict(conn.execute(sa.select(schema.creatives.c.ad_id, schema.images.c.sha256)
                                           .join(schema.images, schema.images.c.id == schema.creatives.c.image_id)).all())
            # AD0 . AD1 = AD0 . AD2 = 0.90 (grey zone), AD1 . AD2 = 0.81
            vec = {"AD0": [1.0, 0, 0], "AD1": [0.9, np.sqrt(0.19), 0], "AD2": [0.9, 0, np.sqrt(0.19)]}
            by_sha = {sha_of[k]: np.array(v) for k, v in vec.items()}
            keys = image_shas(ws, "ads")
            ws.embeddings.put(get_embedder(image_model(ws)).model_id, "ads", keys, np.stack([by_sha[k] for k in keys]))
            out = stage_cascade(RunContext(ws))
            groups = [sorted(m["ad_id"] for m in g["members"]) for g in duplicate_groups(ws.engine)]
            again = stage_cascade(RunContext(ws))
            return {"out": out, "groups": groups, "again": again}
        finally:
            ws.close()

    on = run(0.8)
    assert on["out"]["new_links"] == 1 and on["out"]["pixel_checked_links"] == 1 and on["out"]["errors"] == []
    link = on["out"]["links"][0]
    assert {link["ad_a"], link["ad_b"]} == {"AD0", "AD1"} and link["pixel_check"] is True and link["edit"] == "crop"
    assert link["cosine"] == pytest.approx(0.90, abs=1e-4)
    assert on["groups"] == [["AD0", "AD1"]] and on["out"]["new_images"] == 3
    assert on["again"]["new_links"] == 0 and on["again"]["new_images"] == 0  # incremental: nothing re-checked
    off = run(0.95)
    assert off["out"]["new_links"] == 0 and off["groups"] == []


def _two_ads_at_cosine_090(tmp_path, first: np.ndarray, second: np.ndarray):
    """A workspace with ads AD0 and AD1 ingested and their image vectors stored at cosine 0.90 (the
    grey zone; no model run). Returns ``(workspace, {ad_id: sha256})``; the caller closes it."""
    import sqlalchemy as sa

    from adlens.config import Settings
    from adlens.embed.base import get_embedder
    from adlens.embed.jobs import image_model, image_shas
    from adlens.ingest.ads import ingest_ads
    from adlens.store import schema
    from adlens.workspace import init_workspace

    d = tmp_path / "ads"
    d.mkdir()
    Image.fromarray(first).save(d / "AD0.png")
    Image.fromarray(second).save(d / "AD1.png")
    (tmp_path / "ads.csv").write_text(f"path,ad_id\n{d / 'AD0.png'},AD0\n{d / 'AD1.png'},AD1\n")
    ws = init_workspace(tmp_path / "ws", Settings(workspace=tmp_path / "ws", workers=2))
    ingest_ads(ws, tmp_path / "ads.csv")
    with ws.engine.connect() as conn:
        sha_of = dict(conn.execute(sa.select(schema.creatives.c.ad_id, schema.images.c.sha256)
                                   .join(schema.images, schema.images.c.id == schema.creatives.c.image_id)).all())
    by_sha = {sha_of["AD0"]: np.array([1.0, 0]), sha_of["AD1"]: np.array([0.9, np.sqrt(0.19)])}
    keys = image_shas(ws, "ads")
    ws.embeddings.put(get_embedder(image_model(ws)).model_id, "ads", keys, np.stack([by_sha[k] for k in keys]))
    return ws, sha_of


def test_ledger_cascade_links_an_overlay_the_hashes_miss(tmp_path):
    """A sticker over the copy panel moves the pHash by 12 bits (radius 8): the pixel check links it
    in `adlens run`'s cascade stage as an overlay."""
    from adlens.pipeline import RunContext, stage_cascade
    from adlens.store.ledger import duplicate_groups

    a = template(data.astronaut())
    ws, _ = _two_ads_at_cosine_090(tmp_path, jpeg(a), jpeg(_sticker(a, [170, 100, 250, 180])))
    try:
        assert duplicate_groups(ws.engine) == []  # the hashes miss it
        out = stage_cascade(RunContext(ws))
        assert out["new_links"] == 1 and out["pixel_checked_links"] == 1 and out["errors"] == []
        link = out["links"][0]
        assert {link["ad_a"], link["ad_b"]} == {"AD0", "AD1"} and link["edit"] == "overlay"
        assert [sorted(m["ad_id"] for m in g["members"]) for g in duplicate_groups(ws.engine)] == [["AD0", "AD1"]]
    finally:
        ws.close()


def test_incremental_check_skips_old_pairs():
    """verified_pairs(new=...) checks only pairs with a new image: with none new nothing is loaded."""
    # 0-1 0.90 and 0-2 0.85 are grey; 1-2 is 0.765, below the zone
    V = np.array([[1.0, 0, 0], [0.9, np.sqrt(0.19), 0], [0.85, 0, np.sqrt(1 - 0.85 ** 2)]])
    loaded = []

    def load(i):
        loaded.append(i)
        return np.full((40, 40, 3), 100, np.uint8)

    assert len(verified_pairs(V, load, new=np.array([False, False, False]))) == 0 and loaded == []
    verified_pairs(V, load, new=np.array([False, False, True]))
    assert sorted(loaded) == [0, 2]  # only (0, 2) holds the new image; the old pair (0, 1) is not checked


def test_ledger_cascade_retries_an_image_it_could_not_read(tmp_path, banners):
    """A blob that cannot be read is reported, links nothing, and is checked again next run."""
    from adlens.pipeline import RunContext, stage_cascade

    ws, sha_of = _two_ads_at_cosine_090(tmp_path, banners["a"], banners["crop15"])
    try:
        blob = ws.blobs.path_for(sha_of["AD1"])
        kept = blob.read_bytes()
        blob.unlink()
        first = stage_cascade(RunContext(ws))
        assert first["new_links"] == 0 and [e["ad_id"] for e in first["errors"]] == ["AD1"]
        assert "pixel check" in first["errors"][0]["reason"]
        blob.write_bytes(kept)
        second = stage_cascade(RunContext(ws))
        assert second["new_images"] == 1 and second["new_links"] == 1 and second["errors"] == []
        assert stage_cascade(RunContext(ws))["new_images"] == 0
    finally:
        ws.close()


def test_dedup_check_lists_a_crop_confirmed_by_pixels(tmp_path, banners):
    """`dedup check --cascade`: with the threshold just above the crop's cosine, only the pixel check
    can find the crop's ad; another product in the same template is not listed."""
    import sqlalchemy as sa
    from test_similar_products import JointEmbedder

    from adlens.config import Settings
    from adlens.dedup.lookup import check_images
    from adlens.embed.jobs import embed_workspace
    from adlens.ingest.ads import ingest_ads
    from adlens.store import schema
    from adlens.workspace import init_workspace

    d = tmp_path / "ads"
    d.mkdir()
    Image.fromarray(banners["a"]).save(d / "AD0.png")
    Image.fromarray(banners["crop15"]).save(tmp_path / "crop.png")
    Image.fromarray(banners["other_photo"]).save(tmp_path / "other.png")
    (tmp_path / "ads.csv").write_text(f"path,ad_id\n{d / 'AD0.png'},AD0\n")
    emb = JointEmbedder()
    q, o, a = emb.embed_images([banners["crop15"], banners["other_photo"], banners["a"]])
    assert max(q @ a, o @ a) < 0.9999  # so a threshold of 1.0 leaves both to the grey zone
    lo = float(min(q @ a, o @ a)) - 0.05
    ws = init_workspace(tmp_path / "ws", Settings(workspace=tmp_path / "ws", workers=2))
    try:
        ingest_ads(ws, tmp_path / "ads.csv")
        embed_workspace(ws, "ads", emb)
        crop, other = check_images(ws, [tmp_path / "crop.png", tmp_path / "other.png"], cascade=True,
                                   threshold=1.0, verify_min=lo, embedder=emb)
        assert crop["status"] == "embedding_duplicate"
        (m,) = crop["embedding_matches"]
        assert m["ad_ids"] == ["AD0"] and m["pixel_check"] is True and m["agreement"] >= 0.95 and m["edit"] == "crop"
        assert m["cosine"] == pytest.approx(float(q @ a), abs=1e-4)
        assert other["status"] == "new" and other["embedding_matches"] == []
        # the check off (verify_min at the threshold): the crop is new to the cascade too
        off = check_images(ws, [tmp_path / "crop.png"], cascade=True, threshold=0.999, verify_min=0.999, embedder=emb)
        assert off[0]["status"] == "new"
        # a stored ad that cannot be read gives no verdict and does not stop the batch
        with ws.engine.connect() as conn:
            (sha,) = conn.execute(sa.select(schema.images.c.sha256)).scalars().all()
        ws.blobs.path_for(sha).unlink()
        gone, other2 = check_images(ws, [tmp_path / "crop.png", tmp_path / "other.png"], cascade=True,
                                    threshold=1.0, verify_min=lo, embedder=emb)
        assert gone["status"] == "new" and gone["embedding_matches"] == [] and other2["status"] == "new"
    finally:
        ws.close()


def test_blocks_and_a_small_cache_give_the_same_links(monkeypatch, banners):
    """Large ledgers: pairs in blocks with a bounded cache of prepared images give the same links as
    one pass, an unreadable image is reported once, and progress reaches the total."""
    from adlens.dedup import cascade

    names = ["a", "crop15", "other_photo", "crop_scaled", None, "other_copy", "a"]
    n = len(names)
    V = np.zeros((n, n + 1))
    V[:, 0] = np.sqrt(0.9)
    V[np.arange(n), np.arange(1, n + 1)] = np.sqrt(0.1)  # every pair at cosine 0.9

    def run():
        errors, ticks = [], []

        def load(i):
            if names[i] is None:
                raise OSError("gone")
            return banners[names[i]]

        got = verified_pairs(V, load, on_error=lambda i, r: errors.append(i), progress=lambda d, t: ticks.append((d, t)))
        return {(int(i), int(j)) for i, j, *_ in got}, errors, ticks

    whole, errors, ticks = run()
    # a, its two crops and its byte-identical twin link among themselves; nothing else does
    assert whole == {(0, 1), (0, 3), (0, 6), (1, 3), (1, 6), (3, 6)}
    assert errors == [4] and ticks[-1] == (21, 21)
    monkeypatch.setattr(cascade, "_BLOCK", 4)
    monkeypatch.setattr(cascade, "_CACHE_BYTES", 1)  # evict everything the next block does not need
    small, errors, ticks = run()
    assert small == whole and errors == [4] and [d for d, _ in ticks] == [4, 8, 12, 16, 20, 21]
