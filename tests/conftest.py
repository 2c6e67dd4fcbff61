"""Shared fixtures: tiny images made in memory, fresh workspaces."""

from __future__ import annotations

import io
import struct
import threading
import zlib
from collections.abc import Callable, Iterable

import numpy as np
import pytest
from PIL import Image, ImageDraw

from adlens.config import Settings
from adlens.workspace import init_workspace


def banner(seed: int, size=(300, 250), text: str = "SHOP NOW") -> Image.Image:
    """A small synthetic banner: random colour blocks + a text button; distinct per seed."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, tuple(int(x) for x in rng.integers(0, 255, 3)))
    d = ImageDraw.Draw(img)
    w, h = size
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        x1, y1 = x0 + int(rng.integers(20, w // 2 + 21)), y0 + int(rng.integers(20, h // 2 + 21))
        d.rectangle([x0, y0, x1, y1], fill=tuple(int(x) for x in rng.integers(0, 255, 3)))
    d.ellipse([w // 4, h // 4, w // 2, h // 2], fill=tuple(int(x) for x in rng.integers(0, 255, 3)))
    d.rectangle([w // 2, h - 40, w - 10, h - 10], fill=(20, 20, 20))
    d.text((w // 2 + 8, h - 32), text, fill=(255, 255, 255))
    return img


def encode(img: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        kw.setdefault("quality", 90)
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_bomb(width: int = 40000, height: int = 40000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    idat = zlib.compress(b"\x00" * (1 + width // 8) * 16)  # a few rows only; never decoded
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(workspace=tmp_path / "ws", workers=2)


@pytest.fixture
def ws(settings):
    w = init_workspace(settings.workspace, settings)
    yield w
    w.close()


@pytest.fixture
def bad_files(tmp_path):
    """A folder of invalid inputs: {filename: expected reason fragment}."""
    d = tmp_path / "bad"
    d.mkdir()
    good = encode(banner(1))
    (d / "empty.jpg").write_bytes(b"")
    (d / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (d / "notes.jpg").write_bytes(b"this is a text file, not an image\n" * 10)
    (d / "bomb.png").write_bytes(png_bomb())
    (d / "vector.svg").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>")
    ico = io.BytesIO()
    banner(2, (32, 32)).save(ico, "ICO")
    (d / "icon.ico").write_bytes(ico.getvalue())
    return d, {
        "empty.jpg": "empty file",
        "truncated.jpg": "truncated or corrupt",
        "notes.jpg": "not an image",
        "bomb.png": "decompression bomb",
        "vector.svg": "not an image",
        "icon.ico": "unsupported image format",
    }


def run_in_threads(fn: Callable, items: Iterable) -> list[BaseException]:
    """Run ``fn(item)`` in one thread per item, all at once; wait for every thread and return
    what they raised (an exception or failed assert inside a thread is otherwise lost)."""
    errors: list[BaseException] = []

    def guarded(item):
        try:
            fn(item)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(item,)) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors
