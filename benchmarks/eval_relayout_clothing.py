"""Re-layouts on real photos: can a signal tell "the same creative in another ad size" from "another
product in the same template"?

Why this exists: the dedup cascade does not link re-layouts (issue "embeddings"), and the synthetic
sample cannot say whether a rule would work in practice (its re-layouts are the only pairs that share
their copy). This builds a harder set from real data and measures candidate signals on it.

Data (skipped when ``/work/shared/data`` is absent): real clothing photos (``clothing/``) and real ad
copy (``ad_transcripts/``, first 3-6 words as the headline), rendered with the sample corpus's
banner renderer. Each campaign = one advertiser template (colours, layout, copy, price, CTA) and
three photos of one garment label. Per photo: the banner and its re-layout into another standard
size (``adlens.sample.corpus._relayout``: same photo, zoom, centre and copy, another aspect).

- positives: a banner and its re-layout (same photo);
- hard negatives: two banners of one campaign with different photos (same copy, same template) --
  what an advertiser running one message over several products produces;
- other negatives: a sample of banners of different campaigns.

Signals: global image-embedding cosine (the cascade's); SIFT + RANSAC inliers inside photo regions
found from pixels, with text edges masked (``adlens.dedup.relayout``, the re-layout stage of
``adlens dedup find --relayout``; ``--jpeg Q`` re-encodes the banners first); and whole-banner local-feature matching (ORB + RANSAC
similarity transform, scale 1/3..3, rotation <= 10 degrees; inlier count), optionally with the OCR
text boxes masked out (``--ocr``; RapidOCR, ~0.3 s an image). For each: the share of positives and
hard negatives above thresholds, and the pair AUC positives vs hard negatives.

Usage: ``python benchmarks/eval_relayout_clothing.py [--campaigns 60] [--ocr] [--seed 0] [--jpeg Q] [--skip-orb]``
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import Image

from adlens.dedup import relayout
from adlens.sample import corpus

DATA = Path("/work/shared/data")


def pair_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive scores above a hard negative), ties counted half."""
    pos, neg = np.sort(np.asarray(pos, float)), np.sort(np.asarray(neg, float))
    below = np.searchsorted(neg, pos, side="left")
    equal = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * equal).sum() / (len(pos) * len(neg)))


def visible_crop(c) -> tuple[float, float, float, float]:
    """The part of the source photo a rendered creative shows, as fractions ``(x0, y0, x1, y1)`` of
    the photo (the renderer's own crop rule, ``corpus._photo_region``)."""
    w, h = c.size
    x0, y0, x1, y1 = corpus._px(corpus._layout(c.size_class, c.layout, c.geom)["photo"], w, h)
    pw, ph = corpus._photo(c.photo).size
    aspect = (x1 - x0) / (y1 - y0)
    cw = min(pw, ph * aspect) / c.zoom
    ch = cw / aspect
    cx0 = min(max(c.center[0] * pw - cw / 2, 0), pw - cw)
    cy0 = min(max(c.center[1] * ph - ch / 2, 0), ph - ch)
    return cx0 / pw, cy0 / ph, (cx0 + cw) / pw, (cy0 + ch) / ph


