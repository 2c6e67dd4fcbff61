"""Crops, stickers and text strips that hashes miss: what the embedding cascade catches, and what the
pixel check of its grey zone (``adlens.dedup.verify``) adds.

Why this exists: the cascade links two creatives when their embedding cosine is >= 0.95. Crops of
10-20 %, stickers and text strips land at 0.77-0.96, and different products in one banner template
reach 0.96, so no cosine separates them. This measures, on real photos in real banner templates,
whether pairs in a grey zone below the threshold can be confirmed: by the pixel agreement after
aligning the two (``adlens.dedup.verify.pixel_agreement``, what the cascade uses), and, for
comparison, by SIFT inliers inside the photo regions (``adlens.dedup.relayout.relayout_score``).

Data (skipped when ``/work/shared/data`` is absent): the banners of ``eval_relayout_clothing.py``
(real clothing photos, real ad copy, the sample's templates; 3 photos of one label per campaign).
Per banner, edits a hash misses: crops of 10 / 15 / 20 % (random split between the sides), a 10 %
crop scaled back to the banner's size, a sticker (a filled circle with a price, 6-10 % of the area)
and a text strip over the bottom 15 %. Everything is re-encoded as JPEG q85.

- positives: a banner and each of its edits;
- hard negatives: a banner or edit and the banner of another photo of the same campaign (same copy,
  same template, other product);
- copy negatives: a banner and the same photo in the same template with another headline;
- other negatives: banners of different campaigns (a sample).

Usage: ``python benchmarks/eval_cascade_edits.py [--campaigns 40] [--seed 0] ``
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))
from eval_relayout_clothing import (  # same banners as the re-layout eval
    DATA,
    build,
    render,
)

from adlens.dedup import relayout
from adlens.dedup.hashing import hamming64, hash_image
from adlens.dedup.match import DEFAULT_DHASH_RADIUS, DEFAULT_PHASH_RADIUS
from adlens.dedup.verify import pixel_agreement, prepare

EDITS = ("crop10", "crop15", "crop20", "crop10_resized", "sticker", "strip")


def _jpeg(img: Image.Image, q: int = 85) -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=q)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _crop(img: Image.Image, share: float, rnd: random.Random) -> Image.Image:
    """Remove ``share`` of the width and of the height, split at random between the two sides."""
    w, h = img.size
    dx, dy = round(w * share), round(h * share)
    left, top = rnd.randint(0, dx), rnd.randint(0, dy)
    return img.crop((left, top, w - (dx - left), h - (dy - top)))


def edits(img: Image.Image, rnd: random.Random) -> dict[str, Image.Image]:
    w, h = img.size
    out = {f"crop{int(s * 100)}": _crop(img, s, rnd) for s in (0.10, 0.15, 0.20)}
    out["crop10_resized"] = _crop(img, 0.10, rnd).resize(img.size, Image.BICUBIC)
    st = img.copy()
    d = ImageDraw.Draw(st)
    r = int(np.sqrt(rnd.uniform(0.06, 0.10) * w * h / np.pi))
    cx, cy = rnd.randint(r, max(r, w - r)), rnd.randint(r, max(r, h - r))
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(220, 30, 40), outline=(255, 255, 255), width=2)
    d.text((cx - r // 2, cy - 6), f"-{rnd.choice((20, 30, 40, 50))}%", fill=(255, 255, 255))
    out["sticker"] = st
    sp = img.copy()
    d = ImageDraw.Draw(sp)
    d.rectangle([0, int(h * 0.85), w, h], fill=(20, 20, 20))
    d.text((6, int(h * 0.87)), rnd.choice(("FREE SHIPPING TODAY", "LIMITED OFFER", "NEW SEASON")), fill=(250, 250, 250))
    out["strip"] = sp
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaigns", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="image embedder (default: the cascade's, ADLENS_IMAGE_MODEL)")
    args = ap.parse_args()
    if not (DATA / "clothing" / "labels.csv").exists():
        print(f"skipped: {DATA} not found")
        return 0
    t0 = time.time()
    rnd = random.Random(args.seed)
    items = []  # (campaign, photo, kind, image): each banner, its edits and its re-worded twin
    built = build(args.campaigns, args.seed)
    headlines = [c.headline for *_, c in built]
    for camp, k, kind, img, _, c in built:
        if kind != "banner":
            continue
        items.append((camp, k, "banner", _jpeg(img)))
        items.extend((camp, k, name, _jpeg(e)) for name, e in edits(img, rnd).items())
        other = rnd.choice([h for h in headlines if h != c.headline])
        items.append((camp, k, "recopy", _jpeg(render(replace(c, headline=other)))))
    banner = {(c, k): i for i, (c, k, kind, _) in enumerate(items) if kind == "banner"}
    P = []  # (i, j, label): 1 positive, 0 hard negative, 2 copy negative, -1 other negative
    for i, (c, k, kind, _) in enumerate(items):
        for k2 in range(3):
            j = banner.get((c, k2))
            if j is None or j == i:
                continue
            if k2 == k:
                P.append((j, i, 2 if kind == "recopy" else 1))
            elif kind != "recopy" and (kind != "banner" or k2 > k):
                P.append((j, i, 0))
    bi = sorted(banner.values())
    for a in range(len(bi)):
        for b in range(a + 1, len(bi)):
            if items[bi[a]][0] != items[bi[b]][0] and rnd.random() < 0.2:
                P.append((bi[a], bi[b], -1))
    P = np.array(P, np.int64)
    lab = P[:, 2]
    kind_of = np.array([items[j][2] for j in P[:, 1]])
    pos, hard, recopy, other = lab == 1, lab == 0, lab == 2, lab == -1
    print(f"{len(items)} images ({len(bi)} banners, {len(EDITS)} edits and a re-worded twin each, JPEG q85) in "
          f"{time.time() - t0:.0f} s; {pos.sum()} positives, {hard.sum()} hard negatives, {recopy.sum()} copy "
          f"negatives, {other.sum()} other negatives")

    hb = [hash_image(it[3]) for it in items]
    ph = np.array([h.phash[0] for h in hb], np.uint64)
    dh = np.array([h.dhash[0] for h in hb], np.uint64)
    hashed = ((hamming64(ph[P[:, 0]], ph[P[:, 1]]) <= DEFAULT_PHASH_RADIUS)
              & (hamming64(dh[P[:, 0]], dh[P[:, 1]]) <= DEFAULT_DHASH_RADIUS))

    from adlens.embed.base import get_embedder
    from adlens.embed.jobs import image_model

    V = get_embedder(args.model or image_model()).embed_images([it[3] for it in items])
    cos = np.einsum("ij,ij->i", V[P[:, 0]], V[P[:, 1]])
    grey = np.flatnonzero(cos >= 0.6)  # only pairs this close are checked (the default grey zone starts at 0.8)
    arr = {i: np.asarray(items[i][3]) for i in set(P[grey][:, :2].ravel().tolist())}
    tex, edg = np.full(len(P), -1.0), np.full(len(P), -1.0)
    crop = np.zeros(len(P), bool)  # the check's own verdicts (flat designs judged on edges alone)
    overlay = np.zeros(len(P), bool)
    t = time.time()
    prep = {i: prepare(v) for i, v in arr.items()}
    per_image = (time.time() - t) / max(1, len(prep))
    t = time.time()
    for r in grey:
        a = pixel_agreement(prep[P[r, 0]], prep[P[r, 1]])
        tex[r] = -1.0 if a.texture is None else a.texture
        crop[r] = a.is_crop()
        overlay[r] = a.is_overlay()
        edg[r] = -1.0 if a.edges is None else a.edges
    per_pair = (time.time() - t) / max(1, len(grey))
    PF = {i: relayout.photo_features(v) for i, v in arr.items()}
    sift = np.zeros(len(P), np.int64)
    for r in grey:
        sift[r] = relayout.relayout_score(PF[P[r, 0]], PF[P[r, 1]])
    print(f"pixel check: {1000 * per_image:.1f} ms an image, {1000 * per_pair:.1f} ms a pair; {len(grey)} pairs at "
          "cosine >= 0.6\n")

    def q(v):
        return f"{v.min():.3f} / {np.percentile(v, 10):.3f} / {np.median(v):.3f}" if len(v) else "-"

    print("| pairs | n | hashes | cosine >= 0.95 | cosine: min / p10 / median | texture agreement: min / p10 / median "
          "| edge agreement: min / p10 / median |")
    print("|---|---:|---:|---:|---|---|---|")
    groups = [(e, pos & (kind_of == e)) for e in EDITS] + [("hard negatives", hard), ("copy negatives", recopy)]
    for name, m in groups:
        print(f"| {name} | {m.sum()} | {hashed[m].mean():.2f} | {(cos[m] >= 0.95).mean():.2f} | {q(cos[m])} | "
              f"{q(tex[m])} | {q(edg[m])} |")
    for name, m in (("hard negatives", hard), ("copy negatives", recopy), ("other negatives", other)):
        print(f"{name}: cosine max {cos[m].max():.3f}; texture agreement max {tex[m].max():.3f}, "
              f"edge agreement max {edg[m].max():.3f}")

    print("\n| rule | " + " | ".join(EDITS) + " | all edits | hard neg. | copy neg. | other neg. |")
    print("|---|" + "---:|" * (len(EDITS) + 4))
    base = hashed | (cos >= 0.95)
    rules = [("hashes", hashed), ("hashes or cosine >= 0.95 (the cascade before)", base)]
    for lo in (0.7, 0.8):
        for amin in (0.9, 0.95):
            rules.append((f"... or (cosine >= {lo} and both agreements >= {amin})",
                          base | ((cos >= lo) & (tex >= amin) & (edg >= amin))))
    rules.append(("... or (cosine >= 0.8 and `is_crop()`: session 10's default)", base | ((cos >= 0.8) & crop)))
    rules.append(("... or (cosine >= 0.8 and `is_overlay()` only)", base | ((cos >= 0.8) & overlay)))
    rules.append(("... or (cosine >= 0.8 and `verdict()`, a crop or an overlay: the default)",
                  base | ((cos >= 0.8) & (crop | overlay))))
    rules.append(("... or (cosine >= 0.6 and `verdict()`)", base | ((cos >= 0.6) & (crop | overlay))))
    for t in (0.96, 0.97, 0.98):  # a higher cosine threshold: pairs below it are left to the pixel check
        rules.append((f"hashes or cosine >= {t} or (cosine >= 0.8 and `verdict()`)",
                      hashed | (cos >= t) | ((cos >= 0.8) & (crop | overlay))))
    rules.append(("... or (cosine >= 0.8 and >= 12 SIFT inliers in photo regions)", base | ((cos >= 0.8) & (sift >= 12))))
    for name, link in rules:
        cells = [f"{link[pos & (kind_of == e)].mean():.2f}" for e in EDITS]
        print(f"| {name} | " + " | ".join(cells) + f" | {link[pos].mean():.3f} | {link[hard].sum()} of {hard.sum()} | "
              f"{link[recopy].sum()} of {recopy.sum()} | {link[other].sum()} of {other.sum()} |")
    print(f"\n{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
