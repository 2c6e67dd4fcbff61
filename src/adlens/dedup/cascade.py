"""Second dedup stage: near-duplicates by image-embedding cosine, for what hashes miss.

Hashes are blind to larger crops (> 5 %), overlays (stickers, strips) and re-layouts; global
image embeddings tolerate crops and overlays much better. A pair is an *embedding duplicate*
when the cosine of the two L2-normalised embeddings is >= ``threshold`` and hashes did not
already put them in one group. These links are recorded with method ``"embedding"`` and
reported apart from hash matches.

Default threshold (0.97, tuned together with the pixel check below): on the sample corpus the most
similar pair of *different* creatives has cosine 0.950 with fp32 vectors (0.954 with int8, the
default image model of new workspaces); on real photos in banner templates (``benchmarks/eval_cascade_edits.py``, 2 seeds) other
products in one template reach 0.96-0.98, and the cosine adds 21 false links among 3,120 of them
at >= 0.95, 5 at >= 0.96, 2 at >= 0.97, 0 at >= 0.98 (int8: 24, 8, 3, 0). The pixel check takes
over below the threshold, so raising it from 0.95 to 0.97 cost 0.8-1.4 points of the crops,
stickers and strips caught (fp32: 0.975 -> 0.961 and 0.964 -> 0.956 of all edits).

Crops and overlays are checked, not guessed: pairs in a grey zone below the threshold (cosine
>= 0.8, ``verify_min``) are aligned and their pixels compared (:mod:`adlens.dedup.verify`); a pair
where what both show agrees (>= 0.95 of detail pixels and of sharp-edge pixels: a crop), or where
everything but one small region agrees (a sticker or strip: an overlay), is linked as well. On real
photos in banner templates that catches 97-100 % of 10-20 % crops (the cosine alone 6-42 %) and
91-94 % of stickers, and links none of the different products in one template
(``benchmarks/eval_cascade_edits.py``).

Re-layouts into another ad size (cosine 0.30-0.68 to their original) are not caught here: on real
photos the global embedding ranks them below other products in the same template. The third
stage, :mod:`adlens.dedup.relayout`, matches local features inside the photo regions instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from adlens.errors import AdlensError, InvalidInput

DEFAULT_COSINE_THRESHOLD = 0.97
DEFAULT_VERIFY_MIN = 0.80  # grey zone: [verify_min, threshold) is pixel-checked (adlens.dedup.verify)
_BLOCK = 128  # grey-zone pairs per block: at most 256 images prepared at once (<= ~2 MB each)
_CACHE_BYTES = 1 << 30  # prepared images kept between blocks, by size


def check_threshold(threshold) -> float:
    """A cascade threshold is a cosine in (0, 1]: below that nearly every pair of banners would be
    merged for good in the ledger, and NaN would silently link nothing."""
    ok = isinstance(threshold, int | float | np.integer | np.floating) and not isinstance(threshold, bool)
    if not ok or not math.isfinite(float(threshold)) or not 0.0 < float(threshold) <= 1.0:
        raise InvalidInput(f"cascade threshold must be a cosine in (0, 1], got {threshold!r}")
    return float(threshold)


def embedding_pairs(vectors: np.ndarray, threshold: float = DEFAULT_COSINE_THRESHOLD, block: int = 4096) -> np.ndarray:
    """All pairs ``(i, j, cos)`` with ``i < j`` and cosine >= threshold, as an (m, 3) float64 array.

    ``vectors``: (N, D) L2-normalised rows. Blockwise exact search: O(N^2 D) flops in
    ``block``-row tiles, so memory stays at ``block * N`` floats.

    >>> v = np.array([[1, 0], [0.99, 0.141], [0, 1]], np.float32)
    >>> embedding_pairs(v, 0.98)[:, :2].tolist()
    [[0.0, 1.0]]
    """
    check_threshold(threshold)
    X = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(X)
    out = []
    for s in range(0, n, block):
        S = X[s : s + block] @ X.T
        r, c = np.nonzero(S >= threshold)
        keep = c > r + s
        out.append(np.column_stack([r[keep] + s, c[keep], S[r[keep], c[keep]]]))
    return np.concatenate(out) if out else np.zeros((0, 3))


def new_links(pairs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Pairs whose members are not already in the same group (``labels``: group id per row)."""
    if not len(pairs):
        return pairs
    i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    return pairs[labels[i] != labels[j]]


