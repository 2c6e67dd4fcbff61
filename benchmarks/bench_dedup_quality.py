"""Pair precision / recall of the near-duplicate rule, and the sweep behind its defaults.

1. **Synthetic banner corpus** (``adlens.sample.make_sample``, written to a temp dir): ground
   truth from ``duplicates.json``. Positives = pairs of members of one group whose kinds are
   both in ``hash_kinds``; ``relayout`` pairs are reported separately (hashes are not expected
   to catch them) and count neither as hits nor as false positives; every other pair is a
   negative. Note: the generator re-draws creatives until distinct groups are > 16 bits apart
   and variants <= 10 bits from their original in *its* pHash (imagehash recipe), so this
   corpus has a built-in margin; part 2 is the independent check.
2. **Real photos** (``/work/shared/data/clothing``, skipped when absent): each photo plus
   variants made here (re-encode q=50-75, resize 50-90 %, crop <= 5 % per side, a price sticker
   over <= 6 % of the area, 2x upscale). Different photos are negatives -- product shots on
   white backgrounds are much harder negatives than the banners.

Usage: ``python benchmarks/bench_dedup_quality.py [--quick] [--n-ads 240] [--seed 0]``
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from adlens.dedup.hashing import HashBatch, hamming64, hash_files, hash_image
from adlens.dedup.match import DEFAULT_DHASH_RADIUS, DEFAULT_PHASH_RADIUS, near_duplicate_pairs

CLOTHING = Path("/work/shared/data/clothing/images")
P_RADII = list(range(4, 19))
D_RADII = [None, 8, 10, 12, 14, 16, 18, 20]
MAX_P = max(P_RADII)


# ------------------------------------------------------------------ evaluation helpers
def candidate_pairs(batch: HashBatch) -> np.ndarray:
    """(m, 5) int64: i, j, pHash distance, dHash distance, md5-equal -- every pair that any
    swept rule could accept (pHash <= MAX_P or equal md5)."""
    n = len(batch)
    pairs = near_duplicate_pairs(np.arange(n), batch.phash, None, batch.ahash_md5, MAX_P, None, as_array=True)
    i, j = pairs[:, 0], pairs[:, 1]
    d = hamming64(batch.dhash[i], batch.dhash[j])
    eq = (batch.ahash_md5[i] == batch.ahash_md5[j]).astype(np.int64)
    return np.stack([i, j, pairs[:, 2], d, eq], axis=1)


def accept(c: np.ndarray, pr: int, dr: int | None) -> np.ndarray:
    ok = c[:, 2] <= pr
    if dr is not None:
        ok &= c[:, 3] <= dr
    return ok | (c[:, 4] == 1)


def prf(pred: np.ndarray, label: np.ndarray, n_pos: int) -> tuple[int, int, float, float]:
    """label: 1 positive, 2 neutral, 0 negative (per candidate pair)."""
    tp = int((pred & (label == 1)).sum())
    fp = int((pred & (label == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    return tp, fp, precision, tp / n_pos if n_pos else 1.0


def fmt(x: float) -> str:
    return f"{x:.3f}"


# ------------------------------------------------------------------ part 1: sample corpus
def sample_eval(n_ads: int, seed: int) -> dict:
    from adlens.sample import make_sample

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        make_sample(tmp, n_ads=n_ads, seed=seed)
        t_make = time.perf_counter() - t
        root = Path(tmp)
        rows = list(csv.DictReader(open(root / "ads.csv", encoding="utf-8")))
        truth = json.loads((root / "duplicates.json").read_text(encoding="utf-8"))
        t = time.perf_counter()
        batch, errors = hash_files([root / r["path"] for r in rows])
        t_hash = time.perf_counter() - t
    rel = [str(Path(p).relative_to(root)) for p in batch.paths]
    hash_kinds = set(truth["hash_kinds"])
    group, kind = {}, {}
    for g in truth["groups"]:
        for m in g["members"]:
            group[m["path"]], kind[m["path"]] = g["group_id"], m["kind"]

    def label(i: int, j: int) -> int:
        a, b = rel[i], rel[j]
        if a in group and b in group and group[a] == group[b]:
            return 1 if kind[a] in hash_kinds and kind[b] in hash_kinds else 2
        return 0

    # all positive / relayout pairs from the truth (to count misses, not just candidates)
    members = defaultdict(list)
    for i, p in enumerate(rel):
        if p in group:
            members[group[p]].append(i)
    truth_pairs = {}
    for ms in members.values():
        for a in range(len(ms)):
            for b in range(a + 1, len(ms)):
                i, j = sorted((ms[a], ms[b]))
                truth_pairs[(i, j)] = label(i, j)
    n_pos = sum(v == 1 for v in truth_pairs.values())
    n_rel = sum(v == 2 for v in truth_pairs.values())
    c = candidate_pairs(batch)
    lab = np.array([truth_pairs.get((int(i), int(j)), 0) for i, j in c[:, :2]], np.int64)
    return dict(
        batch=batch, errors=errors, rel=rel, kind=kind, c=c, lab=lab, n_pos=n_pos, n_rel=n_rel,
        truth_pairs=truth_pairs, t_make=t_make, t_hash=t_hash,
    )


# ------------------------------------------------------------------ part 2: real photos
def _jpeg(img: Image.Image, q: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=q)
    return buf.getvalue()


def make_variants(img: Image.Image, rng: np.random.Generator) -> dict[str, bytes]:
    w, h = img.size
    out = {"original": _jpeg(img, 90), "reencode": _jpeg(img, int(rng.integers(50, 76)))}
    s = rng.uniform(0.5, 0.9)
    out["resize"] = _jpeg(img.resize((max(8, round(w * s)), max(8, round(h * s))), Image.Resampling.LANCZOS))
    fx = rng.uniform(0, 0.05, 4)
    box = (round(w * fx[0]), round(h * fx[1]), w - round(w * fx[2]), h - round(h * fx[3]))
    out["crop"] = _jpeg(img.crop(box))
    st = img.convert("RGB").copy()
    sw, sh = round(w * rng.uniform(0.18, 0.25)), round(h * rng.uniform(0.18, 0.25))
    x0, y0 = int(rng.integers(0, w - sw)), int(rng.integers(0, h - sh))
    d = ImageDraw.Draw(st)
    d.rectangle([x0, y0, x0 + sw, y0 + sh], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    d.text((x0 + 3, y0 + 3), f"${int(rng.integers(5, 99))}", fill=(255, 255, 255), font_size=max(8, sh // 2))
    out["sticker"] = _jpeg(st)
    out["upscale_2x"] = _jpeg(img.resize((w * 2, h * 2), Image.Resampling.BICUBIC))
    return out


def photo_eval(n_photos: int, seed: int) -> dict | None:
    if not CLOTHING.is_dir():
        return None
    files = sorted(CLOTHING.glob("*.jpg"))[:n_photos]
    rng = np.random.default_rng(seed)
    src, kinds, batches = [], [], []
    for k, f in enumerate(files):
        with Image.open(f) as im:
            img = im.convert("RGB")
        for kind, data in make_variants(img, rng).items():
            batches.append(hash_image(data))
            src.append(k)
            kinds.append(kind)
    batch = HashBatch.concat(batches)
    src = np.array(src)
    per = len(batches) // len(files)
    n_pos = len(files) * per * (per - 1) // 2
    c = candidate_pairs(batch)
    lab = (src[c[:, 0]] == src[c[:, 1]]).astype(np.int64)
    return dict(c=c, lab=lab, n_pos=n_pos, kinds=np.array(kinds), n_photos=len(files), n_images=len(batches))


# ------------------------------------------------------------------ report
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller corpus and photo set")
    ap.add_argument("--n-ads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--photos", type=int, default=None, help="real photos to vary (default all / 400 quick)")
    args = ap.parse_args()
    n_ads = args.n_ads or (120 if args.quick else 240)
    n_photos = args.photos or (400 if args.quick else 100_000)

    s = sample_eval(n_ads, args.seed)
    print(f"### Synthetic corpus: make_sample(n_ads={n_ads}, seed={args.seed})\n")
    print(f"{len(s['batch'])} images hashed ({len(s['errors'])} invalid files rejected as expected), "
          f"{s['n_pos']} positive pairs, {s['n_rel']} relayout pairs, "
          f"{len(s['batch']) * (len(s['batch']) - 1) // 2 - s['n_pos'] - s['n_rel']} negative pairs; "
          f"generate {s['t_make']:.1f} s, hash {s['t_hash']:.2f} s\n")
    c, lab = s["c"], s["lab"]
    print("pHash radius sweep (+ exact aHash key), by dHash radius (None = pHash alone); "
          "cells: precision / recall\n")
    print("| pHash r | " + " | ".join(f"dHash {d}" for d in D_RADII) + " | relayout recall |")
    print("|---|" + "---|" * (len(D_RADII) + 1))
    for pr in P_RADII:
        cells = []
        for dr in D_RADII:
            _, _, p, r = prf(accept(c, pr, dr), lab, s["n_pos"])
            cells.append(f"{fmt(p)} / {fmt(r)}")
        rel = int((accept(c, pr, None) & (lab == 2)).sum())
        print(f"| {pr} | " + " | ".join(cells) + f" | {rel}/{s['n_rel']} |")

    pred = accept(c, DEFAULT_PHASH_RADIUS, DEFAULT_DHASH_RADIUS)
    tp, fp, p, r = prf(pred, lab, s["n_pos"])
    print(f"\n**Defaults** pHash <= {DEFAULT_PHASH_RADIUS} and dHash <= {DEFAULT_DHASH_RADIUS} "
          f"(or equal aHash key): precision {fmt(p)} ({fp} FP), recall {fmt(r)} ({tp}/{s['n_pos']})\n")
    hit = {(int(i), int(j)) for i, j in c[pred][:, :2]}
    by_kind = defaultdict(lambda: [0, 0])
    for (i, j), l in s["truth_pairs"].items():
        if l != 1:
            continue
        kinds = sorted({s["kind"][s["rel"][i]], s["kind"][s["rel"][j]]} - {"original"}) or ["original"]
        for k in kinds:
            by_kind[k][0] += (i, j) in hit
            by_kind[k][1] += 1
    print("| variant kind (pairs involving it) | recall |")
    print("|---|---|")
    for k, (h, n) in sorted(by_kind.items()):
        print(f"| {k} | {h}/{n} = {fmt(h / n)} |")

    ph = photo_eval(n_photos, args.seed)
    if ph is None:
        print("\n(real-photo check skipped: /work/shared/data/clothing not found)")
        return 0
    print(f"\n### Real photos: {ph['n_photos']} clothing photos x 6 versions = {ph['n_images']} images\n")
    print(f"{ph['n_pos']} positive pairs (versions of one photo), "
          f"{ph['n_images'] * (ph['n_images'] - 1) // 2 - ph['n_pos']} negative pairs\n")
    c, lab = ph["c"], ph["lab"]
    print("| pHash r | " + " | ".join(f"dHash {d}" for d in D_RADII) + " |")
    print("|---|" + "---|" * len(D_RADII))
    for pr in P_RADII:
        cells = []
        for dr in D_RADII:
            tp, fp, p, r = prf(accept(c, pr, dr), lab, ph["n_pos"])
            cells.append(f"{fmt(p)} / {fmt(r)}")
        print(f"| {pr} | " + " | ".join(cells) + " |")
    per = ph["n_images"] // ph["n_photos"]
    n_photo_pairs = ph["n_photos"] * (ph["n_photos"] - 1) // 2
    print(f"\nConfusions between different photos ({n_photo_pairs} photo pairs; each confused photo pair "
          f"yields up to {per * per} false version pairs):\n")
    print("| rule | precision | recall | photo pairs confused (any version) | original-original FP pairs |")
    print("|---|---|---|---|---|")
    rules = [(6, 8), (DEFAULT_PHASH_RADIUS, DEFAULT_DHASH_RADIUS), (10, 10), (10, 12), (10, None), (12, None)]
    for pr, dr in dict.fromkeys(rules):
        pred = accept(c, pr, dr)
        tp, fp, p, r = prf(pred, lab, ph["n_pos"])
        bad = c[pred & (lab == 0)]
        confused = np.unique(bad[:, :2] // per, axis=0).shape[0] if bad.size else 0
        oo = int(((bad[:, 0] % per == 0) & (bad[:, 1] % per == 0)).sum())
        tag = " (default)" if (pr, dr) == (DEFAULT_PHASH_RADIUS, DEFAULT_DHASH_RADIUS) else ""
        print(f"| pHash <= {pr}, dHash <= {dr}{tag} | {fmt(p)} | {fmt(r)} | {confused} | {oo} |")
    pred = accept(c, DEFAULT_PHASH_RADIUS, DEFAULT_DHASH_RADIUS)
    print()
    kinds = ph["kinds"]
    hit_pairs = c[pred & (lab == 1)][:, :2]
    print("| variant kind (pair with its original), defaults | recall |")
    print("|---|---|")
    orig_hit = {(int(i), int(j)) for i, j in hit_pairs}
    for v in range(1, per):
        k = kinds[v]
        h = sum((b * per, b * per + v) in orig_hit for b in range(ph["n_photos"]))
        print(f"| {k} | {h}/{ph['n_photos']} = {fmt(h / ph['n_photos'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
