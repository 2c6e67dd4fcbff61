"""Backbone fine-tuning (adlens.embed.finetune) and the int8 model, on tiny generated images."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from adlens.embed import get_embedder  # noqa: E402
from adlens.embed.finetune import TunedEfficientNet, finetune_backbone  # noqa: E402
from adlens.embed.quantize import synthetic_images  # noqa: E402


def _two_kinds(n: int = 16, size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Red squares vs blue discs at random places on white: two labels a tuned model must separate."""
    rng = np.random.default_rng(seed)
    imgs = np.full((n, size, size, 3), 255, np.uint8)
    labels = np.array(["red-square", "blue-disc"] * (n // 2))
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        x0, y0 = rng.integers(5, size // 2 - 5, 2)
        if labels[i] == "red-square":
            imgs[i, y0 : y0 + size // 2, x0 : x0 + size // 2] = (200, 30, 30)
        else:
            r = size // 4
            imgs[i][(yy - y0 - r) ** 2 + (xx - x0 - r) ** 2 < r * r] = (30, 30, 200)
    return imgs, labels


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    imgs, labels = _two_kinds()
    out = tmp_path_factory.mktemp("tuned")
    calls = []
    finetune_backbone(imgs, labels, out, epochs=2, train_size=64, batch_size=8, progress=lambda d, t: calls.append((d, t)))
    return out, imgs, labels, calls


def test_finetune_writes_a_loadable_embedder(tuned):
    out, imgs, labels, calls = tuned
    assert {"model.onnx", "head.npz", "meta.json", "checkpoint.pt"} <= {p.name for p in out.iterdir()}
    assert calls[-1] == (4, 4)  # 2 epochs x 2 steps of 8
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"] == ["blue-disc", "red-square"] and len(meta["loss_curve"]) == 2
    emb = get_embedder("efficientnet-lite0-tuned", path=out)
    assert isinstance(emb, TunedEfficientNet)
    assert emb.model_id.startswith("efficientnet-lite0-tuned/" + meta["model_sha256"][:12])
    v = emb.embed_images(list(imgs))
    assert v.shape == (16, 1280 + 2) and emb.dim == 1282
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(v, emb.embed_images(list(imgs)))  # deterministic


def test_tuned_vectors_follow_the_labels(tuned):
    out, imgs, labels, _ = tuned
    for output in ("hybrid", "posterior", "embedding"):
        v = TunedEfficientNet(out, output=output).embed_images(list(imgs))
        S = v @ v.T
        same = labels[:, None] == labels[None, :]
        off = ~np.eye(len(v), dtype=bool)
        assert S[same & off].mean() > S[~same].mean() + 0.05, output


def test_outputs_are_consistent(tuned):
    out, imgs, _, _ = tuned
    emb = TunedEfficientNet(out, output="embedding", tta_flip=False)
    z = emb.embed_images(list(imgs[:4]))
    np.testing.assert_allclose(emb.transform_features(z, "hybrid"),
                               TunedEfficientNet(out, tta_flip=False).embed_images(list(imgs[:4])), atol=1e-5)
    assert TunedEfficientNet(out, output="posterior").dim == 2
    assert len({TunedEfficientNet(out, output=o).model_id for o in ("embedding", "posterior", "hybrid")}) == 3


def test_default_inference_is_256_px_averaged_with_the_mirror_image(tuned):
    out, imgs, _, _ = tuned
    emb = TunedEfficientNet(out)
    assert emb.input_size == 256 and emb.tta_flip and emb.model_id.endswith("/pad256/flip")
    plain = TunedEfficientNet(out, tta_flip=False)  # 256 px, one view
    px = np.stack([plain._pixels(im) for im in imgs[:4]])
    both = plain.embed_pixels(px) + plain.embed_pixels(np.ascontiguousarray(px[:, :, ::-1]))
    expect = both / np.linalg.norm(both, axis=1, keepdims=True)
    np.testing.assert_allclose(emb.embed_images(list(imgs[:4])), expect, atol=1e-5)
    fast = TunedEfficientNet(out, input_size=224, tta_flip=False)
    assert fast.model_id.endswith("/pad224") and len({emb.model_id, plain.model_id, fast.model_id}) == 3


def test_finetune_resumes_from_its_checkpoint(tuned, tmp_path):
    out, imgs, labels, _ = tuned
    calls = []
    finetune_backbone(imgs, labels, out, epochs=2, train_size=64, batch_size=8, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(4, 4)]  # nothing left to train: resumed at the end
    # a different recipe does not reuse the checkpoint
    calls.clear()
    finetune_backbone(imgs, labels, tmp_path, epochs=1, train_size=64, batch_size=16, progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, 1) and calls[-1] == (1, 1)


@pytest.mark.parametrize("kw", [{}, {"rotate": 10.0}, {"erase_prob": 1.0}, {"rotate": 15.0, "erase_prob": 0.5, "jitter": 0.4}])
def test_augment_is_seeded_and_keeps_shape_dtype_and_input(kw):
    from adlens.embed.finetune import _augment

    img = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    before = img.copy()
    a = _augment(img, 64, np.random.default_rng(5), 0.2, **kw)
    b = _augment(img, 64, np.random.default_rng(5), 0.2, **kw)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(img, before)
    views = [_augment(img, 64, np.random.default_rng(s), 0.2, **kw) for s in range(6)]
    assert len({v.tobytes() for v in views}) == 6  # different seeds, different views


def test_augment_options_off_reproduce_the_plain_stream():
    from adlens.embed.finetune import _augment

    img = np.random.default_rng(1).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    a = _augment(img, 64, r1, 0.35)
    b = _augment(img, 64, r2, 0.35, rotate=0.0, erase_prob=0.0, jitter=0.3)
    np.testing.assert_array_equal(a, b)
    assert r1.random() == r2.random()  # same number of draws


def test_random_erasing_and_rotation_change_the_view():
    from adlens.embed.finetune import _augment

    img = np.full((64, 64, 3), 128, np.uint8)
    plain = _augment(img, 64, np.random.default_rng(0), 1.0, jitter=0.0)
    erased = _augment(img, 64, np.random.default_rng(0), 1.0, jitter=0.0, erase_prob=1.0)
    np.testing.assert_array_equal(plain, 128)  # full crop of a flat image, no jitter
    assert (erased != 128).any(axis=2).mean() >= 0.015  # one noisy rectangle of >= 2 % of the area
    rotated = _augment(img, 64, np.random.default_rng(0), 1.0, jitter=0.0, rotate=30.0)
    assert (rotated > 200).all(axis=2).any()  # white fill enters at the corners


@pytest.mark.parametrize(
    "images, labels, kw, match",
    [
        (np.zeros((4, 64, 64, 3), np.float32), ["a", "b", "a", "b"], {}, "uint8"),
        (np.zeros((4, 64, 64), np.uint8), ["a", "b", "a", "b"], {}, "uint8"),
        (np.zeros((4, 64, 64, 3), np.uint8), ["a", "b", "a"], {}, "labels"),
        (np.zeros((4, 64, 64, 3), np.uint8), ["a", "a", "a", "a"], {}, "2 distinct"),
        (np.zeros((4, 64, 64, 3), np.uint8), ["a", "b", "a", "b"], {"train_size": 100}, "multiple of 32"),
    ],
)
def test_finetune_rejects_bad_input(tmp_path, images, labels, kw, match):
    with pytest.raises(ValueError, match=match):
        finetune_backbone(images, labels, tmp_path, epochs=1, **kw)


def test_tuned_embedder_needs_a_tuned_folder(tmp_path):
    with pytest.raises(ValueError, match="not a tuned embedder"):
        TunedEfficientNet(tmp_path)


def test_evaluate_similar_with_finetune(tmp_path):
    from adlens.similar import evaluate_similar

    imgs, labels = _two_kinds(n=24, seed=1)
    for name, rows in (("train", range(0, 12)), ("test", range(12, 24))):
        with open(tmp_path / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "category"])
            for i in rows:
                Image.fromarray(imgs[i]).save(tmp_path / f"{i}.png")
                w.writerow([f"{i}.png", labels[i]])
    res = evaluate_similar(tmp_path / "test.csv", tmp_path / "train.csv", k=3, finetune=True, epochs=1,
                           tune_dir=tmp_path / "tuned")
    assert res["method"] == "tuned" and "tuned" in res["methods"] and res["queries"] == 12
    assert res["auc"] == res["methods"]["tuned"]["auc"] > 0.6
    assert (tmp_path / "tuned" / "model.onnx").exists()


# ------------------------------------------------------------------------------- int8


def test_synthetic_calibration_images_are_seeded():
    a, b = synthetic_images(4, size=64, random_state=3), synthetic_images(4, size=64, random_state=3)
    assert a.shape == (4, 64, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, synthetic_images(4, size=64, random_state=4))


def test_int8_model_is_its_own_model_and_close_to_fp32():
    fp32 = get_embedder("efficientnet-lite0")
    q = get_embedder("efficientnet-lite0-int8")  # quantised once into the model dir
    assert q.model_id != fp32.model_id and "int8" in q.model_id
    assert q.onnx_path != fp32.onnx_path and q.onnx_path.exists()
    px = synthetic_images(8, random_state=11)
    a, b = fp32.embed_pixels(px), q.embed_pixels(px)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(b, q.embed_pixels(px))
    cos = np.sum(a * b, axis=1)
    # recipe v2 (7-bit weights, stem in float): 0.98 on these; v1 (8-bit, all int8) gave ~0.93
    assert cos.mean() > 0.97 and cos.min() > 0.95, cos
    # it still tells different images apart the way fp32 does
    assert np.corrcoef((a @ a.T)[np.triu_indices(8, 1)], (b @ b.T)[np.triu_indices(8, 1)])[0, 1] > 0.95


def test_int8_recipe_keeps_the_first_convs_in_float_and_quantises_the_rest():
    import onnx

    from adlens.embed.quantize import FLOAT_CONVS

    g = onnx.load(str(get_embedder("efficientnet-lite0-int8").onnx_path)).graph
    made_by = {out: n.op_type for n in g.node for out in n.output}
    weights_from = [made_by.get(n.input[1], "initializer") for n in g.node if n.op_type == "Conv"]
    assert weights_from[:FLOAT_CONVS] == ["initializer"] * FLOAT_CONVS  # float weights
    assert set(weights_from[FLOAT_CONVS:]) == {"DequantizeLinear"} and len(weights_from) == 49


def test_image_model_setting_picks_the_workspace_embedder(monkeypatch):
    from adlens.embed.jobs import DEFAULT_IMAGE_MODEL, image_model

    monkeypatch.delenv("ADLENS_IMAGE_MODEL", raising=False)
    assert image_model() == DEFAULT_IMAGE_MODEL == "efficientnet-lite0-int8"
    assert "int8" in get_embedder(image_model()).model_id
    monkeypatch.setenv("ADLENS_IMAGE_MODEL", "efficientnet-lite0")
    assert image_model() == "efficientnet-lite0"
    assert "int8" not in get_embedder(image_model()).model_id
