"""`adlens dedup check` latency: one image looked up in a ledger of N hashes (default 1 M).

Builds a throwaway workspace whose catalog holds N synthetic ledger entries (random 64-bit
hashes, plus planted near-duplicates of the query), then times the library call behind the
command — hash the query image + exact-key lookup + pHash radius search + candidate
confirmation in SQL — and, as the baseline in the same run, a linear numpy scan of all N codes.

    python benchmarks/bench_ledger_check.py [--n 1000000] [--quick]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from PIL import Image

from adlens.config import Settings
from adlens.dedup.hashing import hamming64
from adlens.ingest.images import hash_image
from adlens.store import schema
from adlens.store.ledger import to_signed64
from adlens.workspace import init_workspace


def _query_image() -> bytes:
    rng = np.random.default_rng(1)
    arr = (rng.random((250, 300, 3)) * 255).astype(np.uint8)
    arr[60:190, 80:220] = [200, 40, 40]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _fill(ws, n: int, query_phash: int, query_dhash: int, rng) -> None:
    phash = rng.integers(0, 2**63, n, dtype=np.int64).view(np.uint64) ^ rng.integers(0, 2, n, dtype=np.uint64) << np.uint64(63)
    dhash = rng.integers(0, 2**63, n, dtype=np.int64).view(np.uint64)
    for k, i in enumerate(rng.choice(n, 5, replace=False)):  # planted near-duplicates
        phash[i] = np.uint64(query_phash) ^ np.uint64((1 << k) | (1 << (20 + k)))
        dhash[i] = np.uint64(query_dhash) ^ np.uint64(1 << k)
    now = datetime.now(UTC)
    chunk = 100_000
    with ws.engine.begin() as conn:
        for s in range(0, n, chunk):
            ids = range(s + 1, min(n, s + chunk) + 1)
            conn.execute(sa.insert(schema.images), [
                {"id": i, "sha256": f"{i:064x}", "width": 300, "height": 250, "format": "JPEG", "mode": "RGB",
                 "n_bytes": 1, "created_at": now} for i in ids])
            conn.execute(sa.insert(schema.image_hashes), [
                {"image_id": i, "ahash_md5": f"{i:032x}", "ahash_bits": b"", "phash": to_signed64(int(phash[i - 1])),
                 "dhash": to_signed64(int(dhash[i - 1]))} for i in ids])
            conn.execute(sa.insert(schema.ledger), [
                {"image_id": i, "first_seen": "2026-01-01", "last_seen": "2026-01-01", "times_seen": 1,
                 "canonical_id": i} for i in ids])
    return phash


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()
    n = 100_000 if args.quick else args.n
    rng = np.random.default_rng(0)
    data = _query_image()
    with tempfile.TemporaryDirectory() as tmp:
        ws = init_workspace(Path(tmp) / "ws", Settings(workspace=Path(tmp) / "ws"))
        from adlens.ingest.validate import load_image

        q = hash_image(load_image(data, "query.jpg")[1])
        t0 = time.perf_counter()
        codes = _fill(ws, n, q.phash, q.dhash, rng)
        fill_s = time.perf_counter() - t0
        ledger = ws.ledger()
        t0 = time.perf_counter()
        _ = ledger.index  # load/build the index once, as a long-running process would
        build_s = time.perf_counter() - t0
        times, scan_times = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            _info, rgb = load_image(data, "query.jpg")
            h = hash_image(rgb)
            with ws.engine.connect() as conn:
                matches = ledger.find(conn, h)
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            d = hamming64(codes, np.uint64(h.phash))
            _hits = np.flatnonzero(d <= ledger.phash_radius)
            scan_times.append(time.perf_counter() - t0)
        assert len(matches) == 5, f"expected the 5 planted near-duplicates, found {len(matches)}"
        ws.close()
    print("| ledger size | what | median ms | p95 ms |")
    print("|---|---|---|---|")
    print(f"| {n:,} | adlens check (decode + hash + index + SQL confirm) | {statistics.median(times)*1e3:.2f} | {np.percentile(times, 95)*1e3:.2f} |")
    print(f"| {n:,} | baseline: numpy popcount scan of all pHashes (search only) | {statistics.median(scan_times)*1e3:.2f} | {np.percentile(scan_times, 95)*1e3:.2f} |")
    print(f"\ncatalog fill {fill_s:.1f} s, index load/build {build_s:.2f} s")


if __name__ == "__main__":
    main()