def shared_photo(a, b) -> float:
    """Area both crops show, as a share of the smaller crop: 0 = the two sizes show disjoint parts
    of the photo (nothing to match), 1 = one shows all of the other's."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / small if small > 0 else 0.0


def build(n_campaigns: int, seed: int):
    """[(campaign, photo index, kind, PIL image, visible photo crop, creative)] rendered from real
    photos and real copy (``creative``: the :class:`adlens.sample.corpus.Creative` it was drawn from)."""
    by_label: dict[str, list[str]] = {}
    with open(DATA / "clothing" / "labels.csv", newline="") as f:
        for r in csv.DictReader(f):
            p = DATA / "clothing" / "images" / f"{r['image']}.jpg"
            if p.exists():
                by_label.setdefault(r["label"], []).append(str(p))
    with open(DATA / "ad_transcripts" / "ad_transcripts.csv", newline="") as f:
        copies = [r["Ad_copy"] for r in csv.DictReader(f)]
    labels = sorted(k for k, v in by_label.items() if len(v) >= 10)
    original_photo = corpus._photo

    def photo(name: str) -> Image.Image:  # the renderer's photo source, widened to file paths
        return Image.open(name).convert("RGB") if name.startswith("/") else original_photo(name)

    rnd = random.Random(seed)
    advertisers = corpus._make_advertisers(rnd)
    items = []
    with mock.patch.object(corpus, "_photo", photo):
        for camp in range(n_campaigns):
            adv = rnd.choice(advertisers)
            photos = rnd.sample(by_label[rnd.choice(labels)], 3)
            words = rnd.choice(copies).split()
            base = corpus._plan_creative(rnd, adv, rnd.choice(list(corpus.LAYOUT_NAMES)))
            base = replace(base, headline=" ".join(words[:rnd.randint(3, 6)]),
                           zoom=round(rnd.uniform(1.0, 1.3), 3), center=(0.5, 0.5), flip=False)
            for k, p in enumerate(photos):
                c = replace(base, photo=p)
                r = corpus._relayout(rnd, c)
                items.append((camp, k, "banner", corpus.render_creative(c), visible_crop(c), c))
                items.append((camp, k, "relayout", corpus.render_creative(r), visible_crop(r), r))
    return items


def render(c) -> Image.Image:
    """Render a creative of :func:`build` again (its photo may be a file path)."""
    original_photo = corpus._photo
    with mock.patch.object(corpus, "_photo", lambda n: Image.open(n).convert("RGB") if n.startswith("/")
                           else original_photo(n)):
        return corpus.render_creative(c)


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    if not quality:
        return img
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def pairs(items, rnd: random.Random, other_share: float = 0.03):
    """(i, j, label): 1 positive, 0 hard negative, -1 other negative (a sample)."""
    out = []
    for i, j in itertools.combinations(range(len(items)), 2):
        a, b = items[i], items[j]
        if a[0] == b[0]:
            out.append((i, j, 1 if a[1] == b[1] else 0))
        elif rnd.random() < other_share:
            out.append((i, j, -1))
    return np.array(out, dtype=np.int64)


def orb_features(items, ocr: bool):
    import cv2

    reader = None
    if ocr:
        from adlens.features.creative import get_ocr_backend

        reader = get_ocr_backend("rapidocr")
        if reader is None:
            raise SystemExit("--ocr needs rapidocr-onnxruntime")
    feats = []
    for img in (it[3] for it in items):
        rgb = np.asarray(img)
        g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        s = 2.0 if max(g.shape) < 400 else 1.0  # banners are small: more keypoints at 2x
        g = cv2.resize(g, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
        mask = np.full(g.shape, 255, np.uint8)
        for line in reader(rgb) if reader else ():
            cv2.fillPoly(mask, [np.round(line.box * s).astype(np.int32)], 0)
        mask = cv2.erode(mask, np.ones((9, 9), np.uint8))
        kp, des = cv2.ORB_create(nfeatures=1500, fastThreshold=10, edgeThreshold=15, patchSize=15).detectAndCompute(g, mask)
        feats.append((np.array([k.pt for k in kp], np.float32).reshape(-1, 2), des))
    return feats


def orb_inliers(fa, fb) -> int:
    import cv2

    return relayout.similarity_inliers(fa, fb, cv2.BFMatcher(cv2.NORM_HAMMING), reproj=4.0, max_scale=3.0)


def report(name: str, score: np.ndarray, lab: np.ndarray, thresholds) -> None:
    pos, hard, other = score[lab == 1], score[lab == 0], score[lab == -1]
    print(f"\n**{name}** — AUC positives vs hard negatives: {pair_auc(pos, hard):.3f}; "
          f"min / median / max: positives {pos.min():.3g} / {np.median(pos):.3g} / {pos.max():.3g}, "
          f"hard negatives {hard.min():.3g} / {np.median(hard):.3g} / {hard.max():.3g}\n")
    print("| threshold | positives caught | hard negatives linked | other negatives linked |")
    print("|---:|---:|---:|---:|")
    for t in thresholds:
        print(f"| {t:g} | {np.mean(pos >= t):.3f} ({int((pos >= t).sum())}/{len(pos)}) | "
              f"{int((hard >= t).sum())}/{len(hard)} | {int((other >= t).sum())}/{len(other)} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaigns", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ocr", action="store_true", help="mask OCR text boxes before local-feature matching")
    ap.add_argument("--quick", action="store_true", help="20 campaigns")
    ap.add_argument("--jpeg", type=int, default=0, help="re-encode the banners as JPEG of this quality first (photo-region SIFT)")
    ap.add_argument("--skip-orb", action="store_true", help="stop after the photo-region SIFT signal")
    args = ap.parse_args()
    if not (DATA / "clothing" / "labels.csv").exists() or not (DATA / "ad_transcripts").exists():
        print(f"skipped: {DATA} (clothing, ad_transcripts) not found")
        return 0
    t = time.time()
    items = build(20 if args.quick else args.campaigns, args.seed)
    P = pairs(items, random.Random(args.seed))
    lab = P[:, 2]
    print(f"{len(items)} banners ({len(items) // 6} campaigns x 3 photos x 2 sizes) in {time.time() - t:.1f} s; "
          f"{(lab == 1).sum()} positive pairs, {(lab == 0).sum()} hard negatives, {(lab == -1).sum()} other negatives")

    from adlens.embed.base import get_embedder

    V = get_embedder("efficientnet-lite0").embed_images([it[3] for it in items])
    cos = np.einsum("ij,ij->i", V[P[:, 0]], V[P[:, 1]])
    report("Global embedding cosine (efficientnet-lite0, the cascade's signal)", cos, lab,
           (0.4, 0.5, 0.6, 0.7, 0.8, 0.95))
    t = time.time()
    imgs = [np.asarray(_jpeg(it[3], args.jpeg)) for it in items]
    PF = [relayout.photo_features(im) for im in imgs]
    per_image = (time.time() - t) / len(imgs)
    t = time.time()
    sift = np.array([relayout.relayout_score(PF[i], PF[j]) for i, j, _ in P], dtype=float)
    per_pair = (time.time() - t) / len(P)
    report(f"SIFT + RANSAC inliers inside photo regions detected from pixels, text edges masked "
           f"({1000 * per_image:.0f} ms an image, {1000 * per_pair:.1f} ms a pair"
           f"{f'; banners re-encoded as JPEG q{args.jpeg}' if args.jpeg else ''})", sift, lab, (3, 5, 8, 12, 20))
    asp = np.array([f.aspect for f in PF])
    differ = np.abs(np.log(asp[P[:, 0]] / asp[P[:, 1]])) > np.log(relayout.DEFAULT_ASPECT_RATIO)
    report("the same, only pairs whose aspect ratios differ by > 1.25x (what a cascade stage would score)",
           np.where(differ, sift, 0.0), lab, (3, 5, 8, 12, 20))
    print(f"\nno photo region found: {np.mean([len(f.boxes) == 0 for f in PF]):.3f} of the banners")
    # A re-layout can only be matched on what both sizes show of the photo: recall by that share
    pos = lab == 1
    share = np.array([shared_photo(items[i][4], items[j][4]) for i, j, _ in P[pos]])
    linked = np.where(differ, sift, 0.0)[pos] >= relayout.DEFAULT_MIN_INLIERS
    print(f"\nre-layouts linked at the default {relayout.DEFAULT_MIN_INLIERS} inliers, by the share of the photo "
          "both sizes show (intersection / smaller crop):\n")
    print("| shared photo | re-layouts | linked |")
    print("|---|---:|---:|")
    for lo, hi in ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.01)):
        m = (share >= lo) & (share < hi)
        if m.any():
            print(f"| {lo:.2f}-{min(hi, 1.0):.2f} | {int(m.sum())} | {linked[m].mean():.3f} ({int(linked[m].sum())}) |")
    if args.skip_orb:
        return 0
    t = time.time()
    F = orb_features(items, args.ocr)
    inl = np.array([orb_inliers(F[i], F[j]) for i, j, _ in P], dtype=float)
    report(f"ORB + RANSAC inliers{' (OCR text masked)' if args.ocr else ''} ({time.time() - t:.0f} s)", inl, lab,
           (8, 15, 30, 60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
