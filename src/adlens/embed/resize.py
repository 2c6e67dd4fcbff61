"""Bicubic resize of RGB pixels, bit-identical to Pillow's ``Image.resize(size, Image.BICUBIC, box)``.

Why: the image embedder spends ~1.0 ms of its ~1.7 ms of decoding an image (a 256x192 JPEG to
224 px) in Pillow's resize, whose loops are scalar. The same arithmetic with the image's rows
processed eight at a time in SIMD registers takes a fraction of that (``bench_embed.py``,
BENCHMARKS.md), and because every output byte is the same as Pillow's, the vectors stored in a
workspace do not change: no new model id, nothing to recompute.

How (Pillow's algorithm, reimplemented):

- Filter weights per output pixel: the bicubic kernel (a = -0.5, support 2, widened by the
  downscale factor) over the input pixels whose centres fall in the support, divided by their
  sum, in float64 exactly as Pillow orders the operations (:func:`_coefficients`; the box edges
  are float32, as Pillow parses them), then rounded to 22-bit fixed point.
- Two passes, horizontal first over the rows the vertical pass needs, then vertical, each
  summing ``pixel * weight`` in int32 from ``1 << 21`` and clipping ``sum >> 22`` to 0-255
  (the intermediate image is uint8, as in Pillow). A pass is skipped when its axis keeps its
  size and box, as Pillow does.
- The C kernels (:mod:`adlens.native`, compiled on first use) vectorise across pixels: the
  vertical pass across a row's bytes, the horizontal pass across eight rows at once (a block of
  rows is transposed to int32 columns). Integer sums are exact, so the order of additions does
  not matter. AVX2 is chosen at run time; the portable build gives the same bytes.

Without a C compiler (or with ``ADLENS_NATIVE=0``) Pillow itself does the resize.

Example::

    import numpy as np
    from adlens.embed.resize import resize_rgb
    a = np.asarray(Image.open("ad.jpg").convert("RGB"))
    small = resize_rgb(a, (224, 168))            # == np.asarray(Image.fromarray(a).resize((224, 168), Image.BICUBIC))
"""

from __future__ import annotations

import ctypes
import functools
import math
import threading

import numpy as np
from PIL import Image

from adlens import native

__all__ = ["kernels_available", "resize_rgb"]

_PRECISION_BITS = 22  # Pillow's: 32 bits - 8 for the pixel - 2 for negative lobes and overshoot
_SUPPORT = 2.0  # bicubic

