"""Pixel check for the embedding cascade's grey zone: is one image a crop of the other?

The cascade links two creatives when their embedding cosine is >= 0.95 (:mod:`adlens.dedup.cascade`).
Crops of 10-20 % land at cosine 0.74-0.99, while two products in one banner template reach 0.96,
so no cosine separates them. A crop keeps every pixel it shows; another product in the same template
keeps the template but not the photo. So a pair in the grey zone (cosine >= 0.8 by default) is
aligned by SIFT + RANSAC (a similarity transform, scale 1/4-4), and the pixels both images show are
compared after a small blur:

- *texture*: pixels with some detail (largest RGB difference to a neighbour >= 2) that are more than
  4 px from a sharp edge (>= 48) of their own image -- photo detail, away from text and JPEG ringing;
- *edges*: the sharp-edge pixels themselves -- the text and graphics, so that the same photo and
  template with other copy does not pass.

Each is counted in both directions (A's pixels against B warped onto A, and B's against A), and the
agreement is the share that match within 8 levels (texture) or 24 (edges; a sub-pixel shift moves a
sharp edge by more). A pair is a crop when both agreements are >= 0.95 (:data:`DEFAULT_MIN_AGREEMENT`).

Measured on real clothing photos in the sample's banner templates (``benchmarks/eval_cascade_edits.py``,
JPEG q85, 2 seeds of 40 campaigns): crops of 10-20 % have texture agreement >= 0.97 and edge
agreement >= 0.98; other products in the same template at most 0.79-0.92, the same photo with other
copy at most 0.87 on edges (BENCHMARKS.md). Stickers and text strips (0.78-0.95) are not crops: the
cosine threshold and the hashes catch part of them, as before. A flat design with no detail pixels
(lossless solid fills and text) is judged on its edges alone. ~80 ms to prepare an image (SIFT on
the whole banner), ~30 ms a pair.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

DEFAULT_MIN_AGREEMENT = 0.95
#: bump when anything that changes a verdict changes: incremental ledger runs then re-check all pairs
VERSION = 1

_FLAT = 1  # neighbour difference of flat fills (as in the re-layout stage)
_STRONG = 48  # sharp edges: text, outlines
_EDGE_MARGIN = 4  # texture pixels this close to their own image's sharp edges are left out (JPEG ringing)
_TOL_TEXTURE = 8
_TOL_EDGE = 24
_MIN_PIXELS = 400  # fewer compared pixels than this: no verdict (no link)
_MAX_SIDE = 768  # larger images are shrunk first (cost and memory: ~2 MB prepared; a 728x90 leaderboard is kept)

_tls = threading.local()


def _cv():
    import cv2

    if not hasattr(_tls, "sift"):
        _tls.sift = cv2.SIFT_create(nfeatures=1500, contrastThreshold=0.02)
        _tls.matcher = cv2.BFMatcher(cv2.NORM_L2)
    return cv2, _tls


@dataclass(frozen=True)
class Agreement:
    """Result of :func:`pixel_agreement`. ``texture`` / ``edges``: share of compared pixels that
    match (None when fewer than 400 were compared); ``inliers``: RANSAC inliers of the alignment;
    ``scale``: its scale (B -> A)."""

    texture: float | None
    edges: float | None
    inliers: int
    scale: float

    @property
    def score(self) -> float | None:
        """The agreement reported for a link: detail pixels, or edges for a flat design."""
        return self.texture if self.texture is not None else self.edges

    def is_crop(self, min_agreement: float = DEFAULT_MIN_AGREEMENT) -> bool:
        """Both agreements >= ``min_agreement``; a flat design with no detail pixels (solid fills,
        text; lossless) is judged on its edges alone."""
        if self.edges is None or self.edges < min_agreement:
            return False
        return self.texture is None or self.texture >= min_agreement


@dataclass(frozen=True)
class Prepared:
    """What :func:`pixel_agreement` needs of one image (:func:`prepare`), reusable across pairs."""

    rgb: np.ndarray
    texture: np.ndarray
    edges: np.ndarray
    points: np.ndarray
    descriptors: np.ndarray | None


def prepare(rgb: np.ndarray) -> Prepared:
    """Shrink (long side <= 768), mark texture and sharp edges, and compute SIFT features of an
    ``(H, W, 3)`` uint8 image (~15 ms for a 300x250 banner)."""
    cv2, tls = _cv()
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4) or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < 8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image of at least 8x8 pixels, got shape {rgb.shape} "
                         f"of {rgb.dtype}")
    rgb = np.ascontiguousarray(rgb[..., :3])
    h, w = rgb.shape[:2]
    if max(h, w) > _MAX_SIDE:
        f = _MAX_SIDE / max(h, w)
        rgb = cv2.resize(rgb, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
    from adlens.dedup.relayout import _neighbour_diff

    d = _neighbour_diff(rgb)
    k = np.ones((2 * _EDGE_MARGIN + 1,) * 2, np.uint8)
    edges = d >= _STRONG
    texture = (d > _FLAT) & (cv2.dilate(edges.astype(np.uint8), k) == 0)
    kp, des = tls.sift.detectAndCompute(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), None)
    return Prepared(rgb, texture, edges, np.array([p.pt for p in kp], np.float32).reshape(-1, 2), des)


def _count(own_rgb, own_texture, own_edges, other_warped, valid):
    cv2, _ = _cv()
    a = cv2.GaussianBlur(own_rgb, (5, 5), 0).astype(np.int16)
    b = cv2.GaussianBlur(other_warped, (5, 5), 0).astype(np.int16)
    diff = np.abs(a - b).max(axis=2)
    t, e = own_texture & valid, own_edges & valid
    return (int((diff[t] <= _TOL_TEXTURE).sum()), int(t.sum()), int((diff[e] <= _TOL_EDGE).sum()), int(e.sum()))


def pixel_agreement(a: np.ndarray | Prepared, b: np.ndarray | Prepared) -> Agreement:
    """Align B onto A and compare the pixels both show (see the module docstring). ``a`` / ``b``:
    ``(H, W, 3)`` uint8 images or their :func:`prepare` results. Raises ValueError for anything but
    images of at least 8x8 pixels."""
    cv2, tls = _cv()
    A = a if isinstance(a, Prepared) else prepare(a)
    B = b if isinstance(b, Prepared) else prepare(b)
    ra, ta, ea, pa, da = A.rgb, A.texture, A.edges, A.points, A.descriptors
    rb, tb, eb, pb, db = B.rgb, B.texture, B.edges, B.points, B.descriptors
    none = Agreement(None, None, 0, 0.0)
    if da is None or db is None or len(da) < 3 or len(db) < 3:
        return none
    good = [m[0] for m in tls.matcher.knnMatch(db, da, k=2) if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    if len(good) < 6:
        return none
    M, inl = cv2.estimateAffinePartial2D(pb[[g.queryIdx for g in good]], pa[[g.trainIdx for g in good]],
                                         method=cv2.RANSAC, ransacReprojThreshold=3.0)
    if M is None:
        return none
    scale = float(np.hypot(M[0, 0], M[0, 1]))
    rotation = abs(float(np.degrees(np.arctan2(M[1, 0], M[0, 0]))))
    if not 0.25 <= scale <= 4.0 or rotation > 10:
        return Agreement(None, None, int(inl.sum()), scale)
    (H, W), (h, w) = ra.shape[:2], rb.shape[:2]
    Mi = cv2.invertAffineTransform(M)
    k = np.ones((5, 5), np.uint8)  # the warped border is interpolated with black: leave it out
    valid_a = cv2.erode(cv2.warpAffine(np.full((h, w), 255, np.uint8), M, (W, H), flags=cv2.INTER_NEAREST), k) > 0
    valid_b = cv2.erode(cv2.warpAffine(np.full((H, W), 255, np.uint8), Mi, (w, h), flags=cv2.INTER_NEAREST), k) > 0
    x = _count(ra, ta, ea, cv2.warpAffine(rb, M, (W, H)), valid_a)
    y = _count(rb, tb, eb, cv2.warpAffine(ra, Mi, (w, h)), valid_b)
    n_t, n_e = x[1] + y[1], x[3] + y[3]
    return Agreement((x[0] + y[0]) / n_t if n_t >= _MIN_PIXELS else None,
                     (x[2] + y[2]) / n_e if n_e >= _MIN_PIXELS else None, int(inl.sum()), scale)
