"""Exact top-k inner-product search that reads int8 codes first and float vectors only where needed.

Why: an exact query over 100k x 1280-d float32 vectors reads 512 MB; on this class of machine that
is memory-bound at 24-46 ms whatever the code does. Reading fewer bytes is the only way down.

How (every step is a bound, so the answer is the same top-k as the full float scan):

1. An orthogonal rotation ``R`` (the right singular vectors of a sample, uncentred, so the mean
   direction and the strongest ones come first) leaves every inner product unchanged:
   ``q . x = (qR) . (xR)``. Each rotated vector ``y = xR`` is split into a *head* (its first
   ``head`` coordinates, most of the energy of real embeddings) and a *tail*, and both are stored
   as int8 codes with one scale per coordinate. Per vector we keep the quantisation error norms of
   head and tail and the norm of the float tail.
2. Stage 1 scans the head codes of all vectors (a fifth of the bytes for 1280-d, head 256):
   ``a1 = p_head . y^_head`` with ``p = qR``; Cauchy-Schwarz bounds what it misses:
   ``|q.x - a1| <= |p_head| * err_head + |p_tail| * |y_tail| + slack``.
3. A lower bound ``tau`` of the true k-th best score is the k-th best *exact* score among the k
   vectors with the best ``a1`` (real scores of k distinct vectors). Vectors whose upper bound is
   below ``tau`` cannot be in the top k.
4. Stage 2 adds the tail codes of the survivors (``a2``, error ``|p_head| err_head + |p_tail|
   err_tail + slack``), raises ``tau`` the same way and drops more.
5. The survivors are scored exactly on the float vectors; their top k is the answer.

``slack`` = 1e-4 * |q| * |x| covers float rounding (of the rotation, of the code sums, of a rotation
that is orthogonal only to float32 precision): those errors are ~1e-6 relative, so the margin is
wide and costs almost no pruning. Vectors added after the rotation was fitted are coded with the
same rotation and scales (clipped codes: their errors are measured, so bounds stay valid; pruning
just gets weaker until a rebuild).

How much it prunes depends on the data, not the answer: on real EfficientNet-Lite0 embeddings
(head 256 holds 92 % of the energy) about a fifth of the vectors survive stage 1; on vectors with
no dominant directions nothing is pruned and the scan reads the int8 codes of everything (still
a quarter of the float bytes). See BENCHMARKS.md.

The scan kernels are C compiled on first use (:mod:`adlens.native`); without a compiler the index
keeps using FAISS's flat scan.
"""

from __future__ import annotations

import ctypes
import itertools
from pathlib import Path

import numpy as np

from adlens import native

__all__ = ["BoundedScan", "kernels_available"]

_SLACK = 1e-4
# A filter that allows at most this share of the rows is scanned row by row (see search)
_SELECTIVE = 0.25
_FORMAT = 2

