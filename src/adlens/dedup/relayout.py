"""Third dedup stage: re-layouts -- the same product photo re-rendered into another ad size.

Hashes and global embeddings miss re-layouts (a 300x250 banner and its 728x90 version share only
part of one photo, cropped to another aspect), and two products in one template look *more* alike
to them than a re-layout does. What a re-layout keeps is the photo itself, so this stage finds the
photo regions of a banner from its pixels and matches local features (SIFT) between photo regions
only, with the text edges masked out.

Per image (:func:`photo_features`, ~50 ms; ~12 ms without the SIFT step):

1. Shrink so the short side is <= 250 px (an upscaled photo looks smooth at full size).
2. Per pixel, the largest RGB difference to its 4 neighbours: template fills and gradients give
   0-1, text, buttons and outlines give >= 48, photographs mostly 2-47 ("texture").
3. Texture density in a window of 6 % of the short side >= 0.3, then opening and closing (12 %),
   then connected regions covering >= 3 % of the image and >= 60 % of their bounding box: the
   photo boxes (the 2 largest).
4. SIFT (<= 1,500 keypoints at contrast threshold 0.02, contrast-equalised crop, short side >= 256 px, long side <= 640 px) in
   each box, away from strong edges (so no keypoint sits on text drawn over the photo), and an HSV
   colour histogram of the largest box.

Per pair (:func:`relayout_score`, ~5 ms): the most RANSAC inliers of a similarity transform (scale
1/4-4, rotation <= 10 degrees) between the two images' photo boxes. Then the copy: a re-layout
keeps its text, while advertisers reuse one product photo in creatives with other copy. Images
of photo matches are OCR'd (~0.3 s each, only those) and a link needs character-trigram
similarity >= 0.3 (:func:`copy_similarity`). On the sample corpus, which reuses 21 photos over
394 ads, photo matches alone linked 20 pairs of which 4 were re-layouts (OpenCV's default SIFT
settings); with the copy check and the current settings 6 (all re-layouts; the sample has 12, the
others lost their photo to the text-edge mask or have no detectable photo region), 51 s for the
394 images. On the real-photo set it kept 420 of the 421 photo-matched re-layouts (4 runs).

Which pairs (:func:`relayout_pairs`): only images whose aspect ratios differ by > 1.25x (same-size
pairs are the other stages' business, and JPEG noise made some same-size different-product pairs
match), not already grouped, and whose photo colour histograms agree (Hellinger affinity >= 0.5)
-- a cheap pre-filter that kept every re-layout SIFT links while passing 11-14 % of unrelated pairs.

Measured on real photos (``benchmarks/eval_relayout_clothing.py``: real clothing photos and real ad
copy in the sample's templates): >= 12 inliers links 65-77 % of re-layouts (2 seeds, lossless and
JPEG q85) and 0 of 720 different products in the same template (their maximum was 3-10 inliers),
0 of ~1,900 unrelated pairs. Misses are leaderboards and skyscrapers whose visible photo is a thin strip. Limits:
mirrored photos do not match (SIFT is not mirror-invariant); the photos there are low-resolution
(192x256, upscaled), so sharp high-resolution photos are untested; and the stage is quadratic in
the number of images before the histogram filter (fine for a folder of a few thousand images).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

DEFAULT_MIN_INLIERS = 12
DEFAULT_HIST_MIN = 0.5
DEFAULT_ASPECT_RATIO = 1.25
DEFAULT_COPY_MIN = 0.3

_SHORT_SIDE = 250
_FLAT_TOL = 1
_STRONG = 48
_MASK_STRONG = 48  # keypoints stay this far from edges of at least this contrast (text)
_DENSITY = 0.3
_MIN_AREA = 0.03
_MIN_FILL = 0.6
_MAX_BOXES = 2
# SIFT on these small, often upscaled photo crops: a lower contrast threshold (0.02, OpenCV's default
# 0.04) and up to 1,500 keypoints linked 9-15 points more re-layouts on 4 seeds of the real-photo eval
# with no higher hard-negative scores; pairs cost ~4x (BENCHMARKS.md, session 9).
_SIFT_FEATURES = 1500
_SIFT_SHORT = 256  # photo crops are upscaled to at least this short side for SIFT
_SIFT_CONTRAST = 0.02
#: bump when anything that changes features or scores changes: incremental runs then rescore all
FEATURES_VERSION = 2

_tls = threading.local()  # SIFT / CLAHE / matcher objects are not shared between threads


def _cv():
    import cv2

    if not hasattr(_tls, "sift"):
        _tls.sift = cv2.SIFT_create(nfeatures=_SIFT_FEATURES, contrastThreshold=_SIFT_CONTRAST)
        _tls.clahe = cv2.createCLAHE(2.0, (4, 4))
        _tls.matcher = cv2.BFMatcher(cv2.NORM_L2)
    return cv2, _tls


@dataclass
class PhotoFeatures:
    """What the stage keeps of one image: its aspect, photo boxes ``(x0, y0, x1, y1)``, the HSV
    histogram of the largest box (None without a box) and per box ``(points (n, 2), descriptors)``."""

    aspect: float
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    hist: np.ndarray | None = None
    feats: list[tuple[np.ndarray, np.ndarray | None]] = field(default_factory=list)


def _neighbour_diff(rgb: np.ndarray) -> np.ndarray:
    a = rgb.astype(np.int16)
    d = np.zeros(a.shape[:2], np.int16)
    dx = np.abs(np.diff(a, axis=1)).max(2)
    dy = np.abs(np.diff(a, axis=0)).max(2)
    d[:, 1:] = np.maximum(d[:, 1:], dx)
    d[:, :-1] = np.maximum(d[:, :-1], dx)
    d[1:, :] = np.maximum(d[1:, :], dy)
    d[:-1, :] = np.maximum(d[:-1, :], dy)
    return d


def photo_regions(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Photo boxes ``(x0, y0, x1, y1)`` of an ``(H, W, 3)`` uint8 image, largest first."""
    return _regions(rgb, *_detection_diff(rgb))


