"""HashIndex query latency, build time and memory at 1 M and 10 M codes, vs faiss indexes.

Data: uniformly random 64-bit codes plus, for each of the query codes, planted neighbours at
Hamming distances 1..12 (so every radius returns something). Latency = median over single-code
queries (one thread, as an ingest-time lookup would run); batch = 1,000 queries in one call.
Exactness is checked against a numpy brute force on a few queries. Baselines: faiss
``IndexBinaryFlat`` (exhaustive) and ``IndexBinaryMultiHash`` (nhash=4, b=16, nflip = r // 4,
i.e. the same pigeonhole-exact setting as ours).

Usage: ``python benchmarks/bench_hash_index.py [--quick] [--sizes 1000000 10000000] [--no-faiss-mh]``
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time

import faiss
import numpy as np

from adlens.dedup.hashing import hamming64
from adlens.dedup.index import HashIndex

RADII = [4, 8, 10, 12, 16]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_data(n: int, n_queries: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    queries = rng.integers(0, 2**64 - 1, n_queries, dtype=np.uint64, endpoint=True)
    # plant 12 neighbours per query at distances 1..12 over random positions
    pos = rng.choice(n, size=(n_queries, 12), replace=False) if n_queries * 12 <= n else None
    for qi in range(n_queries):
        for d in range(1, 13):
            bits = rng.choice(64, d, replace=False)
            mask = np.uint64(0)
            for b in bits:
                mask |= np.uint64(1) << np.uint64(int(b))
            codes[pos[qi, d - 1]] = queries[qi] ^ mask
    return codes, queries


def median_ms(fn, queries, n: int) -> float:
    ts = []
    for q in queries[:n]:
        t = time.perf_counter()
        fn(q)
        ts.append(time.perf_counter() - t)
    return 1000 * statistics.median(ts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", type=int, nargs="*", default=None)
    ap.add_argument("--queries", type=int, default=None, help="single queries timed per radius")
    ap.add_argument("--no-faiss-mh", action="store_true", help="skip faiss IndexBinaryMultiHash")
    args = ap.parse_args()
    sizes = args.sizes or ([100_000, 1_000_000] if args.quick else [1_000_000, 10_000_000])
    nq_single = args.queries or (50 if args.quick else 200)
    faiss.omp_set_num_threads(1)

    rows = []
    for n in sizes:
        codes, queries = make_data(n, 1000)
        ids = np.arange(n, dtype=np.int64) * 3 + 7  # arbitrary stable external ids
        gc.collect()
        m0 = rss_mb()
        t = time.perf_counter()
        index = HashIndex()
        index.add(ids, codes)
        t_add = time.perf_counter() - t
        t = time.perf_counter()
        index.build()  # the multi-index tables (otherwise built by the first search)
        t_tables = time.perf_counter() - t
        mem = rss_mb() - m0

        # exactness on a few queries
        for q in queries[:5]:
            for r in (8, 12):
                got = index.radius_search([q], r)[0]
                d = hamming64(codes, q)
                hit = np.flatnonzero(d <= r)
                assert np.array_equal(np.sort(got[0]), np.sort(ids[hit])), (n, r)

        res = {"n": n, "add_s": t_add, "tables_s": t_tables, "mem_mb": mem}
        for r in RADII:
            res[f"ours_r{r}"] = median_ms(lambda q: index.radius_search([q], r), queries, nq_single)
            t = time.perf_counter()
            out = index.radius_search(queries, r)
            res[f"batch_r{r}"] = (time.perf_counter() - t) / len(queries) * 1000
            res[f"hits_r{r}"] = float(np.mean([len(o[0]) for o in out]))
        res["knn10"] = median_ms(lambda q: index.knn([q], 10), queries, nq_single)
        res["knn10_near"] = median_ms(lambda q: index.knn([q], 3), queries, nq_single)

        flat = faiss.IndexBinaryFlat(64)
        flat.add(codes.view(np.uint8).reshape(-1, 8))
        xq = queries.view(np.uint8).reshape(-1, 8)
        res["flat_r8"] = median_ms(lambda q: flat.range_search(q.reshape(1, 8), 9), xq, nq_single)
        res["flat_knn10"] = median_ms(lambda q: flat.search(q.reshape(1, 8), 10), xq, nq_single)
        del flat
        if not args.no_faiss_mh:
            gc.collect()
            m1 = rss_mb()
            t = time.perf_counter()
            mh = faiss.IndexBinaryMultiHash(64, 4, 16)
            padded = np.zeros((n + 1, 8), np.uint8)  # faiss reads 8 bytes at bit offset 48
            padded[:n] = codes.view(np.uint8).reshape(-1, 8)
            mh.add(padded[:n])
            res["mh_build_s"] = time.perf_counter() - t
            res["mh_mem_mb"] = rss_mb() - m1
            qpad = np.zeros((len(xq) + 1, 8), np.uint8)
            qpad[:-1] = xq
            for r in (4, 8, 10):
                mh.nflip = r // 4
                res[f"mh_r{r}"] = median_ms(
                    lambda i: mh.range_search(qpad[i : i + 1], r + 1), np.arange(len(xq)), max(10, nq_single // 4)
                )
            del mh, padded
        rows.append(res)
        del index, codes
        gc.collect()

    print("Single-query radius search, median ms (1 thread); mean hits per query in brackets\n")
    print("| codes | " + " | ".join(f"r={r}" for r in RADII) + " | k-NN k=10 (random q) | k-NN k=3 (planted) |")
    print("|---|" + "---|" * (len(RADII) + 2))
    for res in rows:
        cells = [f"{res[f'ours_r{r}']:.3f} ({res[f'hits_r{r}']:.0f})" for r in RADII]
        print(f"| {res['n']:,} | " + " | ".join(cells) + f" | {res['knn10']:.2f} | {res['knn10_near']:.3f} |")
    print("\nBatch of 1,000 queries in one call, ms per query\n")
    print("| codes | " + " | ".join(f"r={r}" for r in RADII) + " |")
    print("|---|" + "---|" * len(RADII))
    for res in rows:
        print(f"| {res['n']:,} | " + " | ".join(f"{res[f'batch_r{r}']:.3f}" for r in RADII) + " |")
    print("\nBuild and memory; faiss baselines (single query, median ms)\n")
    head = "| codes | add (s) | tables (s) | RSS (MB) | faiss Flat r=8 | faiss Flat k-NN 10"
    if not args.no_faiss_mh:
        head += " | faiss MultiHash build (s) | MultiHash RSS (MB) | MH r=4 | MH r=8 | MH r=10"
    print(head + " |")
    print("|---" * head.count("|") + "|")
    for res in rows:
        line = (f"| {res['n']:,} | {res['add_s']:.2f} | {res['tables_s']:.2f} | {res['mem_mb']:.0f} | "
                f"{res['flat_r8']:.2f} | {res['flat_knn10']:.2f}")
        if not args.no_faiss_mh:
            line += (f" | {res['mh_build_s']:.1f} | {res['mh_mem_mb']:.0f} | {res['mh_r4']:.2f} | "
                     f"{res['mh_r8']:.2f} | {res['mh_r10']:.2f}")
        print(line + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
