"""Creative (M) features on images built so the expected direction is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

cv2 = pytest.importorskip("cv2")  # opencv-python-headless<5 (ships the Haar cascades)

from adlens.features.creative import (  # noqa: E402
    CreativeFeatures,
    RapidOcrBackend,
    clarity,
    clutter,
    colourfulness,
    creative_schema,
    detect_faces,
    face_emotion,
    is_ad_confidence,
    rms_contrast,
    to_rgb_array,
)
from adlens.features.schema import FEATURE_SCHEMA_VERSION, check_row, schema_fingerprint, schema_names

skimage_data = pytest.importorskip("skimage.data")


class FakeImageEmbedder:
    """Mean colour of a 2x2 grid: 12-d, unit norm (no model needed)."""

    dim = 12
    model_id = "fake-grid/v1"
    modality = "image"

    def embed_images(self, images):
        out = []
        for im in images:
            a = to_rgb_array(im).astype(np.float32)
            h, w = a.shape[:2]
            v = np.concatenate([a[y:y + h // 2, x:x + w // 2].mean(axis=(0, 1)) for y in (0, h // 2) for x in (0, w // 2)]) + 1
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, np.float32)


class FakeTextEmbedder:
    dim = 8
    model_id = "fake-len/v1"
    modality = "text"

    def embed_texts(self, texts):
        v = np.array([[len(t) + 1, t.count(" ") + 1, 1, 1, 1, 1, 1, 1] for t in texts], np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def _astronaut(size=(300, 250)) -> Image.Image:
    return Image.fromarray(skimage_data.astronaut()).resize(size, Image.LANCZOS)


def _grey(size=(300, 250)) -> Image.Image:
    return Image.new("RGB", size, (128, 128, 128))


def _collage(seed=0, size=(300, 250)) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    w, h = size
    for _ in range(60):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        d.rectangle([x0, y0, x0 + int(rng.integers(5, 60)), y0 + int(rng.integers(5, 60))],
                    fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    for _ in range(40):
        d.line([tuple(int(c) for c in rng.integers(0, w, 2)), tuple(int(c) for c in rng.integers(0, h, 2))],
               fill=tuple(int(c) for c in rng.integers(0, 256, 3)), width=2)
    return img


def _shop_now_banner() -> Image.Image:
    img = Image.new("RGB", (300, 250), (245, 240, 230))
    d = ImageDraw.Draw(img)
    d.rectangle([20, 150, 280, 220], fill=(200, 30, 30))
    d.text((40, 158), "SHOP NOW", fill=(255, 255, 255), font=ImageFont.load_default(size=48))
    d.text((30, 40), "SALE", fill=(20, 20, 20), font=ImageFont.load_default(size=64))
    return img


@pytest.fixture(scope="module")
def ocr():
    if not RapidOcrBackend.available():
        pytest.skip("rapidocr-onnxruntime not installed")
    return RapidOcrBackend()


def fx_no_models(**kw) -> CreativeFeatures:
    kw.setdefault("ocr", None)
    kw.setdefault("image_embedder", None)
    kw.setdefault("text_embedder", None)
    kw.setdefault("entity_extractor", None)
    return CreativeFeatures(**kw)


# ---------------------------------------------------------------- pixels


def test_blurred_copy_is_less_clear():
    img = _astronaut()
    blurred = img.filter(ImageFilter.GaussianBlur(3))
    assert clarity(img) > clarity(blurred) + 1.0
    assert clarity(_grey()) == 0.0


def test_clarity_is_size_independent():
    # the same photo rendered at 300x250 and 600x500 differs far less than a blurred copy does
    img = _astronaut((300, 250))
    big = _astronaut((600, 500))
    blur_gap = clarity(img) - clarity(img.filter(ImageFilter.GaussianBlur(3)))
    assert abs(clarity(img) - clarity(big)) < 0.25 * blur_gap


def test_collage_has_more_clutter_than_flat():
    dens_c, reg_c = clutter(_collage())
    dens_f, reg_f = clutter(_grey())
    assert (dens_f, reg_f) == (0.0, 0)
    assert dens_c > 0.05 and reg_c >= 1
    assert dens_c > clutter(_astronaut())[0] * 0.5


def test_contrast_and_colourfulness():
    assert rms_contrast(_grey()) == 0.0
    bw = np.zeros((100, 100, 3), np.uint8)
    bw[:, 50:] = 255
    assert rms_contrast(bw) == pytest.approx(0.5, abs=0.01)  # max RMS contrast
    assert colourfulness(_grey()) == pytest.approx(0.0, abs=1e-6)
    assert colourfulness(_collage()) > 50 > colourfulness(_astronaut().convert("L").convert("RGB"))


# ---------------------------------------------------------------- faces


def test_astronaut_has_one_smiling_face():
    img = _astronaut()
    f = detect_faces(img)
    assert f.count == 1
    x, y, w, h = f.boxes[0]
    assert 0.02 < f.largest_area_share < 0.3 and 60 < x + w / 2 < 180  # her face is left of centre
    assert face_emotion(img, f) in ("smiling", "neutral")


def test_no_faces_on_grey_and_collage():
    for img in (_grey(), _collage()):
        f = detect_faces(img)
        assert f.count == 0 and f.largest_area_share == 0.0 and f.boxes.shape == (0, 4)
        assert face_emotion(img, f) == "none"


# ---------------------------------------------------------------- input validation


@pytest.mark.parametrize("bad", [np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 2), np.uint8),
                                 np.zeros((1, 10, 3), np.uint8), "image.png", None])
def test_invalid_images_rejected(bad):
    with pytest.raises(ValueError):
        to_rgb_array(bad)


def test_modes_accepted():
    assert to_rgb_array(Image.new("L", (5, 5), 3)).shape == (5, 5, 3)
    assert to_rgb_array(Image.new("RGBA", (5, 5), (0, 0, 0, 0)))[0, 0].tolist() == [255, 255, 255]  # on white
    assert to_rgb_array(np.zeros((4, 6), np.uint8)).shape == (4, 6, 3)


# ---------------------------------------------------------------- OCR


def test_ocr_reads_large_word(ocr):
    lines = ocr(to_rgb_array(_shop_now_banner()))
    text = " ".join(ln.text for ln in lines).upper().replace(" ", "")
    assert "SHOPNOW" in text and "SALE" in text
    assert all(0.5 <= ln.score <= 1 for ln in lines)
    assert ocr(to_rgb_array(_grey())) == []


def test_banner_features_with_ocr(ocr):
    fx = fx_no_models(ocr=ocr)
    row = fx.extract(_shop_now_banner(), "")  # the CTA only exists in the image
    check_row(row, fx.schema())
    assert row["ocr_backend"] == "rapidocr" and row["ocr_n_words"] >= 3
    assert row["copy_has_cta"] is True
    assert 0.05 < row["ocr_text_area_share"] < 0.6
    grey = fx.extract(_grey(), "")
    assert grey["ocr_text"] == "" and grey["ocr_n_words"] == 0 and grey["ocr_text_area_share"] == 0.0
    assert math.isnan(grey["ocr_confidence"])
    assert row["is_ad"] > grey["is_ad"]
    fx.close()


# ---------------------------------------------------------------- extractor


def test_schema_is_stable():
    names = schema_names(creative_schema())
    assert names[:8] == ["face_count", "face_area_share", "face_emotion", "clarity", "clutter", "clutter_regions",
                         "contrast", "colourfulness"]
    assert names[-4:] == ["image_embedding", "image_embedding_model", "text_embedding", "text_embedding_model"]
    assert len(names) == len(set(names)) == 36
    assert {"twist_present", "twist_resolves_fast", "is_ad", "copy_has_cta", "copy_concreteness"} <= set(names)
    assert FEATURE_SCHEMA_VERSION == "features/1.0"
    assert schema_fingerprint(creative_schema()) == schema_fingerprint(creative_schema(1280, 384))
    assert schema_fingerprint(creative_schema(512, 384)) != schema_fingerprint(creative_schema())


def test_grey_image_and_empty_text_give_documented_nulls():
    fx = fx_no_models()
    row = fx.extract(_grey(), "")
    check_row(row, fx.schema())
    assert list(row) == schema_names(fx.schema())
    assert row["face_count"] == 0 and row["face_emotion"] == "none" and row["colourfulness"] == 0.0
    assert row["ocr_backend"] == "none" and row["ocr_text"] is None and row["ocr_n_words"] is None
    assert math.isnan(row["ocr_text_area_share"])
    assert row["copy_n_words"] == 0 and row["copy_has_cta"] is False and math.isnan(row["copy_readability"])
    # LLM-only features are null without an LLM extractor -- never a silent zero
    assert math.isnan(row["twist_present"]) and math.isnan(row["twist_resolves_fast"]) and row["llm_model_id"] is None
    assert row["image_embedding"] is None and row["text_embedding"] is None and row["ad_entities"] is None
    assert row["is_ad"] < 0.2


def test_cta_in_copy_and_embeddings_via_injected_embedders():
    fx = fx_no_models(image_embedder=FakeImageEmbedder(), text_embedder=FakeTextEmbedder(), parallel=False)
    row = fx.extract(_astronaut(), "SHOP NOW - 20% off at Apex Athletics", advertiser="Apex Athletics")
    check_row(row, fx.schema())
    assert row["copy_has_cta"] and row["copy_has_price"] and row["copy_brand_mention"]
    assert row["image_embedding"].shape == (12,) and row["image_embedding_model"] == "fake-grid/v1"
    assert row["text_embedding"].shape == (8,) and row["text_embedding_model"] == "fake-len/v1"
    assert row["face_count"] == 1
    assert row["is_ad"] > fx.extract(_astronaut(), "")["is_ad"]
    assert {"faces", "clarity", "clutter", "copy", "image_embedding", "total"} <= set(fx.last_timings)


def test_llm_hook():
    class Twist:
        model_id = "fake-llm/prompt-v1"

        def __call__(self, image, text):
            assert isinstance(text, str)
            return {"twist_present": True, "twist_resolves_fast": 0.25}

    class Broken:
        model_id = "broken"

        def __call__(self, image, text):
            raise TimeoutError("teacher timed out")

    row = fx_no_models(llm_extractor=Twist()).extract(_grey(), "hello")
    assert row["twist_present"] == 1.0 and row["twist_resolves_fast"] == 0.25 and row["llm_model_id"] == "fake-llm/prompt-v1"
    row = fx_no_models(llm_extractor=Broken()).extract(_grey(), "hello")
    assert math.isnan(row["twist_present"]) and row["llm_model_id"] is None


def test_is_ad_confidence_cues():
    plain = is_ad_confidence(text="", ocr_area_share=0.0, brand_mention=None, width=640, height=427)
    banner = is_ad_confidence(text="Apex: SHOP NOW 20% off apex.com", ocr_area_share=0.2, brand_mention=True, width=300, height=250)
    assert plain < 0.1 < 0.9 < banner <= 1.0


class FakeOcr:
    name = "fake"

    def __call__(self, rgb):
        from adlens.features.creative import OcrLine

        box = np.array([[10, 10], [110, 10], [110, 40], [10, 40]], np.float32)
        return [OcrLine("Shop now at Apex", 0.9, box), OcrLine("apex.com", 0.8, box + [0, 50])]


def test_injected_ocr_backend_parallel_and_dedupe():
    fx = fx_no_models(ocr=FakeOcr(), parallel=True)
    row = fx.extract(_grey(), "SHOP NOW at Apex!", advertiser="Apex")
    check_row(row, fx.schema())
    assert row["ocr_backend"] == "fake" and row["ocr_n_lines"] == 2 and row["ocr_n_words"] == 6
    assert row["ocr_text_area_share"] == pytest.approx(2 * 100 * 30 / (300 * 250), rel=0.1)
    assert row["ocr_confidence"] == pytest.approx(0.85)
    # the OCR line already in the copy is not counted twice; the new one is added
    assert row["copy_n_words"] == len("SHOP NOW at Apex apex com".split())
    fx.close()


@pytest.mark.skipif(not __import__("adlens.features.creative", fromlist=["x"]).TesseractBackend.available(),
                    reason="pytesseract or the tesseract binary not installed")
def test_tesseract_reads_large_word():
    from adlens.features.creative import TesseractBackend

    img = Image.new("RGB", (300, 250), (245, 240, 230))
    ImageDraw.Draw(img).text((40, 158), "SHOP NOW", fill=(0, 0, 0), font=ImageFont.load_default(size=48))
    lines = TesseractBackend()(to_rgb_array(img))
    assert "SHOP NOW" in " ".join(ln.text for ln in lines).upper()