# int8 codes x an int16 query, summed exactly in integers. AVX2 (checked at run time: the cache
# may be shared between machines) widens 16 codes at a time and multiplies pairs (vpmaddwd); the
# portable loop is left to the compiler. Sums go to int64 every 1024 coordinates, so no int32
# overflows (|code * query| <= 127 * 16383, times 1024 < 2^31).
_C_SRC = r"""
#include <stdint.h>
#include <stddef.h>
#define BLOCK 1024
static int64_t dot_generic(const int8_t *c, const int16_t *q, int64_t m) {
    int64_t total = 0;
    for (int64_t b = 0; b < m; b += BLOCK) {
        int64_t e = b + BLOCK < m ? b + BLOCK : m;
        int32_t s = 0;
        for (int64_t j = b; j < e; j++) s += (int32_t)c[j] * (int32_t)q[j];
        total += s;
    }
    return total;
}
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2")))
static int64_t dot_avx2(const int8_t *c, const int16_t *q, int64_t m) {
    int64_t total = 0, j = 0;
    while (j + 32 <= m) {
        int64_t e = j + BLOCK < m ? j + BLOCK : m;
        __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
        for (; j + 32 <= e; j += 32) {
            __m256i c0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(c + j)));
            __m256i c1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(c + j + 16)));
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(c0, _mm256_loadu_si256((const __m256i *)(q + j))));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(c1, _mm256_loadu_si256((const __m256i *)(q + j + 16))));
        }
        /* a block's whole sum is < 1024 * 127 * 16383 < 2^31, so the lanes add up in int32 */
        __m256i a = _mm256_add_epi32(a0, a1);
        __m128i r = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0x4e));
        r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xb1));
        total += _mm_cvtsi128_si32(r);
    }
    for (; j < m; j++) total += (int32_t)c[j] * (int32_t)q[j];
    return total;
}
/* four rows at once, each of at most BLOCK codes (one int32 partial per row): the query is
   loaded once per 16 coordinates for all four, and the four horizontal sums share one reduction.
   Full scan over 100k x 256 codes: 2.5-2.7 vs 3.3-3.4 ms. Not used for the survivors' rows: with
   scattered rows it was slower (15.4 vs 19.2 ms a query when nothing is pruned). */
__attribute__((target("avx2")))
static void dot4_avx2(const int8_t *c0, const int8_t *c1, const int8_t *c2, const int8_t *c3,
                      int64_t m, const int16_t *q, int32_t *v) {
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (int64_t j = 0; j < m; j += 16) {
        __m256i qq = _mm256_loadu_si256((const __m256i *)(q + j));
        s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(c0 + j))), qq));
        s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(c1 + j))), qq));
        s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(c2 + j))), qq));
        s3 = _mm256_add_epi32(s3, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(c3 + j))), qq));
    }
    /* two rounds of pairwise adds leave row i's partial sums in lanes i and i + 4 */
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
    _mm_storeu_si128((__m128i *)v, _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
}
#define DOT4_OK(m) ((m) % 16 == 0 && (m) <= BLOCK)
static int simd_off = 0;
static int use_avx2(void) {
    static int v = -1;
    if (v < 0) { __builtin_cpu_init(); v = __builtin_cpu_supports("avx2"); }
    return v && !simd_off;
}
void adlens_scan_portable(int on) { simd_off = on; }
#define DOT(c, q, m) (avx2 ? dot_avx2(c, q, m) : dot_generic(c, q, m))
#else
static int use_avx2(void) { return 0; }
void adlens_scan_portable(int on) { (void)on; }
#define DOT(c, q, m) dot_generic(c, q, m)
#endif
/* out[i] = t * (codes[i] . q) for all n rows */
void adlens_scan_all(const int8_t *codes, int64_t n, int64_t m, const int16_t *q, float t, float *out) {
    int avx2 = use_avx2(); (void)avx2;
    int64_t i = 0;
#if defined(__GNUC__) && defined(__x86_64__)
    if (avx2 && DOT4_OK(m))
        for (int32_t v[4]; i + 4 <= n; i += 4) {
            const int8_t *c = codes + i * m;
            dot4_avx2(c, c + m, c + 2 * m, c + 3 * m, m, q, v);
            for (int u = 0; u < 4; u++) out[i + u] = t * (float)v[u];
        }
#endif
    for (; i < n; i++) out[i] = t * (float)DOT(codes + i * m, q, m);
}
/* out[k] += t * (codes[rows[k]] . q) */
void adlens_scan_rows(const int8_t *codes, int64_t m, const int16_t *q, float t, const int64_t *rows,
                      int64_t r, float *out) {
    int avx2 = use_avx2(); (void)avx2;
    int64_t k = 0;
    for (; k < r; k++) {
        if (k + 2 < r) {  /* rows are scattered: fetch the one after next while this one is summed */
            const int8_t *nx = codes + rows[k + 2] * m;
            for (int64_t b = 0; b < m; b += 64) __builtin_prefetch(nx + b);
        }
        out[k] += t * (float)DOT(codes + rows[k] * m, q, m);
    }
}
/* rows i with a[i] + w0 e0[i] + w1 e1[i] + w2 e2[i] + w3 e3[i] >= tau, in order; for each kept
   row also a[i] and the part of its bound without the w3 term (what later stages still use) */
#if defined(__GNUC__) && defined(__x86_64__)
/* eight rows at a time; the same float operations in the same order as the loop below (no FMA:
   the library is built with -ffp-contract=off), so the same rows are kept */
__attribute__((target("avx2")))
static int64_t keep_avx2(const float *a, int64_t n, const float *e0, const float *e1, const float *e2,
                         const float *e3, const float *w, float tau, int64_t *out, float *out_a,
                         float *out_known, int64_t *done) {
    __m256 w0 = _mm256_set1_ps(w[0]), w1 = _mm256_set1_ps(w[1]), w2 = _mm256_set1_ps(w[2]);
    __m256 w3 = _mm256_set1_ps(w[3]), t = _mm256_set1_ps(tau);
    int64_t r = 0, i = 0;
    float known[8];
    for (; i + 8 <= n; i += 8) {
        __m256 k = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(w0, _mm256_loadu_ps(e0 + i)),
                                               _mm256_mul_ps(w1, _mm256_loadu_ps(e1 + i))),
                                 _mm256_mul_ps(w2, _mm256_loadu_ps(e2 + i)));
        __m256 b = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(a + i), k), _mm256_mul_ps(w3, _mm256_loadu_ps(e3 + i)));
        int m = _mm256_movemask_ps(_mm256_cmp_ps(b, t, _CMP_GE_OQ));
        if (!m) continue;
        _mm256_storeu_ps(known, k);
        while (m) {
            int j = __builtin_ctz(m);
            m &= m - 1;
            out[r] = i + j; out_a[r] = a[i + j]; out_known[r] = known[j]; r++;
        }
    }
    *done = i;
    return r;
}
#endif
int64_t adlens_keep(const float *a, int64_t n, const float *e0, const float *e1, const float *e2,
                    const float *e3, const float *w, float tau, int64_t *out, float *out_a, float *out_known) {
    int64_t r = 0, start = 0;
#if defined(__GNUC__) && defined(__x86_64__)
    if (use_avx2()) r = keep_avx2(a, n, e0, e1, e2, e3, w, tau, out, out_a, out_known, &start);
#endif
    for (int64_t i = start; i < n; i++) {
        float known = w[0] * e0[i] + w[1] * e1[i] + w[2] * e2[i];
        if (a[i] + known + w[3] * e3[i] >= tau) { out[r] = i; out_a[r] = a[i]; out_known[r] = known; r++; }
    }
    return r;
}
/* indices of the k largest a[i] (k <= n), in no particular order: a min-heap of k */
void adlens_topk(const float *a, int64_t n, int64_t k, int64_t *out) {
    for (int64_t i = 0; i < k; i++) {  /* heapify the first k */
        int64_t c = i;
        out[c] = i;
        while (c > 0) {
            int64_t p = (c - 1) / 2;
            if (a[out[p]] <= a[out[c]]) break;
            int64_t t = out[p]; out[p] = out[c]; out[c] = t; c = p;
        }
    }
    for (int64_t i = k; i < n; i++) {
        if (!(a[i] > a[out[0]])) continue;
        out[0] = i;
        int64_t c = 0;
        for (;;) {
            int64_t l = 2 * c + 1, r = l + 1, m = c;
            if (l < k && a[out[l]] < a[out[m]]) m = l;
            if (r < k && a[out[r]] < a[out[m]]) m = r;
            if (m == c) break;
            int64_t t = out[m]; out[m] = out[c]; out[c] = t; c = m;
        }
    }
}
int adlens_scan_simd(void) { return use_avx2(); }
"""