def _detection_diff(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    cv2, _ = _cv()
    h, w = rgb.shape[:2]
    s = min(1.0, _SHORT_SIDE / min(h, w))
    if s < 1:
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return _neighbour_diff(rgb), s


def _regions(rgb: np.ndarray, d: np.ndarray, s: float) -> list[tuple[int, int, int, int]]:
    cv2, _ = _cv()
    H, W = rgb.shape[:2]
    h, w = d.shape
    texture = ((d > _FLAT_TOL) & (d < _STRONG)).astype(np.float32)
    k = max(5, round(min(h, w) * 0.06)) | 1
    cand = (cv2.blur(texture, (k, k)) >= _DENSITY).astype(np.uint8)
    o = max(5, round(min(h, w) * 0.12)) | 1
    se = np.ones((o, o), np.uint8)
    cand = cv2.morphologyEx(cv2.morphologyEx(cand, cv2.MORPH_OPEN, se), cv2.MORPH_CLOSE, se)
    n, _, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=4)
    found = []
    for i in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        if area < _MIN_AREA * h * w or area < _MIN_FILL * bw * bh:
            continue
        box = (int(x / s), int(y / s), int(min(W, round((x + bw) / s))), int(min(H, round((y + bh) / s))))
        found.append((area, box))
    found.sort(key=lambda t: -t[0])
    return [b for _, b in found]


def photo_features(rgb: np.ndarray, descriptors: bool = True) -> PhotoFeatures:
    """Photo boxes, colour histogram and masked SIFT features of an ``(H, W, 3)`` uint8 RGB image.
    ``descriptors=False`` stops before SIFT (~1/8 of the cost): enough for :func:`candidate_pairs`,
    and :func:`relayout_pairs` asks for the full features of candidates only."""
    cv2, tls = _cv()
    rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3], dtype=np.uint8)
    if rgb.ndim != 3 or min(rgb.shape[:2]) < 2:
        raise ValueError(f"expected an (H, W, 3) image of at least 2x2 pixels, got shape {rgb.shape}")
    H, W = rgb.shape[:2]
    d, s = _detection_diff(rgb)
    boxes = _regions(rgb, d, s)[:_MAX_BOXES]
    out = PhotoFeatures(aspect=W / H, boxes=boxes)
    if not boxes:
        return out
    # keypoints only away from strong edges: text drawn over a photo would otherwise match
    k = 2 * max(2, round(min(d.shape) * 0.03)) + 1
    strong = cv2.dilate((d >= _MASK_STRONG).astype(np.uint8), np.ones((k, k), np.uint8))
    mask = np.where(strong > 0, 0, 255).astype(np.uint8)
    if s < 1:
        mask = cv2.resize(mask, (W, H), interpolation=cv2.INTER_NEAREST)
    x0, y0, x1, y1 = boxes[0]
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
    out.hist = np.sqrt(hist / max(float(hist.sum()), 1.0)).astype(np.float32)  # Hellinger: a . b = affinity
    if not descriptors:
        return out
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    for x0, y0, x1, y1 in boxes:
        g, m = gray[y0:y1, x0:x1], mask[y0:y1, x0:x1]
        h, w = g.shape
        f = _SIFT_SHORT / min(h, w) if min(h, w) < _SIFT_SHORT else 1.0  # tiny leaderboard photos are upscaled
        if max(h, w) * f > 640:
            f = 640 / max(h, w)
        if f != 1.0:
            size = (max(1, round(w * f)), max(1, round(h * f)))
            g = cv2.resize(g, size, interpolation=cv2.INTER_CUBIC if f > 1 else cv2.INTER_AREA)
            m = cv2.resize(np.ascontiguousarray(m), size, interpolation=cv2.INTER_NEAREST)
        kp, des = tls.sift.detectAndCompute(tls.clahe.apply(np.ascontiguousarray(g)), np.ascontiguousarray(m))
        out.feats.append((np.array([p.pt for p in kp], np.float32).reshape(-1, 2), des))
    return out


