"""Perceptual hashes of images: aHash (+ its MD5 exact key), 64-bit pHash and 64-bit dHash.

Pipeline
--------
``grey32`` turns image bytes (or a PIL image) into a 32x32 ``uint8`` greyscale array;
``hash_greys`` hashes a stack of those arrays at once (vectorised numpy); ``hash_files``
does both for a list of files with a thread pool (PIL releases the GIL while decoding).

Greyscale (``grey32``)
    * JPEG bytes are decoded at reduced size with PIL's draft mode (``draft("L", (128, 128))``:
      libjpeg's DCT scaling by 1/2, 1/4 or 1/8 keeping >= 128 px per side, luma channel only),
      which roughly halves the cost of decoding a 1080x1080 JPEG (1/8 scale).
    * Other modes go to ``L`` first: alpha (RGBA, LA, PA, P with transparency) is composited
      on white; CMYK / YCbCr / LAB / HSV via RGB; ``1`` -> 0/255; 16-bit (``I;16*``, ``I``)
      keep their high byte; ``F`` is clipped to 0..255 (or scaled by 255 if within 0..1).
    * The first frame of animated images is used; EXIF orientation is applied (as viewers and
      ``cv2.imread`` do) so a rotated-by-tag copy hashes like its displayed form.
    * Resize to 32x32 with ``Image.Resampling.BOX`` (area averaging): each output pixel is the
      mean of the input area it covers, so resized copies of an image give nearly the same
      32x32 array. The aspect ratio is not kept (all images are squashed to a square).

Hash conventions (a stable public contract: these values are stored in the catalog)
    **aHash** (seed 000): ``bit[p] = grey[p] > mean(grey)`` (strict), ``p = 32*y + x``
    (row-major). ``ahash_md5`` is the MD5 hex digest of the 1024-character ASCII string of
    '1'/'0' in that order -- the exact-duplicate key. ``ahash_bits`` is the same bits packed
    with ``np.packbits`` (big-endian within each byte): pixel ``p`` is bit ``7 - p % 8`` of
    byte ``p // 8``; shape (N, 128) ``uint8``.

    **pHash** (64 bits): ``C = D8 @ grey @ D8.T`` where ``D8`` is the first 8 rows of the
    32x32 orthonormal DCT-II matrix scaled by 2**16 and rounded to integers. With integer
    weights every product and sum is an integer below 2**53, so ``C`` is exact in float64 on
    every platform (no rounding-noise bits on flat images). ``bit[8*u + v] = C[u, v] >
    median(C)`` over the 64 coefficients of the top-left 8x8 block (u = vertical, v =
    horizontal frequency). The DC coefficient ``C[0, 0]`` *is* included, as in ``imagehash``:
    the median is a rank statistic so one large value moves it by half a rank only, and keeping
    the block layout identical to ``imagehash`` makes hashes comparable with that library. The
    cost is one near-constant bit (DC is almost always above the median, so bit 63 is
    almost always 1; a constant image hashes to ``1 << 63``, or 0 when black).

    **dHash** (64 bits): ``grey`` is area-averaged to 9x8 (w x h) with exact integer weights
    (rows: mean of 4; columns: each of the 9 output columns covers 32/9 input columns, weights
    counted in ninths), then ``bit[8*r + c] = g[r, c] < g[r, c + 1]`` (left < right, strict;
    same as ``imagehash.dhash``). A left-to-right brightening gradient hashes to all ones.

    **Bit order of 64-bit codes**: bit ``i`` (``i = 8*row + col``) is at position ``63 - i``
    of the ``uint64`` (MSB first), so ``format(code, "016x")`` equals ``str()`` of the
    ``imagehash`` object with the same bits. Codes are ``np.uint64`` in memory; the catalog
    stores them as signed int64 with the same 64 bits (:func:`to_int64` / :func:`to_uint64`).

Example
-------
>>> import numpy as np
>>> g = np.zeros((1, 32, 32), np.uint8); g[:, :, 16:] = 255   # left half black
>>> h = hash_greys(g)
>>> format(int(h.dhash[0]), "016x")   # each row: 9 columns 0,0,0,0,mix,1,1,1,1 -> 00011000
'1818181818181818'
>>> format(int(h.phash[0]), "016x")   # only row u=0 is non-zero: DC, v=3, v=7 are > 0
'9100000000000000'
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from adlens.errors import InvalidInput
from adlens.types import ImageHashes

__all__ = [
    "HashBatch",
    "grey32",
    "hash_greys",
    "hash_image",
    "hash_files",
    "hamming64",
    "to_int64",
    "to_uint64",
]

GREY_SIZE = 32
# Ask libjpeg for >= 4x the target: DCT scaling averages whole 8x8 blocks, whose grid does not
# line up between an image and its resized copy; at >= 4 reduced pixels per output pixel that
# misalignment stays below 1/8 of a cell (measured: 80 % resize max pHash distance 4-6 vs 8-10
# at 2x / 1x). Images under 256 px are simply decoded in full.
_DRAFT_SIZE = (128, 128)


# --------------------------------------------------------------------------------------
# precomputed integer transforms


def _dct8_int() -> np.ndarray:
    """First 8 rows of the orthonormal 32-point DCT-II matrix, times 2**16, rounded. (8, 32)."""
    n = np.arange(GREY_SIZE)
    k = np.arange(8)[:, None]
    d = np.sqrt(2.0 / GREY_SIZE) * np.cos(np.pi * k * (2 * n + 1) / (2 * GREY_SIZE))
    d[0] /= np.sqrt(2.0)
    di = np.rint(d * 65536.0)
    # AC rows must sum to exactly 0 so that a constant image has only a DC coefficient.
    if not np.all(di[1:].sum(axis=1) == 0):
        raise RuntimeError("integer DCT rows do not cancel on constant input")
    return di


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """Integer area-averaging weights (n_out, n_in); each row sums to n_in.

    Input pixel ``x`` covers ``[x*n_out, (x+1)*n_out)`` and output ``j`` covers
    ``[j*n_in, (j+1)*n_in)`` in units of ``1/n_out`` input pixels; the weight is the overlap.
    """
    x0 = np.arange(n_in) * n_out
    j0 = np.arange(n_out)[:, None] * n_in
    overlap = np.minimum(x0 + n_out, j0 + n_in) - np.maximum(x0, j0)
    return np.clip(overlap, 0, None).astype(np.float64)


_D8 = _dct8_int()  # (8, 32)
_D8T = np.ascontiguousarray(_D8.T)
_DH_ROWS = _area_weights(GREY_SIZE, 8)  # (8, 32), weights 8 -> sum of 4 rows x 8
_DH_COLS_T = np.ascontiguousarray(_area_weights(GREY_SIZE, 9).T)  # (32, 9)


# --------------------------------------------------------------------------------------
# results


@dataclass
class HashBatch:
    """Hashes of N images (row ``i`` of every array belongs to image ``i``).

    Attributes
    ----------
    ahash_md5 : ndarray (N,) of str
        MD5 hex of the aHash bit string -- the exact-duplicate key.
    ahash_bits : ndarray (N, 128) uint8
        The 1024 aHash bits, packed big-endian.
    phash, dhash : ndarray (N,) uint64
        64-bit codes, MSB first (see the module docstring).
    width, height : ndarray (N,) int64 or None
        Original pixel size (set by :func:`hash_files` / :func:`hash_image`).
    paths : list of str or None
        Source file of each row (set by :func:`hash_files`).
    """

    ahash_md5: np.ndarray
    ahash_bits: np.ndarray
    phash: np.ndarray
    dhash: np.ndarray
    width: np.ndarray | None = None
    height: np.ndarray | None = None
    paths: list[str] | None = None

    def __len__(self) -> int:
        return int(self.phash.shape[0])

    @classmethod
    def empty(cls) -> HashBatch:
        return cls(
            ahash_md5=np.zeros(0, dtype="<U32"),
            ahash_bits=np.zeros((0, 128), np.uint8),
            phash=np.zeros(0, np.uint64),
            dhash=np.zeros(0, np.uint64),
        )

    @property
    def area(self) -> np.ndarray | None:
        """Pixel area (N,) int64, or None if sizes are unknown."""
        if self.width is None or self.height is None:
            return None
        return self.width * self.height

    def record(self, i: int) -> ImageHashes:
        """Row ``i`` as an :class:`adlens.types.ImageHashes` (unsigned Python ints)."""
        return ImageHashes(
            ahash_md5=str(self.ahash_md5[i]),
            ahash_bits=self.ahash_bits[i].tobytes(),
            phash=int(self.phash[i]),
            dhash=int(self.dhash[i]),
        )

    def records(self) -> list[ImageHashes]:
        return [self.record(i) for i in range(len(self))]

    @classmethod
    def concat(cls, batches: Sequence[HashBatch]) -> HashBatch:
        """Stack batches row-wise (optional fields kept only if every batch has them)."""
        batches = list(batches)
        if not batches:
            return cls.empty()

        def opt(name):
            vals = [getattr(b, name) for b in batches]
            if any(v is None for v in vals):
                return None
            return [p for v in vals for p in v] if name == "paths" else np.concatenate(vals)

        return cls(
            ahash_md5=np.concatenate([b.ahash_md5 for b in batches]),
            ahash_bits=np.concatenate([b.ahash_bits for b in batches]),
            phash=np.concatenate([b.phash for b in batches]),
            dhash=np.concatenate([b.dhash for b in batches]),
            width=opt("width"),
            height=opt("height"),
            paths=opt("paths"),
        )


# --------------------------------------------------------------------------------------
# decoding


def _load(data: bytes | bytearray | memoryview | Image.Image, draft: bool) -> tuple[Image.Image, tuple[int, int]]:
    """Open + decode; returns the (possibly reduced) image and the original (w, h)."""
    if isinstance(data, Image.Image):
        return data, data.size
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"grey32 expects bytes or a PIL image, got {type(data).__name__}")
    if len(data) == 0:
        raise InvalidInput("empty image data (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        head = bytes(data[:8])
        raise InvalidInput(f"not an image: unrecognised format ({len(data)} bytes, starts with {head!r})") from None
    except Image.DecompressionBombError as e:
        raise InvalidInput(f"image too large to decode safely (decompression bomb): {e}") from None
    except Exception as e:  # PIL raises assorted errors on malformed headers
        raise InvalidInput(f"unreadable image header: {type(e).__name__}: {e}") from None
    size = img.size
    if draft and img.format == "JPEG" and img.mode in ("RGB", "L", "YCbCr"):
        img.draft("L", _DRAFT_SIZE)
    try:
        img.load()
    except Exception as e:  # truncated / corrupt scan data
        raise InvalidInput(f"truncated or corrupt {img.format or 'image'} data: {type(e).__name__}: {e}") from None
    if size[0] <= 0 or size[1] <= 0:
        raise InvalidInput(f"image has no pixels ({size[0]}x{size[1]})")
    return img, size


def _to_l(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit greyscale ``L`` (alpha composited on white)."""
    mode = img.mode
    if mode == "L":
        return img
    if mode in ("RGB", "1"):
        return img.convert("L")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    if mode.startswith("I;16") or mode == "I" or mode == "F":
        a = np.asarray(img)
        if mode == "F":
            a = a.astype(np.float64)
            a = a * 255.0 if np.nanmax(a, initial=0.0) <= 1.0 else a
            a = np.clip(np.nan_to_num(a), 0, 255)
        else:
            a = a.astype(np.int64)
            if mode.startswith("I;16") or a.max(initial=0) > 255:
                a = np.clip(a, 0, 65535) >> 8  # keep the high byte of 16-bit samples
            a = np.clip(a, 0, 255)
        return Image.fromarray(a.astype(np.uint8), "L")
    # P without transparency, CMYK, YCbCr, LAB, HSV, ...
    return img.convert("RGB").convert("L")


