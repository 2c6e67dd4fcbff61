"""Hashing throughput: ``adlens.dedup.hash_files`` vs ``imagehash`` on the same JPEG files.

Data sets (read from disk, page cache warm -- one untimed pass first):

* ``clothing``: real product photos (max side 256 px) from ``/work/shared/data/clothing``
  (skipped when absent; replaced by rendered 256 px JPEGs);
* ``render1080``: 1080x1080 ad-like JPEGs rendered here (photo inset, gradient, shapes, text,
  mild sensor noise; quality 90) into a temp dir.

imagehash computes ``phash + dhash + average_hash`` from one ``Image.open`` per file, in one
thread and in a 2-thread pool. Every configuration runs ``--repeats`` times; the table shows
the median images/s (other processes share the CPU, so medians, not best runs) and the CPU
time per image summed over threads (independent of contention: 2 idle cores give at most
``2000 / cpu_ms`` images/s).

Usage: ``python benchmarks/bench_hashing.py [--quick] [--repeats 5] [--n1080 300]``
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from adlens.dedup.hashing import hash_files, hash_greys

CLOTHING = Path("/work/shared/data/clothing/images")


def _photo(rng: np.random.Generator) -> Image.Image:
    try:
        from skimage import data

        name = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field"][int(rng.integers(0, 5))]
        return Image.fromarray(getattr(data, name)()).convert("RGB")
    except Exception:  # no scikit-image photos: a smooth random field instead
        low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        return Image.fromarray(low).resize((512, 512), Image.Resampling.BICUBIC)


def render_ad(rng: np.random.Generator, size: int) -> Image.Image:
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, size)[:, None, None]
    bg = (c0 * (1 - t) + c1 * t).astype(np.uint8) * np.ones((1, size, 1), np.uint8)
    img = Image.fromarray(bg)
    photo = _photo(rng)
    pw = int(size * rng.uniform(0.4, 0.7))
    photo = photo.resize((pw, pw * photo.height // photo.width), Image.Resampling.BILINEAR)
    img.paste(photo, (int(rng.integers(0, size - pw)), int(rng.integers(0, max(1, size - photo.height)))))
    d = ImageDraw.Draw(img)
    for _ in range(4):
        x, y = rng.integers(0, size - size // 5, 2)
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        d.ellipse([int(x), int(y), int(x + size // 6), int(y + size // 6)], fill=fill)
    d.rectangle([size // 10, int(size * 0.82), int(size * 0.9), int(size * 0.95)], fill=(20, 20, 20))
    label = f"SALE {int(rng.integers(10, 70))}% OFF"
    d.text((size // 8, int(size * 0.85)), label, fill=(255, 255, 255), font_size=size // 16)
    arr = np.asarray(img.filter(ImageFilter.SMOOTH), dtype=np.int16)
    arr = arr + rng.normal(0, 2.0, arr.shape).astype(np.int16)  # mild sensor/scan noise
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def render_set(out: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = out / f"ad_{size}_{i:05d}.jpg"
        render_ad(rng, size).save(p, "JPEG", quality=90)
        paths.append(p)
    return paths


def imagehash_files(paths, workers: int = 1) -> int:
    import imagehash

    def one(p):
        with Image.open(p) as im:
            return imagehash.phash(im), imagehash.dhash(im), imagehash.average_hash(im)

    if workers == 1:
        return len([one(p) for p in paths])
    with ThreadPoolExecutor(workers) as pool:
        return len(list(pool.map(one, paths)))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn, repeats: int) -> tuple[float, list[float], float]:
    """Median wall time, all wall times, median CPU seconds (all threads) per run."""
    fn()  # warm the page cache and imports
    runs, cpus = [], []
    for _ in range(repeats):
        c, t = _cpu(), time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
        cpus.append(_cpu() - c)
    return statistics.median(runs), runs, statistics.median(cpus)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--n1080", type=int, default=None, help="rendered 1080x1080 JPEGs")
    ap.add_argument("--no-imagehash", action="store_true")
    args = ap.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    n1080 = args.n1080 or (60 if args.quick else 300)
    try:
        import imagehash  # noqa: F401
    except ImportError:
        args.no_imagehash = True

    with tempfile.TemporaryDirectory() as tmp:
        sets = {}
        if CLOTHING.is_dir():
            files = sorted(CLOTHING.glob("*.jpg"))
            sets["clothing (real, <=256 px)"] = files[:500] if args.quick else files
        else:
            sets["rendered 256 px (no /work/shared)"] = render_set(Path(tmp), 300 if args.quick else 2000, 256)
        sets["rendered 1080x1080"] = render_set(Path(tmp), n1080, 1080, seed=1)

        print(f"{os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}, "
              f"median of {repeats} runs, warm page cache\n")
        print("| data | files | mean KB | method | images/s | runs (images/s) | CPU ms / image |")
        print("|---|---|---|---|---|---|---|")
        for name, paths in sets.items():
            kb = np.mean([p.stat().st_size for p in paths]) / 1024
            methods = {
                "adlens hash_files, 1 thread": lambda: hash_files(paths, workers=1),
                "adlens hash_files, 2 threads": lambda: hash_files(paths, workers=2),
                "adlens hash_files, 2 threads, draft=False": lambda: hash_files(paths, workers=2, draft=False),
            }
            if not args.no_imagehash:
                methods["imagehash p+d+a, 1 thread"] = lambda: imagehash_files(paths, 1)
                methods["imagehash p+d+a, 2 threads"] = lambda: imagehash_files(paths, 2)
            for mname, fn in methods.items():
                med, runs, cpu = timed(fn, repeats)
                rates = ", ".join(f"{len(paths) / r:.0f}" for r in runs)
                print(f"| {name} | {len(paths)} | {kb:.0f} | {mname} | **{len(paths) / med:.0f}** | {rates} "
                      f"| {1000 * cpu / len(paths):.2f} |")

        # the arithmetic alone (32x32 greys -> all hashes), to show decoding dominates
        greys = np.random.default_rng(0).integers(0, 256, (20000, 32, 32), dtype=np.uint8)
        med, _, _ = timed(lambda: hash_greys(greys), repeats)
        print(f"\n`hash_greys` alone: {len(greys) / med:,.0f} images/s (aHash+MD5, pHash, dHash; 1 thread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