def similarity_inliers(fa, fb, matcher=None, reproj: float = 5.0, max_scale: float = 4.0) -> int:
    """RANSAC inliers of a similarity transform (scale 1/max_scale..max_scale, rotation <= 10
    degrees) fitted to ratio-test matches between ``(points, descriptors)`` ``fa`` and ``fb``;
    0 when it fails. ``matcher`` defaults to this thread's L2 (SIFT) brute-force matcher."""
    cv2, tls = _cv()
    (pa, da), (pb, db) = fa, fb
    if da is None or db is None or len(da) < 3 or len(db) < 3:
        return 0
    good = [m[0] for m in (matcher or tls.matcher).knnMatch(da, db, k=2)
            if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    if len(good) < 4:
        return 0
    M, inl = cv2.estimateAffinePartial2D(pa[[g.queryIdx for g in good]], pb[[g.trainIdx for g in good]],
                                         method=cv2.RANSAC, ransacReprojThreshold=reproj)
    if M is None:
        return 0
    scale = float(np.hypot(M[0, 0], M[0, 1]))
    rotation = abs(float(np.degrees(np.arctan2(M[1, 0], M[0, 0]))))
    return int(inl.sum()) if 1 / max_scale <= scale <= max_scale and rotation <= 10 else 0


def relayout_score(a: PhotoFeatures, b: PhotoFeatures) -> int:
    """RANSAC inliers of the best-matching pair of photo boxes (0 when either has none)."""
    return max((similarity_inliers(fa, fb) for fa in a.feats for fb in b.feats), default=0)


def candidate_pairs(features: Sequence[PhotoFeatures], labels: np.ndarray | None = None, *,
                    hist_min: float = DEFAULT_HIST_MIN, aspect_ratio: float = DEFAULT_ASPECT_RATIO,
                    new: np.ndarray | None = None) -> np.ndarray:
    """Pairs ``(i, j)``, i < j, worth a SIFT match: both have a photo box, aspects differ by more
    than ``aspect_ratio``, different ``labels`` (groups found by earlier stages), histogram
    affinity >= ``hist_min``, and with ``new`` (bool per image) at least one of the two new.
    Blocks of rows keep memory at O(n * block)."""
    has = np.array([f.hist is not None for f in features], bool)
    idx = np.flatnonzero(has)
    if len(idx) < 2:
        return np.zeros((0, 2), np.int64)
    H = np.stack([features[i].hist for i in idx])
    la = np.log(np.array([features[i].aspect for i in idx]))
    lab = None if labels is None else np.asarray(labels)[idx]
    fresh = None if new is None else np.asarray(new, bool)[idx]
    out = []
    for s in range(0, len(idx), 1024):
        A = H[s:s + 1024] @ H.T
        ok = (A >= hist_min) & (np.abs(la[s:s + 1024, None] - la[None, :]) > np.log(aspect_ratio))
        ok &= np.arange(s, s + len(A))[:, None] < np.arange(len(idx))[None, :]
        if lab is not None:
            ok &= lab[s:s + 1024, None] != lab[None, :]
        if fresh is not None:
            ok &= fresh[s:s + 1024, None] | fresh[None, :]
        r, c = np.nonzero(ok)
        out.append(np.column_stack([idx[r + s], idx[c]]))
    return np.concatenate(out).astype(np.int64)


def _trigrams(text: str) -> set[str]:
    t = "".join(ch for ch in text.lower() if ch.isalnum())  # OCR drops and adds spaces freely
    return {t[i:i + 3] for i in range(len(t) - 2)}


def ocr_reader() -> Callable[[np.ndarray], str]:
    """The OCR the copy check uses (RapidOCR, else Tesseract): RGB array -> its text, lines joined.
    Raises RuntimeError naming what to install when there is none."""
    from adlens.features.creative import get_ocr_backend

    backend = get_ocr_backend("auto")
    if backend is None:
        raise RuntimeError("the re-layout stage needs OCR to compare copy: install rapidocr-onnxruntime "
                           "(as `make install` does) or pytesseract with tesseract")
    def read(rgb: np.ndarray) -> str:
        return " ".join(line.text for line in backend(rgb))

    read.backend = type(backend).__name__  # another OCR reads other text: part of an incremental run's settings
    return read


def copy_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the character trigrams of two OCR'd texts (letters and digits only);
    1.0 when neither has any text (a photo-only banner), 0.0 when only one has."""
    ta, tb = _trigrams(a), _trigrams(b)
    if not ta and not tb:
        return 1.0
    return len(ta & tb) / len(ta | tb)


def relayout_pairs(features: Sequence[PhotoFeatures], labels: np.ndarray | None = None, *,
                   text: Callable[[int], str | None] | None = None, min_inliers: int = DEFAULT_MIN_INLIERS,
                   copy_min: float = DEFAULT_COPY_MIN, hist_min: float = DEFAULT_HIST_MIN,
                   aspect_ratio: float = DEFAULT_ASPECT_RATIO, workers: int = 2,
                   progress: Callable[[int, int], None] | None = None, new: np.ndarray | None = None,
                   describe: Callable[[int], PhotoFeatures] | None = None) -> np.ndarray:
    """Re-layout links ``(i, j, inliers)`` with ``inliers >= min_inliers`` among candidate pairs;
    with ``text`` (image index -> its OCR'd copy, or None when unreadable; asked only for images of
    photo matches) also ``copy_similarity >= copy_min``; with ``labels`` (groups of earlier stages) only the strongest
    link between two groups.

    Incremental use: ``new`` (bool per image) scores only pairs with a new image (pairs of old ones
    were scored by an earlier run with the same settings); ``describe`` (image index -> full
    features) is called once for each image of a candidate pair whose ``features`` were computed
    with ``descriptors=False``."""
    cand = candidate_pairs(features, labels, hist_min=hist_min, aspect_ratio=aspect_ratio, new=new)
    scores = np.zeros(len(cand), np.int64)
    full: dict[int, PhotoFeatures] = {}
    if describe is not None:
        need = [int(i) for i in np.unique(cand) if features[i].boxes and not features[i].feats]
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # OpenCV drops the GIL
            full.update(zip(need, pool.map(describe, need)))

    def feats(i) -> PhotoFeatures:
        return full.get(int(i)) or features[i]

    def score(chunk: range) -> None:
        for t in chunk:
            scores[t] = relayout_score(feats(cand[t, 0]), feats(cand[t, 1]))

    chunks = [range(s, min(s + 256, len(cand))) for s in range(0, len(cand), 256)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # OpenCV drops the GIL
        for done, _ in enumerate(pool.map(score, chunks), 1):
            if progress:
                progress(min(done * 256, len(cand)), len(cand))
    keep = scores >= min_inliers
    if not keep.any():
        return np.zeros((0, 3), np.int64)
    links = np.column_stack([cand[keep], scores[keep]]).astype(np.int64)
    if text is not None:  # same photo is not enough: a re-layout also keeps its copy
        cache: dict[int, str | None] = {}

        def copy_of(i: int) -> str | None:
            if i not in cache:
                cache[i] = text(i)
            return cache[i]

        def same_copy(i: int, j: int) -> bool:  # None = the copy could not be read: no link
            a, b = copy_of(i), copy_of(j)
            return a is not None and b is not None and copy_similarity(a, b) >= copy_min

        links = links[[same_copy(int(i), int(j)) for i, j, _ in links]]
        if not len(links):
            return np.zeros((0, 3), np.int64)
    if labels is None:
        return links
    # one link per pair of existing groups (the strongest): the rest says the same thing again
    lab = np.asarray(labels)
    links = links[np.argsort(-links[:, 2], kind="stable")]
    a, b = lab[links[:, 0]], lab[links[:, 1]]
    _, first = np.unique(np.column_stack([np.minimum(a, b), np.maximum(a, b)]), axis=0, return_index=True)
    return links[np.sort(first)]