_C_SRC = r"""
#include <stdint.h>
#include <stdlib.h>
#define PB 22
static inline uint8_t clip8(int32_t v) { v >>= PB; return v < 0 ? 0 : (v > 255 ? 255 : (uint8_t)v); }

/* Portable passes, Pillow's loops. Horizontal, RGB: output pixel xx of a row sums taps i < n[xx] of
   input pixels lo[xx] + i with weights k[xx * ks + i]. Vertical: output row yy sums taps i < n[yy]
   of input rows lo[yy] + i. */
static void hpass_generic(const uint8_t *in, int64_t in_stride, int in_w, int nrows, uint8_t *out,
                          int64_t out_stride, int out_w, const int32_t *lo, const int32_t *n,
                          const int32_t *k, int ks) {
    (void)in_w;
    for (int y = 0; y < nrows; y++) {
        const uint8_t *row = in + (int64_t)y * in_stride;
        uint8_t *o = out + (int64_t)y * out_stride;
        for (int xx = 0; xx < out_w; xx++) {
            int32_t s0 = 1 << (PB - 1), s1 = s0, s2 = s0;
            const int32_t *w = k + (int64_t)xx * ks;
            const uint8_t *p = row + (int64_t)lo[xx] * 3;
            for (int i = 0; i < n[xx]; i++, p += 3) { s0 += p[0] * w[i]; s1 += p[1] * w[i]; s2 += p[2] * w[i]; }
            o[xx * 3] = clip8(s0); o[xx * 3 + 1] = clip8(s1); o[xx * 3 + 2] = clip8(s2);
        }
    }
}
static void vpass_generic(const uint8_t *in, int64_t in_stride, int row_bytes, uint8_t *out,
                          int64_t out_stride, int out_h, const int32_t *lo, const int32_t *n,
                          const int32_t *k, int ks) {
    for (int yy = 0; yy < out_h; yy++) {
        const int32_t *w = k + (int64_t)yy * ks;
        const uint8_t *base = in + (int64_t)lo[yy] * in_stride;
        uint8_t *o = out + (int64_t)yy * out_stride;
        for (int j = 0; j < row_bytes; j++) {
            int32_t s = 1 << (PB - 1);
            for (int i = 0; i < n[yy]; i++) s += base[(int64_t)i * in_stride + j] * w[i];
            o[j] = clip8(s);
        }
    }
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2")))
/* clip8 of four vectors of eight int32 sums -> 32 bytes in lane order (packus saturates: after the
   shift the sums lie in [-512, 511], so int32 -> uint16 -> uint8 saturation is exactly clip8) */
AVX2 static inline __m256i clip_pack4(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i ab = _mm256_packus_epi32(_mm256_srai_epi32(a, PB), _mm256_srai_epi32(b, PB));
    __m256i cd = _mm256_packus_epi32(_mm256_srai_epi32(c, PB), _mm256_srai_epi32(d, PB));
    __m256i p = _mm256_packus_epi16(ab, cd);  /* [a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7] */
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
/* Vertical: 32 bytes of a row at a time, four accumulators of eight held across the taps. */
AVX2 static void vpass_avx2(const uint8_t *in, int64_t in_stride, int row_bytes, uint8_t *out,
                            int64_t out_stride, int out_h, const int32_t *lo, const int32_t *n,
                            const int32_t *k, int ks) {
    const __m256i bias = _mm256_set1_epi32(1 << (PB - 1));
    for (int yy = 0; yy < out_h; yy++) {
        const int32_t *w = k + (int64_t)yy * ks;
        const uint8_t *base = in + (int64_t)lo[yy] * in_stride;
        uint8_t *o = out + (int64_t)yy * out_stride;
        int j = 0;
        for (; j + 32 <= row_bytes; j += 32) {
            __m256i s0 = bias, s1 = bias, s2 = bias, s3 = bias;
            const uint8_t *src = base + j;
            for (int i = 0; i < n[yy]; i++, src += in_stride) {
                __m256i c = _mm256_set1_epi32(w[i]);
                __m128i lo16 = _mm_loadu_si128((const __m128i *)src), hi16 = _mm_loadu_si128((const __m128i *)(src + 16));
                s0 = _mm256_add_epi32(s0, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(lo16), c));
                s1 = _mm256_add_epi32(s1, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(lo16, 8)), c));
                s2 = _mm256_add_epi32(s2, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(hi16), c));
                s3 = _mm256_add_epi32(s3, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(hi16, 8)), c));
            }
            _mm256_storeu_si256((__m256i *)(o + j), clip_pack4(s0, s1, s2, s3));
        }
        for (; j < row_bytes; j++) {
            int32_t s = 1 << (PB - 1);
            for (int i = 0; i < n[yy]; i++) s += base[(int64_t)i * in_stride + j] * w[i];
            o[j] = clip8(s);
        }
    }
}
/* Horizontal: eight rows at a time. The block is transposed into T (byte j of the eight rows side
   by side), so each tap is one multiply-add per channel across the eight rows; the results go to O
   in the same layout and are transposed back. T: in_w * 24 bytes, O: out_w * 24 + 8. */
AVX2 static void hpass_avx2(const uint8_t *in, int64_t in_stride, int in_w, int nrows, uint8_t *out,
                            int64_t out_stride, int out_w, const int32_t *lo, const int32_t *n,
                            const int32_t *k, int ks, uint8_t *T, uint8_t *O) {
    const __m256i bias = _mm256_set1_epi32(1 << (PB - 1));
    for (int r0 = 0; r0 < nrows; r0 += 8) {
        int nr = nrows - r0 < 8 ? nrows - r0 : 8;
        for (int r = 0; r < 8; r++) {  /* a short last block repeats its last row */
            const uint8_t *src = in + (int64_t)(r0 + (r < nr ? r : nr - 1)) * in_stride;
            for (int j = 0; j < in_w * 3; j++) T[(int64_t)j * 8 + r] = src[j];
        }
        for (int xx = 0; xx < out_w; xx++) {
            __m256i s0 = bias, s1 = bias, s2 = bias;
            const int32_t *w = k + (int64_t)xx * ks;
            const uint8_t *t = T + (int64_t)lo[xx] * 24;
            for (int i = 0; i < n[xx]; i++, t += 24) {
                __m256i c = _mm256_set1_epi32(w[i]);
                s0 = _mm256_add_epi32(s0, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)t)), c));
                s1 = _mm256_add_epi32(s1, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(t + 8))), c));
                s2 = _mm256_add_epi32(s2, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(t + 16))), c));
            }
            _mm256_storeu_si256((__m256i *)(O + (int64_t)xx * 24), clip_pack4(s0, s1, s2, s2));
        }
        for (int r = 0; r < nr; r++) {
            uint8_t *dst = out + (int64_t)(r0 + r) * out_stride;
            for (int j = 0; j < out_w * 3; j++) dst[j] = O[(int64_t)j * 8 + r];
        }
    }
}
static int simd_off = 0;
static int use_avx2(void) {
    static int v = -1;
    if (v < 0) { __builtin_cpu_init(); v = __builtin_cpu_supports("avx2"); }
    return v && !simd_off;
}
void adlens_resize_portable(int on) { simd_off = on; }
#else
static int use_avx2(void) { return 0; }
void adlens_resize_portable(int on) { (void)on; }
#endif

static void hpass(int avx2, const uint8_t *in, int64_t in_stride, int in_w, int nrows, uint8_t *out,
                  int64_t out_stride, int out_w, const int32_t *lo, const int32_t *n, const int32_t *k, int ks,
                  uint8_t *blocks) {
#if defined(__GNUC__) && defined(__x86_64__)
    if (avx2) {
        hpass_avx2(in, in_stride, in_w, nrows, out, out_stride, out_w, lo, n, k, ks, blocks, blocks + (size_t)in_w * 24);
        return;
    }
#endif
    (void)avx2; (void)blocks;
    hpass_generic(in, in_stride, in_w, nrows, out, out_stride, out_w, lo, n, k, ks);
}
static void vpass(int avx2, const uint8_t *in, int64_t in_stride, int row_bytes, uint8_t *out,
                  int64_t out_stride, int out_h, const int32_t *lo, const int32_t *n, const int32_t *k, int ks) {
#if defined(__GNUC__) && defined(__x86_64__)
    if (avx2) { vpass_avx2(in, in_stride, row_bytes, out, out_stride, out_h, lo, n, k, ks); return; }
#endif
    (void)avx2;
    vpass_generic(in, in_stride, row_bytes, out, out_stride, out_h, lo, n, k, ks);
}

/* in (in_h, in_w, 3) at in_stride -> out (out_h, out_w, 3) at out_stride, by the plan p (int64):
   in_w, in_h, out_w, out_h, vfirst, hx, vy, y0, y1, ksx, ksy, the addresses of the int32 arrays
   xlo, xn, kx, ylo, yn, ky, then the scratch bytes needed. Horizontal first (unless vfirst): the
   horizontal pass (if hx) over input rows [y0, y1) into a temporary image, then the vertical
   pass (if vy; row indices relative to y0 when both run). vfirst: the vertical pass over whole
   input rows, then the horizontal one. mem: scratch of at least p[17] bytes (the caller's, so
   that nothing outlives the caller's thread). Returns 0, or -1 if mem is too small. */
int adlens_resize_rgb(const uint8_t *in, int64_t in_stride, uint8_t *out, int64_t out_stride, const int64_t *p,
                      uint8_t *mem, int64_t mem_n) {
    int in_w = (int)p[0], in_h = (int)p[1], out_w = (int)p[2], out_h = (int)p[3];
    int vfirst = (int)p[4], hx = (int)p[5], vy = (int)p[6], y0 = (int)p[7], y1 = (int)p[8];
    int ksx = (int)p[9], ksy = (int)p[10];
    const int32_t *xlo = (const int32_t *)(intptr_t)p[11], *xn = (const int32_t *)(intptr_t)p[12];
    const int32_t *kx = (const int32_t *)(intptr_t)p[13], *ylo = (const int32_t *)(intptr_t)p[14];
    const int32_t *yn = (const int32_t *)(intptr_t)p[15], *ky = (const int32_t *)(intptr_t)p[16];
    size_t nblocks = hx ? (size_t)in_w * 24 + (size_t)out_w * 24 + 8 : 0;
    if (mem_n < p[17]) return -1;
    int avx2 = use_avx2();
    uint8_t *blocks = mem, *tmp = mem + nblocks;
    if (hx && vy) {  /* two passes through the intermediate image tmp */
        if (vfirst) {
            vpass(avx2, in, in_stride, in_w * 3, tmp, (int64_t)in_w * 3, out_h, ylo, yn, ky, ksy);
            hpass(avx2, tmp, (int64_t)in_w * 3, in_w, out_h, out, out_stride, out_w, xlo, xn, kx, ksx, blocks);
        } else {
            hpass(avx2, in + (int64_t)y0 * in_stride, in_stride, in_w, y1 - y0, tmp, (int64_t)out_w * 3, out_w,
                  xlo, xn, kx, ksx, blocks);
            vpass(avx2, tmp, (int64_t)out_w * 3, out_w * 3, out, out_stride, out_h, ylo, yn, ky, ksy);
        }
    } else if (hx) {
        hpass(avx2, in, in_stride, in_w, in_h, out, out_stride, out_w, xlo, xn, kx, ksx, blocks);
    } else if (vy) {
        vpass(avx2, in, in_stride, in_w * 3, out, out_stride, out_h, ylo, yn, ky, ksy);
    }
    return 0;
}
"""

