"""Content-addressed storage of the original image bytes: ``blobs/ab/cdef...`` by sha256.

The user's files are copied byte for byte, never re-encoded, so nothing they gave is changed.
Writes go to a temporary file first and are renamed into place: a crash never leaves a
half-written blob under a valid name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:]

    def has(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()

    def put(self, sha256: str, data: bytes) -> Path:
        dest = self.path_for(sha256)
        if dest.exists():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest

    def get(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()
