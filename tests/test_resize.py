"""Bicubic resize kernels: every byte equal to Pillow's, on both kernel builds, and bad input refused."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_in_threads
from PIL import Image

from adlens.embed import resize as R
from adlens.embed.image import preprocess

needs_kernels = pytest.mark.skipif(not R.kernels_available(), reason="no C compiler")


def _pillow(a: np.ndarray, size, box=None) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize(size, Image.BICUBIC, box=box))


def _image(rng, h: int, w: int) -> np.ndarray:
    """Noise plus gradients and hard edges: every tap weight matters, and overshoot gets clipped."""
    a = rng.integers(0, 256, (h, w, 3)).astype(np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    a[..., 0] = np.where(xx % 7 < 3, 255, 0)  # edges: the negative lobes go below 0 and above 255
    a[..., 1] = 255 * xx / max(w - 1, 1)
    return a.astype(np.uint8)


@pytest.fixture(params=["avx2", "portable"])
def build(request):
    if not R.kernels_available():
        pytest.skip("no C compiler")
    R._set_portable(request.param == "portable")
    # a kernel that disagrees with Pillow on the probe images is never used (Pillow does the
    # resize): that must not hide a broken kernel here
    assert R._pillow_rule() is not None
    yield request.param
    R._set_portable(False)


def _geometries(n: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(1, 140, 2))
        oh, ow = (int(v) for v in rng.integers(1, 140, 2))
        box = None
        if rng.random() < 0.3 and w > 2 and h > 2:
            left, top = rng.uniform(0, w / 3), rng.uniform(0, h / 3)
            box = (left, top, rng.uniform(left + 1, w), rng.uniform(top + 1, h))
        yield rng, (h, w), (ow, oh), box


def test_random_geometries_equal_pillow(build):
    # shrinking, enlarging, one axis each way (Pillow >= 13 then runs the vertical pass first),
    # 1-pixel images and targets, fractional boxes
    for rng, (h, w), size, box in _geometries(160, seed=1):
        a = _image(rng, h, w)
        got = R.resize_rgb(a, size, box=box)
        assert got.shape == (size[1], size[0], 3) and got.dtype == np.uint8
        np.testing.assert_array_equal(got, _pillow(a, size, box), err_msg=f"{w}x{h} -> {size}, box {box}, {build}")


def test_typical_embedder_geometries_equal_pillow(build):
    rng = np.random.default_rng(2)
    for (h, w), size in [((256, 192), (168, 224)), ((192, 256), (224, 168)), ((600, 800), (224, 168)),
                         ((250, 970), (224, 58)), ((1200, 300), (56, 224)), ((90, 728), (224, 28)),
                         ((100, 100), (224, 224))]:
        a = _image(rng, h, w)
        np.testing.assert_array_equal(R.resize_rgb(a, size), _pillow(a, size), err_msg=f"{w}x{h} -> {size} {build}")


def test_the_pass_order_matters_and_the_probe_found_the_installed_one():
    if not R.kernels_available():
        pytest.skip("no C compiler")
    rule = R._pillow_rule()
    assert rule in ("horizontal-first", "shrink-height-first")
    # a geometry where the two orders give different bytes: the probe's choice is the one that matches
    rng = np.random.default_rng(3)
    a = _image(rng, 120, 50)
    box = (0.0, 0.0, 50.0, 120.0)
    out = {}
    for r in ("horizontal-first", "shrink-height-first"):
        out[r] = np.empty((30, 60, 3), np.uint8)
        R._native(R._kernels(), a, out[r], box, r)
    assert not np.array_equal(out["horizontal-first"], out["shrink-height-first"])
    np.testing.assert_array_equal(out[rule], _pillow(a, (60, 30)))


@needs_kernels
def test_large_image_many_taps_and_unkept_scratch():
    rng = np.random.default_rng(4)
    a = _image(rng, 1500, 2100)  # 2100 -> 224: 21 taps a pixel
    np.testing.assert_array_equal(R.resize_rgb(a, (224, 160)), _pillow(a, (224, 160)))
    # a 2500 x 2600 intermediate image (19.5 MB) is allocated per call instead of kept per thread
    b = _image(rng, 2600, 2600)
    np.testing.assert_array_equal(R.resize_rgb(b, (2500, 2550)), _pillow(b, (2500, 2550)))


def test_out_view_is_filled_in_place_and_input_untouched():
    rng = np.random.default_rng(5)
    a = _image(rng, 90, 70)
    before = a.copy()
    canvas = np.full((100, 100, 3), 7, np.uint8)
    view = canvas[10:60, 20:60]  # rows of the canvas: a strided view
    res = R.resize_rgb(a, (40, 50), out=view)
    assert res is view
    np.testing.assert_array_equal(canvas[10:60, 20:60], _pillow(a, (40, 50)))
    outside = canvas.copy()
    outside[10:60, 20:60] = 7
    assert (outside == 7).all()  # nothing written outside the view
    np.testing.assert_array_equal(a, before)


def test_same_size_copies_and_integer_box_crops():
    rng = np.random.default_rng(6)
    a = _image(rng, 40, 30)
    np.testing.assert_array_equal(R.resize_rgb(a, (30, 40)), a)
    np.testing.assert_array_equal(R.resize_rgb(a, (10, 20), box=(5, 8, 15, 28)), a[8:28, 5:15])
    np.testing.assert_array_equal(R.resize_rgb(a, (10, 20), box=(5, 8, 15, 28)), _pillow(a, (10, 20), (5, 8, 15, 28)))


def test_non_contiguous_input(build):
    rng = np.random.default_rng(7)
    big = _image(rng, 80, 120)
    a = big[5:75, 10:110]  # rows strided
    np.testing.assert_array_equal(R.resize_rgb(a, (64, 40)), _pillow(np.ascontiguousarray(a), (64, 40)))
    b = big[:, ::2]  # pixels strided: copied first
    np.testing.assert_array_equal(R.resize_rgb(b, (33, 50)), _pillow(np.ascontiguousarray(b), (33, 50)))


def test_without_kernels_pillow_does_it(monkeypatch):
    monkeypatch.setattr(R, "_kernels", lambda: None)
    rng = np.random.default_rng(8)
    a = _image(rng, 50, 60)
    np.testing.assert_array_equal(R.resize_rgb(a, (31, 17)), _pillow(a, (31, 17)))


@needs_kernels
def test_threads_share_nothing():
    rng = np.random.default_rng(9)
    cases = [(_image(rng, int(h), int(w)), (int(ow), int(oh))) for h, w, ow, oh in rng.integers(20, 300, (24, 4))]
    want = [_pillow(a, s) for a, s in cases]
    got = [None] * len(cases)

    def run(k):
        for _ in range(5):
            for i in range(k, len(cases), 4):
                got[i] = R.resize_rgb(*cases[i])

    assert run_in_threads(run, range(4)) == []
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("bad, size, kw, match", [
    (np.zeros((10, 10), np.uint8), (5, 5), {}, "pixels must be"),
    (np.zeros((10, 10, 4), np.uint8), (5, 5), {}, "pixels must be"),
    (np.zeros((10, 10, 3), np.float32), (5, 5), {}, "pixels must be"),
    ([[0, 0, 0]], (5, 5), {}, "pixels must be"),
    (np.zeros((0, 10, 3), np.uint8), (5, 5), {}, "positive"),
    (np.zeros((10, 10, 3), np.uint8), (0, 5), {}, "positive"),
    (np.zeros((10, 10, 3), np.uint8), (5, 5), {"box": (-1, 0, 5, 5)}, "inside"),
    (np.zeros((10, 10, 3), np.uint8), (5, 5), {"box": (0, 0, 11, 5)}, "inside"),
    (np.zeros((10, 10, 3), np.uint8), (5, 5), {"box": (6, 0, 5, 5)}, "inside"),
    (np.zeros((10, 10, 3), np.uint8), (5, 5), {"box": (0, 0, float("nan"), 5)}, "finite"),
    (np.zeros((10, 10, 3), np.uint8), (5, 5), {"box": (0, 0, 5)}, "4 finite numbers"),
    (np.zeros((10, 10, 3), np.uint8), (5, 5), {"out": np.zeros((5, 6, 3), np.uint8)}, "out must be"),
    (np.zeros((10, 10, 3), np.uint8), (5, 5), {"out": np.frombuffer(bytes(75), np.uint8).reshape(5, 5, 3)}, "writeable"),
])
def test_bad_input_is_refused(bad, size, kw, match):
    with pytest.raises(ValueError, match=match):
        R.resize_rgb(bad, size, **kw)


@pytest.mark.parametrize("mode", ["pad", "squash", "center_crop"])
def test_preprocess_is_pillows_bytes(mode):
    """The embedder's input for each mode, against the Pillow-only recipe it replaced."""
    rng = np.random.default_rng(10)
    for h, w in [(120, 300), (300, 120), (77, 77), (1, 500), (256, 192)]:
        im = Image.fromarray(_image(rng, h, w))
        size = 224
        if mode == "squash":
            want = im.resize((size, size), Image.BICUBIC)
        elif mode == "center_crop":
            s = min(w, h) * size / (size + 32)
            left, top = (w - s) / 2, (h - s) / 2
            want = im.resize((size, size), Image.BICUBIC, box=(left, top, left + s, top + s))
        else:
            scale = size / max(w, h)
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
            want = Image.new("RGB", (size, size), (255, 255, 255))
            want.paste(im.resize((nw, nh), Image.BICUBIC), ((size - nw) // 2, (size - nh) // 2))
        np.testing.assert_array_equal(preprocess(im, mode, size), np.asarray(want), err_msg=f"{w}x{h} {mode}")
        slot = np.zeros((4, size, size, 3), np.uint8)
        assert np.shares_memory(preprocess(im, mode, size, out=slot[2]), slot)
        np.testing.assert_array_equal(slot[2], np.asarray(want))
        assert not slot[[0, 1, 3]].any()  # the other slots of the batch are untouched


def test_out_overlapping_the_input_is_refused():
    a = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ValueError, match="overlap"):
        R.resize_rgb(a, (5, 5), out=a[:5, :5])


def test_box_edges_are_tested_in_float32_like_pillow():
    rng = np.random.default_rng(11)
    a = _image(rng, 10, 12)
    box = (0.0, 0.0, 12.0, 10.0000001)  # above the image in float64, on its edge in float32
    np.testing.assert_array_equal(R.resize_rgb(a, (7, 5), box=box), _pillow(a, (7, 5), box))
