"""Similar products with a plugged-in embedder (no model download): image+text models embed product
images, a product that cannot be embedded is left out instead of failing the catalogue, and a
learned projection is only used with the model it was fitted on."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from adlens.cli import app
from adlens.dedup.cascade import check_threshold
from adlens.embed.jobs import embed_workspace
from adlens.errors import InvalidInput
from adlens.ingest.products import ingest_products
from adlens.similar import (
    fit_projection,
    load_projection,
    projection_is_current,
    projection_model,
    similar_products,
)


class JointEmbedder:
    """An open_clip-like plug-in: reads images and texts; mean colour per quadrant (12-d)."""

    modality, dim = "image+text", 12

    def __init__(self, model_id="fake-joint/v1"):
        self.model_id = model_id

    def embed_images(self, images):
        out = []
        for im in images:
            a = np.asarray(im, np.float32)
            h, w = a.shape[:2]
            v = np.concatenate([a[y:y + h // 2, x:x + w // 2].mean(axis=(0, 1)) for y in (0, h // 2) for x in (0, w // 2)]) + 1
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, np.float32)

    def embed_files(self, paths):  # the pipeline path real image embedders take (errors by file)
        from adlens.embed.image import FileEmbeddings, load_rgb

        ok, vecs, errors = [], [], []
        for i, path in enumerate(paths):
            try:
                vecs.append(self.embed_images([np.asarray(load_rgb(path))])[0])
                ok.append(i)
            except InvalidInput as e:
                errors.append((str(path), str(e)))
        return FileEmbeddings(vectors=np.asarray(vecs, np.float32).reshape(-1, self.dim), ok=np.asarray(ok, np.int64),
                              paths=[str(paths[i]) for i in ok], errors=errors)

    def embed_texts(self, texts):
        v = np.array([[t.count(c) + 1.0 for c in "abcdefghijkl"] for t in texts], np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def _catalogue(root, n=12):
    colours = {"reds": (200, 30, 30), "blues": (30, 30, 200)}
    for i in range(n):
        cat = "reds" if i % 2 == 0 else "blues"
        img = np.full((64, 64, 3), 255, np.uint8)
        img[8 + i: 40 + i, 8:40] = colours[cat]  # every product a different image
        (root / cat).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / cat / f"p{i:02d}.png")


def test_joint_embedder_embeds_product_images_and_a_broken_product_is_left_out(ws, tmp_path):
    _catalogue(tmp_path / "products")
    ingest_products(ws, tmp_path / "products")
    from adlens.embed.jobs import image_shas

    keys = image_shas(ws, "products")
    ws.blobs.path_for(keys[0]).write_bytes(b"not an image any more")  # damaged on disk after ingest
    emb = JointEmbedder()
    res = embed_workspace(ws, "products", emb)
    assert res["total"] == 12 and res["computed"] == 11
    assert [f["key"] for f in res["failed"]] == [keys[0]]  # named by its content hash
    query = tmp_path / "products" / "reds" / "p02.png"
    out = similar_products(ws, str(query), k=3, mode="raw", embedder=emb)
    assert out["unindexed_products"] == 1 and len(out["results"]) == 3
    assert out["results"][0]["score"] == pytest.approx(1.0, abs=1e-5) and out["results"][0]["category"] == "reds"
    assert keys[0] not in {r["sha256"] for r in out["results"]}
    assert len(list((ws.artifacts / "index").glob("products-*-raw-*"))) == 1
    extra = tmp_path / "more" / "reds"
    extra.mkdir(parents=True)
    Image.fromarray(np.full((64, 64, 3), (210, 20, 20), np.uint8)).save(extra / "r.png")
    ingest_products(ws, tmp_path / "more")
    assert len(similar_products(ws, str(query), k=20, mode="raw", embedder=emb)["results"]) == 12
    assert len(list((ws.artifacts / "index").glob("products-*-raw-*"))) == 1  # the old catalogue's index is gone
    with pytest.raises(InvalidInput, match="no product of category 'greens'; categories: blues, reds"):
        similar_products(ws, str(query), k=3, mode="raw", embedder=emb, category="greens")


def test_projection_is_used_only_with_its_own_model(ws, tmp_path):
    _catalogue(tmp_path / "products")
    ingest_products(ws, tmp_path / "products")
    emb, other = JointEmbedder(), JointEmbedder("another-model/v2")
    info = fit_projection(ws, embedder=emb, method="linear")
    assert info["model_id"] == "fake-joint/v1" and projection_model(ws) == "fake-joint/v1"
    assert load_projection(ws, "fake-joint/v1") is not None and load_projection(ws, "another-model/v2") is None
    query = str(tmp_path / "products" / "blues" / "p03.png")
    assert similar_products(ws, query, k=2, embedder=emb)["mode"] == "learned"
    assert similar_products(ws, query, k=2, embedder=other)["mode"] == "raw"  # auto: no projection for it
    with pytest.raises(InvalidInput, match="fitted on fake-joint/v1 embeddings, not another-model/v2"):
        similar_products(ws, query, k=2, embedder=other, mode="learned")
    with pytest.raises(InvalidInput, match="cannot fit"):
        fit_projection(ws, embedder=emb, method="bogus")
    assert projection_is_current(ws)
    extra = tmp_path / "more" / "greens"
    extra.mkdir(parents=True)
    Image.fromarray(np.full((64, 64, 3), (30, 200, 30), np.uint8)).save(extra / "g.png")
    ingest_products(ws, tmp_path / "more")
    assert not projection_is_current(ws)  # `adlens run` refits then


def test_run_refits_a_stale_projection_with_the_users_method_and_not_every_time(ws, tmp_path, monkeypatch):
    import json

    from adlens.embed import base
    from adlens.embed.jobs import image_shas
    from adlens.pipeline import RunContext, stage_similar
    from adlens.similar import projection_path

    monkeypatch.setattr(base, "get_embedder", lambda name, **kw: JointEmbedder("default-stand-in/v1"))
    monkeypatch.setattr("adlens.similar.get_embedder", lambda name, **kw: JointEmbedder("default-stand-in/v1"))
    _catalogue(tmp_path / "products")
    ingest_products(ws, tmp_path / "products")
    ws.blobs.path_for(image_shas(ws, "products")[0]).write_bytes(b"broken")  # one labelled product never embeds
    from conftest import banner

    (tmp_path / "ads").mkdir()
    banner(3).save(tmp_path / "ads" / "a.png")
    from adlens.ingest.ads import ingest_ads

    ingest_ads(ws, tmp_path / "ads")
    fit_projection(ws, embedder=JointEmbedder("default-stand-in/v1"), method="linear", random_state=3)
    meta = projection_path(ws).with_name(projection_path(ws).name + ".json")
    assert json.loads(meta.read_text())["method"] == "linear" and projection_is_current(ws)
    assert stage_similar(RunContext(ws))["fit"] is None  # current despite the unembeddable product
    extra = tmp_path / "more" / "greens"
    extra.mkdir(parents=True)
    Image.fromarray(np.full((64, 64, 3), (30, 200, 30), np.uint8)).save(extra / "g.png")
    ingest_products(ws, tmp_path / "more")
    out = stage_similar(RunContext(ws))
    assert out["fit"]["method"] == "linear" and out["fit"]["categories"] == 3  # refitted as the user fitted
    assert json.loads(meta.read_text())["random_state"] == 3 and stage_similar(RunContext(ws))["fit"] is None


@pytest.mark.parametrize("bad", [-1.0, 0.0, 1.5, float("nan"), float("inf"), "0.9", True, None])
def test_cascade_threshold_must_be_a_cosine(bad):
    with pytest.raises(InvalidInput, match="cascade threshold"):
        check_threshold(bad)
    assert check_threshold(0.95) == 0.95 and check_threshold(1) == 1.0


def test_cascade_stage_skips_on_a_bad_threshold(tmp_path):
    from adlens.config import Settings
    from adlens.pipeline import RunContext, stage_cascade
    from adlens.workspace import init_workspace

    w = init_workspace(tmp_path / "ws", Settings(workspace=tmp_path / "ws", cascade_threshold=-1.0))
    try:
        out = stage_cascade(RunContext(w))
        assert "ADLENS_CASCADE_THRESHOLD" in out["skipped"] and "(0, 1]" in out["skipped"]
    finally:
        w.close()


def test_embed_cli_names_unknown_and_unbuildable_models(ws):
    r = CliRunner().invoke(app, ["embed", "products", "--model", "bogus", "--workspace", str(ws.root)])
    assert r.exit_code == 2 and "unknown embedder 'bogus'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["embed", "products", "--model", "open_clip", "--workspace", str(ws.root)])
    assert r.exit_code == 2 and "cannot be built here" in r.output


def test_a_catalogue_jpeg_used_as_the_query_scores_one(ws, tmp_path):
    """Queries are decoded like the stored vectors (JPEG draft mode for big files): a 1200-px product
    photo found by itself scores 1, not 0.998 as with a full-size decode."""
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    d = tmp_path / "products" / "big"
    d.mkdir(parents=True)
    for i in range(2):
        img = (rng.random((1200, 1200, 3)) * 60 + np.linspace(0, 190, 1200)[None, :, None] * (i + 1) / 2).astype(np.uint8)
        Image.fromarray(img).save(d / f"p{i}.jpg", quality=90)
    ingest_products(ws, tmp_path / "products")
    out = similar_products(ws, str(d / "p1.jpg"), k=1, mode="raw")
    assert out["results"][0]["path"].endswith("p1.jpg")
    assert out["results"][0]["score"] == pytest.approx(1.0, abs=1e-6)


def test_embed_cli_with_a_registered_model_is_resumable_and_similar_cli_answers(ws, tmp_path, monkeypatch):
    """`adlens embed --model NAME` with a registered plug-in: a second run computes nothing (the
    store keys vectors by content hash and model); `adlens similar --json --report` on the catalogue."""
    import json

    from adlens.embed import base

    monkeypatch.setitem(base._REGISTRY, "fake-joint", lambda **kw: JointEmbedder())
    _catalogue(tmp_path / "products")
    ingest_products(ws, tmp_path / "products")
    run = CliRunner()
    first = run.invoke(app, ["embed", "products", "--model", "fake-joint", "--json", "--workspace", str(ws.root)])
    assert first.exit_code == 0, first.output
    assert [(r["computed"], r["cached"]) for r in json.loads(first.stdout)] == [(12, 0)]
    again = run.invoke(app, ["embed", "products", "--model", "fake-joint", "--json", "--workspace", str(ws.root)])
    assert [(r["computed"], r["cached"], r["failed"]) for r in json.loads(again.stdout)] == [(0, 12, [])]
    keys, vectors = ws.embeddings.load("fake-joint/v1", "products")
    assert len(keys) == len(set(keys)) == 12 and vectors.shape == (12, 12)  # nothing stored twice


def test_similar_cli_json_and_report(ws, tmp_path):
    pytest.importorskip("onnxruntime")
    import json

    _catalogue(tmp_path / "products")
    ingest_products(ws, tmp_path / "products")
    query = tmp_path / "products" / "reds" / "p04.png"
    r = CliRunner().invoke(app, ["similar", str(query), "--k", "3", "--mode", "raw", "--json",
                                 "--report", str(tmp_path / "sim.html"), "--workspace", str(ws.root)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["mode"] == "raw" and out["unindexed_products"] == 0 and len(out["results"]) == 3
    assert out["results"][0]["path"].endswith("p04.png") and out["results"][0]["score"] == pytest.approx(1.0, abs=1e-6)
    assert [x["score"] for x in out["results"]] == sorted((x["score"] for x in out["results"]), reverse=True)
    html = (tmp_path / "sim.html").read_text()
    assert html.count("<img") >= 4  # the query and its 3 products
    r = CliRunner().invoke(app, ["similar", "no-such-ad", "--workspace", str(ws.root)])
    assert r.exit_code == 2 and "neither an ad_id" in r.output


def test_image_files_are_embedded_in_one_stream_stored_as_they_come_and_resumable(ws, tmp_path, monkeypatch):
    """`embed_workspace` with the real image embedder: one data-parallel stream over every missing
    file, stored every `batch_size` vectors; a crash keeps what was stored, the rerun computes the
    rest, a broken file is named by its content hash, and nothing is stored twice."""
    from adlens.embed.image import EfficientNetLite0
    from adlens.embed.jobs import image_shas
    from adlens.store.embeddings import EmbeddingStore

    _catalogue(tmp_path / "products", n=10)
    ingest_products(ws, tmp_path / "products")
    keys = image_shas(ws, "products")
    ws.blobs.path_for(keys[4]).write_bytes(b"\xff\xd8 truncated jpeg")
    emb = EfficientNetLite0(batch_size=2, num_threads=2)  # 5 batches for 2 workers: the data-parallel path
    calls = []
    real_put = EmbeddingStore.put

    def put_then_crash(self, model_id, kind, k, v):
        calls.append(list(k))
        if len(calls) == 2:
            raise OSError("disk full")
        return real_put(self, model_id, kind, k, v)

    monkeypatch.setattr(EmbeddingStore, "put", put_then_crash)
    seen = []
    with pytest.raises(OSError, match="disk full"):
        embed_workspace(ws, "products", emb, batch_size=3, progress=lambda d, t: seen.append((d, t)))
    assert len(calls[0]) >= 3 and seen[0][1] == 10
    stored, _ = ws.embeddings.load(emb.model_id, "products")
    assert sorted(stored) == sorted(calls[0])  # the first flush survived the crash
    monkeypatch.setattr(EmbeddingStore, "put", real_put)
    res = embed_workspace(ws, "products", emb, batch_size=3)
    assert (res["total"], res["cached"], res["computed"]) == (10, len(calls[0]), 9 - len(calls[0]))
    assert [f["key"] for f in res["failed"]] == [keys[4]]
    got, vectors = ws.embeddings.load(emb.model_id, "products")
    assert sorted(got) == sorted(k for k in keys if k != keys[4])
    import pyarrow.parquet as pq
    parts = sorted((ws.artifacts / "embeddings").rglob("part-*.parquet"))
    assert sum(pq.read_metadata(p).num_rows for p in parts) == 9  # no vector written twice (load hides duplicates)
    # each vector is its own file's, as the other pipeline (decode threads, one session) computes it
    ref = emb.embed_images([str(ws.blobs.path_for(k)) for k in got])
    np.testing.assert_allclose(vectors, ref, atol=1e-5)