def verified_pairs(vectors: np.ndarray, load: Callable[[int], np.ndarray], *, threshold: float = DEFAULT_COSINE_THRESHOLD,
                   verify_min: float = DEFAULT_VERIFY_MIN, labels: np.ndarray | None = None,
                   min_agreement: float | None = None, workers: int = 2,
                   on_error: Callable[[int, str], None] | None = None, new: np.ndarray | None = None,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Grey-zone pairs ``(i, j, cos, agreement, edit)`` with ``verify_min <= cos < threshold`` that
    are the same creative by their pixels (:func:`adlens.dedup.verify.pixel_agreement`): ``edit`` 0
    for a crop (``agreement``: the detail-pixel share), 1 for an overlay (``agreement``: the share
    outside its changed region); :data:`adlens.dedup.verify.EDITS` names them.
    ``load(i)`` returns image ``i`` as an ``(H, W, 3)`` uint8 array; an image it cannot give
    (OSError, ValueError or InvalidInput) is reported through ``on_error(i, reason)`` and its pairs are skipped.
    With ``labels`` (groups of earlier stages) pairs already in one group are not checked; with
    ``new`` (bool per image) only pairs with a new image are (incremental runs).
    ``verify_min >= threshold`` checks nothing. ``progress(done, total)`` after each block of pairs;
    prepared images are kept up to ~1 GB (plus one block's)."""
    import cv2

    from adlens.dedup.verify import DEFAULT_MIN_AGREEMENT, EDITS, pixel_agreement, prepare

    check_threshold(threshold)
    check_threshold(verify_min)
    if verify_min >= threshold or len(vectors) < 2:
        return np.zeros((0, 5))
    grey = embedding_pairs(vectors, verify_min)
    grey = grey[grey[:, 2] < threshold]
    if labels is not None:
        grey = new_links(grey, labels)
    if new is not None and len(grey):
        fresh = np.asarray(new, bool)
        grey = grey[fresh[grey[:, 0].astype(np.int64)] | fresh[grey[:, 1].astype(np.int64)]]
    if not len(grey):
        return np.zeros((0, 5))
    minimum = DEFAULT_MIN_AGREEMENT if min_agreement is None else min_agreement
    cache: dict[int, object] = {}  # prepared images (~0.4 MB for a 300x250 banner, <= ~2 MB)
    failed: set[int] = set()

    def prep(i: int) -> None:
        try:
            cache[i] = prepare(load(i))
        except (OSError, ValueError, AdlensError, cv2.error) as e:  # unreadable: reported once, pairs skipped
            failed.add(i)
            if on_error:
                on_error(i, str(e))

    def check(row) -> tuple[float, int] | None:
        i, j = int(row[0]), int(row[1])
        if i in failed or j in failed:
            return None
        try:
            a = pixel_agreement(cache[i], cache[j])
        except cv2.error:  # OpenCV refusing a pair is no verdict: no link
            return None
        link = a.linked(minimum)
        return None if link is None else (link[1], EDITS.index(link[0]))

    agreement: list[tuple[float, int] | None] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # OpenCV drops the GIL
        for s in range(0, len(grey), _BLOCK):  # pairs come sorted by their first image
            block = grey[s:s + _BLOCK]
            need = {int(x) for x in block[:, :2].ravel()} - failed
            if sum(_nbytes(p) for p in cache.values()) > _CACHE_BYTES:  # memory bounded on large ledgers
                for k in [k for k in cache if k not in need]:
                    del cache[k]
            list(pool.map(prep, sorted(need - cache.keys())))
            agreement.extend(pool.map(check, block))
            if progress:
                progress(s + len(block), len(grey))
    keep = [k for k, v in enumerate(agreement) if v is not None]
    if not keep:
        return np.zeros((0, 5))
    return np.column_stack([grey[keep], np.array([agreement[k] for k in keep], np.float64)])


def _nbytes(p) -> int:
    return p.rgb.nbytes + p.texture.nbytes + p.edges.nbytes + p.points.nbytes + (
        0 if p.descriptors is None else p.descriptors.nbytes)
