"""Exact Hamming search over 64-bit codes with stable int64 ids (``HashIndex``).

How it works (and why)
----------------------
*Radius search* uses **multi-index hashing** (Norouzi, Punjani & Fleet, 2014): the 64-bit code
is cut into ``m`` disjoint substrings (``m = 4`` x 16 bits below 2**18 codes, ``m = 3`` x
21/21/22 bits from there on, i.e. about log2(n) bits per substring as the paper recommends).
By the (generalised) pigeonhole principle, for per-table flip budgets ``t_h >= -1`` with
``sum(t_h + 1) = r + 1``, two codes within Hamming distance ``r`` differ in at most ``t_h`` bits
in at least one substring ``h`` (otherwise the distance would be ``>= sum(t_h + 1) > r``).
Probing, in each table ``h``, every bucket within ``t_h`` bit flips of the query's substring
(``t_h = -1``: table skipped) therefore finds a superset of the answer, and each candidate is
checked with its full 64-bit distance: the result is **exact** for any ``r``. The budgets are
spread evenly, e.g. r = 8 -> (2, 1, 1, 1) with 4 tables (188 probes) or (2, 2, 2) with 3.

A table is a counting-sorted array of positions (radix argsort of the substring) plus dense
bucket offsets, ~4 bytes per code per table. Probing and verification are vectorised over
queries, probes and candidates. When some ``t_h > 3``, or when the buckets hit would cover much
of the data anyway (skewed codes), the query falls back to an exhaustive, also exact,
``faiss.IndexBinaryFlat`` scan.

Measured (``benchmarks/bench_hash_index.py``, one thread, single query, random codes): r = 8
takes 0.3 ms at 1 M codes and 0.5 ms at 10 M (r = 10: 0.6 / 1.3 ms), against 1.3 / 16 ms for
``faiss.IndexBinaryFlat``; faiss' own ``IndexBinaryMultiHash`` (nhash=4, b=16, exact with
nflip = r // 4) needs 10 / 161 ms at r = 8, 22 s and ~600 MB to build at 10 M (ours: ~9 s,
~450 MB including the ids and a faiss flat copy used for fallbacks and k-NN).

*k-NN* first tries a radius-7 search (cheap); queries with fewer than ``k`` hits use faiss'
exhaustive k-NN to find the k-th distance, then a range search at that distance, so ties at
the k-th distance are resolved deterministically (smallest ids first).

Codes added after the tables were built live in a small unindexed tail that is scanned with
``np.bitwise_count``; the tables are rebuilt lazily when the tail grows past 1/16 of the index
(amortised O(1) per added code).

Example
-------
>>> import numpy as np
>>> index = HashIndex()
>>> index.add([10, 11, 12], np.array([0b0000, 0b0111, 0b1111], dtype=np.uint64))
>>> [(ids.tolist(), d.tolist()) for ids, d in index.radius_search([0b0001], 2)]
[([10, 11], [1, 2])]
>>> index.knn([0b1110], 2)[0].tolist()
[[12, 11]]
"""

from __future__ import annotations

import contextlib
import os
from functools import lru_cache
from itertools import combinations

import faiss
import numpy as np

from adlens.cpus import available_cpus
from adlens.dedup.hashing import to_uint64

__all__ = ["HashIndex"]

_MAX_NFLIP = 3  # 4 flips = 5,985+ probes per 21-bit table: a flat scan is cheaper
_KNN_FIRST_RADIUS = 7
_CHUNK_CANDIDATES = 1 << 22  # candidates gathered at once (bounds temporary memory)
_CHUNK_PROBES = 1 << 21  # (query, probe) pairs computed at once
_SCAN_COST = 80  # a probe or candidate costs ~50-150x a faiss flat comparison (measured)
_FORMAT = "adlens.HashIndex/1"


def _layout(n: int) -> tuple[int, ...]:
    """Substring widths for n codes (sum 64): ~log2(n) bits each, at least 16."""
    return (16, 16, 16, 16) if n < (1 << 18) else (21, 21, 22)


