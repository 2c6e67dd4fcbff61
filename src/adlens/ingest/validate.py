"""Image validation and normalisation at the boundary.

Every image goes through :func:`load_image`: it either returns a fully decoded RGB image or
raises :class:`InvalidInput` with a reason a user can act on. The caller's bytes are never
modified; normalisation (CMYK, palette, alpha, 16-bit, EXIF rotation) happens on the decoded copy.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from adlens.errors import InvalidInput
from adlens.types import ImageInfo

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_BYTES = 50 * 1024 * 1024


def read_file(path: Path | str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read a file's bytes, rejecting missing, empty and oversized files before any decoding."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise InvalidInput(f"{p}: file not found") from None
    except OSError as e:
        raise InvalidInput(f"{p}: cannot read ({e.strerror or e})") from None
    if not p.is_file():
        raise InvalidInput(f"{p}: not a regular file")
    if size == 0:
        raise InvalidInput(f"{p}: empty file (0 bytes)")
    if size > max_bytes:
        raise InvalidInput(f"{p}: file too large ({size:,} bytes > limit {max_bytes:,})")
    return p.read_bytes()


def _to_rgb(img: Image.Image) -> Image.Image:
    """Normalise any PIL mode to RGB; transparency is composited on white (how ads are shown)."""
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / float greyscale: scale the actual range to 8 bits instead of clipping.
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(scaled.astype("uint8"), "L").convert("RGB")
    return img.convert("RGB")


def open_checked(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open image bytes lazily after every header check (nothing decoded yet).

    Raises InvalidInput naming ``name`` for empty, non-image, unsupported and oversized
    (decompression bomb) inputs. Decoding errors (truncation) surface when the caller loads it.
    """
    if not data:
        raise InvalidInput(f"{name}: empty file (0 bytes)")
    with warnings.catch_warnings():
        # PIL warns (and at 2x its own limit raises) on huge images; we apply our own limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise InvalidInput(f"{name}: decompression bomb (pixel count above safety limit)") from None
        except UnidentifiedImageError:
            raise InvalidInput(f"{name}: not an image (unrecognised file format)") from None
        except Exception as e:  # PIL raises many types on malformed headers
            raise InvalidInput(f"{name}: corrupt image header ({e})") from None
    fmt = img.format or "?"
    if fmt not in SUPPORTED_FORMATS:
        raise InvalidInput(
            f"{name}: unsupported image format {fmt} (supported: {', '.join(sorted(SUPPORTED_FORMATS))})"
        )
    w, h = img.size
    if w <= 0 or h <= 0:
        raise InvalidInput(f"{name}: image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise InvalidInput(
            f"{name}: decompression bomb / oversized image ({w}x{h} = {w * h:,} pixels > limit {max_pixels:,})"
        )
    return img


def decode_checked(img: Image.Image, name: str) -> Image.Image:
    """Fully decode an opened image; truncated or corrupt data becomes InvalidInput."""
    try:
        img.load()
    except Image.DecompressionBombError:
        raise InvalidInput(f"{name}: decompression bomb (pixel count above safety limit)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as e:
        raise InvalidInput(f"{name}: truncated or corrupt image data ({e})") from None
    return img


def upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF Orientation tag says (phone photos carry rotation there). Only
    an image that needs turning is copied (``exif_transpose`` copies every image, 0.18 ms for a
    256 px photo). A broken EXIF block leaves the pixels as decoded: it is no reason to reject an
    image that decoded fine (and the turn is applied to a copy, so a failure half-way through
    cannot leave ``img`` turned)."""
    try:
        if img.getexif().get(0x0112, 1) in (1, None):
            return img
        return ImageOps.exif_transpose(img)
    except Exception:
        return img


def load_image(
    data: bytes,
    name: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[ImageInfo, Image.Image]:
    """Decode and validate image bytes.

    Returns ``(info, rgb_image)``; ``info.sha256`` is the hash of the original bytes, ``info.mode``
    the original mode. Raises InvalidInput naming ``name`` for empty, non-image, unsupported,
    oversized-in-pixels (decompression bomb), truncated or corrupt data.

    >>> info, img = load_image(png_bytes, "banner.png")  # doctest: +SKIP
    """
    img = open_checked(data, name, max_pixels)
    fmt, mode = img.format or "?", img.mode
    decode_checked(img, name)
    rgb = _to_rgb(upright(img))  # hash what viewers see, not the sensor orientation
    info = ImageInfo(
        sha256=hashlib.sha256(data).hexdigest(), width=rgb.width, height=rgb.height, format=fmt, mode=mode,
        n_bytes=len(data),
    )
    return info, rgb
