"""Re-layout matching prototype: is banner B the same product photo as banner A, re-rendered
into another ad size?  Pixel-only (numpy + OpenCV), no knowledge of the renderer's layout.

Algorithm (per image, ``photo_features``):

1. Detection scale: resize so the short side is <= ``SHORT_SIDE`` (250) px (INTER_AREA; banners
   with a short side <= 250 px are left alone). This puts in-banner photos near their native
   resolution (an upscaled photo is too smooth at full size to look "textured").
2. Per pixel ``d`` = max |RGB difference| to the 4 neighbours.
   - template graphics (flat fills, smooth gradients) have d in {0, 1};
   - text / button outlines / decorations have strong edges (d >= ``STRONG`` = 48);
   - photographs are dominated by weak gradients (2 <= d < 48).
   On the clothing benchmark: photo pixels 83 % weak, template pixels 3 % weak.
   texture = (d > ``FLAT_TOL``) & (d < ``STRONG``).
3. Density of ``texture`` in a k x k box (k = 6 % of the short side, odd, >= 5);
   photo candidate = density >= ``DENSITY`` (0.3).
4. Morphological opening then closing with a square of 12 % of the short side (removes text
   lines and thin strokes, fills holes), 4-connected components; keep components covering
   >= 3 % of the image and >= 60 % of their bounding box. Boxes = bounding boxes, largest first
   (at most ``MAX_BOXES`` = 2).
5. Keypoint mask: pixels NOT within ~3 % of the short side of a strong edge (d >= 48): this
   keeps keypoints off text that full-bleed layouts draw over the photo.
6. Per box: grey crop, rescaled so the short side is >= 256 px and the long side <= 640 px
   (tiny leaderboard photos are upscaled; bicubic), CLAHE (clip 2, 4x4 tiles: layouts differ in
   lighting falloff / tone), SIFT (<= 800 keypoints) restricted to the mask.

Pair score (``relayout_score``): max over box pairs of the RANSAC inlier count of a similarity
transform (``cv2.estimateAffinePartial2D``, reprojection 5 px) fitted to ratio-test (0.8) SIFT
matches; 0 unless scale in [1/4, 4] and rotation <= 10 degrees. Link when score >= 8.

Candidate pairs (``candidate_pairs``): only pairs whose aspect ratios differ by more than 1.25x
(same-size pairs are not re-layouts, and the hash/embedding stages own them).

Status: a research prototype used by ``eval_relayout_clothing.py`` (signal "photo-region SIFT"),
not part of the dedup cascade yet: it costs ~55 ms an image and ~2 ms a pair, so a cascade stage
needs a cheap pre-filter of candidate pairs first (see BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SHORT_SIDE = 250
FLAT_TOL = 1
STRONG = 48
DENSITY = 0.3
MIN_AREA = 0.03
MIN_FILL = 0.6
MAX_BOXES = 2
LINK_THRESHOLD = 8
ASPECT_RATIO_MIN = 1.25


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


PRE_MEDIAN = 0  # 3: 3x3 median before the pixel differences (lossy-compressed banners)


def _detection_scale(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    H, W = rgb.shape[:2]
    s = min(1.0, SHORT_SIDE / min(H, W))
    if s < 1:
        rgb = cv2.resize(rgb, (max(1, round(W * s)), max(1, round(H * s))), interpolation=cv2.INTER_AREA)
    if PRE_MEDIAN:
        rgb = cv2.medianBlur(np.ascontiguousarray(rgb), PRE_MEDIAN)
    return rgb, s


def photo_regions(rgb: np.ndarray, d: np.ndarray | None = None, s: float | None = None) -> list[tuple[int, int, int, int]]:
    """Photo rectangles (x0, y0, x1, y1) in ``rgb`` pixel coordinates, largest first."""
    H, W = rgb.shape[:2]
    if d is None:
        small, s = _detection_scale(rgb)
        d = _neighbour_diff(small)
    h, w = d.shape
    texture = ((d > FLAT_TOL) & (d < STRONG)).astype(np.float32)
    k = max(5, round(min(h, w) * 0.06)) | 1
    cand = (cv2.blur(texture, (k, k)) >= DENSITY).astype(np.uint8)
    o = max(5, round(min(h, w) * 0.12)) | 1
    se = np.ones((o, o), np.uint8)
    cand = cv2.morphologyEx(cv2.morphologyEx(cand, cv2.MORPH_OPEN, se), cv2.MORPH_CLOSE, se)
    n, _, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=4)
    out = []
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if area < MIN_AREA * h * w or area < MIN_FILL * bw * bh:
            continue
        box = (int(x / s), int(y / s), int(min(W, round((x + bw) / s))), int(min(H, round((y + bh) / s))))
        out.append((int(area), box))
    out.sort(reverse=True)
    return [b for _, b in out]


def _keypoint_mask(d: np.ndarray, s: float, shape: tuple[int, int]) -> np.ndarray:
    k = 2 * max(2, round(min(d.shape) * 0.03)) + 1
    strong = cv2.dilate((d >= STRONG).astype(np.uint8), np.ones((k, k), np.uint8))
    m = np.where(strong > 0, 0, 255).astype(np.uint8)
    return cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) if s < 1 else m


@dataclass
class PhotoFeatures:
    aspect: float
    boxes: list
    feats: list  # per box: (points (n, 2) float32, descriptors (n, 128) float32 or None)


_SIFT = None
_CLAHE = None


def photo_features(rgb: np.ndarray) -> PhotoFeatures:
    """Detect photo regions and compute masked SIFT features in each (``rgb``: HxWx3 uint8)."""
    global _SIFT, _CLAHE
    if _SIFT is None:
        _SIFT = cv2.SIFT_create(nfeatures=800)
        _CLAHE = cv2.createCLAHE(2.0, (4, 4))
    rgb = np.ascontiguousarray(rgb[..., :3])
    H, W = rgb.shape[:2]
    small, s = _detection_scale(rgb)
    d = _neighbour_diff(small)
    boxes = photo_regions(rgb, d, s)[:MAX_BOXES]
    mask = _keypoint_mask(d, s, (H, W))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    feats = []
    for x0, y0, x1, y1 in boxes:
        g, m = gray[y0:y1, x0:x1], mask[y0:y1, x0:x1]
        h, w = g.shape
        f = 1.0
        if min(h, w) < 256:
            f = 256 / min(h, w)
        if max(h, w) * f > 640:
            f = 640 / max(h, w)
        if f != 1.0:
            size = (max(1, round(w * f)), max(1, round(h * f)))
            g = cv2.resize(g, size, interpolation=cv2.INTER_CUBIC if f > 1 else cv2.INTER_AREA)
            m = cv2.resize(np.ascontiguousarray(m), size, interpolation=cv2.INTER_NEAREST)
        kp, des = _SIFT.detectAndCompute(_CLAHE.apply(g), m)
        feats.append((np.array([p.pt for p in kp], np.float32).reshape(-1, 2), des))
    return PhotoFeatures(W / H, boxes, feats)


_MATCHER = None


def _inliers(fa, fb) -> int:
    global _MATCHER
    (pa, da), (pb, db) = fa, fb
    if da is None or db is None or len(da) < 3 or len(db) < 3:
        return 0
    if _MATCHER is None:
        _MATCHER = cv2.BFMatcher(cv2.NORM_L2)
    good = [m[0] for m in _MATCHER.knnMatch(da, db, k=2) if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    if len(good) < 4:
        return 0
    M, inl = cv2.estimateAffinePartial2D(pa[[g.queryIdx for g in good]], pb[[g.trainIdx for g in good]],
                                         method=cv2.RANSAC, ransacReprojThreshold=5.0)
    if M is None:
        return 0
    scale = float(np.hypot(M[0, 0], M[0, 1]))
    rot = abs(float(np.degrees(np.arctan2(M[1, 0], M[0, 0]))))
    return int(inl.sum()) if 0.25 <= scale <= 4 and rot <= 10 else 0


def relayout_score(a: PhotoFeatures, b: PhotoFeatures) -> int:
    """Max RANSAC-inlier count over photo-region pairs (0 when either has no photo region)."""
    return max((_inliers(fa, fb) for fa in a.feats for fb in b.feats), default=0)


def candidate_pairs(aspects: np.ndarray, ratio: float = ASPECT_RATIO_MIN) -> np.ndarray:
    """All (i, j), i < j, whose aspect ratios differ by more than ``ratio`` (O(N^2) listing;
    in a cascade intersect this with a cheaper pre-filter, see the report)."""
    la = np.log(np.asarray(aspects, float))
    i, j = np.triu_indices(len(la), 1)
    keep = np.abs(la[i] - la[j]) > np.log(ratio)
    return np.column_stack([i[keep], j[keep]])