_LIB: list = []  # the loaded kernels, once (native.load hashes the source on every call)


def _kernels():
    if _LIB:
        return _LIB[0]
    P, I, F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
    lib = native.load("bscan", _C_SRC, {
        "adlens_scan_all": ([P, I, I, P, F, P], None),
        "adlens_scan_rows": ([P, I, P, F, P, I, P], None),
        "adlens_keep": ([P, I, P, P, P, P, P, F, P, P, P], I),
        "adlens_topk": ([P, I, I, P], None),
        "adlens_scan_simd": ([], ctypes.c_int),
        "adlens_scan_portable": ([ctypes.c_int], None),  # tests: force the portable loop
    })
    if lib is not None:
        _LIB.append(lib)
    return lib


def kernels_available() -> bool:
    return _kernels() is not None


def _ptr(a: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(a.ctypes.data)


def _int16_query(w: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``w`` (float64) as int16 codes ``qi`` with ``w ~ t * qi``; returns ``(qi, t, max |w - t * qi|)``
    with ``t`` exactly the float32 the kernel multiplies by, so the bound uses the real residual."""
    amax = float(np.abs(w).max()) if len(w) else 0.0
    t = float(np.float32(amax / 16383.0))
    if t == 0.0:  # nothing to code, or below float32's range: all codes 0, the residual is all of w
        t = 1.0
    qi = np.clip(np.rint(w / t), -16383, 16383).astype(np.int16)
    resid = float(np.abs(w - qi.astype(np.float64) * t).max()) if len(w) else 0.0
    return qi, t, resid


class BoundedScan:
    """Int8 codes and bounds of the rows of a float32 matrix, for exact top-k (module docs).

    Args:
        segments: where the rotated coordinates are cut into the segments read stage by stage
            (the last segment runs to the end); ``(256,)`` = coordinates 0-255 of every row, then
            256-end of the survivors. More cuts were slower at 100k x 1280-d: (128, 256) 6.6 ms,
            (96, 192, 384) 7.7 ms vs 5.0 ms a query (the middle stages read too many rows).
        fit_sample: rows used to fit the rotation (a random sample above this).
        seed: sample seed.
        rotate: fit the rotation (False: identity, for vectors already in a PCA basis; the
            answers are exact either way, only the pruning changes).
    """

    def __init__(self, segments: tuple[int, ...] = (256,), fit_sample: int = 20_000, seed: int = 0,
                 rotate: bool = True):
        cuts = [int(c) for c in segments]
        if not cuts or cuts[0] < 1 or any(b <= a for a, b in itertools.pairwise(cuts)):
            raise ValueError(f"segments must be increasing cut points >= 1, got {segments}")
        self.segments = tuple(cuts)
        self.fit_sample = int(fit_sample)
        self.seed = int(seed)
        self.rotate = bool(rotate)
        self.rotation: np.ndarray | None = None
        self.n = 0

    # ------------------------------------------------------------------ building

    def build(self, x: np.ndarray, chunk: int = 8192) -> BoundedScan:
        """Fit the rotation and scales on ``x`` (n, d) float32 and code every row."""
        x = np.asarray(x, dtype=np.float32)
        n, d = x.shape
        if self.rotate:
            rng = np.random.default_rng(self.seed)
            sample = x if n <= self.fit_sample else x[np.sort(rng.choice(n, self.fit_sample, replace=False))]
            # eigenvectors of the (uncentred) second-moment matrix = right singular vectors of the
            # sample, strongest first; always a full orthonormal basis, even with fewer rows than d
            s64 = sample.astype(np.float64)
            _, vecs = np.linalg.eigh(s64.T @ s64)
            rot, _ = np.linalg.qr(vecs[:, ::-1])  # re-orthogonalised before the float32 cast
        else:
            rot = np.eye(d)
        self.rotation = np.ascontiguousarray(rot, dtype=np.float32)
        self.dim = d
        self.bounds = [0, *[c for c in self.segments if c < d], d]
        amax = np.zeros(d, np.float32)
        for s in range(0, n, chunk):
            amax = np.maximum(amax, np.abs(x[s:s + chunk] @ self.rotation).max(axis=0))
        self.scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        nseg = len(self.bounds) - 1
        self.codes = [np.zeros((0, self.bounds[i + 1] - self.bounds[i]), np.int8) for i in range(nseg)]
        # per segment and row: quantisation error norm, L1 norm of the codes, norm of the float
        # coordinates after the segment; per row: the float vector's norm
        self.err = [np.zeros(0, np.float32) for _ in range(nseg)]
        self.l1 = [np.zeros(0, np.float32) for _ in range(nseg)]
        self.rest = [np.zeros(0, np.float32) for _ in range(nseg)]
        self.x_norm = np.zeros(0, np.float32)
        self.n = 0
        self.extend(x, chunk)
        return self

    def extend(self, x: np.ndarray, chunk: int = 8192) -> None:
        """Code rows appended to the matrix (same rotation and scales; errors measured)."""
        if self.rotation is None:
            raise RuntimeError("BoundedScan.extend before build")
        x = np.asarray(x, dtype=np.float32)
        if len(x) == 0:
            return
        nseg = len(self.codes)
        new: dict[str, list[list[np.ndarray]]] = {k: [[] for _ in range(nseg)] for k in ("codes", "err", "l1", "rest")}
        xn = []
        for s in range(0, len(x), chunk):
            xs = x[s:s + chunk]
            y = xs @ self.rotation
            codes = np.clip(np.rint(y / self.scale), -127, 127).astype(np.int8)
            resid = (y - codes.astype(np.float32) * self.scale).astype(np.float64)
            y64 = y.astype(np.float64)
            # norms of the coordinates from each cut to the end, by a reversed cumulative sum
            tail_sq = np.cumsum((y64 ** 2)[:, ::-1], axis=1)[:, ::-1]
            absc = np.abs(codes.astype(np.int32))
            for i in range(nseg):
                lo, hi = self.bounds[i], self.bounds[i + 1]
                new["codes"][i].append(codes[:, lo:hi])
                new["err"][i].append(np.linalg.norm(resid[:, lo:hi], axis=1))
                new["l1"][i].append(absc[:, lo:hi].sum(axis=1))
                new["rest"][i].append(np.sqrt(tail_sq[:, hi]) if hi < self.dim else np.zeros(len(xs)))
            xn.append(np.linalg.norm(xs.astype(np.float64), axis=1))
        for i in range(nseg):
            self.codes[i] = np.ascontiguousarray(np.concatenate([self.codes[i], *new["codes"][i]]))
            for key in ("err", "l1", "rest"):
                getattr(self, key)[i] = np.concatenate([getattr(self, key)[i], *[a.astype(np.float32) for a in new[key][i]]])
        self.x_norm = np.concatenate([self.x_norm, *[a.astype(np.float32) for a in xn]])
        self.n = len(self.x_norm)

    def keep_rows(self, mask: np.ndarray) -> None:
        """Drop the rows where ``mask`` is False (the matrix lost them, order kept)."""
        mask = np.asarray(mask, dtype=bool)
        if len(mask) != self.n:
            raise ValueError(f"mask has {len(mask)} entries for {self.n} rows")
        for key in ("codes", "err", "l1", "rest"):
            setattr(self, key, [np.ascontiguousarray(a[mask]) for a in getattr(self, key)])
        self.x_norm = np.ascontiguousarray(self.x_norm[mask])
        self.n = int(mask.sum())

    # ------------------------------------------------------------------ search

    def search(self, x: np.ndarray, q: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
        """Exact top-``k`` rows of ``x`` (the float rows this scan was built from) for one query;
        with ``allowed`` (a bool per row) only among those rows (a filter; one that allows at most a
        quarter of the rows reads only their codes in the first stage, so it costs less).

        One thread: splitting the first stage over two threads (in C) made that stage faster
        (1.83 vs 2.73 ms at 100k x 1280-d) but not the whole query (4.69 vs 4.39 and 5.13 vs
        5.28 ms, medians of two runs of 100 alternating queries), so it was removed.

        Returns ``(scores, rows, stats)``: float32 scores descending, int64 row numbers (at most
        ``min(k, n)`` of each) and ``stats["rows"]``: how many rows each stage read, then how many
        were scored exactly.
        """
        lib = _kernels()
        if lib is None:
            raise RuntimeError("the bounded-scan C kernels are not available (no C compiler, or ADLENS_NATIVE=0)")
        if x.shape != (self.n, self.dim) or x.dtype != np.float32 or not x.flags.c_contiguous:
            raise ValueError(f"x must be the ({self.n}, {self.dim}) C-contiguous float32 matrix this scan was built from")
        n = self.n
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=bool)
            if allowed.shape != (n,):
                raise ValueError(f"allowed must have one bool per row ({n}), got shape {allowed.shape}")
        n_allowed = n if allowed is None else int(allowed.sum())
        k = min(int(k), n_allowed)
        if k < 1:
            return np.zeros(0, np.float32), np.zeros(0, np.int64), {"rows": []}
        q = np.ascontiguousarray(q, dtype=np.float32)
        p = (q @ self.rotation).astype(np.float64)
        slack = _SLACK * float(np.linalg.norm(q.astype(np.float64)))
        tail_sq = np.cumsum((p ** 2)[::-1])[::-1]
        read = []
        rows = partial = known = None
        tau = -np.inf
        for i in range(len(self.codes)):
            lo, hi = self.bounds[i], self.bounds[i + 1]
            pn = float(np.linalg.norm(p[lo:hi]))
            p_rest = float(np.sqrt(tail_sq[hi])) if hi < self.dim else 0.0
            qi, t, r = _int16_query(p[lo:hi] * self.scale[lo:hi])
            if rows is None and allowed is not None and n_allowed <= n * _SELECTIVE:
                # a selective filter: the first stage reads the allowed rows only (scattered, but
                # a tenth of the rows is far fewer bytes than all of them)
                rows = np.flatnonzero(allowed)
                a = np.zeros(len(rows), np.float32)
                lib.adlens_scan_rows(_ptr(self.codes[i]), hi - lo, _ptr(qi), t, _ptr(rows), len(rows), _ptr(a))
                read.append(len(rows))
                tau = self._kth_exact(x, q, rows[np.argpartition(a, len(a) - k)[len(a) - k:]], k)
                known = pn * self.err[i][rows] + r * self.l1[i][rows] + np.float32(slack) * self.x_norm[rows]
                ok = a + known + p_rest * self.rest[i][rows] >= tau
                rows, partial, known = rows[ok], a[ok], known[ok]
            elif rows is None:  # first stage: every row, in C end to end
                a = np.empty(n, np.float32)
                lib.adlens_scan_all(_ptr(self.codes[i]), n, hi - lo, _ptr(qi), t, _ptr(a))
                if allowed is not None:  # -inf: never among the best, never above tau
                    a[~allowed] = -np.inf
                best = np.empty(k, np.int64)
                lib.adlens_topk(_ptr(a), n, k, _ptr(best))
                tau = self._kth_exact(x, q, best, k)
                w = np.array([pn, r, slack, p_rest], np.float32)
                rows, partial, known = np.empty(n, np.int64), np.empty(n, np.float32), np.empty(n, np.float32)
                m = lib.adlens_keep(_ptr(a), n, _ptr(self.err[i]), _ptr(self.l1[i]), _ptr(self.x_norm),
                                    _ptr(self.rest[i]), _ptr(w), tau, _ptr(rows), _ptr(partial), _ptr(known))
                read.append(n)
                rows, partial, known = rows[:m], partial[:m], known[:m]
            else:
                rows = np.ascontiguousarray(rows)
                a = partial.copy()
                lib.adlens_scan_rows(_ptr(self.codes[i]), hi - lo, _ptr(qi), t, _ptr(rows), len(rows), _ptr(a))
                read.append(len(rows))
                tau = max(tau, self._kth_exact(x, q, rows[np.argpartition(a, len(a) - k)[len(a) - k:]], k))
                known = known + pn * self.err[i][rows] + r * self.l1[i][rows]
                ok = a + known + p_rest * self.rest[i][rows] >= tau
                rows, partial, known = rows[ok], a[ok], known[ok]
            if len(rows) <= k:
                break

        if len(rows) < k:  # only when bounds underflow (scores below float32's normal range): scan all
            rows = np.arange(n, dtype=np.int64) if allowed is None else np.flatnonzero(allowed)
        # exact scores of what is left; gathering most rows would cost more than one full pass
        read.append(len(rows))
        scores = (x @ q)[rows] if len(rows) > n // 4 else x[rows] @ q
        order = np.lexsort((rows, -scores))[:k]  # score descending, ties by row (as a brute-force scan)
        return scores[order].astype(np.float32), rows[order].astype(np.int64), {"rows": read}

    @staticmethod
    def _kth_exact(x: np.ndarray, q: np.ndarray, rows: np.ndarray, k: int) -> float:
        """The k-th best exact score among ``rows`` (>= k distinct rows): a lower bound of the answer's."""
        s = x[rows] @ q
        return float(np.partition(s, len(s) - k)[len(s) - k])

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> None:
        arrays = {"rotation": self.rotation, "scale": self.scale, "x_norm": self.x_norm,
                  "bounds": np.asarray(self.bounds, np.int64)}
        for key in ("codes", "err", "l1", "rest"):
            arrays.update({f"{key}_{i}": a for i, a in enumerate(getattr(self, key))})
        np.savez(path, format=np.int64(_FORMAT), segments=np.asarray(self.segments, np.int64),
                 fit_sample=np.int64(self.fit_sample), seed=np.int64(self.seed), rotate=np.int64(self.rotate), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> BoundedScan:
        with np.load(path, allow_pickle=False) as z:
            if int(z["format"]) != _FORMAT:
                raise ValueError(f"{path}: unsupported bounded-scan format {int(z['format'])}")
            obj = cls(segments=tuple(int(c) for c in z["segments"]), fit_sample=int(z["fit_sample"]),
                      seed=int(z["seed"]), rotate=bool(z["rotate"]))
            obj.rotation, obj.scale, obj.x_norm = z["rotation"], z["scale"], z["x_norm"]
            obj.bounds = [int(b) for b in z["bounds"]]
            nseg = len(obj.bounds) - 1
            for key in ("codes", "err", "l1", "rest"):
                setattr(obj, key, [z[f"{key}_{i}"] for i in range(nseg)])
        # the kernels get raw pointers: exact dtypes and C order, or nothing
        obj.rotation, obj.scale, obj.x_norm = (np.ascontiguousarray(a, np.float32) for a in (obj.rotation, obj.scale, obj.x_norm))
        if any(c.dtype != np.int8 for c in obj.codes):
            raise ValueError(f"{path}: codes are not int8")
        obj.codes = [np.ascontiguousarray(c) for c in obj.codes]
        for key in ("err", "l1", "rest"):
            setattr(obj, key, [np.ascontiguousarray(a, np.float32) for a in getattr(obj, key)])
        obj.dim = obj.rotation.shape[0]
        obj.n = len(obj.x_norm)
        widths = [b - a for a, b in itertools.pairwise(obj.bounds)]
        ok = (obj.rotation.shape == (obj.dim, obj.dim) and obj.bounds[-1] == obj.dim
              and [c.shape[1] for c in obj.codes] == widths
              and all(len(a) == obj.n for key in ("codes", "err", "l1", "rest") for a in getattr(obj, key)))
        if not ok:
            raise ValueError(f"{path}: inconsistent bounded-scan arrays")
        return obj