_LIB: list = []


def _kernels():
    if not _LIB:
        P, I, I64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
        _LIB.append(native.load("resize", _C_SRC, {
            "adlens_resize_rgb": ([P, I64, P, I64, P, P, I64], I),
            "adlens_resize_portable": ([I], None),
        }))
    return _LIB[0]


def kernels_available() -> bool:
    """True when the C kernels compiled (else :func:`resize_rgb` calls Pillow)."""
    return _kernels() is not None


def _bicubic(x: np.ndarray) -> np.ndarray:
    """Pillow's bicubic kernel (a = -0.5), with its order of float64 operations."""
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@functools.lru_cache(maxsize=512)
def _coefficients(in_size: int, in0: float, in1: float, out_size: int):
    """``(lo, n, k, ks)``: output pixel i reads ``n[i]`` input pixels from ``lo[i]`` with int32
    weights ``k[i, :n[i]]`` (22-bit fixed point), as Pillow's ``precompute_coeffs`` and
    ``normalize_coeffs_8bpc`` compute them."""
    in0 = float(np.float32(in0))
    scale = float(np.float32(np.float32(in1) - np.float32(in0))) / out_size  # float32 box, as Pillow
    filterscale = max(scale, 1.0)
    support = _SUPPORT * filterscale
    ks = int(math.ceil(support)) * 2 + 1
    centre = in0 + (np.arange(out_size) + 0.5) * scale
    lo = np.maximum((centre - support + 0.5).astype(np.int64), 0)  # C casts truncate toward zero
    hi = np.minimum((centre + support + 0.5).astype(np.int64), in_size)
    n = np.maximum(hi - lo, 0)
    taps = np.arange(ks)
    w = _bicubic(((lo[:, None] + taps[None, :]) - centre[:, None] + 0.5) * (1.0 / filterscale))
    w = np.where(taps[None, :] < n[:, None], w, 0.0)
    total = np.zeros(out_size)
    for t in range(ks):  # Pillow sums the weights one by one (numpy's sum is pairwise)
        total += w[:, t]
    w = np.where(total[:, None] != 0.0, w / np.where(total == 0.0, 1.0, total)[:, None], w)
    one = float(1 << _PRECISION_BITS)
    k = np.trunc(np.where(w < 0, -0.5 + w * one, 0.5 + w * one)).astype(np.int32)
    k = np.where(taps[None, :] < n[:, None], k, 0).astype(np.int32)
    return lo.astype(np.int32), n.astype(np.int32), np.ascontiguousarray(k), ks


