"""Thompson-sampling win counts in C: the serving hot path of :class:`~adlens.bandit.policies.ThompsonSampling`.

The numpy path (``policies._beta_draws`` + ``policies._win_frequencies``) makes ~15 array passes and
ufunc calls over a (2K, n) float32 block per decision: ~0.25 ms for 20 arms x 1,000 draws when the
caches are warm, much more right after the idle gap between two requests. This kernel does the same
arithmetic in one call, on the same pooled normal / exponential variates (so the caller's random
generator is consumed identically): Wilson-Hilferty Gamma draws, the ``U^(1/a)`` boost of shapes < 1
(arms with shape < 1 take the first rows of the window, in arm order, like the numpy path), the
Beta ratio, ``scale * draw + fixed``, and per draw the arms equal to the maximum (ties count for
every tied arm). Every step is the numpy path's float32 operation in the same order, built with
``-ffp-contract=off`` (see :mod:`adlens.native`), so without shape < 1 arms the counts are
identical. The boost's ``exp`` is a vectorisable polynomial (libm's scalar ``expf`` made the kernel
slower than numpy whenever most arms have shape < 1, the usual case for arms with few clicks); it
agrees with numpy's ``exp`` to ~1e-7, including the subnormal range and the underflow to 0 that arms
with shape << 1 reach, so a draw in which two arms are that close may go the other way (tested: at
most one draw per arm differs, also for shape 0.005 with zero fixed terms, where most draws are 0).
"""

from __future__ import annotations

import ctypes

import numpy as np

from adlens import native

__all__ = ["available", "win_counts"]

_SRC = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* exp(x) for x <= 0 in plain float arithmetic that the compiler vectorises (libm's expf is a scalar
   call, ~15x slower here than the rest of a draw): x = n ln2 + r, |r| <= ln2 / 2, a degree-7 Taylor
   polynomial for exp(r) (relative error < 1e-8 + rounding), 2^n from exponent bits in two factors
   so that results below FLT_MIN come out subnormal and below exp(-104) zero, as numpy's float32 exp
   does: arms with shape << 1 produce such draws, and zeros tie. */
static inline float exp_nonpos(float x) {
    const int underflow = x < -104.0f;
    x = underflow ? -104.0f : x;
    const int n = (int)(x * 1.44269504f - 0.5f);  /* truncation: the nearest integer for x <= 0 */
    const float fn = (float)n;
    float r = x - fn * 0.693145752f;  /* ln2 in two parts (Cody-Waite): r stays exact */
    r = r - fn * 1.42860677e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f; p = p * r + 1.0f / 120.0f; p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f; p = p * r + 0.5f; p = p * r + 1.0f; p = p * r + 1.0f;
    const int n1 = n < -126 ? -126 : n;  /* 2^n = 2^n1 * 2^(n - n1), both normal floats */
    union { int32_t i; float f; } a = { .i = (n1 + 127) << 23 }, b = { .i = (n - n1 + 127) << 23 };
    p = p * a.f;
    p = p * b.f;
    return underflow ? 0.0f : p;
}

/* Gamma(shape) ~= shape * (1 - 1/(9 shape) + z / (3 sqrt shape))^3, with shape^(1/3) folded in. */
static void wh_coef(double shape, float* c1, float* c0) {
    double c = cbrt(shape);
    *c1 = (float)(c / (3.0 * sqrt(shape)));
    *c0 = (float)(c * (1.0 - 1.0 / (9.0 * shape)));
}

/* z: (2K, n) normals; rows 0..K-1 the alpha draws, K..2K-1 the beta draws of the arms in "window
   order" (arms with alpha < 1 first, then the rest, each group in arm order). e: (m, n) exponentials
   for the m arms with alpha < 1, in window order. Returns 0, or -1 if out of memory. */
