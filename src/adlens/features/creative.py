"""Creative (M) features of one ad: what a viewer sees in the image and reads in its words.

Seed 000's Step 3 computed these with a paid vision API; here each is a small local function
over an RGB image (a PIL image or an ``(H, W, 3)`` uint8 array) and the ad's copy text.
:class:`CreativeFeatures` computes them all and returns one flat dict whose columns are declared
in :meth:`CreativeFeatures.schema` (versioned by ``FEATURE_SCHEMA_VERSION``).

Methods (each function's docstring has the details)
---------------------------------------------------
- **faces** (:func:`detect_faces`): OpenCV Haar cascade ``haarcascade_frontalface_alt2`` (shipped
  in ``cv2.data``) on the histogram-equalised grey image resized to 256 px on its long side;
  faces smaller than 10 % of that side are ignored. ``face_count`` and ``face_area_share``
  (largest face box / image area).
- **face emotion** (:func:`face_emotion`): OpenCV's ``haarcascade_smile`` in the lower half of
  each face box (resized to 96 px wide): ``"smiling"`` if any face smiles, ``"neutral"`` if
  there are faces and none smiles, ``"none"`` without faces.
- **clarity** (:func:`clarity`): ``log1p`` of the variance of the Laplacian of the grey image
  resized to a fixed 256 x 256 (so the value does not depend on the image size). Blur lowers it.
- **clutter** (:func:`clutter`): Canny edge density (edge pixels / pixels; thresholds 50/150)
  on the same 256 x 256 grey image, and the number of connected edge regions (3x3-dilated edge
  map, regions of >= 20 px).
- **contrast** (:func:`rms_contrast`): RMS contrast = standard deviation of luminance in [0, 1].
- **colourfulness** (:func:`colourfulness`): Hasler & Suesstrunk (2003)
  ``sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2)`` with ``rg = R - G``,
  ``yb = (R + G) / 2 - B`` on 0-255 values (0 for grey; ~100+ for saturated collages).
- **OCR** (:class:`RapidOcrBackend` by default, :class:`TesseractBackend` when ``pytesseract``
  and the ``tesseract`` binary are installed): text lines with boxes; ``ocr_n_words``,
  ``ocr_text_area_share`` (union of line boxes / image area) and ``ocr_confidence``.
- **copy quality, concreteness, valence**: :mod:`adlens.features.copy` over the copy text plus
  the OCR lines not already in the copy.
- **is-ad confidence** (:func:`is_ad_confidence`): a documented hand-set logistic score of ad cues.
- **embeddings**: the image (``efficientnet-lite0``, 1280-d) and text (``minilm``, 384-d) embedders
  of :mod:`adlens.embed`, or any :class:`adlens.embed.Embedder` passed in.
- **twist_present / twist_resolves_fast**: only from an optional LLM extractor (see
  :class:`LLMCreativeExtractor`); NaN when none is given -- never a silent zero.

Example::

    >>> from PIL import Image
    >>> fx = CreativeFeatures(ocr=None, image_embedder=None, text_embedder=None, entity_extractor=None)
    >>> row = fx.extract(Image.new("RGB", (300, 250), (128, 128, 128)), "Shop now: 20% off")
    >>> row["face_count"], row["copy_has_cta"], row["colourfulness"]
    (0, True, 0.0)
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from adlens.features.copy import COPY_SCHEMA, copy_features, cta_phrases_in, has_price, words
from adlens.features.schema import FEATURE_SCHEMA_VERSION, NAN, FeatureSpec

__all__ = [
    "CreativeFeatures",
    "FaceResult",
    "LLMCreativeExtractor",
    "OcrBackend",
    "OcrLine",
    "OcrResult",
    "RapidOcrBackend",
    "TesseractBackend",
    "clarity",
    "clutter",
    "colourfulness",
    "creative_schema",
    "detect_faces",
    "face_emotion",
    "get_ocr_backend",
    "is_ad_confidence",
    "rms_contrast",
    "to_rgb_array",
]

log = logging.getLogger(__name__)

WORK_SIZE = 256  # fixed working resolution for size-independent pixel statistics


# ---------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------


def to_rgb_array(image: Any) -> np.ndarray:
    """A PIL image or an ``(H, W)`` / ``(H, W, 3|4)`` uint8 array -> ``(H, W, 3)`` uint8 RGB.

    Raises ``ValueError`` for anything else (wrong dtype, empty, 1-pixel-thin images).
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        if image.mode != "RGB":
            if image.mode in ("RGBA", "LA", "P") and ("A" in image.getbands() or "transparency" in image.info):
                bg = Image.new("RGB", image.size, (255, 255, 255))
                rgba = image.convert("RGBA")
                bg.paste(rgba, mask=rgba.getchannel("A"))
                image = bg
            else:
                image = image.convert("RGB")
        a = np.asarray(image, dtype=np.uint8)
    elif isinstance(image, np.ndarray):
        a = image
        if a.dtype != np.uint8:
            raise ValueError(f"image array must be uint8, got {a.dtype}")
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        elif a.ndim == 3 and a.shape[2] == 4:
            a = a[:, :, :3]
        elif not (a.ndim == 3 and a.shape[2] == 3):
            raise ValueError(f"image array must be (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
    else:
        raise ValueError(f"image must be a PIL image or a uint8 array, got {type(image).__name__}")
    if a.shape[0] < 2 or a.shape[1] < 2:
        raise ValueError(f"image is too small: {a.shape[1]}x{a.shape[0]}")
    return np.ascontiguousarray(a)


@dataclass
class _Prepared:
    rgb: np.ndarray  # (H, W, 3) uint8, original size
    grey: np.ndarray  # (H, W) uint8
    grey_sq: np.ndarray  # (256, 256) uint8, fixed size (aspect not kept)
    rgb_sq: np.ndarray  # (256, 256, 3) uint8


def _prepare(image: Any) -> _Prepared:
    import cv2

    rgb = to_rgb_array(image)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    interp = cv2.INTER_AREA if h * w >= WORK_SIZE * WORK_SIZE else cv2.INTER_LINEAR
    return _Prepared(
        rgb=rgb,
        grey=grey,
        grey_sq=cv2.resize(grey, (WORK_SIZE, WORK_SIZE), interpolation=interp),
        rgb_sq=cv2.resize(rgb, (WORK_SIZE, WORK_SIZE), interpolation=interp),
    )


# ---------------------------------------------------------------------------
# Faces
# ---------------------------------------------------------------------------

_tls = threading.local()  # cv2 cascades are not documented as thread-safe: one per thread


def _cascade(name: str):
    import cv2

    cache = getattr(_tls, "cascades", None)
    if cache is None:
        cache = _tls.cascades = {}
    c = cache.get(name)
    if c is None:
        c = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, name))
        if c.empty():  # pragma: no cover - broken OpenCV install
            raise RuntimeError(f"OpenCV cascade {name} could not be loaded (opencv-python-headless<5 ships it)")
        cache[name] = c
    return c


