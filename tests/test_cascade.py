"""The embedding dedup cascade: catches what hashes miss, reported apart from hash matches."""

import numpy as np
import pytest
from conftest import encode
from PIL import Image, ImageDraw
from skimage import data

from adlens.dedup.cascade import embedding_pairs, new_links
from adlens.dedup.folder import find_duplicates, write_folder_report


def test_embedding_pairs_matches_brute_force():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 16)).astype(np.float32)
    X[10] = X[3] + 0.05 * rng.normal(size=16)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    S = X @ X.T
    expected = {(i, j) for i in range(300) for j in range(i + 1, 300) if S[i, j] >= 0.6}
    got = embedding_pairs(X, 0.6, block=64)
    assert {(int(i), int(j)) for i, j, _ in got} == expected and (3, 10) in expected
    assert np.allclose(got[:, 2], [S[int(i), int(j)] for i, j, _ in got], atol=1e-5)


def test_new_links_skips_pairs_already_grouped():
    pairs = np.array([[0, 1, 0.99], [1, 2, 0.97]])
    assert new_links(pairs, np.array([5, 5, 7])).tolist() == [[1, 2, 0.97]]


def test_folder_cascade_finds_crop_and_overlay_that_hashes_miss(tmp_path):
    photo = Image.fromarray(data.astronaut()).resize((300, 300))
    w, h = photo.size
    crop = photo.crop((int(w * 0.06), int(h * 0.06), int(w * 0.94), int(h * 0.94)))  # 12 % crop
    overlay = photo.copy()
    ImageDraw.Draw(overlay).rectangle([180, 10, 290, 80], fill=(230, 30, 30))  # a sticker
    other = Image.fromarray(data.coffee()).resize((300, 300))
    for name, img in {"a.jpg": photo, "a_crop.jpg": crop, "a_sticker.jpg": overlay, "b.jpg": other}.items():
        (tmp_path / name).write_bytes(encode(img))
    plain = find_duplicates(tmp_path)
    assert "embedding_pairs" not in plain
    hashed = {p.split("/")[-1] for g in plain["groups"] for p in g}
    assert "a_crop.jpg" not in hashed  # the hashes miss the 12 % crop
    res = find_duplicates(tmp_path, cascade=True, cascade_threshold=0.85)
    assert res["groups"] == plain["groups"]  # hash results are unchanged and separate
    emb_members = {p.split("/")[-1] for g in res["embedding_groups"] for p in g}
    assert {"a.jpg", "a_crop.jpg"} <= emb_members and "b.jpg" not in emb_members
    for a, b, cos in res["embedding_pairs"]:
        assert cos >= 0.85 and "b.jpg" not in (a.split("/")[-1], b.split("/")[-1])
    html = write_folder_report(res, tmp_path / "r.html").read_text()
    assert "Embedding duplicates" in html


def test_ledger_cascade_stage_links_once_with_stored_vectors(tmp_path):
    """stage_cascade over the ledger, with vectors put in the store under the default model's id (no
    model run): the pair at cosine 0.98 is linked once and merged, the pair at 0.90 is not."""
    import sqlalchemy as sa
    from conftest import banner

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
    for i in range(3):
        banner(10 + i).save(d / f"a{i}.png")
    (tmp_path / "ads.csv").write_text("path,ad_id\n" + "".join(f"{d / f'a{i}.png'},AD{i}\n" for i in range(3)))
    ws = init_workspace(tmp_path / "ws", Settings(workspace=tmp_path / "ws", workers=2))
    try:
        ingest_ads(ws, tmp_path / "ads.csv")
        assert duplicate_groups(ws.engine) == []  # three different banners for the hashes
        with ws.engine.connect() as conn:
            sha_of = dict(conn.execute(sa.select(schema.creatives.c.ad_id, schema.images.c.sha256)
                                       .join(schema.images, schema.images.c.id == schema.creatives.c.image_id)).all())
        a = np.array([1.0, 0.0, 0.0])
        vec = {"AD0": a, "AD1": np.array([0.98, np.sqrt(1 - 0.98 ** 2), 0.0]), "AD2": np.array([0.90, 0.0, np.sqrt(1 - 0.81)])}
        # AD1 . AD2 = 0.882: only AD0-AD1 reaches the default 0.97
        keys = image_shas(ws, "ads")
        by_sha = {sha_of[k]: v for k, v in vec.items()}
        ws.embeddings.put(get_embedder(image_model(ws)).model_id, "ads", keys, np.stack([by_sha[k] for k in keys]))
        out = stage_cascade(RunContext(ws))
        assert out["images"] == 3 and out["new_links"] == 1
        assert {out["links"][0]["ad_a"], out["links"][0]["ad_b"]} == {"AD0", "AD1"}
        assert out["links"][0]["cosine"] == pytest.approx(0.98, abs=1e-4)
        groups = duplicate_groups(ws.engine)
        assert [sorted(m["ad_id"] for m in g["members"]) for g in groups] == [["AD0", "AD1"]]
        assert [m["linked_by"] for m in groups[0]["members"]] == [["embedding"], ["embedding"]]
        # a hash duplicate of AD2 joins by the hash stage alone: nothing listed for it
        banner(12).resize((300, 250)).save(d / "a2_copy.png")
        (tmp_path / "more.csv").write_text(f"path,ad_id\n{d / 'a2_copy.png'},AD3\n")
        ingest_ads(ws, tmp_path / "more.csv")
        hashed = [g for g in duplicate_groups(ws.engine) if "AD3" in {m["ad_id"] for m in g["members"]}]
        assert len(hashed) == 1 and [m["linked_by"] for m in hashed[0]["members"]] == [[], []]
        with ws.engine.connect() as conn:
            assert conn.execute(sa.select(schema.dup_links.c.method)).scalars().all() == ["embedding"]
        assert stage_cascade(RunContext(ws))["new_links"] == 0  # idempotent
    finally:
        ws.close()