def resize_rgb(
    pixels: np.ndarray,
    size: tuple[int, int],
    box: tuple[float, float, float, float] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(h, w, 3)`` uint8 (``size = (w, h)``, PIL order), the bytes of
    ``Image.fromarray(pixels).resize(size, Image.BICUBIC, box=box)``.

    ``box`` (left, top, right, bottom) is the source region, default the whole image. ``out``, if
    given, is written in place: a ``(h, w, 3)`` uint8 array whose rows may be a strided view (for
    example the middle of a padded canvas). ``pixels`` is never modified.
    """
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"pixels must be an (H, W, 3) uint8 array, got {getattr(pixels, 'shape', type(pixels))}")
    out_w, out_h = int(size[0]), int(size[1])
    in_h, in_w = pixels.shape[:2]
    if out_w < 1 or out_h < 1 or in_w < 1 or in_h < 1:
        raise ValueError(f"sizes must be positive: image {in_w}x{in_h}, target {out_w}x{out_h}")
    if out is None:
        out = np.empty((out_h, out_w, 3), np.uint8)
    elif out.shape != (out_h, out_w, 3) or out.dtype != np.uint8 or out.strides[1:] != (3, 1):
        raise ValueError(f"out must be ({out_h}, {out_w}, 3) uint8 with contiguous rows, got {out.shape} {out.dtype}")
    elif not out.flags.writeable or np.may_share_memory(out, pixels):
        raise ValueError("out must be a writeable array that does not overlap pixels")
    given = (0.0, 0.0, float(in_w), float(in_h)) if box is None else tuple(float(v) for v in box)
    if len(given) != 4 or not all(math.isfinite(v) for v in given):
        raise ValueError(f"box {box} must be 4 finite numbers (left, top, right, bottom)")
    # Pillow takes the box as float32 and tests it in float32
    l, t, r, b = (np.float32(v) for v in given)
    if l < 0 or t < 0 or r > in_w or b > in_h or r - l < 0 or b - t < 0:
        raise ValueError(f"box {box} must lie inside the {in_w}x{in_h} image, left <= right, top <= bottom")
    if l == int(l) and t == int(t) and r - l == out_w and b - t == out_h:
        out[...] = pixels[int(t) : int(b), int(l) : int(r)]  # Pillow crops (or copies) without resampling
        return out
    box = (float(l), float(t), float(r), float(b))
    lib = _kernels()
    rule = _pillow_rule() if lib is not None else None
    if rule is None:
        out[...] = np.asarray(Image.fromarray(pixels).resize((out_w, out_h), Image.BICUBIC, box=box))
        return out
    src = pixels if pixels.strides[1:] == (3, 1) else np.ascontiguousarray(pixels)
    _native(lib, src, out, box, rule)
    return out


def _native(lib, src: np.ndarray, out: np.ndarray, box: tuple[float, ...], rule: str) -> None:
    plan = _plan(src.shape[1], src.shape[0], out.shape[1], out.shape[0], box, rule)
    mem = _scratch(int(plan[0][17]))
    rc = lib.adlens_resize_rgb(src.ctypes.data, src.strides[0], out.ctypes.data, out.strides[0], plan[0].ctypes.data,
                               mem.ctypes.data, mem.size)
    if rc != 0:  # pragma: no cover - _scratch always gives enough
        raise RuntimeError(f"resize of a {src.shape[1]}x{src.shape[0]} image to {out.shape[1]}x{out.shape[0]}: scratch too small")


_SCRATCH_KEEP = 16 << 20
_local = threading.local()


def _scratch(n: int) -> np.ndarray:
    """``n`` bytes of scratch (intermediate image, transposed row blocks), reused by this thread:
    fresh pages cost this VM about as much as the resize itself (0.15 ms per 150 kB). A numpy
    buffer held by the thread goes with the thread; above 16 MB a buffer is made per call."""
    if n > _SCRATCH_KEEP:
        return np.empty(n, np.uint8)
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < n:
        buf = _local.buf = np.empty(max(n, 1 << 16), np.uint8)
    return buf


@functools.lru_cache(maxsize=512)
def _plan(in_w: int, in_h: int, out_w: int, out_h: int, box: tuple[float, ...], rule: str):
    """The kernel's int64 parameter block for one geometry (and the arrays its addresses point
    to, kept alive with it): most images of a batch share a few geometries."""
    xlo, xn, kx, ksx = _coefficients(in_w, box[0], box[2], out_w)
    ylo, yn, ky, ksy = _coefficients(in_h, box[1], box[3], out_h)
    # Pillow's tests for whether an axis is resampled (note: box[2] is compared with the output width)
    hx = out_w != in_w or box[0] != 0 or box[2] != out_w
    vy = out_h != in_h or box[1] != 0 or box[3] != out_h
    # Pillow >= 13 runs the vertical pass first when the height loses more than twice as many
    # pixels as the width (a smaller intermediate image); earlier versions always start horizontally
    vfirst = rule == "shrink-height-first" and (in_h - out_h) > 0 and (in_h - out_h) > (in_w - out_w) * 2
    y0, y1 = int(ylo[0]), int(ylo[-1] + yn[-1])
    if hx and vy and not vfirst:
        ylo = ylo - np.int32(y0)  # the vertical pass reads the horizontal pass's rows y0..y1
    arrays = (xlo, xn, kx, ylo, yn, ky)
    scratch = (in_w * 24 + out_w * 24 + 8 if hx else 0) + (
        (in_w * out_h * 3 if vfirst else out_w * (y1 - y0) * 3) if hx and vy else 0) + 1
    block = np.array([in_w, in_h, out_w, out_h, vfirst, hx, vy, y0, y1, ksx, ksy, *(a.ctypes.data for a in arrays),
                      scratch], dtype=np.int64)
    return block, arrays


_RULE: list = []


def _pillow_rule() -> str | None:
    """Which pass order the installed Pillow uses, probed once against Pillow itself on small
    images where the two orders give different bytes: ``"horizontal-first"``,
    ``"shrink-height-first"``, or None when neither matches (an unknown Pillow: it then does
    every resize itself)."""
    if not _RULE:
        lib = _kernels()
        rng = np.random.default_rng(7)
        # height shrinks most; both shrink; a box; the two sides of Pillow 13's threshold
        # (height loss = and = + 1 twice the width loss); a box whose height is not the image's
        cases = [(rng.integers(0, 256, (60, 30, 3), dtype=np.uint8), (32, 20), None),
                 (rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), (25, 20), None),
                 (rng.integers(0, 256, (20, 20, 3), dtype=np.uint8), (33, 27), (1.5, 2.25, 17.5, 19.0)),
                 (rng.integers(0, 256, (40, 30, 3), dtype=np.uint8), (25, 30), None),
                 (rng.integers(0, 256, (41, 30, 3), dtype=np.uint8), (25, 30), None),
                 (rng.integers(0, 256, (60, 30, 3), dtype=np.uint8), (27, 40), (0.0, 0.0, 30.0, 38.5))]
        found = None
        for rule in ("horizontal-first", "shrink-height-first"):
            ok = True
            for a, size, box in cases:
                want = np.asarray(Image.fromarray(a).resize(size, Image.BICUBIC, box=box))
                got = np.empty_like(want)
                _native(lib, a, got, box or (0.0, 0.0, float(a.shape[1]), float(a.shape[0])), rule)
                ok = ok and np.array_equal(got, want)
            if ok:
                found = rule
                break
        _RULE.append(found)
    return _RULE[0]


def _set_portable(on: bool) -> None:
    """Tests: force the portable (non-AVX2) kernels, or allow AVX2 again."""
    lib = _kernels()
    if lib is not None:
        lib.adlens_resize_portable(int(on))
