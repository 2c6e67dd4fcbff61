"""VectorIndex latency and recall: exact top-10 at 100k, approximate top-10 at 1M.

Data: synthetic unit vectors shaped like embeddings (a mixture of 2,000 clusters with an
anisotropic spread: a few strong directions per cluster plus isotropic noise), so that
nearest neighbours are meaningful; queries come from the same distribution and are not in
the index. Random isotropic vectors would be the worst case for approximate search.

- exact: 100k vectors at 1280-d (raw EfficientNet-Lite0 size), 256-d and 128-d (PCA-reduced
  sizes); one query at a time (latency) and a batch of queries (throughput, ms per query).
  Single queries run alternately on FAISS's flat scan (``IndexFlatIP``, the baseline) and on
  adlens's bounded exact scan (``adlens.index.bounded_scan``), and every answer is compared.
  Besides the synthetic vectors, ``--data`` (default ``/work/shared/data/clothing``, skipped when
  absent) gives a second set with the spectrum of real embeddings: the 2,605 real product photos
  are embedded (EfficientNet-Lite0, ~40 s, cached under ``~/.cache/adlens/bench``), and 100k vectors
  are drawn from a Gaussian with their mean and covariance, then normalised. How much the bounded
  scan can skip depends on exactly this spectrum; the synthetic clusters have none (2,000 random
  centres span all 1280 directions), a worst case for it.
- approximate at 1M vectors, 128-d (the PCA-reduced size: 1M x 1280 floats would be 5 GB):
  IVF (nlist 4096, several nprobe) and HNSW (M 32, several efSearch): recall@10 against the
  exact top-10 of the same index, and latency. Build times are printed too.

Timings: FAISS OpenMP threads = cores; every latency is the median over queries (other
processes share this CPU).

Usage: ``python benchmarks/bench_vector_index.py [--quick] [--n-exact 100000] [--n-approx 1000000]
[--approx ivf,hnsw] [--data DIR] [--exact-only]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from adlens.embed.base import default_num_threads
from adlens.index import VectorIndex


def embedding_like(n: int, d: int, seed: int, n_clusters: int = 2000, chunk: int = 100_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    crng = np.random.default_rng(12345)  # the same clusters for base and queries
    centers = crng.normal(size=(n_clusters, d)).astype(np.float32)
    dirs = crng.normal(size=(n_clusters, 4, d)).astype(np.float32) * 0.6
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        c = rng.integers(0, n_clusters, m)
        x = centers[c] + np.einsum("nk,nkd->nd", rng.normal(size=(m, 4)).astype(np.float32), dirs[c])
        x += rng.normal(scale=0.45, size=(m, d)).astype(np.float32)
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def single_latencies(idx: VectorIndex, q: np.ndarray, k: int) -> list[float]:
    idx.search(q[:2], k)
    ts = []
    for i in range(len(q)):
        t = time.perf_counter()
        idx.search(q[i : i + 1], k)
        ts.append(time.perf_counter() - t)
    return ts


def paired_latencies(plain: VectorIndex, fast: VectorIndex, q: np.ndarray, k: int, filter=None):
    """Single queries alternately on both indexes (the VM's speed drifts); answers compared."""
    plain.search(q[:2], k)
    t = time.perf_counter()
    fast.search(q[:2], k)  # builds the codes
    build = time.perf_counter() - t
    tp, tf, same = [], [], 0
    for i in range(len(q)):
        order = (plain, fast) if i % 2 else (fast, plain)
        out = {}
        for idx in order:
            t = time.perf_counter()
            out[id(idx)] = idx.search(q[i : i + 1], k, filter=filter)
            (tp if idx is plain else tf).append(time.perf_counter() - t)
        (sp, ip), (sf, if_) = out[id(plain)], out[id(fast)]
        same += bool(np.allclose(sp, sf, rtol=1e-5, atol=1e-5) and set(ip[0]) == set(if_[0]))
    return tp, tf, same, build


def real_spectrum(n: int, data: Path, seed: int) -> np.ndarray | None:
    """n unit vectors from a Gaussian with the mean and covariance of real photo embeddings."""
    cache = Path.home() / ".cache" / "adlens" / "bench" / "clothing_efficientnet_lite0.npy"
    if cache.exists():
        real = np.load(cache)
    elif (data / "labels.csv").exists():
        import csv

        from adlens.embed.image import EfficientNetLite0

        with open(data / "labels.csv", newline="") as f:
            paths = [str(data / "images" / f"{r['image']}.jpg") for r in csv.DictReader(f)]
        real = EfficientNetLite0().embed_files(paths).vectors.astype(np.float32)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, real)
    else:
        return None
    real = real.astype(np.float64)
    vals, vecs = np.linalg.eigh(np.cov(real.T))
    rng = np.random.default_rng(seed)
    out = np.empty((n, real.shape[1]), np.float32)
    for s in range(0, n, 20_000):
        m = min(20_000, n - s)
        z = real.mean(0) + (rng.standard_normal((m, len(vals))) * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
        out[s : s + m] = z / np.linalg.norm(z, axis=1, keepdims=True)
    return out


def batch_ms(idx: VectorIndex, q: np.ndarray, k: int, repeats: int = 3) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        idx.search(q, k)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) / len(q) * 1000


