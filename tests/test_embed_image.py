"""Image embedder: ONNX export once per session, determinism, robustness, torch parity."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adlens.embed import Embedder, available_embedders, get_embedder, register_embedder
from adlens.embed.image import ONNX_FILENAME, EfficientNetLite0, default_model_dir, load_rgb, preprocess
from adlens.errors import InvalidInput

pytest.importorskip("onnxruntime")


def _photo(seed: int, size=(200, 160)) -> Image.Image:
    """A smooth synthetic 'photo': gradients + a few soft blobs (distinct per seed)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    img = np.zeros((h, w, 3))
    for c in range(3):
        img[..., c] = rng.uniform(0.2, 0.8) + rng.uniform(-0.4, 0.4) * xx + rng.uniform(-0.4, 0.4) * yy
    for _ in range(4):
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.2)
        blob = np.exp(-((xx - cx * w / max(w, h)) ** 2 + (yy - cy * h / max(w, h)) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.uniform(-0.6, 0.6, 3)
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


def _jpeg(im: Image.Image, quality=90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _png_bomb(width=40000, height=40000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """Exported once: reuses $ADLENS_MODEL_DIR / ~/.cache/adlens/models if it holds the file."""
    d = default_model_dir()
    EfficientNetLite0(d).session  # exports when missing (needs torch once)
    return d


@pytest.fixture(scope="session")
def emb(model_dir) -> EfficientNetLite0:
    return EfficientNetLite0(model_dir, batch_size=8)


def test_embedding_shape_norm_dtype(emb):
    v = emb.embed_images([_photo(0), np.asarray(_photo(1)), np.asarray(_photo(2).convert("L"))])
    assert v.shape == (3, 1280) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert emb.dim == 1280 and "efficientnet-lite0" in emb.model_id and "pad224" in emb.model_id


def test_same_image_identical_across_runs_and_instances(emb, model_dir):
    im = _photo(3)
    a = emb.embed_images([im])
    b = emb.embed_images([im])
    c = EfficientNetLite0(model_dir).embed_images([im])
    assert np.array_equal(a, b)
    np.testing.assert_allclose(a, c, atol=1e-6)
    # batch composition does not change a row (beyond float noise)
    d = emb.embed_images([_photo(4), im, _photo(5)])[1]
    np.testing.assert_allclose(a[0], d, atol=1e-5)


@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_resized_and_recompressed_copy_is_close(emb, name):
    skdata = pytest.importorskip("skimage.data")
    im = Image.fromarray(getattr(skdata, name)())  # real photos shipped with scikit-image
    w, h = im.size
    half = im.resize((w // 2, h // 2), Image.BICUBIC)
    jpeg = Image.open(io.BytesIO(_jpeg(im, quality=70)))
    other = Image.fromarray(skdata.chelsea())
    v = emb.embed_images([im, half, jpeg, other])
    cos = v @ v[0]
    # measured: half size 0.994-0.996, JPEG q70 0.98-0.99 (a quarter-size copy, below the
    # network's 224 px input, drops to 0.89-0.94), a different photo < 0.5
    assert cos[1] > 0.98, cos
    assert cos[2] > 0.97, cos
    assert cos[3] < 0.8, cos


@pytest.fixture(scope="session", params=[1, 2], ids=["pipelined", "data-parallel"])
def file_emb(request, model_dir) -> EfficientNetLite0:
    """Both embed_files pipelines: one ORT thread (decode threads feed it) and two (each worker
    decodes and runs its own batches on a one-thread session)."""
    e = EfficientNetLite0(model_dir, batch_size=8, num_threads=request.param)
    assert (e._data_parallel_workers() > 1) == (request.param > 1)
    return e


def test_embed_files_reports_bad_files_and_continues(file_emb, tmp_path):
    emb = file_emb
    good = [tmp_path / f"good{i}.jpg" for i in range(3)]
    for i, p in enumerate(good):
        p.write_bytes(_jpeg(_photo(10 + i)))
    png = tmp_path / "alpha.png"
    _photo(20).convert("RGBA").save(png)
    data = _jpeg(_photo(30))
    bad = {
        "empty.jpg": (b"", "empty file"),
        "truncated.jpg": (data[: len(data) // 3], "truncated or corrupt"),
        "notes.jpg": (b"not an image at all\n" * 20, "not an image"),
        "bomb.png": (_png_bomb(), "decompression bomb"),
    }
    for name, (blob, _) in bad.items():
        (tmp_path / name).write_bytes(blob)
    order = [good[0], tmp_path / "empty.jpg", good[1], tmp_path / "truncated.jpg", tmp_path / "missing.jpg",
             png, tmp_path / "notes.jpg", tmp_path / "bomb.png", good[2]]
    seen = []
    res = emb.embed_files(order, progress=seen.append)
    assert res.vectors.shape == (4, 1280)
    assert res.ok.tolist() == [0, 2, 5, 8]
    assert res.paths == [str(order[i]) for i in (0, 2, 5, 8)]
    reasons = dict(res.errors)
    assert len(reasons) == 5
    for name, (_, fragment) in bad.items():
        assert fragment in reasons[str(tmp_path / name)], reasons
    assert "not found" in reasons[str(tmp_path / "missing.jpg")]
    assert seen and seen[-1] == len(order)
    # the vectors equal what embed_images gives for the same decoded files
    ref = emb.embed_images([str(good[0]), str(png)])
    np.testing.assert_allclose(res.vectors[[0, 2]], ref, atol=1e-5)


def test_embed_files_many_batches_keep_order(file_emb, emb, tmp_path):
    paths = []
    for i in range(45):  # > 4 batches of 8 (more than the data-parallel window), partial last batch
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(_jpeg(_photo(100 + i, (96, 80))))
        paths.append(p)
    for i in (3, 17, 18, 44):  # bad files inside batches and at the very end
        paths[i].write_bytes(b"")
    seen = []
    res = file_emb.embed_files(paths, progress=seen.append)
    good = [i for i in range(45) if i not in (3, 17, 18, 44)]
    assert res.ok.tolist() == good and [p for p, _ in res.errors] == [str(paths[i]) for i in (3, 17, 18, 44)]
    assert seen == sorted(seen) and seen[-1] == 45  # every file accounted for once
    # the same vectors as a batch embedded by the other pipeline's model, row for row
    np.testing.assert_allclose(res.vectors, emb.embed_images([str(paths[i]) for i in good]), atol=1e-5)


def test_embed_images_raises_on_bad_input(emb, tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"")
    with pytest.raises(InvalidInput, match="empty file"):
        emb.embed_images([str(tmp_path / "x.jpg")])
    with pytest.raises(InvalidInput, match="shape"):
        emb.embed_images([np.zeros((4, 4, 5), np.uint8)])
    with pytest.raises(ValueError, match="pixels must be"):
        emb.embed_pixels(np.zeros((1, 100, 100, 3), np.uint8))
    assert emb.embed_images([]).shape == (0, 1280)


@pytest.mark.parametrize("mode", ["pad", "squash", "center_crop"])
def test_preprocess_modes(mode):
    a = preprocess(_photo(1, (300, 120)), mode, 224)
    assert a.shape == (224, 224, 3) and a.dtype == np.uint8
    if mode == "pad":  # white bars above and below a wide image
        assert (a[0] == 255).all() and (a[-1] == 255).all()


def test_load_rgb_arrays_and_alpha():
    assert load_rgb(np.zeros((5, 6), np.float32)).size == (6, 5)
    assert load_rgb(np.ones((5, 6, 1), np.uint8)).mode == "RGB"
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent -> white
    assert load_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)


def test_invalid_constructor_args(model_dir):
    for kw in ({"resize_mode": "zoom"}, {"batch_size": 0}, {"input_size": 250}, {"run_batch": 0}):
        with pytest.raises(ValueError):
            EfficientNetLite0(model_dir, **kw)


def test_flip_and_input_size_change_model_id(model_dir):
    e = EfficientNetLite0(model_dir, input_size=256, tta_flip=True)
    assert e.model_id.endswith("pad256/flip")
    v = e.embed_images([_photo(1)])
    assert v.shape == (1, 1280)
    # a mirrored image gets the same vector under flip-TTA
    w = e.embed_images([_photo(1).transpose(Image.FLIP_LEFT_RIGHT)])
    np.testing.assert_allclose(v, w, atol=1e-4)


def test_flip_tta_is_the_same_in_the_data_parallel_file_path(model_dir, tmp_path):
    e = EfficientNetLite0(model_dir, tta_flip=True, batch_size=4, num_threads=2)
    paths = []
    for i in range(9):  # 3 batches for 2 workers
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(_jpeg(_photo(400 + i, (72, 60))))
        paths.append(str(p))
    res = e.embed_files(paths)
    np.testing.assert_allclose(res.vectors, e.embed_images(paths), atol=1e-5)
    plain = EfficientNetLite0(model_dir, batch_size=4, num_threads=2).embed_files(paths).vectors
    assert np.abs(res.vectors - plain).max() > 1e-3  # the mirror image really was averaged in


def test_data_parallel_workers_run_in_small_runs_with_the_same_vectors(model_dir, tmp_path, monkeypatch):
    paths = []
    for i in range(13):  # 2 batches of 7 for 2 workers; the second worker's batch is short
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(_jpeg(_photo(500 + i, (90, 70))))
        paths.append(str(p))
    e = EfficientNetLite0(model_dir, batch_size=7, num_threads=2, run_batch=3)
    sizes = []
    real_run = e._run
    monkeypatch.setattr(e, "_run", lambda px: sizes.append(len(px)) or real_run(px))
    res = e.embed_files(paths)
    assert sorted(sizes) == sorted([3, 3, 1, 3, 3]) and max(sizes) <= 3  # 7 = 3 + 3 + 1, 6 = 3 + 3
    whole = EfficientNetLite0(model_dir, batch_size=7, num_threads=2, run_batch=32).embed_files(paths)
    np.testing.assert_array_equal(res.vectors, whole.vectors)  # run size never changes a vector
    assert res.ok.tolist() == list(range(13))


def test_onnx_matches_torch(emb):
    pytest.importorskip("torch")
    ref = get_embedder("efficientnet-lite0-torch", batch_size=8)
    ims = [_photo(40), _photo(41)]
    a, b = emb.embed_images(ims), ref.embed_images(ims)
    assert (np.sum(a * b, axis=1) > 0.9999).all()


def test_inference_does_not_import_torch(model_dir):
    code = (
        "import sys, numpy as np\n"
        "from adlens.embed import get_embedder\n"
        f"e = get_embedder('efficientnet-lite0', model_dir={str(model_dir)!r})\n"
        "v = e.embed_images([np.full((64, 64, 3), 128, np.uint8)])\n"
        "assert v.shape == (1, 1280)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert (model_dir / ONNX_FILENAME).exists()


def test_registry_plugs_a_custom_embedder():
    @register_embedder("test-constant")
    class Constant(Embedder):
        modality = "text"

        def __init__(self, dim: int = 3):
            self.dim = dim
            self.model_id = f"constant/{dim}"

        def embed_texts(self, texts):
            return np.ones((len(texts), self.dim), np.float32) / np.sqrt(self.dim)

    e = get_embedder("test-constant", dim=4)
    assert e.embed_texts(["a", "b"]).shape == (2, 4)
    assert "test-constant" in available_embedders() and "efficientnet-lite0" in available_embedders()
    with pytest.raises(NotImplementedError):
        e.embed_images([np.zeros((4, 4, 3), np.uint8)])
    with pytest.raises(KeyError, match="unknown embedder"):
        get_embedder("no-such-model")


def test_open_clip_backend_refuses_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        get_embedder("open_clip", arch="ViT-B-32", pretrained=tmp_path / "none.pt")


def test_model_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ADLENS_MODEL_DIR", str(tmp_path))
    assert default_model_dir() == tmp_path
    monkeypatch.delenv("ADLENS_MODEL_DIR")
    assert default_model_dir() == Path.home() / ".cache" / "adlens" / "models"
    assert os.path.basename(EfficientNetLite0(tmp_path).onnx_path) == ONNX_FILENAME


def test_load_rgb_applies_exif_orientation(tmp_path):
    im = _photo(7, (120, 80))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    p = tmp_path / "rot.jpg"
    im.save(p, "JPEG", exif=exif.tobytes())
    assert load_rgb(p).size == (80, 120)


def test_upright_copies_only_what_it_turns_and_keeps_pixels_when_exif_breaks(tmp_path, monkeypatch):
    from PIL import ImageOps

    from adlens.ingest.validate import upright

    plain = Image.open(io.BytesIO(_jpeg(_photo(8, (50, 30)))))
    plain.load()
    assert upright(plain) is plain  # nothing to turn: no copy
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    _photo(8, (50, 30)).save(buf, "JPEG", exif=exif.tobytes())
    turned = Image.open(io.BytesIO(buf.getvalue()))
    turned.load()
    before = np.asarray(turned).copy()
    assert upright(turned).size == (30, 50) and turned.size == (50, 30)  # a turned copy; the input as it was

    def broken(img, **kw):
        raise SyntaxError("corrupt EXIF")

    monkeypatch.setattr(ImageOps, "exif_transpose", broken)
    res = upright(turned)
    assert res is turned and np.array_equal(np.asarray(res), before)  # kept as decoded


def test_few_files_take_the_pipelined_path_with_every_thread(model_dir, tmp_path, monkeypatch):
    # data-parallel only pays when each worker gets a batch; one image must keep both threads
    e = EfficientNetLite0(model_dir, batch_size=8, num_threads=2)
    used = []
    for name in ("_files_data_parallel", "_files_pipelined"):
        real = getattr(e, name)
        monkeypatch.setattr(e, name, lambda *a, _r=real, _n=name: used.append(_n) or _r(*a))
    paths = []
    for i in range(17):
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(_jpeg(_photo(300 + i, (64, 64))))
        paths.append(p)
    assert len(e.embed_files(paths[:1]).ok) == 1 and len(e.embed_files(paths[:16]).ok) == 16  # 1 and 2 batches
    assert len(e.embed_files(paths).ok) == 17  # 3 batches for 2 workers
    assert used == ["_files_pipelined", "_files_data_parallel", "_files_data_parallel"]
