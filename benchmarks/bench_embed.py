"""Embedding throughput: images (JPEG file -> unit vector) and texts, ONNX Runtime vs torch.

Images: EfficientNet-Lite0 end to end through ``embed_files`` (data-parallel: each of the
threads decodes a batch and runs it on a one-thread session) with ONNX Runtime and, in the same
run, with the same network in torch eager mode; plus ONNX Runtime on pre-decoded pixels
(inference alone); the same for the int8 model (``efficientnet-lite0-int8``,
:mod:`adlens.embed.quantize`, the default of new workspaces) and its cosine to fp32; both models
again interleaved against the earlier pipelines (decode threads feeding one two-thread session;
session 12's data-parallel decode with Pillow's resize and runs of 32); and, because other processes share this CPU, fp32 vs int8 inference on ONE
thread measured in images per CPU-second of this process (``time.process_time``), which
waiting for the CPU does not inflate; interleaved repeats.
Files: the first N clothing JPEGs (``/work/shared/data/clothing``, max side 256 px) when
present, else N rendered 256 px JPEGs in a temp dir.

Texts: all-MiniLM-L6-v2 int8 ONNX (adlens.embed.text.MiniLM) vs sentence-transformers (torch
fp32) on real ad copies (``/work/shared/data/ad_transcripts``) when present, else generated
sentences; also the cosine between the two models' vectors.

Other processes share this CPU: each configuration runs ``--repeats`` times after a warm-up
and the table shows the median (and min-max); the load average is printed with the results.

Usage: ``python benchmarks/bench_embed.py [--quick] [--repeats 3] [--n-images 512]``;
``--ab ROUNDS`` runs only the int8 end-to-end A/B of the decode (now vs session 12's).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from adlens.embed.base import default_num_threads
from adlens.embed.image import EfficientNetLite0, EfficientNetLite0Int8, EfficientNetLite0Torch, load_rgb

CLOTHING = Path("/work/shared/data/clothing/images")
TRANSCRIPTS = Path("/work/shared/data/ad_transcripts/ad_transcripts.csv")


def image_files(n: int, tmp: Path) -> tuple[list[str], str]:
    if CLOTHING.is_dir():
        files = sorted(str(p) for p in CLOTHING.glob("*.jpg"))[:n]
        if len(files) == n:
            return files, f"clothing JPEGs (max side 256 px), n={n}"
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        yy, xx = np.mgrid[0:256, 0:200] / 256
        img = np.stack([rng.uniform(0.2, 0.8) + rng.uniform(-0.4, 0.4) * xx + rng.uniform(-0.4, 0.4) * yy
                        for _ in range(3)], -1)
        img += rng.normal(scale=0.03, size=img.shape)
        p = tmp / f"{i}.jpg"
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(p, quality=90)
        files.append(str(p))
    return files, f"rendered 256x200 JPEGs, n={n}"


class PillowDecodeInt8(EfficientNetLite0Int8):
    """Baseline: the decode of session 12 (Pillow's bicubic resize, pasted on a new canvas),
    the same bytes as adlens's C resize, for the same model."""

    def _pixels(self, source, out=None):
        im = load_rgb(source, max_pixels=self.max_pixels, max_bytes=self.max_bytes, draft_size=self.input_size)
        size = self.input_size
        w, h = im.size
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = Image.new("RGB", (size, size), (255, 255, 255))
        canvas.paste(im.resize((nw, nh), Image.BICUBIC), ((size - nw) // 2, (size - nh) // 2))
        a = np.asarray(canvas, dtype=np.uint8)
        if out is not None:
            out[...] = a
        return a


def ab_decode(args) -> int:
    """int8 end to end, interleaved rounds: adlens's data-parallel pipeline (C resize into reused
    batch buffers, runs of 4) vs session 12's (Pillow resize into new arrays, runs of 32)."""
    with tempfile.TemporaryDirectory() as tmp:
        files, desc = image_files(args.n_images or 512, Path(tmp))
        print(f"images: {desc}; load average {os.getloadavg()}")
        embs = {"now": EfficientNetLite0Int8(args.model_dir, batch_size=32),
                "session 12": PillowDecodeInt8(args.model_dir, batch_size=32, run_batch=32)}
        for e in embs.values():
            e.embed_files(files[:64])
        wall, cpu = {k: [] for k in embs}, {k: [] for k in embs}
        for r in range(args.ab):
            for k, e in embs.items():
                t, c = time.perf_counter(), time.process_time()
                e.embed_files(files)
                wall[k].append(len(files) / (time.perf_counter() - t))
                cpu[k].append((time.process_time() - c) / len(files) * 1000)
            print(time.strftime("%H:%M:%S"), "  ".join(f"{k}: {wall[k][-1]:.1f}" for k in embs), flush=True)
        print("\n| pipeline | median img/s (min-max) | CPU-ms/img | rounds won |")
        print("|---|---:|---:|---:|")
        for k in embs:
            won = sum(wall[k][i] > max(wall[o][i] for o in embs if o != k) for i in range(args.ab))
            print(f"| {k} | {statistics.median(wall[k]):.1f} ({min(wall[k]):.1f}-{max(wall[k]):.1f}) | "
                  f"{statistics.median(cpu[k]):.2f} | {won}/{args.ab} |")
        print(f"load average after: {os.getloadavg()}")
    return 0


def sentences(n: int) -> tuple[list[str], str]:
    if TRANSCRIPTS.exists():
        with open(TRANSCRIPTS, newline="", encoding="utf-8", errors="replace") as f:
            rows = [r.get("Ad_copy") or "" for r in csv.DictReader(f)]
        rows = [r.strip() for r in rows if r and r.strip()][:n]
        if len(rows) == n:
            lens = [len(r.split()) for r in rows]
            return rows, f"real ad copies, n={n}, median {int(np.median(lens))} words"
    rng = np.random.default_rng(0)
    words = "sale shoes summer new free shipping order today best price running jacket women men kids".split()
    rows = [" ".join(rng.choice(words, size=int(rng.integers(5, 40)))) for _ in range(n)]
    return rows, f"generated sentences, n={n}"


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up (session creation, caches)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def row(name: str, n: int, times: list[float], unit: str) -> None:
    rates = sorted(n / t for t in times)
    print(f"| {name:52s} | {statistics.median(rates):8.1f} | {rates[0]:7.1f}-{rates[-1]:<7.1f} | {unit} |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--n-images", type=int, default=None)
    ap.add_argument("--n-texts", type=int, default=None)
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--no-torch", action="store_true", help="skip the torch baselines")
    ap.add_argument("--ab", type=int, default=0, metavar="ROUNDS",
                    help="only the int8 end-to-end A/B: adlens's decode vs session 12's, ROUNDS interleaved rounds")
    args = ap.parse_args(argv)
    if args.ab:
        return ab_decode(args)
    repeats = args.repeats or (1 if args.quick else 3)
    n_img = args.n_images or (64 if args.quick else 512)
    n_txt = args.n_texts or (128 if args.quick else 1000)
    threads = default_num_threads()
    print(f"{threads} threads; load average before: {os.getloadavg()}")

    with tempfile.TemporaryDirectory() as tmp:
        files, desc = image_files(n_img, Path(tmp))
        print(f"\nimages: {desc}\n")
        print("| configuration                                        | median/s | min-max          | unit |")
        print("|------------------------------------------------------|---------:|------------------|------|")
        ort_emb = EfficientNetLite0(args.model_dir, batch_size=32)
        ort_emb.session
        row("ORT fp32 end to end (batch 32)", len(files), timed(lambda: ort_emb.embed_files(files), repeats), "img/s")
        px = np.stack([ort_emb._pixels(f) for f in files[: min(len(files), 256)]])
        row("ORT fp32 inference only (pre-decoded pixels)", len(px), timed(lambda: ort_emb.embed_pixels(px), repeats), "img/s")
        q_emb = EfficientNetLite0Int8(args.model_dir, batch_size=32)
        q_emb.session
        row("ORT int8 end to end, the default model", len(files), timed(lambda: q_emb.embed_files(files), repeats), "img/s")
        row("ORT int8 inference only (pre-decoded pixels)", len(px), timed(lambda: q_emb.embed_pixels(px), repeats), "img/s")
        t = time.perf_counter()
        for f in files[:256]:
            ort_emb._pixels(f)
        dec = (time.perf_counter() - t) / min(len(files), 256)
        print(f"| {'decode + resize only (1 thread)':52s} | {1 / dec:8.1f} | {'':16s} | img/s |")
        pil = PillowDecodeInt8(args.model_dir)
        t = time.perf_counter()
        for f in files[:256]:
            pil._pixels(f)
        dec = (time.perf_counter() - t) / min(len(files), 256)
        print(f"| {'decode + Pillow resize only (1 thread, session 12)':52s} | {1 / dec:8.1f} | {'':16s} | img/s |")
        # one thread each, images per CPU-second: robust to other processes on the machine
        one = {"fp32": EfficientNetLite0(args.model_dir, num_threads=1), "int8": EfficientNetLite0Int8(args.model_dir, num_threads=1)}
        cpu = {k: [] for k in one}
        for e in one.values():
            e.embed_pixels(px[:32])
        for _ in range(repeats):
            for k, e in one.items():  # interleaved
                t = time.process_time()
                e.embed_pixels(px)
                cpu[k].append(len(px) / (time.process_time() - t))
        for k, v in cpu.items():
            print(f"| {f'{k} inference, 1 thread, per CPU-second':52s} | {statistics.median(v):8.1f} | "
                  f"{min(v):7.1f}-{max(v):<7.1f} | img/CPU-s |")
        # end to end, fp32 / int8 x the data-parallel file pipeline (adlens's, with 2+ threads) / the
        # pipelined one it replaced (decode threads feeding one multi-threaded session), interleaved
        e2e = {}
        for name, cls in (("fp32", EfficientNetLite0), ("int8", EfficientNetLite0Int8)):
            for how in ("data-parallel", "pipelined"):
                e = cls(args.model_dir, batch_size=32)
                if how == "pipelined":
                    e._data_parallel_workers = lambda: 0  # the baseline: same model, the other pipeline
                e2e[f"{name} e2e, {how}"] = e
        # session 12's data-parallel pipeline: Pillow's resize into new arrays, runs of 32
        e2e["int8 e2e, session 12 decode, runs of 32"] = PillowDecodeInt8(args.model_dir, batch_size=32, run_batch=32)
        wall, cpu_ms = {k: [] for k in e2e}, {k: [] for k in e2e}
        for e in e2e.values():
            e.embed_files(files[:32])
        last = {}
        for _ in range(repeats):
            for k, e in e2e.items():
                t, c = time.perf_counter(), time.process_time()
                last[k] = e.embed_files(files).vectors
                wall[k].append(len(files) / (time.perf_counter() - t))
                cpu_ms[k].append((time.process_time() - c) / len(files) * 1000)
        for k in e2e:
            print(f"| {k + f' ({statistics.median(cpu_ms[k]):.1f} CPU-ms/img)':52s} | {statistics.median(wall[k]):8.1f} | "
                  f"{min(wall[k]):7.1f}-{max(wall[k]):<7.1f} | img/s |")
        print(f"| {'load average now: ' + ', '.join(f'{x:.2f}' for x in os.getloadavg()):52s} | | | |")
        same = np.array_equal(last["int8 e2e, data-parallel"], last["int8 e2e, session 12 decode, runs of 32"])
        print(f"\nint8 vectors, adlens decode vs session 12's (Pillow resize, runs of 32): identical = {same}")
        a, b = ort_emb.embed_pixels(px), q_emb.embed_pixels(px)
        cos = np.sum(a * b, axis=1)
        print(f"\nint8 vs fp32 cosine ({len(px)} images): mean {cos.mean():.4f}, min {cos.min():.4f}; "
              f"load average {os.getloadavg()}")
        if not args.no_torch:
            t_emb = EfficientNetLite0Torch(batch_size=32)
            n_t = min(len(files), 64 if args.quick else 128)
            row("torch eager end to end (decode pipelined, batch 32)", n_t,
                timed(lambda: t_emb.embed_files(files[:n_t]), repeats), "img/s")
            a = ort_emb.embed_files(files[:16]).vectors
            b = t_emb.embed_files(files[:16]).vectors
            print(f"\nORT vs torch cosine on 16 images: min {np.min(np.sum(a * b, 1)):.6f}")

    texts, tdesc = sentences(n_txt)
    # headlines: the first 12 words of each copy (typical banner text); full copies are long
    short = [" ".join(t.split()[:12]) for t in texts]
    print(f"\ntexts: {tdesc}; 'short' = first 12 words of each\n")
    print("| configuration                                        | median/s | min-max          | unit |")
    print("|------------------------------------------------------|---------:|------------------|------|")
    from adlens.embed.text import MiniLM

    m = MiniLM(batch_size=64)
    ref = None
    if not args.no_torch:
        from adlens.embed.text import MiniLMTorch

        ref = MiniLMTorch(batch_size=64)
    n_long = min(len(texts), 64 if args.quick else 256)
    for label, data in (("short", short), ("full copy", texts[:n_long])):
        row(f"MiniLM int8 ONNX Runtime, {label}", len(data), timed(lambda: m.embed_texts(data), repeats), "sent/s")
        if ref is not None:
            row(f"MiniLM sentence-transformers torch fp32, {label}", len(data),
                timed(lambda: ref.embed_texts(data), repeats), "sent/s")
    if ref is not None:
        both = short + texts[:n_long]
        cos = np.sum(m.embed_texts(both) * ref.embed_texts(both), axis=1)
        print(f"\nint8 ORT vs torch cosine ({len(both)} texts): min {cos.min():.4f}, mean {cos.mean():.4f}, "
              f"p1 {np.percentile(cos, 1):.4f}")
    print(f"\nload average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