# EXIF Orientation tag -> transpose applied to the decoded image (same as ImageOps.exif_transpose)
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # a broken EXIF block must not make the image unusable
        return 1


def _grey32_and_size(data, draft: bool = True) -> tuple[np.ndarray, tuple[int, int]]:
    img, size = _load(data, draft)
    orient = _orientation(img)
    try:
        small = _to_l(img).resize((GREY_SIZE, GREY_SIZE), Image.Resampling.BOX)
    except InvalidInput:
        raise
    except Exception as e:
        raise InvalidInput(f"cannot convert image ({img.mode}, {size[0]}x{size[1]}): {type(e).__name__}: {e}") from None
    if orient in _ORIENT:
        # transposing the 32x32 result == transposing first (BOX is separable per axis)
        small = small.transpose(_ORIENT[orient])
        if orient in (5, 6, 7, 8):
            size = (size[1], size[0])
    return np.asarray(small, dtype=np.uint8), size


def grey32(data: bytes | Image.Image, *, draft: bool = True) -> np.ndarray:
    """Decode an image and reduce it to a 32x32 ``uint8`` greyscale array.

    Parameters
    ----------
    data : bytes or PIL.Image.Image
        Encoded image bytes (any format PIL reads) or an already opened image.
    draft : bool, default True
        For JPEG bytes, decode at reduced size (libjpeg DCT scaling, luma only). Results
        differ from a full decode by at most a few grey levels; an ``Image`` argument is
        always used as given.

    Returns
    -------
    ndarray of shape (32, 32), dtype uint8

    Raises
    ------
    adlens.errors.InvalidInput
        Empty, unrecognised, truncated or otherwise undecodable data (the message says which).

    Example
    -------
    >>> from PIL import Image
    >>> grey32(Image.new("RGB", (300, 200), (255, 255, 255))).shape
    (32, 32)
    """
    return _grey32_and_size(data, draft)[0]


