"""Embedding store: vectors in Parquet, keyed by content hash and model id.

Layout: ``artifacts/embeddings/<model-slug>/<kind>/part-*.parquet`` with columns ``key``
(sha256 of the image bytes or of the UTF-8 text) and ``vector`` (fixed-size list of float32).
A vector is computed once per (content, model): a new model id means a new folder, nothing is
overwritten. Each part is written to a temporary name and renamed, so a crash loses at most the
batch in flight and a rerun computes only what is missing.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_part(table: pa.Table, directory: Path) -> Path:
    """Write ``table`` as a new ``part-<time>-<rand>.parquet`` in ``directory``, atomically.

    The file appears under its final name only once complete (temp file + rename), and names sort
    by write time, so readers can apply "first write wins" and a crash leaves no half part.
    """
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".parquet")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def model_slug(model_id: str) -> str:
    """A folder name for a model id (stable, readable, filesystem-safe)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_")


class EmbeddingStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def _dir(self, model_id: str, kind: str) -> Path:
        return self.root / model_slug(model_id) / kind

    def has(self, model_id: str, kind: str) -> bool:
        """Whether anything is stored for a model and kind (without reading it)."""
        d = self._dir(model_id, kind)
        return d.exists() and any(d.glob("part-*.parquet"))

    def load(self, model_id: str, kind: str) -> tuple[list[str], np.ndarray]:
        """All ``(keys, vectors)`` stored for a model and kind; first write of a key wins."""
        d = self._dir(model_id, kind)
        parts = sorted(d.glob("part-*.parquet")) if d.exists() else []
        if not parts:
            return [], np.zeros((0, 0), np.float32)
        table = pa.concat_tables([pq.read_table(p) for p in parts])
        keys = table.column("key").to_pylist()
        flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        vectors = flat.astype(np.float32, copy=False).reshape(len(keys), -1)
        _, first = np.unique(np.asarray(keys, dtype=object), return_index=True)
        first.sort()
        return [keys[i] for i in first], vectors[first]

    def get(self, model_id: str, kind: str, keys: list[str]) -> np.ndarray:
        """Vectors for ``keys`` in that order; KeyError names the first missing key."""
        stored_keys, vectors = self.load(model_id, kind)
        pos = {k: i for i, k in enumerate(stored_keys)}
        missing = [k for k in keys if k not in pos]
        if missing:
            raise KeyError(f"{len(missing)} key(s) have no {kind} embedding for {model_id}, e.g. {missing[0]}")
        return vectors[[pos[k] for k in keys]] if keys else np.zeros((0, vectors.shape[1] if vectors.size else 0), np.float32)

    def missing(self, model_id: str, kind: str, keys: list[str]) -> list[str]:
        have = set(self.load(model_id, kind)[0])
        seen: set[str] = set()
        out = []
        for k in keys:
            if k not in have and k not in seen:
                seen.add(k)
                out.append(k)
        return out

    def put(self, model_id: str, kind: str, keys: list[str], vectors: np.ndarray) -> Path | None:
        """Append one part file (atomically)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys for {len(vectors)} vectors")
        if not keys:
            return None
        d = self._dir(model_id, kind)
        d.mkdir(parents=True, exist_ok=True)
        dim = vectors.shape[1]
        table = pa.table(
            {
                "key": pa.array(keys, pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), dim),
            },
            metadata={"model_id": model_id, "kind": kind},
        )
        return write_part(table, d)