int adlens_thompson_wins(int K, int n, const double* alpha, const double* beta, const float* z,
                         const float* e, double scale, const double* fixed, int64_t* wins) {
    float* tot = (float*)malloc(sizeof(float) * (size_t)K * (size_t)n);
    float* best = (float*)malloc(sizeof(float) * (size_t)n);
    if (!tot || !best) { free(tot); free(best); return -1; }
    const float s = (float)scale;
    int r = 0, re = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < K; k++) {
            const int small = alpha[k] < 1.0;
            if (small != (pass == 0)) continue;
            float a1, a0, b1, b0;
            wh_coef(small ? alpha[k] + 1.0 : alpha[k], &a1, &a0);
            wh_coef(beta[k], &b1, &b0);
            const float* za = z + (size_t)r * n;
            const float* zb = z + (size_t)(K + r) * n;
            float* t = tot + (size_t)k * n;
            const float fx = (float)fixed[k];
            for (int j = 0; j < n; j++) {  /* Gamma(alpha) draws, or Gamma(alpha + 1) to boost */
                float u = za[j] * a1; u = u + a0;
                float g = u * u; t[j] = g * u;
            }
            if (small) {  /* Gamma(a) = Gamma(a + 1) * U^(1/a), U^(1/a) = exp(-E / a) */
                const float* er = e + (size_t)re * n;
                const float inv = (float)(-1.0 / alpha[k]);
                for (int j = 0; j < n; j++) { float x = er[j] * inv; t[j] = t[j] * exp_nonpos(x); }
                re++;
            }
            for (int j = 0; j < n; j++) {  /* Beta = ga / (ga + gb), then scale * draw + fixed */
                float v = zb[j] * b1; v = v + b0;
                float gb = v * v; gb = gb * v;
                gb = gb + t[j];
                float d = t[j] / gb; d = d * s;
                t[j] = d + fx;
            }
            r++;
        }
    }
    for (int j = 0; j < n; j++) best[j] = tot[j];
    for (int k = 1; k < K; k++) {
        const float* t = tot + (size_t)k * n;
        for (int j = 0; j < n; j++) best[j] = t[j] > best[j] ? t[j] : best[j];
    }
    for (int k = 0; k < K; k++) {
        const float* t = tot + (size_t)k * n;
        int c = 0;
        for (int j = 0; j < n; j++) c += t[j] == best[j] ? 1 : 0;
        wins[k] = c;
    }
    free(tot); free(best);
    return 0;
}
"""

_P = ctypes.c_void_p
_lib: ctypes.CDLL | None | bool = False  # False = not tried yet


def _load() -> ctypes.CDLL | None:
    global _lib
    if _lib is False:
        _lib = native.load("thompson", _SRC, {"adlens_thompson_wins": (
            [ctypes.c_int, ctypes.c_int, _P, _P, _P, _P, ctypes.c_double, _P, _P], ctypes.c_int)}, libs=("-lm",))
    return _lib


def available() -> bool:
    """True if the kernel compiled (or was cached) and loaded."""
    return _load() is not None


def win_counts(alpha: np.ndarray, beta: np.ndarray, z: np.ndarray, e: np.ndarray | None, scale: float,
               fixed: np.ndarray) -> np.ndarray:
    """Per-arm count of the n draws an arm wins (ties count for each tied arm); shape (K,) int64.

    ``alpha``, ``beta``, ``fixed``: (K,) float64 (alpha, beta > 0); ``z``: (2K, n) float32 normals
    clipped so that every Wilson-Hilferty cube is positive; ``e``: (m, n) float32 exponentials for
    the m arms with alpha < 1 (None if m = 0). The row layout is the numpy path's (module docs).
    """
    lib = _load()
    if lib is None:
        raise RuntimeError("the Thompson C kernel is not available (no C compiler); use the numpy path")
    alpha = np.ascontiguousarray(alpha, np.float64)
    beta = np.ascontiguousarray(beta, np.float64)
    fixed = np.ascontiguousarray(fixed, np.float64)
    k = alpha.shape[0]
    z = np.ascontiguousarray(z, np.float32)
    if beta.shape != (k,) or fixed.shape != (k,) or z.ndim != 2 or z.shape[0] != 2 * k:
        raise ValueError(f"win_counts: shapes do not match K={k}: beta {beta.shape}, fixed {fixed.shape}, z {z.shape}")
    n = z.shape[1]
    m = int(np.count_nonzero(alpha < 1.0))
    if m:
        if e is None or np.shape(e) != (m, n):
            raise ValueError(f"win_counts: e must have shape ({m}, {n}) for the {m} arms with alpha < 1, "
                             f"got {None if e is None else np.shape(e)}")
        e = np.ascontiguousarray(e, np.float32)
    wins = np.empty(k, np.int64)
    rc = lib.adlens_thompson_wins(k, n, alpha.ctypes.data, beta.ctypes.data, z.ctypes.data,
                                  e.ctypes.data if m else None, float(scale), fixed.ctypes.data, wins.ctypes.data)
    if rc != 0:
        raise MemoryError(f"win_counts: could not allocate {k} x {n} floats")
    return wins