def recall_at_k(got: np.ndarray, ref: np.ndarray) -> float:
    k = ref.shape[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, ref)]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20k exact, 100k approximate, fewer queries")
    ap.add_argument("--n-exact", type=int, default=None)
    ap.add_argument("--n-approx", type=int, default=None)
    ap.add_argument("--dims", default=None, help="exact-search dims, comma-separated (default 1280,256,128)")
    ap.add_argument("--approx-dim", type=int, default=128)
    ap.add_argument("--approx", default="ivf,hnsw")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/clothing"),
                    help="real photos for the real-embedding-spectrum set (skipped when absent)")
    ap.add_argument("--exact-only", action="store_true", help="stop after the exact-search table")
    args = ap.parse_args(argv)
    n_exact = args.n_exact or (20_000 if args.quick else 100_000)
    n_approx = args.n_approx or (100_000 if args.quick else 1_000_000)
    n_q = 50 if args.quick else 200
    dims = [int(x) for x in (args.dims or "1280,256,128").split(",")]
    k = args.k
    threads = default_num_threads()
    print(f"{threads} FAISS threads; load average {os.getloadavg()}\n")

    print(f"## exact top-{k} among {n_exact:,} vectors\n")
    print("| vectors | dim | FAISS flat: single query ms (median, p90) | bounded scan: single query ms (median, p90) "
          f"| codes built in | same answer | batch of {n_q}, FAISS: ms/query |")
    print("|---|-----:|---:|---:|---:|---:|---:|")
    sets = [("synthetic clusters", d, embedding_like(n_exact, d, seed=1), embedding_like(n_q, d, seed=2)) for d in dims]
    spectrum = real_spectrum(n_exact + n_q, args.data, seed=5) if "1280" in [str(d) for d in dims] else None
    if spectrum is not None:
        sets.append(("real-embedding spectrum", 1280, spectrum[:n_exact], spectrum[n_exact:]))
    else:
        print(f"(no real-embedding spectrum: no data at {args.data})")
    # a category per vector: 10 categories of 10 % and one of 2 % (exact_filter_max brute force below 20k)
    cats = np.random.default_rng(6).choice(np.array([f"c{i}" for i in range(11)]), n_exact, p=[0.098] * 10 + [0.02])
    for name, d, xb, q in sets:
        plain = VectorIndex(d, approx_threshold=None, num_threads=threads, bounded_scan_min=None)
        fast = VectorIndex(d, approx_threshold=None, num_threads=threads, bounded_scan_min=1)
        plain.add(xb, metadata={"category": cats})
        fast.add(xb, metadata={"category": cats})
        for label, flt in (("", None), (", filter 1 category (~10 %)", {"category": "c0"}),
                           (", filter 9 categories (~88 %)", {"category": [f"c{i}" for i in range(1, 10)]})):
            tp, tf, same, build = paired_latencies(plain, fast, q, k, flt)
            tp, tf = sorted(tp), sorted(tf)
            print(f"| {name}{label} | {d} | {statistics.median(tp) * 1000:.2f} ({tp[int(0.9 * len(tp))] * 1000:.2f}) "
                  f"| **{statistics.median(tf) * 1000:.2f}** ({tf[int(0.9 * len(tf))] * 1000:.2f}) | {build:.1f} s "
                  f"| {same}/{len(q)} | {batch_ms(plain, q, k) if flt is None else float('nan'):.3f} |", flush=True)
        del xb, plain, fast
    del sets, spectrum
    if args.exact_only:
        return 0

    d = args.approx_dim
    print(f"\n## approximate top-{k} among {n_approx:,} vectors, {d}-d (PCA-reduced size)\n")
    t = time.perf_counter()
    xb = embedding_like(n_approx, d, seed=3)
    q = embedding_like(n_q * 5 if not args.quick else n_q, d, seed=4)
    print(f"generated in {time.perf_counter() - t:.1f} s; {len(q)} queries")
    flat = VectorIndex(d, approx_threshold=None, num_threads=threads)
    flat.add(xb)
    t = time.perf_counter()
    _, truth = flat.search(q, k)
    exact_ms = (time.perf_counter() - t) / len(q) * 1000
    ts = sorted(single_latencies(flat, q[:50], k))
    print(f"exact baseline: {statistics.median(ts) * 1000:.2f} ms single query, {exact_ms:.3f} ms/query batched\n")
    del flat

    print("| index | build s | setting | recall@10 | single query ms (median) | batched ms/query |")
    print("|-------|--------:|---------|----------:|-------------------------:|-----------------:|")
    for kind in [a.strip() for a in args.approx.split(",") if a.strip()]:
        t = time.perf_counter()
        idx = VectorIndex(d, approx=kind, approx_threshold=1, num_threads=threads,
                          nlist=4096 if n_approx >= 500_000 else None, ef_construction=64, hnsw_m=32)
        idx.add(xb)
        build = time.perf_counter() - t
        settings = [("nprobe", v) for v in (8, 16, 32, 64)] if kind == "ivf" else [("efSearch", v) for v in (32, 64, 128, 256)]
        for name, v in settings:
            idx.set_search_params(**({"nprobe": v} if kind == "ivf" else {"ef_search": v}))
            _, got = idx.search(q, k)
            rec = recall_at_k(got, truth)
            lat = statistics.median(single_latencies(idx, q[:100], k)) * 1000
            print(f"| {kind:5s} | {build:7.1f} | {name}={v:<4d} | {rec:9.4f} | {lat:24.3f} | {batch_ms(idx, q, k):16.4f} |", flush=True)
        del idx
    print("\ntargets: exact <= 5 ms/query at 100k; approximate recall@10 >= 0.95 at 1M")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
