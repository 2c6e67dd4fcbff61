"""Small C kernels for the hot paths, compiled once on the user's machine and loaded with ctypes.

adlens ships no binary extension: a kernel is a few dozen lines of portable C, compiled with the
system C compiler (``$CC``, default ``cc``) the first time it is needed and cached on disk under
``$ADLENS_CACHE_DIR`` (default ``~/.cache/adlens``) in ``<subdir>/``, keyed by a hash of the source
and the flags (a changed kernel is a new file; concurrent first uses race safely through an atomic
rename). Without a compiler, or with ``ADLENS_NATIVE=0`` in the environment, :func:`load` returns
None and callers use their numpy paths (same results; see each kernel's docs for the last bit).

Flags: ``-O3`` without ``-march=native`` (the cache may be shared between machines) and with
``-ffp-contract=off``, so that ``a * b + c`` is rounded twice like numpy's float32 ufuncs (no fused
multiply-add on CPUs that have one): the kernels give the numpy paths' float32 results.
``-fno-trapping-math`` lets the compiler vectorise loops with float comparisons (it changes no
result; adlens never reads floating-point exception flags).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

__all__ = ["CFLAGS", "cache_dir", "load"]

CFLAGS = ("-O3", "-fPIC", "-shared", "-ffp-contract=off", "-fno-trapping-math")
_LOADED: dict[str, Any] = {}
_LOCK = threading.Lock()


def cache_dir(subdir: str) -> Path:
    root = os.environ.get("ADLENS_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "adlens") / subdir


def load(name: str, source: str, signatures: dict[str, tuple[list[Any], Any]], subdir: str | None = None,
         libs: tuple[str, ...] = ()) -> ctypes.CDLL | None:
    """Compile ``source`` (once per source + flags, cached) and load it; set each function's
    ``(argtypes, restype)`` from ``signatures``. None if it cannot be compiled or loaded."""
    if os.environ.get("ADLENS_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    key = hashlib.sha1((source + " ".join(CFLAGS + libs)).encode()).hexdigest()[:12]
    with _LOCK:  # one compile per process, even when threads ask at once
        if key not in _LOADED:
            _LOADED[key] = _build(name, source, signatures, subdir, libs, key)
        return _LOADED[key]


def _build(name, source, signatures, subdir, libs, key) -> ctypes.CDLL | None:
    lib = None
    try:
        so = cache_dir(subdir or name) / f"adlens_{name}_{key}.so"
        if not so.exists():
            so.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory() as td:
                src = Path(td) / f"{name}.c"
                src.write_text(source)
                # unique per process and call: processes sharing the cache race only on the rename
                tmp_so = so.parent / f".{so.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
                cc = os.environ.get("CC", "cc")
                try:
                    subprocess.run([cc, *CFLAGS, "-o", str(tmp_so), str(src), *libs],
                                   check=True, capture_output=True, timeout=60)
                    os.replace(tmp_so, so)
                finally:
                    tmp_so.unlink(missing_ok=True)  # a failed or timed-out compile leaves nothing
        lib = ctypes.CDLL(str(so))
        for fn, (argtypes, restype) in signatures.items():
            f = getattr(lib, fn)
            f.argtypes = argtypes
            f.restype = restype
    except (OSError, subprocess.SubprocessError, AttributeError, RuntimeError, KeyError):
        # no compiler, a read-only or unknown home (Path.home() raises RuntimeError / KeyError), ...
        lib = None
    return lib