# --------------------------------------------------------------------------------------
# hashing


def _pack64(bits: np.ndarray) -> np.ndarray:
    """(N, 64) bool, element 0 first -> (N,) uint64 with element 0 as the MSB."""
    packed = np.packbits(bits.astype(np.uint8, copy=False), axis=1)  # (N, 8) big-endian bytes
    return np.ascontiguousarray(packed).view(">u8").reshape(-1).astype(np.uint64)


def hash_greys(greys: np.ndarray) -> HashBatch:
    """Hash a stack of 32x32 greyscale images (vectorised).

    Parameters
    ----------
    greys : array-like of shape (N, 32, 32) or (32, 32), dtype uint8
        Output of :func:`grey32`, stacked.

    Returns
    -------
    HashBatch with ``ahash_md5`` (N,), ``ahash_bits`` (N, 128), ``phash`` (N,), ``dhash`` (N,).

    Example
    -------
    >>> import numpy as np
    >>> h = hash_greys(np.full((2, 32, 32), 7, np.uint8))
    >>> hex(int(h.phash[0])), int(h.dhash[1])
    ('0x8000000000000000', 0)
    """
    g = np.asarray(greys)
    if g.ndim == 2:
        g = g[None]
    if g.ndim != 3 or g.shape[1:] != (GREY_SIZE, GREY_SIZE):
        raise ValueError(f"greys must have shape (N, 32, 32), got {g.shape}")
    if g.dtype != np.uint8:
        if not np.issubdtype(g.dtype, np.integer) or (g.size and (g.min() < 0 or g.max() > 255)):
            raise ValueError(f"greys must be uint8 (0..255), got {g.dtype}")
        g = g.astype(np.uint8)
    n = g.shape[0]
    if n == 0:
        return HashBatch.empty()

    # aHash: pixel > mean  <=>  1024 * pixel > sum   (exact integer comparison)
    flat = g.reshape(n, GREY_SIZE * GREY_SIZE).astype(np.int32)
    abits = flat * flat.shape[1] > flat.sum(axis=1, keepdims=True)
    ascii_rows = abits.view(np.uint8) + np.uint8(ord("0"))  # b'0' / b'1'
    md5 = np.array([hashlib.md5(row.tobytes()).hexdigest() for row in ascii_rows], dtype="<U32")
    ahash_bits = np.packbits(abits, axis=1)

    x = g.astype(np.float64)
    # pHash: exact integer 8x8 low-frequency DCT block, threshold at its median
    c = np.matmul(np.matmul(_D8, x), _D8T).reshape(n, 64)
    med = np.median(c, axis=1, keepdims=True)
    phash = _pack64(c > med)

    # dHash: exact integer 9x8 area average, left < right
    d = np.matmul(np.matmul(_DH_ROWS, x), _DH_COLS_T)  # (N, 8, 9)
    dhash = _pack64((d[:, :, :-1] < d[:, :, 1:]).reshape(n, 64))

    return HashBatch(ahash_md5=md5, ahash_bits=ahash_bits, phash=phash, dhash=dhash)