@dataclass
class FaceResult:
    """Faces found in one image.

    Attributes:
        boxes: ``(n, 4)`` int array of ``x, y, w, h`` in original pixel coordinates.
        count: ``n``.
        largest_area_share: area of the largest box / image area (0.0 without faces).
    """

    boxes: np.ndarray
    count: int
    largest_area_share: float


def detect_faces(
    image: Any,
    *,
    work_size: int = WORK_SIZE,
    scale_factor: float = 1.2,
    min_neighbors: int = 5,
    min_face_frac: float = 0.10,
    cascade: str = "haarcascade_frontalface_alt2.xml",
) -> FaceResult:
    """Frontal faces by OpenCV's Haar cascade.

    The grey image is resized so its long side is ``work_size`` px (speed: ~4x fewer windows
    than at 512 px) and histogram-equalised; windows grow by ``scale_factor``; a face needs
    ``min_neighbors`` overlapping hits and a side of at least ``min_face_frac * work_size``.
    ``alt2`` is used rather than ``default``: measured here it is ~1.5x faster and gave fewer
    spurious boxes on the astronaut photo.

    Args:
        image: PIL image, RGB array, or a grey ``(H, W)`` uint8 array.

    >>> from skimage import data
    >>> detect_faces(data.astronaut()).count
    1
    """
    import cv2

    if isinstance(image, _Prepared):
        grey = image.grey
    else:
        grey = cv2.cvtColor(to_rgb_array(image), cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    s = work_size / max(h, w)
    small = cv2.resize(grey, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) if s < 1 else grey
    if s >= 1:
        s = 1.0
    small = cv2.equalizeHist(small)
    min_side = max(12, int(round(min_face_frac * max(small.shape))))
    boxes = _cascade(cascade).detectMultiScale(small, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_side, min_side))
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / s
    boxes = np.round(boxes).astype(np.int32)
    if len(boxes) == 0:
        return FaceResult(boxes=boxes, count=0, largest_area_share=0.0)
    area = float((boxes[:, 2].astype(np.int64) * boxes[:, 3]).max())
    return FaceResult(boxes=boxes, count=int(len(boxes)), largest_area_share=min(1.0, area / float(h * w)))


