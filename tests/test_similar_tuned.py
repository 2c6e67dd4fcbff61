"""Similar products with a fine-tuned backbone in the workspace (``adlens similar-fit --finetune``)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from adlens.errors import InvalidInput  # noqa: E402
from adlens.ingest.products import ingest_products  # noqa: E402
from adlens.similar import fit_tuned, load_tuned_embedder, similar_products  # noqa: E402


def _catalogue(root, n=16, size=96, seed=0):
    """Folder catalogue: red squares and blue discs in category sub-folders."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        img = np.full((size, size, 3), 255, np.uint8)
        x0, y0 = rng.integers(5, size // 2 - 5, 2)
        cat = "squares" if i % 2 == 0 else "discs"
        if cat == "squares":
            img[y0 : y0 + size // 2, x0 : x0 + size // 2] = (200, 30, 30)
        else:
            r = size // 4
            img[(yy - y0 - r) ** 2 + (xx - x0 - r) ** 2 < r * r] = (30, 30, 200)
        (root / cat).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / cat / f"{i}.png")


def test_tuned_mode_is_used_once_fitted(ws, tmp_path):
    _catalogue(tmp_path / "products")
    ingest_products(ws, tmp_path / "products")
    with pytest.raises(InvalidInput, match="similar-fit --finetune"):
        similar_products(ws, str(tmp_path / "products" / "squares" / "0.png"), mode="tuned")
    info = fit_tuned(ws, epochs=1)
    assert info["products"] == 16 and info["categories"] == 2 and load_tuned_embedder(ws) is not None
    query = tmp_path / "q.png"
    _catalogue(tmp_path / "queries", n=2, seed=5)
    (tmp_path / "queries" / "squares" / "0.png").rename(query)
    res = similar_products(ws, str(query), k=4)
    assert res["mode"] == "tuned" and res["model_id"] == info["model_id"]
    assert len(res["results"]) == 4
    assert [r["category"] for r in res["results"]].count("squares") >= 3
    assert similar_products(ws, str(query), k=2, mode="raw")["mode"] == "raw"
    with pytest.raises(InvalidInput, match="mode"):
        similar_products(ws, str(query), mode="nope")


def test_unreadable_product_images_are_skipped_with_reasons(ws, tmp_path):
    _catalogue(tmp_path / "products", n=8)
    ingest_products(ws, tmp_path / "products")
    from adlens.similar import _products

    products = {p["product_id"]: p for p in _products(ws)}
    bad_id, bad = next((pid, p) for pid, p in sorted(products.items()) if p["category"] == "discs")
    blob = ws.blobs.path_for(bad["sha256"])
    blob.write_bytes(blob.read_bytes()[:40])  # damaged on disk after ingestion
    info = fit_tuned(ws, epochs=1)
    assert info["products"] == 7 and info["categories"] == 2
    assert [s["product_id"] for s in info["skipped"]] == [bad_id]
    assert str(blob) in info["skipped"][0]["reason"]
    # with every disc unreadable one category is left: a clear error that says why
    for p in products.values():
        if p["category"] == "discs":
            ws.blobs.path_for(p["sha256"]).write_bytes(b"")
    with pytest.raises(InvalidInput, match=r"at least 2 categories \(the `category` column\); 4 product image\(s\) could not be read, e.g. .*empty file"):
        fit_tuned(ws, epochs=1)