def hash_image(data: bytes | Image.Image, *, draft: bool = True) -> HashBatch:
    """Hash one image (bytes or PIL image); a HashBatch of length 1 with width/height set."""
    g, (w, h) = _grey32_and_size(data, draft)
    batch = hash_greys(g[None])
    batch.width = np.array([w], np.int64)
    batch.height = np.array([h], np.int64)
    return batch


def _read_and_grey(path: str, draft: bool, max_bytes: int | None):
    try:
        size = os.path.getsize(path)
        if max_bytes is not None and size > max_bytes:
            return None, f"file too large ({size} bytes > {max_bytes})"
        with open(path, "rb") as f:
            data = f.read()
        g, wh = _grey32_and_size(data, draft)
        return (g, wh), None
    except InvalidInput as e:
        return None, str(e)
    except OSError as e:
        return None, f"cannot read file: {e.strerror or e}"


def hash_files(
    paths: Iterable[str | os.PathLike],
    workers: int = 2,
    *,
    draft: bool = True,
    max_bytes: int | None = None,
) -> tuple[HashBatch, list[tuple[str, str]]]:
    """Read, decode and hash image files with a thread pool.

    Parameters
    ----------
    paths : iterable of path-like
    workers : int, default 2
        Threads; PIL releases the GIL while decoding so this scales with cores.
    draft : bool, default True
        Reduced-size JPEG decoding (see :func:`grey32`).
    max_bytes : int or None
        Files larger than this are reported as errors without being read.

    Returns
    -------
    batch : HashBatch
        One row per readable image, in input order; ``batch.paths`` names each row's file and
        ``batch.width`` / ``batch.height`` give the original size.
    errors : list of (path, reason)
        Files that could not be read or decoded; they do not stop the batch.

    Example
    -------
    >>> batch, errors = hash_files(["a.jpg", "b.png"])        # doctest: +SKIP
    >>> batch.paths, [hex(int(p)) for p in batch.phash]        # doctest: +SKIP
    """
    paths = [os.fspath(p) for p in paths]
    n = len(paths)
    greys = np.empty((n, GREY_SIZE, GREY_SIZE), np.uint8)
    wh = np.zeros((n, 2), np.int64)
    ok = np.zeros(n, bool)
    errors: list[tuple[str, str]] = []

    def work(chunk: range) -> list[tuple[int, str]]:
        errs = []
        for i in chunk:
            res, err = _read_and_grey(paths[i], draft, max_bytes)
            if err is None:
                greys[i], wh[i] = res
                ok[i] = True
            else:
                errs.append((i, err))
        return errs

    # chunks amortise the executor's per-task overhead; many of them keep threads balanced
    step = max(1, min(64, n // (8 * max(1, workers)) or 1))
    chunks = [range(s, min(n, s + step)) for s in range(0, n, step)]
    if workers <= 1 or n <= step:
        results = [work(c) for c in chunks]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(work, chunks))
    for errs in results:
        errors.extend((paths[i], msg) for i, msg in errs)

    keep = np.flatnonzero(ok)
    batch = hash_greys(greys[keep])
    batch.width = wh[keep, 0].copy()
    batch.height = wh[keep, 1].copy()
    batch.paths = [paths[i] for i in keep]
    return batch, errors


# --------------------------------------------------------------------------------------
# code utilities


def hamming64(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Element-wise Hamming distance between 64-bit codes (broadcasting).

    Accepts uint64 or int64 arrays (or Python ints); returns int64 of the broadcast shape.

    >>> int(hamming64(np.uint64(0b1011), np.uint64(0b0001)))
    2
    """
    x = np.bitwise_xor(to_uint64(a), to_uint64(b))
    return np.bitwise_count(x).astype(np.int64)


def to_uint64(codes) -> np.ndarray:
    """View 64-bit codes as ``uint64`` (int64 storage form -> in-memory form; same bits)."""
    if isinstance(codes, (int, np.integer)):
        v = int(codes)
        return np.uint64(v & 0xFFFFFFFFFFFFFFFF)
    if isinstance(codes, (list, tuple)):
        return np.array([int(c) & 0xFFFFFFFFFFFFFFFF for c in codes], dtype=np.uint64)
    a = np.asarray(codes)
    if a.dtype == np.uint64:
        return a
    if a.dtype == np.int64:
        return a.view(np.uint64)
    if np.issubdtype(a.dtype, np.integer) or a.dtype == object:
        return np.array([int(c) & 0xFFFFFFFFFFFFFFFF for c in a.ravel()], dtype=np.uint64).reshape(a.shape)
    raise TypeError(f"64-bit codes must be integers, got {a.dtype}")


def to_int64(codes) -> np.ndarray:
    """View 64-bit codes as signed ``int64`` (two's complement, as stored in the catalog)."""
    u = to_uint64(codes)
    if isinstance(u, np.ndarray):
        return u.view(np.int64)
    return np.array([u], np.uint64).view(np.int64)[0]