def test_dedup_check_with_cascade_finds_a_crop_the_hashes_miss(tmp_path):
    """`dedup check --cascade`: a 12 % crop of a ledger ad is `new` to the hashes and an
    `embedding_duplicate` of that ad once the stored embeddings are compared (plug-in embedder)."""
    from test_similar_products import JointEmbedder
    from typer.testing import CliRunner

    from adlens.cli import app
    from adlens.config import Settings
    from adlens.dedup.lookup import check_images
    from adlens.embed.jobs import embed_workspace
    from adlens.errors import InvalidInput
    from adlens.ingest.ads import ingest_ads
    from adlens.workspace import init_workspace

    photo = Image.fromarray(data.astronaut()).resize((300, 300))
    crop = photo.crop((18, 18, 282, 282))
    other = Image.fromarray(data.coffee()).resize((300, 300))
    d = tmp_path / "ads"
    d.mkdir()
    photo.save(d / "a.png")
    other.save(d / "b.png")
    crop.save(tmp_path / "crop.png")
    (tmp_path / "ads.csv").write_text(f"path,ad_id\n{d / 'a.png'},AST\n{d / 'b.png'},COF\n")
    emb = JointEmbedder()
    # the expectation, computed on the arrays directly: the crop is closer to its ad than to the other
    q, a, b = emb.embed_images([np.asarray(crop), np.asarray(photo), np.asarray(other)])
    assert q @ a > q @ b
    threshold = float((q @ a + q @ b) / 2)
    ws = init_workspace(tmp_path / "ws", Settings(workspace=tmp_path / "ws", workers=2))
    try:
        ingest_ads(ws, tmp_path / "ads.csv")
        with pytest.raises(InvalidInput, match="no stored ad embeddings"):
            check_images(ws, [tmp_path / "crop.png"], cascade=True, embedder=emb)
        embed_workspace(ws, "ads", emb)
        plain = check_images(ws, [tmp_path / "crop.png"])[0]
        assert plain["status"] == "new" and "embedding_matches" not in plain  # the hashes miss it
        (res, bad, same) = check_images(ws, [tmp_path / "crop.png", tmp_path / "missing.png", d / "a.png"],
                                        cascade=True, threshold=threshold, embedder=emb)
        assert res["status"] == "embedding_duplicate" and [m["ad_ids"] for m in res["embedding_matches"]] == [["AST"]]
        assert res["embedding_matches"][0]["cosine"] == pytest.approx(float(q @ a), abs=1e-4)
        assert bad["status"] == "error"  # the batch goes on
        assert same["status"] == "exact" and same["embedding_matches"] == []  # found by hash: not listed twice
        with pytest.raises(InvalidInput, match="cascade threshold"):
            check_images(ws, [tmp_path / "crop.png"], cascade=True, threshold=1.5, embedder=emb)
    finally:
        ws.close()
    r = CliRunner().invoke(app, ["dedup", "check", str(tmp_path / "crop.png"), "--cascade", "--threshold", "2",
                                 "--workspace", str(tmp_path / "ws")])
    assert r.exit_code == 2 and "cascade threshold" in r.output
