"""Pixel check for the embedding cascade's grey zone: is one image a crop of the other, or the other
with a sticker or strip pasted over it?

The cascade links two creatives when their embedding cosine is >= 0.97 (:mod:`adlens.dedup.cascade`).
Crops of 10-20 % land at cosine 0.63-0.99, while two products in one banner template reach 0.96-0.98,
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
copy at most 0.87 on edges (BENCHMARKS.md). A flat design with no detail pixels (lossless solid
fills and text) is judged on its edges alone.

*Overlays* (a sticker, a price badge, a text strip pasted over the creative) are not crops: the part
they cover disagrees by design. So the pixels that disagree are also mapped, in both images' frames:
their largest connected patch (after closing gaps of 2 % of the diagonal, holes filled) is the
*changed region*. A pair is an overlay when that one region covers at most 20 % of the compared area
(:data:`OVERLAY_MAX_AREA`), everything outside it agrees (>= 98 %, :data:`OVERLAY_MIN_OUTSIDE`), at
least half of the detail pixels lie outside it, and no photo box (:func:`adlens.dedup.relayout.photo_regions`)
of either image has half or more of its compared part inside it (:data:`OVERLAY_MAX_PHOTO`): another
product in the same template changes its whole photo box, even when the photo is 12 % of a
leaderboard or a crop leaves only a sliver of it, while a sticker covers part of a photo. On the
eval banners (40 campaigns, 2 seeds): 0 of 3,120 other products in the same template, 119-120 of
120 stickers (6-10 % of the area) and 73-78 % of bottom strips (15 %) are overlays. The same photo
and template with another headline is one too (75-78 %): as for the hashes and the cosine, which
link 83-100 % of those, a new headline over the same banner counts as the same creative.

~80 ms to prepare an image (SIFT and photo boxes on the whole banner), ~35 ms a pair.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

DEFAULT_MIN_AGREEMENT = 0.95
#: what a pixel-confirmed link is; ``verified_pairs`` reports the index in this tuple
EDITS = ("crop", "overlay")
#: an overlay's changed region covers at most this share of the compared area ...
OVERLAY_MAX_AREA = 0.20
#: ... everything outside it agrees at least this much ...
OVERLAY_MIN_OUTSIDE = 0.98
#: ... and it covers less than this share of any photo box in one of the two images
OVERLAY_MAX_PHOTO = 0.5
#: bump when anything that changes a verdict changes: incremental ledger runs then re-check all pairs
VERSION = 2

_FLAT = 1  # neighbour difference of flat fills (as in the re-layout stage)
_STRONG = 48  # sharp edges: text, outlines
_EDGE_MARGIN = 4  # texture pixels this close to their own image's sharp edges are left out (JPEG ringing)
_TOL_TEXTURE = 8
_TOL_EDGE = 24
_MIN_PIXELS = 400  # fewer compared pixels than this: no verdict (no link)
_GAP = 0.02  # disagreeing pixels closer than this share of the diagonal form one changed region
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
    #: overlay measures (None without an alignment, or when too many pixels disagree for any
    #: overlay): share of the compared area in the largest
    #: changed region (the larger of the two frames), agreement of all pixels outside it (the
    #: smaller; None with too few pixels), share of the detail pixels that lie outside it (smaller)
    changed_area: float | None = None
    outside: float | None = None
    detail_outside: float | None = None
    #: the largest share of a photo box (:func:`adlens.dedup.relayout.photo_regions`) inside the
    #: changed region, counted over the part of the box the other image shows too (the larger of
    #: the two frames): a new product photo in the same template changes all of it, a sticker or
    #: strip a part. Known limit: text blocks of a JPEG banner can be boxed as photos too, so a
    #: sticker over most of a headline is not linked as an overlay (a miss, not a false link)
    photo_changed: float | None = None

    @property
    def score(self) -> float | None:
        """The agreement reported for a crop: detail pixels, or edges for a flat design."""
        return self.texture if self.texture is not None else self.edges

    def linked(self, min_agreement: float = DEFAULT_MIN_AGREEMENT) -> tuple[str, float] | None:
        """``(kind, agreement)`` when the pair is the same creative by its pixels, else None: a
        ``"crop"`` with :attr:`score`, or an ``"overlay"`` with the agreement outside its changed region."""
        kind = self.verdict(min_agreement)
        if kind is None:
            return None
        return kind, float(self.score if kind == "crop" else self.outside)

    def is_overlay(self) -> bool:
        """One changed region of at most :data:`OVERLAY_MAX_AREA` of the compared area, everything
        outside it agreeing >= :data:`OVERLAY_MIN_OUTSIDE`, at least half of the detail pixels outside
        it, and no photo box of one image mostly inside it (:data:`OVERLAY_MAX_PHOTO`)."""
        return (self.changed_area is not None and self.outside is not None and self.detail_outside is not None
                and self.photo_changed is not None and self.changed_area <= OVERLAY_MAX_AREA
                and self.outside >= OVERLAY_MIN_OUTSIDE and self.detail_outside >= 0.5
                and self.photo_changed < OVERLAY_MAX_PHOTO)

    def verdict(self, min_agreement: float = DEFAULT_MIN_AGREEMENT) -> str | None:
        """``"crop"``, ``"overlay"`` or None (not the same creative by pixels)."""
        if self.is_crop(min_agreement):
            return "crop"
        return "overlay" if self.is_overlay() else None

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
    photos: tuple[tuple[int, int, int, int], ...] = ()  # photo boxes (adlens.dedup.relayout.photo_regions)


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
    from adlens.dedup.relayout import _neighbour_diff, photo_regions

    d = _neighbour_diff(rgb)
    k = np.ones((2 * _EDGE_MARGIN + 1,) * 2, np.uint8)
    edges = d >= _STRONG
    texture = (d > _FLAT) & (cv2.dilate(edges.astype(np.uint8), k) == 0)
    kp, des = tls.sift.detectAndCompute(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), None)
    return Prepared(rgb, texture, edges, np.array([p.pt for p in kp], np.float32).reshape(-1, 2), des,
                    tuple(photo_regions(rgb)))


def _count(own_rgb, own_texture, own_edges, other_warped, valid):
    cv2, _ = _cv()
    a = cv2.GaussianBlur(own_rgb, (5, 5), 0).astype(np.int16)
    b = cv2.GaussianBlur(other_warped, (5, 5), 0).astype(np.int16)
    diff = np.abs(a - b).max(axis=2)
    t, e = own_texture & valid, own_edges & valid
    return (int((diff[t] <= _TOL_TEXTURE).sum()), int(t.sum()), int((diff[e] <= _TOL_EDGE).sum()), int(e.sum()), diff)


def _changed_region(diff, own_texture, own_edges, other_texture, other_edges, valid, photos):
    """Overlay measures in one frame: ``(changed area share, agreeing pixels outside, outside
    pixel count, detail pixels outside, detail pixels, largest changed share of a photo box)``, or
    None when too many pixels disagree for any overlay (most pairs that are no edit at all). Pixels
    are those with detail or a sharp edge in either image; a sharp edge in either gets the edge
    tolerance."""
    cv2, _ = _cv()
    edge = (own_edges | other_edges) & valid
    detail = (own_texture | other_texture) & valid & ~edge
    bad = (edge & (diff > _TOL_EDGE)) | (detail & (diff > _TOL_TEXTURE))
    # an overlay's region holds at most OVERLAY_MAX_AREA of the area, and at most 1 - OVERLAY_MIN_OUTSIDE
    # of the pixels outside it disagree: more disagreeing pixels than that cannot be one (exact bound)
    if int(bad.sum()) > OVERLAY_MAX_AREA * int(valid.sum()) + (1 - OVERLAY_MIN_OUTSIDE) * int((edge | detail).sum()):
        return None
    H, W = diff.shape
    r = max(3, round(_GAP * float(np.hypot(H, W))))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    region = np.zeros((H, W), np.uint8)
    if bad.any():
        n, lab = cv2.connectedComponents(cv2.morphologyEx(bad.astype(np.uint8), cv2.MORPH_CLOSE, disk), connectivity=8)
        counts = np.bincount(lab[bad], minlength=n)
        counts[0] = 0  # the background label
        contours, _ = cv2.findContours((lab == int(counts.argmax())).astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(region, contours, -1, 1, -1)  # holes filled: a sticker's flat inside is changed too
    core = (region > 0) & valid
    # the share of this image's most covered photo box that changed, counting the part of the box
    # the other image shows too: a new product photo in the same template changes all of it (also
    # when a crop leaves only a sliver of it), a sticker a part of it
    photo_changed = 0.0
    for x0, y0, x1, y1 in photos:
        shown = int(valid[y0:y1, x0:x1].sum())
        if shown >= _MIN_PIXELS:
            photo_changed = max(photo_changed, int(core[y0:y1, x0:x1].sum()) / shown)
    region = cv2.dilate(region, disk)  # and its rim (blur, JPEG ringing around the overlay)
    inside = (region > 0) & valid
    out = valid & ~inside
    pixels = (edge | detail) & out
    return (float(inside.sum()) / max(1, int(valid.sum())), int((pixels & ~bad).sum()), int(pixels.sum()),
            int((detail & out).sum()), int(detail.sum()), photo_changed)


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
    rb_on_a, ra_on_b = cv2.warpAffine(rb, M, (W, H)), cv2.warpAffine(ra, Mi, (w, h))
    x = _count(ra, ta, ea, rb_on_a, valid_a)
    y = _count(rb, tb, eb, ra_on_b, valid_b)
    n_t, n_e = x[1] + y[1], x[3] + y[3]

    def moved(mask, m, size):
        return cv2.warpAffine(mask.astype(np.uint8), m, size, flags=cv2.INTER_NEAREST) > 0

    regions = [_changed_region(x[4], ta, ea, moved(tb, M, (W, H)), moved(eb, M, (W, H)), valid_a, A.photos)]
    if regions[0] is not None:  # the second frame only when the first can be an overlay
        regions.append(_changed_region(y[4], tb, eb, moved(ta, Mi, (w, h)), moved(ea, Mi, (w, h)), valid_b, B.photos))
    else:
        regions.append(None)
    texture = (x[0] + y[0]) / n_t if n_t >= _MIN_PIXELS else None
    edges = (x[2] + y[2]) / n_e if n_e >= _MIN_PIXELS else None
    if regions[0] is None or regions[1] is None:
        return Agreement(texture, edges, int(inl.sum()), scale)
    outside = [r[1] / r[2] for r in regions if r[2] >= _MIN_PIXELS]
    return Agreement(texture, edges, int(inl.sum()), scale,
                     changed_area=max(r[0] for r in regions),
                     outside=min(outside) if len(outside) == 2 else None,
                     detail_outside=min(r[3] / r[4] if r[4] else 1.0 for r in regions),
                     photo_changed=max(r[5] for r in regions))