def _budgets(widths: tuple[int, ...], radius: int) -> tuple[int, ...]:
    """Per-table flip budgets t_h >= -1 with sum(t_h + 1) == radius + 1 (narrow tables first)."""
    m = len(widths)
    order = sorted(range(m), key=lambda h: widths[h])
    s = [(radius + 1) // m] * m
    for h in order[: (radius + 1) % m]:
        s[h] += 1
    return tuple(x - 1 for x in s)


@lru_cache(maxsize=None)
def _flip_masks(bits: int, nflip: int) -> np.ndarray:
    """All ``bits``-bit masks with at most ``nflip`` bits set (0 first)."""
    masks = [0]
    for k in range(1, nflip + 1):
        masks += [sum(1 << b for b in c) for c in combinations(range(bits), k)]
    return np.array(masks, dtype=np.int64)


def _argsort_keys(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of uint32 keys < 2**32 as two 16-bit LSD radix passes (numpy's stable
    sort is a radix sort only for <= 16-bit types; ~10x faster than a merge sort here)."""
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    high = (keys >> 16).astype(np.uint16)
    if not high.any():
        return order
    return order[np.argsort(high[order], kind="stable")]


def _multi_arange(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for each pair, vectorised."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(lens)
    offsets = np.repeat(starts - (ends - lens), lens)
    return offsets + np.arange(total, dtype=np.int64)


@contextlib.contextmanager
def _faiss_threads(n: int):
    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, n))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old)


def _empty3():
    e = np.zeros(0, np.int64)
    return e, e, e


class HashIndex:
    """Exact Hamming-distance index over 64-bit codes (pHash / dHash) with int64 ids.

    Parameters
    ----------
    n_threads : int, optional
        faiss threads for batched exhaustive scans (default: ``min(2, available_cpus())``).
        Single queries always use one thread (measured faster: no OpenMP start-up or
        contention with other processes).

    Notes
    -----
    Memory is about 8 (code) + 8 (id) + 8 (faiss copy) + 12-16 (tables) = 36-40 bytes per
    code, plus 34 MB of bucket offsets from 2**18 codes on: ~400 MB at 10 M codes (measured
    RSS growth 452 MB including build temporaries). Ids must be unique non-negative integers;
    codes may be given as ``uint64`` or as the catalog's signed ``int64`` (same bits).
    Searches may rebuild the tables, so one index must not be searched from several threads
    while it is being added to (concurrent searches after :meth:`build` are fine).

    Example
    -------
    >>> import numpy as np
    >>> idx = HashIndex()
    >>> idx.add(np.arange(3), np.array([1, 3, 7], np.uint64))
    >>> ids, dists = idx.radius_search([1], 1)[0]
    >>> ids.tolist(), dists.tolist()
    ([0, 1], [0, 1])
    """

    def __init__(self, n_threads: int | None = None):
        self.n_threads = int(n_threads or min(2, available_cpus()))
        self._codes = np.zeros(0, np.uint64)
        self._ids = np.zeros(0, np.int64)
        self._n = 0
        self._flat = faiss.IndexBinaryFlat(64)
        # multi-index tables over self._codes[:self._n_indexed]
        self._n_indexed = 0
        self._widths: tuple[int, ...] = _layout(0)
        self._orders = np.zeros(0, np.int32)  # (m * n_indexed,) positions, table after table
        self._offsets = np.zeros(0, np.int64)  # dense bucket bounds of all tables, concatenated
        self._tbase = np.zeros(0, np.int64)  # where each table's offsets start
        self._bounds = np.zeros((0, 2), np.int64)
        self._sorted_ids = np.zeros(0, np.int64)  # ids of the indexed part, sorted (dup check)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"HashIndex(n={self._n}, indexed={self._n_indexed})"

    @property
    def ids(self) -> np.ndarray:
        """Stored ids (n,) int64, in insertion order (read-only view)."""
        v = self._ids[: self._n]
        v.flags.writeable = False
        return v

    @property
    def codes(self) -> np.ndarray:
        """Stored codes (n,) uint64, aligned with :attr:`ids` (read-only view)."""
        v = self._codes[: self._n]
        v.flags.writeable = False
        return v

    def add(self, ids, codes) -> None:
        """Add codes with their external ids.

        Parameters
        ----------
        ids : array-like (n,) of int
            Unique, non-negative, not already in the index.
        codes : array-like (n,) of uint64 / int64
        """
        ids = np.asarray(ids)
        if ids.ndim == 0:
            ids = ids[None]
        codes = np.atleast_1d(to_uint64(codes)).ravel()
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"ids must be integers, got {ids.dtype}")
        ids = ids.astype(np.int64).ravel()
        if ids.shape != codes.shape:
            raise ValueError(f"ids and codes differ in length: {ids.shape[0]} vs {codes.shape[0]}")
        if ids.size == 0:
            return
        if ids.min() < 0:
            raise ValueError("ids must be non-negative")
        srt = np.sort(ids)
        if srt.size > 1 and np.any(srt[1:] == srt[:-1]):
            raise ValueError("ids contain duplicates")
        dup = self._existing(ids)
        if dup.size:
            raise ValueError(f"ids already in the index: {dup[:10].tolist()}")
        n_new = self._n + ids.size
        if n_new > self._codes.size:  # amortised growth
            cap = max(n_new, 2 * self._codes.size, 1024)
            self._codes = np.resize(self._codes, cap)
            self._ids = np.resize(self._ids, cap)
        self._codes[self._n : n_new] = codes
        self._ids[self._n : n_new] = ids
        self._flat.add(np.ascontiguousarray(codes).view(np.uint8).reshape(-1, 8))
        self._n = n_new

    def build(self) -> HashIndex:
        """Build the multi-index tables now (otherwise done lazily by the first search that
        needs them, e.g. right after :meth:`load`). Returns ``self``."""
        if self._tail_len():
            self._build()
        return self

    def _existing(self, ids: np.ndarray) -> np.ndarray:
        found = []
        if self._sorted_ids.size:
            pos = np.searchsorted(self._sorted_ids, ids).clip(max=self._sorted_ids.size - 1)
            found.append(ids[self._sorted_ids[pos] == ids])
        tail = self._ids[self._n_indexed : self._n]
        if tail.size:
            found.append(ids[np.isin(ids, tail)])
        return np.concatenate(found) if found else np.zeros(0, np.int64)

    # ------------------------------------------------------------------ tables
    def _tail_len(self) -> int:
        return self._n - self._n_indexed

    def _maybe_rebuild(self, n_queries: int) -> None:
        tail = self._tail_len()
        if tail == 0:
            return
        # keep the scanned tail small relative to the index, and cheap relative to the batch
        if tail > max(4096, self._n_indexed // 16) or tail * n_queries > (1 << 26):
            self._build()

    def _build(self) -> None:
        n = self._n
        codes = self._codes[:n]
        widths = _layout(n)
        m = len(widths)
        idx_dtype = np.int32 if m * n < 2**31 else np.int64
        orders = np.empty(m * n, idx_dtype)
        sizes = np.array([(1 << w) + 1 for w in widths])
        tbase = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        offsets = np.empty(int(sizes.sum()), idx_dtype)
        shift = 0
        for h, w in enumerate(widths):
            keys = ((codes >> np.uint64(shift)) & np.uint64((1 << w) - 1)).astype(np.uint32)
            orders[h * n : (h + 1) * n] = _argsort_keys(keys)
            o = offsets[tbase[h] : tbase[h] + sizes[h]]
            o[0] = h * n
            np.cumsum(np.bincount(keys, minlength=1 << w), out=o[1:])
            o[1:] += h * n
            shift += w
        self._widths, self._orders, self._offsets, self._tbase = widths, orders, offsets, tbase
        # (start, end) of bucket k is bounds[k]: a strided view, no copy
        step = offsets.itemsize
        self._bounds = np.lib.stride_tricks.as_strided(
            offsets, shape=(offsets.size - 1, 2), strides=(step, step), writeable=False
        )
        self._sorted_ids = np.sort(self._ids[:n])
        self._n_indexed = n

    # ------------------------------------------------------------------ search
    @staticmethod
    def _as_queries(codes) -> np.ndarray:
        q = np.atleast_1d(to_uint64(codes))
        if q.ndim != 1:
            raise ValueError(f"query codes must be 1-D, got shape {q.shape}")
        return np.ascontiguousarray(q)

    def radius_search(self, codes, radius: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """All stored codes within Hamming distance ``<= radius`` of each query (exact).

        Parameters
        ----------
        codes : array-like (q,) of uint64 / int64
        radius : int, >= 0

        Returns
        -------
        list of q tuples ``(ids, dists)``: int64 arrays sorted by distance, then id.
        """
        q = self._as_queries(codes)
        radius = int(radius)
        if radius < 0:
            raise ValueError("radius must be >= 0")
        nq = q.size
        if nq == 0:
            return []
        if self._n == 0:
            empty = np.zeros(0, np.int64)
            return [(empty, empty) for _ in range(nq)]
        qi, pos, dist = self._radius_raw(q, radius)
        return self._split(nq, qi, self._ids[pos], dist)

    def radius_pairs(self, codes, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like :meth:`radius_search` but flat: ``(query_index, ids, dists)`` int64 arrays.

        One row per hit, sorted by query, then distance, then id. Cheaper than a list of
        per-query arrays for large batches (e.g. an all-pairs self join).
        """
        q = self._as_queries(codes)
        radius = int(radius)
        if radius < 0:
            raise ValueError("radius must be >= 0")
        if q.size == 0 or self._n == 0:
            e = np.zeros(0, np.int64)
            return e, e, e
        qi, pos, dist = self._radius_raw(q, radius)
        ids = self._ids[pos]
        order = np.lexsort((ids, dist, qi))
        return qi[order], ids[order], dist[order]

    def _radius_raw(self, q: np.ndarray, radius: int):
        """(query index, stored position, distance) of all hits, unordered."""
        if radius >= 64:
            return self._flat_range(q, radius)
        self._maybe_rebuild(q.size)
        parts = []
        rest = np.arange(q.size)  # queries not answered by the tables
        if self._n_indexed:
            budgets = _budgets(self._widths, radius)
            if max(budgets) > _MAX_NFLIP:
                return self._flat_range(q, radius)
            qi, pos, d, rest = self._mih(q, radius, budgets)
            parts.append((qi, pos, d))
            if self._tail_len():
                done = np.ones(q.size, bool)
                done[rest] = False
                sel = np.flatnonzero(done)
                tq, tp, td = self._scan_tail(q[sel], radius)
                parts.append((sel[tq], tp, td))
        elif self._tail_len():  # nothing indexed yet: the whole (small) index is the tail
            parts.append(self._scan_tail(q, radius))
            rest = rest[:0]
        if rest.size:  # tables would touch most of the data: exhaustive scan (covers the tail)
            fq, fp, fd = self._flat_range(q[rest], radius)
            parts.append((rest[fq], fp, fd))
        if not parts:
            return _empty3()
        if len(parts) == 1:
            return parts[0]
        return tuple(np.concatenate(a) for a in zip(*parts))

    def _probes(self, budgets: tuple[int, ...]):
        """Per probe: table and key xor-mask ((P,) arrays); per table: shift and mask."""
        table, flips = [], []
        for h, (w, t) in enumerate(zip(self._widths, budgets)):
            if t >= 0:
                f = _flip_masks(w, t)
                table.append(np.full(f.size, h))
                flips.append(f)
        table, flips = np.concatenate(table), np.concatenate(flips)
        shifts = np.concatenate([[0], np.cumsum(self._widths)[:-1]]).astype(np.uint64)
        masks = np.array([(1 << w) - 1 for w in self._widths], np.uint64)
        return table, flips, shifts, masks

    def _mih(self, q: np.ndarray, radius: int, budgets: tuple[int, ...]):
        """Multi-index search of the indexed part. Returns hits and the queries left for a
        linear scan (their buckets were too full to pay off)."""
        p_table, p_flip, shifts, masks = self._probes(budgets)
        t = np.array(budgets)
        n_probe = p_flip.size
        keys = ((q[:, None] >> shifts[None, :]) & masks[None, :]).astype(np.int64)  # (nq, m)
        base = self._tbase[p_table]  # (P,) where each probe's table offsets start
        out_q, out_p, out_d, rest = [], [], [], []
        block = max(1, _CHUNK_PROBES // n_probe)
        for b0 in range(0, q.size, block):
            b1 = min(q.size, b0 + block)
            probes = (keys[b0:b1, p_table] ^ p_flip[None, :]) + base[None, :]  # (nb, P)
            bounds = self._bounds[probes]  # (nb, P, 2): one random access per probe
            starts = bounds[..., 0].astype(np.int64)
            lens = bounds[..., 1] - starts
            per_query = lens.sum(axis=1)
            scan = _SCAN_COST * (per_query + n_probe) > self._n_indexed
            if scan.any():
                rest.append(np.flatnonzero(scan) + b0)
                lens[scan] = 0
                per_query[scan] = 0
            # only non-empty buckets matter (most are empty with 21-bit substrings)
            seg = np.flatnonzero(lens.ravel())
            seg_start, seg_len = starts.ravel()[seg], lens.ravel()[seg]
            seg_q = seg // n_probe + b0
            seg_table = p_table[seg % n_probe]
            seg_end = np.cumsum(seg_len)
            lo = 0
            while lo < seg.size:  # candidate chunks bounded by _CHUNK_CANDIDATES
                base_c = seg_end[lo - 1] if lo else 0
                hi = int(np.searchsorted(seg_end, base_c + _CHUNK_CANDIDATES, side="right"))
                hi = min(seg.size, max(hi, lo + 1))
                ln = seg_len[lo:hi]
                cand = self._orders[_multi_arange(seg_start[lo:hi], ln)]
                x = self._codes[cand] ^ np.repeat(q[seg_q[lo:hi]], ln)
                d = np.bitwise_count(x)
                keep = np.flatnonzero(d <= radius)
                # which segment (query, table) each surviving candidate came from
                s_of = np.searchsorted(np.cumsum(ln), keep, side="right") + lo
                x = x[keep]
                # a hit appears once per table whose substring is within budget: keep the first
                close = np.bitwise_count((x[:, None] >> shifts[None, :]) & masks[None, :]) <= t
                first = np.argmax(close, axis=1)
                ok = first == seg_table[s_of]
                out_q.append(seg_q[s_of[ok]])
                out_p.append(cand[keep[ok]].astype(np.int64))
                out_d.append(d[keep[ok]].astype(np.int64))
                lo = hi
        rest = np.concatenate(rest) if rest else np.zeros(0, np.int64)
        if not out_q:
            return (*_empty3(), rest)
        return np.concatenate(out_q), np.concatenate(out_p), np.concatenate(out_d), rest

    def _scan_tail(self, q: np.ndarray, radius: int):
        tail = self._codes[self._n_indexed : self._n]
        if q.size == 0 or tail.size == 0:
            return _empty3()
        out_q, out_p, out_d = [], [], []
        step = max(1, (1 << 22) // max(1, tail.size))
        for lo in range(0, q.size, step):
            d = np.bitwise_count(q[lo : lo + step, None] ^ tail[None, :])
            qq, pp = np.nonzero(d <= radius)
            out_q.append(qq + lo)
            out_p.append(pp + self._n_indexed)
            out_d.append(d[qq, pp].astype(np.int64))
        return np.concatenate(out_q), np.concatenate(out_p), np.concatenate(out_d)

    def _flat_range(self, q: np.ndarray, radius: int):
        if q.size == 0:
            return _empty3()
        xq = np.ascontiguousarray(q).view(np.uint8).reshape(-1, 8)
        with _faiss_threads(1 if q.size == 1 else self.n_threads):
            lims, d, pos = self._flat.range_search(xq, min(radius, 64) + 1)  # faiss: d < radius
        qi = np.repeat(np.arange(q.size, dtype=np.int64), np.diff(lims.astype(np.int64)))
        return qi, pos.astype(np.int64), d.astype(np.int64)

    @staticmethod
    def _split(nq: int, qi: np.ndarray, ids: np.ndarray, dist: np.ndarray):
        if nq == 1:
            order = np.lexsort((ids, dist))
            return [(ids[order], dist[order])]
        order = np.lexsort((ids, dist, qi))
        ids, dist = ids[order], dist[order]
        cuts = np.cumsum(np.bincount(qi, minlength=nq))[:-1]
        return list(zip(np.split(ids, cuts), np.split(dist, cuts)))

    def knn(self, codes, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest stored codes of each query (exact; ties -> smaller id first).

        Returns
        -------
        ids : ndarray (q, k) int64, padded with -1 when the index holds fewer than k codes
        dists : ndarray (q, k) int64, padded with -1
        """
        q = self._as_queries(codes)
        k = int(k)
        if k <= 0:
            raise ValueError("k must be >= 1")
        nq = q.size
        out_ids = np.full((nq, k), -1, np.int64)
        out_d = np.full((nq, k), -1, np.int64)
        if nq == 0 or self._n == 0:
            return out_ids, out_d
        kk = min(k, self._n)
        todo = np.arange(nq)
        if kk <= 64:  # a small-radius pass answers most near-duplicate queries cheaply
            res = self.radius_search(q, _KNN_FIRST_RADIUS)
            done = np.array([r[0].size >= kk for r in res], bool)
            for i in np.flatnonzero(done):
                out_ids[i, :kk], out_d[i, :kk] = res[i][0][:kk], res[i][1][:kk]
            todo = np.flatnonzero(~done)
        if todo.size:
            xq = q[todo].view(np.uint8).reshape(-1, 8)
            with _faiss_threads(1 if todo.size == 1 else self.n_threads):
                dk, _ = self._flat.search(xq, kk)
            kth = dk[:, kk - 1].astype(np.int64)
            for r in np.unique(kth):  # range search at the k-th distance: all ties, then sort
                sel = todo[kth == r]
                res = self.radius_search(q[sel], int(r))
                for i, (ids, d) in zip(sel, res):
                    out_ids[i, :kk], out_d[i, :kk] = ids[:kk], d[:kk]
        return out_ids, out_d

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write ids and codes to ``path`` (a numpy ``.npz`` archive; atomic replace).

        Tables are not stored: they are rebuilt on first search after :meth:`load`
        (a few seconds per 10 M codes), which keeps the file format independent of
        faiss versions.
        """
        path = os.fspath(path)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            np.savez(
                f,
                format=np.array(_FORMAT),
                ids=self._ids[: self._n],
                codes=self._codes[: self._n],
            )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, n_threads: int | None = None) -> HashIndex:
        """Read an index written by :meth:`save`."""
        try:
            with np.load(os.fspath(path), allow_pickle=False) as z:
                fmt = str(z["format"])
                ids, codes = z["ids"], z["codes"]
        except OSError:
            raise
        except Exception as e:
            raise ValueError(f"{os.fspath(path)}: not a HashIndex file ({type(e).__name__}: {e})") from None
        if fmt != _FORMAT:
            raise ValueError(f"{os.fspath(path)}: unsupported index format {fmt!r} (expected {_FORMAT!r})")
        index = cls(n_threads=n_threads)
        index.add(ids, codes)
        return index