def face_emotion(image: Any, faces: FaceResult, *, scale_factor: float = 1.5, min_neighbors: int = 15) -> str:
    """``"smiling"`` / ``"neutral"`` / ``"none"`` from OpenCV's smile cascade.

    The lower half of each face box is cut from the equalised grey image, resized to 96 px wide
    (so the cascade's parameters do not depend on face size), and searched with
    ``haarcascade_smile.xml``. Any hit -> ``"smiling"``; faces but no hit -> ``"neutral"``;
    no faces -> ``"none"``. Smile cascades are weak detectors: treat this as a coarse cue.
    """
    import cv2

    if faces.count == 0:
        return "none"
    grey = image.grey if isinstance(image, _Prepared) else cv2.cvtColor(to_rgb_array(image), cv2.COLOR_RGB2GRAY)
    smile = _cascade("haarcascade_smile.xml")
    for x, y, w, h in faces.boxes:
        roi = grey[y + h // 2 : y + h, x : x + w]
        if roi.size == 0 or roi.shape[0] < 4 or roi.shape[1] < 4:
            continue
        roi = cv2.equalizeHist(cv2.resize(roi, (96, max(8, round(96 * roi.shape[0] / roi.shape[1]))), interpolation=cv2.INTER_AREA))
        hits = smile.detectMultiScale(roi, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(24, 10))
        if len(hits):
            return "smiling"
    return "neutral"


# ---------------------------------------------------------------------------
# Pixel statistics
# ---------------------------------------------------------------------------


def _grey_sq(image: Any) -> np.ndarray:
    return image.grey_sq if isinstance(image, _Prepared) else _prepare(image).grey_sq


def clarity(image: Any) -> float:
    """Sharpness: ``log1p(var(Laplacian))`` of the grey image resized to 256 x 256.

    Fixed-size resizing makes a 300x250 banner and its 2x rendering comparable. 0 for a flat
    image; ~5-8 for sharp photos; a Gaussian blur lowers it.
    """
    import cv2

    lap = cv2.Laplacian(_grey_sq(image), cv2.CV_64F, ksize=3)
    return float(math.log1p(lap.var()))


def clutter(image: Any, *, low: int = 50, high: int = 150, min_region_px: int = 20) -> tuple[float, int]:
    """``(edge density, edge regions)`` on the 256 x 256 grey image.

    Edge density: share of pixels Canny (``low``/``high`` thresholds) marks as edges -- 0 for a
    flat image, ~0.05-0.15 for photos, higher for busy collages. Edge regions: connected
    components (8-connectivity) of the 3x3-dilated edge map with >= ``min_region_px`` pixels,
    a proxy for the number of separate things drawn.
    """
    import cv2

    edges = cv2.Canny(_grey_sq(image), low, high)
    density = float(np.count_nonzero(edges)) / edges.size
    if density == 0.0:
        return 0.0, 0
    dil = cv2.dilate(edges, np.ones((3, 3), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(dil, connectivity=8)
    regions = int(np.count_nonzero(stats[1:, cv2.CC_STAT_AREA] >= min_region_px))
    return density, regions


def rms_contrast(image: Any) -> float:
    """RMS contrast: standard deviation of luminance scaled to [0, 1] (0 for a flat image, max 0.5)."""
    g = _grey_sq(image).astype(np.float32) / 255.0
    return float(g.std())


def colourfulness(image: Any) -> float:
    """Hasler & Suesstrunk (2003) colourfulness on the 256 x 256 RGB image (0 for greys)."""
    a = image.rgb_sq if isinstance(image, _Prepared) else _prepare(image).rgb_sq
    r, g, b = (a[:, :, i].astype(np.float32) for i in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.sqrt(rg.var() + yb.var()) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


# ---------------------------------------------------------------------------
# OCR
# ---------------------------------------------------------------------------


@dataclass
class OcrLine:
    """One recognised text line: its text, confidence in [0, 1] and quadrilateral ``(4, 2)`` box (x, y)."""

    text: str
    score: float
    box: np.ndarray


@dataclass
class OcrResult:
    """All lines read from one image, in reading order."""

    lines: list[OcrLine] = field(default_factory=list)
    backend: str = "none"

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def area_share(self, height: int, width: int) -> float:
        """Union of the line boxes / image area (overlaps counted once)."""
        if not self.lines:
            return 0.0
        import cv2

        # Rasterise at <= 256 px on the long side: exact enough, and constant cost.
        s = min(1.0, 256.0 / max(height, width))
        mh, mw = max(1, round(height * s)), max(1, round(width * s))
        mask = np.zeros((mh, mw), np.uint8)
        polys = [np.round(np.asarray(line.box, np.float64) * s).astype(np.int32) for line in self.lines]
        cv2.fillPoly(mask, polys, 1)
        return float(mask.mean())


@runtime_checkable
class OcrBackend(Protocol):
    """Anything that reads text lines from an RGB uint8 array."""

    name: str

    def __call__(self, rgb: np.ndarray) -> list[OcrLine]: ...


class RapidOcrBackend:
    """RapidOCR (PP-OCRv4 detection + recognition ONNX models shipped in ``rapidocr-onnxruntime``).

    Tuned for banners (measured on a 300x250 banner here): detection runs at the image's own size
    (capped at ``max_side`` on the long side) instead of RapidOCR's default upscaling of the short
    side to 736 px (~4x less work), the 180-degree angle classifier is off (ad text is upright),
    and lines are recognised one at a time (batching pads every line to the widest one, which
    made recognition ~1.5x slower). Recognition cost grows with the amount of text, so at most
    ``max_lines`` lines -- the largest boxes, i.e. the text a viewer reads first -- are recognised,
    and boxes less than ``min_box_height`` px high (unreadable fine print) are skipped.

    Args:
        max_side: long side (px) the image is reduced to before detection.
        min_score: recognition confidence below which a line is dropped.
        max_lines: lines recognised per image (largest first).
        min_box_height: boxes lower than this (px, in the original image) are skipped.
        num_threads: ONNX Runtime threads per model (default 1: OCR then runs beside the other
            features on the second core; measured faster than 2 threads on a busy 2-core box).
    """

    name = "rapidocr"

    def __init__(self, *, max_side: int = 960, min_score: float = 0.5, max_lines: int = 12,
                 min_box_height: int = 6, num_threads: int = 1):
        self.max_side = int(max_side)
        self.min_score = float(min_score)
        self.max_lines = int(max_lines)
        self.min_box_height = int(min_box_height)
        self.num_threads = int(num_threads)
        self._engine = None
        self._lock = threading.Lock()

    @staticmethod
    def available() -> bool:
        import importlib.util

        return importlib.util.find_spec("rapidocr_onnxruntime") is not None

    def _load(self):
        with self._lock:
            if self._engine is None:
                try:
                    from rapidocr_onnxruntime import RapidOCR
                except ImportError as e:  # installed --no-deps without its helpers
                    raise ImportError(f"RapidOCR could not be imported ({e}); it needs pyclipper, shapely, six, "
                                      "PyYAML and opencv-python-headless") from e

                self._engine = RapidOCR(
                    det_limit_type="max", use_cls=False, rec_batch_num=1, text_score=self.min_score,
                    intra_op_num_threads=self.num_threads, inter_op_num_threads=1,
                )
        return self._engine

    def __call__(self, rgb: np.ndarray) -> list[OcrLine]:
        import cv2

        eng = self._engine or self._load()
        raw_h, raw_w = rgb.shape[:2]
        s = min(1.0, self.max_side / max(raw_h, raw_w))
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if s < 1.0:
            bgr = cv2.resize(bgr, (round(raw_w * s), round(raw_h * s)), interpolation=cv2.INTER_AREA)
        if not hasattr(eng, "maybe_add_letterbox"):  # pragma: no cover - another RapidOCR version
            res, _ = eng(bgr)
            return [OcrLine(str(t).strip(), float(sc), np.asarray(b, np.float32) / s)
                    for b, t, sc, *_ in (res or []) if str(t).strip()][: self.max_lines]
        # The steps of RapidOCR.__call__ (v1.4), with a cap on the lines recognised.
        img, ratio_h, ratio_w = eng.preprocess(bgr)
        op_record = {"preprocess": {"ratio_h": ratio_h, "ratio_w": ratio_w}}
        img, op_record = eng.maybe_add_letterbox(img, op_record)
        boxes, _ = eng.text_det(img)
        if boxes is None or len(boxes) == 0:
            return []
        boxes = np.asarray(boxes, dtype=np.float32)
        heights = np.linalg.norm(boxes[:, 3] - boxes[:, 0], axis=1) / s
        widths = np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1) / s
        keep = np.flatnonzero(heights >= self.min_box_height)
        keep = keep[np.argsort(-(heights * widths)[keep], kind="stable")[: self.max_lines]]
        if len(keep) == 0:
            return []
        boxes = np.asarray(eng.sorted_boxes(boxes[np.sort(keep)]), dtype=np.float32)
        crops = eng.get_crop_img_list(img, boxes)
        rec, _ = eng.text_rec(crops)
        pts = eng._get_origin_points(list(boxes), op_record, *bgr.shape[:2]) / s
        out = []
        for (text, score, *_), box in zip(rec, pts):
            text = str(text).strip()
            if text and float(score) >= self.min_score:
                out.append(OcrLine(text=text, score=float(score), box=box.astype(np.float32)))
        return out


class TesseractBackend:
    """Tesseract through ``pytesseract`` (needs the ``tesseract`` binary; ``OMP_THREAD_LIMIT=1``).

    Words with confidence >= ``min_conf`` (0-100) are grouped into lines by Tesseract's own
    (block, paragraph, line) numbers; a line's box is the union of its words' boxes. The image
    is upscaled to >= ``min_side`` px on its short side first (Tesseract reads small text badly).
    """

    name = "tesseract"

    def __init__(self, *, lang: str = "eng", min_conf: float = 60.0, psm: int = 11, min_side: int = 500):
        self.lang = lang
        self.min_conf = float(min_conf)
        self.psm = int(psm)
        self.min_side = int(min_side)

    @staticmethod
    def available() -> bool:
        import importlib.util
        import shutil

        return importlib.util.find_spec("pytesseract") is not None and shutil.which("tesseract") is not None

    def __call__(self, rgb: np.ndarray) -> list[OcrLine]:
        import cv2
        import pytesseract

        os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # Tesseract's OpenMP threads fight on 2 cores
        h, w = rgb.shape[:2]
        s = max(1.0, self.min_side / min(h, w))
        img = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC) if s > 1 else rgb
        d = pytesseract.image_to_data(img, lang=self.lang, config=f"--psm {self.psm}", output_type=pytesseract.Output.DICT)
        groups: dict[tuple, list[int]] = {}
        for i, t in enumerate(d["text"]):
            if t and t.strip() and float(d["conf"][i]) >= self.min_conf:
                groups.setdefault((d["block_num"][i], d["par_num"][i], d["line_num"][i]), []).append(i)
        out = []
        for key in sorted(groups, key=lambda k: (min(d["top"][i] for i in groups[k]), min(d["left"][i] for i in groups[k]))):
            idx = groups[key]
            x0 = min(d["left"][i] for i in idx) / s
            y0 = min(d["top"][i] for i in idx) / s
            x1 = max(d["left"][i] + d["width"][i] for i in idx) / s
            y1 = max(d["top"][i] + d["height"][i] for i in idx) / s
            box = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)
            out.append(OcrLine(" ".join(d["text"][i].strip() for i in idx), float(np.mean([float(d["conf"][i]) for i in idx])) / 100.0, box))
        return out


def get_ocr_backend(name: str | None = "auto", **kwargs) -> OcrBackend | None:
    """``"rapidocr"``, ``"tesseract"``, ``"auto"`` (RapidOCR if installed, else Tesseract if
    installed, else None) or None (no OCR: the OCR columns are null)."""
    if name is None or name == "none":
        return None
    if name == "auto":
        if RapidOcrBackend.available():
            return RapidOcrBackend(**kwargs)
        if TesseractBackend.available():
            return TesseractBackend(**kwargs)
        log.warning("no OCR backend installed (rapidocr-onnxruntime or pytesseract+tesseract); OCR features will be null")
        return None
    if name == "rapidocr":
        return RapidOcrBackend(**kwargs)
    if name == "tesseract":
        return TesseractBackend(**kwargs)
    raise ValueError(f"unknown OCR backend {name!r}; use 'auto', 'rapidocr', 'tesseract' or None")


# ---------------------------------------------------------------------------
# Is-ad confidence
# ---------------------------------------------------------------------------

#: Standard ad sizes (IAB fixed sizes and common social formats), as width/height ratios.
STANDARD_AD_SIZES: tuple[tuple[int, int], ...] = (
    (300, 250), (336, 280), (728, 90), (970, 90), (970, 250), (160, 600), (300, 600), (120, 600),
    (320, 50), (320, 100), (468, 60), (250, 250), (200, 200), (1200, 628), (1080, 1350), (1080, 1920),
)
_URL_RE = re.compile(r"(?:https?://|www\.)\S+|\b[\w-]+\.(?:com|net|org|io|co|shop|store|app)\b|@\w{2,}", re.IGNORECASE)

#: The hand-set logistic weights of :func:`is_ad_confidence` (not learned; documented defaults).
IS_AD_WEIGHTS: Mapping[str, float] = {
    "bias": -2.5,
    "text_present": 1.0,  # any word in the image or copy
    "cta": 1.5,  # a call-to-action phrase
    "price": 1.0,  # a price / discount
    "brand": 0.7,  # the advertiser's name
    "url": 0.5,  # a web address or @handle
    "text_layout": 0.5,  # OCR text covers 1-60 % of the image (a banner, not a document or a photo)
    "standard_size": 0.7,  # the image has the shape of a standard ad size (within 2 %)
}


def is_ad_confidence(
    *,
    text: str,
    ocr_area_share: float | None,
    brand_mention: bool | None,
    width: int,
    height: int,
    weights: Mapping[str, float] = IS_AD_WEIGHTS,
) -> float:
    """How much the creative looks like an ad, in [0, 1]: ``sigmoid(bias + sum(weight * cue))``.

    A documented heuristic, not a trained classifier: cues are the binary signals in
    :data:`IS_AD_WEIGHTS`. A plain photo with no words scores 0.08; a 300x250 banner with
    text, a CTA, a price and the brand covering 1-60 % of it scores 0.95 (0.97 with a URL).
    The seed ranks ``is_ad`` third in importance, so a learned replacement (fit on labelled
    creatives) should keep this signature.
    """
    ar = width / max(1, height)
    std = any(abs(ar - w / h) / (w / h) <= 0.02 for w, h in STANDARD_AD_SIZES)
    share = ocr_area_share if ocr_area_share is not None and not math.isnan(ocr_area_share) else 0.0
    cues = {
        "text_present": bool(words(text)),
        "cta": bool(cta_phrases_in(text)),
        "price": has_price(text),
        "brand": bool(brand_mention),
        "url": bool(_URL_RE.search(text or "")),
        "text_layout": 0.01 <= share <= 0.60,
        "standard_size": std,
    }
    z = weights["bias"] + sum(weights[k] for k, v in cues.items() if v)
    return float(1.0 / (1.0 + math.exp(-z)))


# ---------------------------------------------------------------------------
# LLM hook
# ---------------------------------------------------------------------------


@runtime_checkable
class LLMCreativeExtractor(Protocol):
    """The optional LLM extractor for the features no local model can judge.

    Called as ``extractor(image, text)`` with the PIL image and the ad's words (copy + OCR);
    returns a mapping with ``twist_present`` and ``twist_resolves_fast``, each a bool or a
    probability in [0, 1] (None when the model declines). ``model_id`` names model + prompt
    version (recorded in ``llm_model_id``). An implementation over an OpenAI-compatible API
    (with caching and a budget) lives with the LLM teacher; any callable of this shape works.
    """

    model_id: str

    def __call__(self, image: Any, text: str) -> Mapping[str, Any]: ...


LLM_FEATURES = ("twist_present", "twist_resolves_fast")


def _as_prob(v: Any) -> float:
    if v is None:
        return NAN
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    try:
        f = float(v)
    except (TypeError, ValueError):
        return NAN
    return f if 0.0 <= f <= 1.0 else NAN


# ---------------------------------------------------------------------------
# The extractor
# ---------------------------------------------------------------------------


def creative_schema(image_dim: int = 1280, text_dim: int = 384) -> tuple[FeatureSpec, ...]:
    """The columns of :meth:`CreativeFeatures.extract` (embedding sizes as given)."""
    return (
        FeatureSpec("face_count", "int32", "frontal faces, OpenCV Haar cascade (alt2) at 256 px long side"),
        FeatureSpec("face_area_share", "float32", "largest face box area / image area; 0 without faces"),
        FeatureSpec("face_emotion", "category", "smiling|neutral|none: Haar smile cascade in the lower half of each face"),
        FeatureSpec("clarity", "float32", "log1p(variance of Laplacian) of the 256x256 grey image"),
        FeatureSpec("clutter", "float32", "Canny (50/150) edge density of the 256x256 grey image"),
        FeatureSpec("clutter_regions", "int32", "connected regions of the dilated edge map (>= 20 px)"),
        FeatureSpec("contrast", "float32", "RMS contrast: std of luminance in [0, 1]"),
        FeatureSpec("colourfulness", "float32", "Hasler-Suesstrunk colourfulness (0-255 scale)"),
        FeatureSpec("ocr_backend", "category", "rapidocr|tesseract|none"),
        FeatureSpec("ocr_text", "string", "text lines read from the image, newline-joined; None if no OCR backend", True),
        FeatureSpec("ocr_n_words", "int32", "words read from the image; None if no OCR backend", True),
        FeatureSpec("ocr_n_lines", "int32", "text lines read from the image; None if no OCR backend", True),
        FeatureSpec("ocr_text_area_share", "float32", "union of OCR line boxes / image area; NaN if no OCR backend", True),
        FeatureSpec("ocr_confidence", "float32", "mean OCR line confidence; NaN if no lines or no backend", True),
        *COPY_SCHEMA,
        FeatureSpec("ad_topic", "category", "topic of copy+OCR text (context.TopicClassifier); None without classifier or text", True),
        FeatureSpec("ad_topic_confidence", "float32", "softmax probability of ad_topic; NaN when ad_topic is None", True),
        FeatureSpec("ad_entities", "list[string]", "named entities in copy+OCR text (context.EntityExtractor); None without extractor", True),
        FeatureSpec("is_ad", "float32", "is-ad confidence in [0, 1]: hand-set logistic over ad cues (IS_AD_WEIGHTS)"),
        FeatureSpec("twist_present", "float32", "LLM judgement in [0, 1]; NaN without the optional LLM extractor", True),
        FeatureSpec("twist_resolves_fast", "float32", "LLM judgement in [0, 1]; NaN without the optional LLM extractor", True),
        FeatureSpec("llm_model_id", "string", "model + prompt version of the LLM extractor; None without it", True),
        FeatureSpec("image_embedding", f"vector[{image_dim}]", "image embedder output (unit norm); None without embedder", True),
        FeatureSpec("image_embedding_model", "string", "model_id of the image embedder", True),
        FeatureSpec("text_embedding", f"vector[{text_dim}]", "text embedder output of copy+OCR text; None without embedder or text", True),
        FeatureSpec("text_embedding_model", "string", "model_id of the text embedder", True),
    )


def _dedupe_join(copy_text: str, ocr_lines: Sequence[str]) -> str:
    """Copy text plus the OCR lines it does not already contain (case/space-insensitive)."""
    norm = lambda s: re.sub(r"[\W_]+", "", s.lower())  # noqa: E731
    base = norm(copy_text)
    extra = [t for t in ocr_lines if norm(t) and norm(t) not in base]
    return "\n".join(p for p in [copy_text.strip(), *extra] if p)


def _resolve_embedder(e, num_threads: int | None):
    if isinstance(e, str):
        from adlens.embed import get_embedder

        try:
            return get_embedder(e, num_threads=num_threads)
        except TypeError:  # an embedder without a thread setting
            return get_embedder(e)
    return e


class CreativeFeatures:
    """Computes every creative (M) feature of one ad; see the module docstring for the methods.

    Args:
        ocr: an :class:`OcrBackend`, a backend name (``"auto"``, ``"rapidocr"``, ``"tesseract"``),
            or None for no OCR (OCR columns null).
        image_embedder / text_embedder: :class:`adlens.embed.Embedder` objects or registry names
            (resolved on first use); None leaves the embedding columns None.
        entity_extractor: an :class:`adlens.features.context.EntityExtractor` (or any callable
            ``text -> list[str]``), ``"default"`` for the spaCy one, or None (``ad_entities`` None).
        topic_classifier: an :class:`adlens.features.context.TopicClassifier` (needs the text
            embedder) or None (``ad_topic`` None).
        llm_extractor: optional :class:`LLMCreativeExtractor` for ``twist_*``.
        parallel: run OCR in a worker thread while the pixel features and the image embedding
            are computed (ONNX Runtime and OpenCV release the GIL, so two cores are used). Off by
            default: on a 2-core machine shared with other work it was slower (see benchmarks).
        model_threads: ONNX Runtime threads of embedders given by name (default 1: one creative
            at a time is latency-bound on small inputs, and measured here 1 thread was 2x faster
            than 2 on a busy 2-core machine; run creatives in parallel processes for throughput).
        face_kwargs: overrides for :func:`detect_faces` (e.g. ``scale_factor``).

    After each :meth:`extract`, ``last_timings`` holds wall-clock milliseconds per stage and
    ``last_cpu_timings`` the process CPU milliseconds per stage (meaningful with
    ``parallel=False`` only, since the OCR thread's CPU time would be counted in other stages).
    """

    def __init__(
        self,
        *,
        ocr: OcrBackend | str | None = "auto",
        image_embedder: Any = "efficientnet-lite0",
        text_embedder: Any = "minilm",
        entity_extractor: Any = "default",
        topic_classifier: Any = None,
        llm_extractor: LLMCreativeExtractor | None = None,
        parallel: bool = False,
        model_threads: int | None = 1,
        face_kwargs: Mapping[str, Any] | None = None,
    ):
        self.ocr = get_ocr_backend(ocr) if isinstance(ocr, str) or ocr is None else ocr
        self._image_embedder = image_embedder
        self._text_embedder = text_embedder
        if entity_extractor == "default":
            from adlens.features.context import EntityExtractor

            entity_extractor = EntityExtractor()
        self.entity_extractor = entity_extractor
        self.topic_classifier = topic_classifier
        self.llm_extractor = llm_extractor
        self.parallel = bool(parallel)
        self.model_threads = model_threads
        self.face_kwargs = dict(face_kwargs or {})
        self.last_timings: dict[str, float] = {}
        self.last_cpu_timings: dict[str, float] = {}
        self._pool: ThreadPoolExecutor | None = None

    # -- embedders are resolved lazily so that constructing the extractor is cheap
    @property
    def image_embedder(self):
        if isinstance(self._image_embedder, str):
            self._image_embedder = _resolve_embedder(self._image_embedder, self.model_threads)
        return self._image_embedder

    @property
    def text_embedder(self):
        if isinstance(self._text_embedder, str):
            self._text_embedder = _resolve_embedder(self._text_embedder, self.model_threads)
        return self._text_embedder

    def schema(self) -> tuple[FeatureSpec, ...]:
        """The output columns (embedding sizes from the embedders given; defaults 1280/384)."""
        idim = getattr(self._image_embedder, "dim", 1280) if not isinstance(self._image_embedder, str) else 1280
        tdim = getattr(self._text_embedder, "dim", 384) if not isinstance(self._text_embedder, str) else 384
        return creative_schema(idim, tdim)

    @property
    def schema_version(self) -> str:
        return FEATURE_SCHEMA_VERSION

    def warmup(self) -> CreativeFeatures:
        """Load every model now (first calls otherwise pay the loading time)."""
        from PIL import Image

        img = Image.new("RGB", (300, 250), (200, 200, 200))
        self.extract(img, "Warm up: shop now in Paris")
        return self

    def _run_ocr(self, rgb: np.ndarray) -> tuple[OcrResult, float]:
        t0 = time.perf_counter()
        lines = self.ocr(rgb) if self.ocr is not None else []
        return OcrResult(lines=lines, backend=self.ocr.name if self.ocr is not None else "none"), (time.perf_counter() - t0) * 1e3

    def extract(self, image: Any, copy_text: str = "", advertiser: str | None = None) -> dict[str, Any]:
        """All features of one creative as a flat dict in :meth:`schema` order.

        Args:
            image: PIL image or ``(H, W, 3)`` uint8 RGB array.
            copy_text: the ad's copy (headline, body, CTA label) if known; may be empty.
            advertiser: the advertiser's name (for the brand-mention cue), if known.
        """
        T: dict[str, float] = {}
        C: dict[str, float] = {}

        def timed(name, fn, *a, **kw):
            t0, c0 = time.perf_counter(), time.process_time()
            r = fn(*a, **kw)
            T[name] = (time.perf_counter() - t0) * 1e3
            C[name] = (time.process_time() - c0) * 1e3
            return r

        t_all = time.perf_counter()
        copy_text = copy_text or ""
        pil_image = image
        prep = timed("prepare", _prepare, image)
        h, w = prep.grey.shape

        fut = None
        if self.ocr is not None and self.parallel:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adlens-ocr")
            fut = self._pool.submit(self._run_ocr, prep.rgb)

        faces = timed("faces", detect_faces, prep, **self.face_kwargs)
        emotion = timed("face_emotion", face_emotion, prep, faces)
        clar = timed("clarity", clarity, prep)
        edge_density, regions = timed("clutter", clutter, prep)
        contr = timed("contrast", rms_contrast, prep)
        colour = timed("colourfulness", colourfulness, prep)

        img_vec, img_model = None, None
        if self._image_embedder is not None:
            emb = self.image_embedder
            img_vec = timed("image_embedding", lambda: emb.embed_images([prep.rgb])[0])
            img_model = emb.model_id

        if fut is not None:
            ocr_res, T["ocr"] = fut.result()
        else:
            c0 = time.process_time()
            ocr_res, T["ocr"] = self._run_ocr(prep.rgb)
            C["ocr"] = (time.process_time() - c0) * 1e3

        has_ocr = self.ocr is not None
        text = _dedupe_join(copy_text, [ln.text for ln in ocr_res.lines])
        cf = timed("copy", copy_features, text, advertiser)

        txt_vec, txt_model = None, None
        if self._text_embedder is not None and text.strip():
            temb = self.text_embedder
            txt_vec = timed("text_embedding", lambda: temb.embed_texts([text])[0])
            txt_model = temb.model_id

        topic, topic_p = None, NAN
        if self.topic_classifier is not None and txt_vec is not None:
            t0 = time.perf_counter()
            lab, p = self.topic_classifier.predict_embeddings(txt_vec[None, :], texts=[text])
            topic, topic_p = str(lab[0]), float(p[0])
            T["topic"] = (time.perf_counter() - t0) * 1e3

        ents = None
        if self.entity_extractor is not None:
            ents = timed("entities", _entity_names, self.entity_extractor, text)

        isad = timed("is_ad", is_ad_confidence, text=text, ocr_area_share=ocr_res.area_share(h, w) if has_ocr else None,
                     brand_mention=cf["copy_brand_mention"], width=w, height=h)

        llm = {k: NAN for k in LLM_FEATURES}
        llm_id = None
        if self.llm_extractor is not None:
            t0 = time.perf_counter()
            try:
                out = self.llm_extractor(pil_image, text) or {}
                llm = {k: _as_prob(out.get(k)) for k in LLM_FEATURES}
                llm_id = str(getattr(self.llm_extractor, "model_id", type(self.llm_extractor).__name__))
            except Exception as e:  # one failing call must not lose the other features
                log.warning("LLM extractor failed (%s: %s); twist features left null", type(e).__name__, e)
            T["llm"] = (time.perf_counter() - t0) * 1e3

        ocr_words = len(words(ocr_res.text))
        row = {
            "face_count": faces.count,
            "face_area_share": faces.largest_area_share,
            "face_emotion": emotion,
            "clarity": clar,
            "clutter": edge_density,
            "clutter_regions": regions,
            "contrast": contr,
            "colourfulness": colour,
            "ocr_backend": ocr_res.backend,
            "ocr_text": ocr_res.text if has_ocr else None,
            "ocr_n_words": ocr_words if has_ocr else None,
            "ocr_n_lines": len(ocr_res.lines) if has_ocr else None,
            "ocr_text_area_share": ocr_res.area_share(h, w) if has_ocr else NAN,
            "ocr_confidence": float(np.mean([ln.score for ln in ocr_res.lines])) if ocr_res.lines else NAN,
            **cf,
            "ad_topic": topic,
            "ad_topic_confidence": topic_p,
            "ad_entities": ents,
            "is_ad": isad,
            **llm,
            "llm_model_id": llm_id,
            "image_embedding": img_vec,
            "image_embedding_model": img_model,
            "text_embedding": txt_vec,
            "text_embedding_model": txt_model,
        }
        T["total"] = (time.perf_counter() - t_all) * 1e3
        self.last_timings = T
        self.last_cpu_timings = C
        return row

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


def _entity_names(extractor: Any, text: str) -> list[str]:
    if hasattr(extractor, "entity_names"):
        return list(extractor.entity_names(text))
    return [str(e) for e in extractor(text)]


__all__ += ["IS_AD_WEIGHTS", "STANDARD_AD_SIZES", "LLM_FEATURES"]
