"""Feature store: feature rows in Parquet, versioned by feature schema, cached by content hash.

Layout (``WORKSPACE/artifacts/features`` for a workspace, see :func:`open_feature_store`)::

    features/
      features_1.0/                 <- folder of FEATURE_SCHEMA_VERSION "features/1.0"
        ads/part-<ns>-<rand>.parquet
        articles/part-...parquet
        pairs/part-...parquet

Every part file holds a ``key`` column (a content hash, see :mod:`adlens.features.jobs` for what
each kind hashes) followed by the columns of a list of :class:`~adlens.features.schema.FeatureSpec`.
Its Parquet metadata records ``adlens.feature_schema_version``, ``adlens.kind``,
``adlens.schema_fingerprint`` (:func:`~adlens.features.schema.schema_fingerprint` of the columns)
and the column specs as JSON. A schema version change means a new folder, so rows of two versions
never mix; parts whose fingerprint differs from the one asked for (a column changed without a
version bump) are ignored on read, so their keys count as missing and are recomputed.

Dtypes map one-to-one onto Arrow: ``int32`` -> int32, ``float32`` -> float32 (a NaN is written as
a Parquet null and read back as NaN), ``bool`` -> bool, ``category`` / ``string`` -> string,
``list[string]`` -> list<string>, ``vector[N]`` -> fixed_size_list<float32, N>. The jobs of
:mod:`adlens.features.jobs` keep embedding vectors *out* of these files (they store a pointer into
the workspace's :class:`~adlens.store.embeddings.EmbeddingStore` instead); the vector dtype is
supported for callers who want self-contained tables.

Writes append one part per batch, written to a temporary name and renamed (atomic on POSIX), so
a crash loses at most the batch in flight; readers never see a half-written part. On read the
first-written row of a key wins, so a key written twice (e.g. by two concurrent jobs) is still
one row.

Example::

    >>> import tempfile
    >>> from adlens.features.schema import FeatureSpec
    >>> specs = (FeatureSpec("clarity", "float32", "sharpness", True),)
    >>> fs = FeatureStore(tempfile.mkdtemp())
    >>> _ = fs.put("ads", [{"key": "k1", "clarity": 5.0}, {"key": "k2", "clarity": float("nan")}], specs)
    >>> sorted(fs.keys("ads", specs)), fs.rows("ads", specs, keys=["k2"])[0]["clarity"]
    (['k1', 'k2'], nan)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adlens.features.schema import (
    FEATURE_SCHEMA_VERSION,
    FeatureSpec,
    schema_fingerprint,
)
from adlens.store.embeddings import write_part

__all__ = ["FeatureStore", "arrow_schema", "arrow_type", "open_feature_store", "version_slug"]

KEY = "key"
_META_VERSION = b"adlens.feature_schema_version"
_META_KIND = b"adlens.kind"
_META_FP = b"adlens.schema_fingerprint"
_META_COLUMNS = b"adlens.columns"


def version_slug(version: str = FEATURE_SCHEMA_VERSION) -> str:
    """Folder name of a schema version: ``"features/1.0"`` -> ``"features_1.0"``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", version).strip("_")


def arrow_type(dtype: str) -> pa.DataType:
    """The Arrow type of a :class:`FeatureSpec` dtype."""
    simple = {"int32": pa.int32(), "float32": pa.float32(), "bool": pa.bool_(), "category": pa.string(),
              "string": pa.string(), "list[string]": pa.list_(pa.string())}
    if dtype in simple:
        return simple[dtype]
    if dtype.startswith("vector[") and dtype.endswith("]"):
        return pa.list_(pa.float32(), int(dtype[len("vector["):-1]))
    raise ValueError(f"unknown feature dtype {dtype!r}")


def arrow_schema(specs: Sequence[FeatureSpec]) -> pa.Schema:
    """``key`` (string, not null) followed by one field per spec."""
    return pa.schema([pa.field(KEY, pa.string(), nullable=False)]
                     + [pa.field(s.name, arrow_type(s.dtype), nullable=True) for s in specs])


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float | np.floating) and math.isnan(v))


def _column(spec: FeatureSpec, values: list[Any]) -> pa.Array:
    t = arrow_type(spec.dtype)
    try:
        if spec.dtype == "float32":
            return pa.array([None if _is_null(v) else float(v) for v in values], t)
        if spec.dtype == "int32":
            return pa.array([None if _is_null(v) else int(v) for v in values], t)
        if spec.dtype == "bool":
            return pa.array([None if _is_null(v) else bool(v) for v in values], t)
        if spec.dtype in ("category", "string"):
            return pa.array([None if _is_null(v) else str(v) for v in values], t)
        if spec.dtype == "list[string]":
            bad = next((v for v in values if isinstance(v, str | bytes)), None)
            if bad is not None:  # a bare string would silently become a list of characters
                raise ValueError(f"expected a list of strings, got the string {bad!r}")
            return pa.array([None if v is None else [str(x) for x in v] for v in values], t)
        n = t.list_size  # vector[N]: one flat buffer, nulls masked
        flat = np.zeros((len(values), n), np.float32)
        mask = np.zeros(len(values), bool)
        for i, v in enumerate(values):
            if v is None:
                mask[i] = True
                continue
            a = np.asarray(v, np.float32).ravel()
            if a.shape != (n,):
                raise ValueError(f"expected a vector of length {n}, got shape {np.shape(v)}")
            flat[i] = a
        return pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel(), pa.float32()), n, mask=pa.array(mask))
    except (TypeError, ValueError, pa.ArrowException) as e:
        raise ValueError(f"column {spec.name!r} ({spec.dtype}): {e}") from None


class FeatureStore:
    """Parquet feature rows under ``root/<version-slug>/<kind>/``.

    Args:
        root: the store's folder (``artifacts/features`` in a workspace).
        schema_version: the feature schema version (default :data:`FEATURE_SCHEMA_VERSION`);
            selects the folder, so stores of two versions never see each other's rows.
    """

    def __init__(self, root: Path | str, schema_version: str = FEATURE_SCHEMA_VERSION):
        self.root = Path(root)
        self.schema_version = schema_version

    def dir(self, kind: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", kind):
            raise ValueError(f"invalid kind {kind!r}")
        return self.root / version_slug(self.schema_version) / kind

    def parts(self, kind: str, specs: Sequence[FeatureSpec] | None = None) -> list[Path]:
        """Part files of ``kind`` in write order; with ``specs``, only those written with that schema."""
        d = self.dir(kind)
        parts = sorted(d.glob("part-*.parquet")) if d.exists() else []
        if specs is None:
            return parts
        fp = schema_fingerprint(specs).encode()
        return [p for p in parts if (pq.read_schema(p).metadata or {}).get(_META_FP) == fp]

    # -- writing ---------------------------------------------------------------
    def put(self, kind: str, rows: Sequence[Mapping[str, Any]], specs: Sequence[FeatureSpec]) -> Path | None:
        """Append ``rows`` (each with ``"key"`` and every spec's column) as one part, atomically.

        Extra keys in a row are ignored; a missing column or a value of the wrong kind raises
        ``ValueError`` naming the column. Returns the part's path (None for no rows).
        """
        if not rows:
            return None
        names = [s.name for s in specs]
        for i, r in enumerate(rows):
            missing = [n for n in (KEY, *names) if n not in r]
            if missing:
                raise ValueError(f"row {i} misses column(s) {missing}")
            if not isinstance(r[KEY], str) or not r[KEY]:
                raise ValueError(f"row {i} has no key")
        arrays = [pa.array([r[KEY] for r in rows], pa.string())] + [_column(s, [r[s.name] for r in rows]) for s in specs]
        meta = {
            _META_VERSION: self.schema_version.encode(),
            _META_KIND: kind.encode(),
            _META_FP: schema_fingerprint(specs).encode(),
            _META_COLUMNS: json.dumps([[s.name, s.dtype, s.nullable] for s in specs]).encode(),
        }
        table = pa.Table.from_arrays(arrays, schema=arrow_schema(specs).with_metadata(meta))
        return write_part(table, self.dir(kind))

    # -- reading ---------------------------------------------------------------
    def keys(self, kind: str, specs: Sequence[FeatureSpec] | None = None) -> set[str]:
        """Keys stored for ``kind`` (reads the key column only)."""
        out: set[str] = set()
        for p in self.parts(kind, specs):
            out.update(pq.read_table(p, columns=[KEY]).column(KEY).to_pylist())
        return out

    def missing(self, kind: str, keys: Iterable[str], specs: Sequence[FeatureSpec] | None = None) -> list[str]:
        """``keys`` (deduplicated, order kept) that have no row yet."""
        have = self.keys(kind, specs)
        return [k for k in dict.fromkeys(keys) if k not in have]

    def table(self, kind: str, specs: Sequence[FeatureSpec] | None = None, *, columns: Sequence[str] | None = None,
              keys: Iterable[str] | None = None) -> pa.Table:
        """One row per stored key (first write wins) as a pyarrow Table, in write order.

        Args:
            specs: read only parts written with exactly these columns (recommended).
            columns: columns to read besides ``key`` (default all).
            keys: keep only these keys (rows in write order, not in ``keys`` order).
        """
        parts = self.parts(kind, specs)
        cols = None if columns is None else [KEY, *[c for c in columns if c != KEY]]
        if not parts:
            if specs is None:
                return pa.table({KEY: pa.array([], pa.string())})
            sch = arrow_schema(specs)
            return sch.empty_table() if cols is None else sch.empty_table().select(cols)
        t = pa.concat_tables([pq.read_table(p, columns=cols) for p in parts])
        _, first = np.unique(np.asarray(t.column(KEY).to_pylist(), dtype=object), return_index=True)
        if len(first) < t.num_rows:
            t = t.take(pa.array(np.sort(first)))
        if keys is not None:
            t = t.filter(pc.is_in(t.column(KEY), value_set=pa.array(list(set(keys)), pa.string())))
        return t

    def rows(self, kind: str, specs: Sequence[FeatureSpec] | None = None, *, columns: Sequence[str] | None = None,
             keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Rows as plain dicts (no pandas). A null float32 is NaN (the extractors' convention),
        a vector is a float32 numpy array; other nulls are None. With ``keys`` the rows come in
        ``keys`` order and a key without a row is skipped."""
        keys = None if keys is None else list(keys)
        t = self.table(kind, specs, columns=columns, keys=keys)
        return table_rows(t, specs, order=keys)

    def compact(self, kind: str, specs: Sequence[FeatureSpec]) -> Path | None:
        """Merge every part written with ``specs`` into one (write new, then delete old; a crash in
        between leaves duplicate keys, which readers already resolve)."""
        old = self.parts(kind, specs)
        if len(old) < 2:
            return old[0] if old else None
        t = self.table(kind, specs)
        new = self.put(kind, table_rows(t, specs), specs)
        for p in old:
            p.unlink(missing_ok=True)
        return new

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r}, schema_version={self.schema_version!r})"


def table_rows(t: pa.Table, specs: Sequence[FeatureSpec] | None = None, order: Sequence[str] | None = None) -> list[dict]:
    """Plain-dict rows of a feature table (see :meth:`FeatureStore.rows`)."""
    dtypes = {s.name: s.dtype for s in specs or ()}
    cols = {}
    for name in t.column_names:
        dt = dtypes.get(name) or ("float32" if pa.types.is_floating(t.schema.field(name).type) else "")
        col = t.column(name)
        if dt == "float32":
            cols[name] = pc.fill_null(col.cast(pa.float64()), float("nan")).to_numpy().tolist()
        elif dt.startswith("vector["):
            cols[name] = [None if v is None else np.asarray(v, np.float32) for v in col.to_pylist()]
        else:
            cols[name] = col.to_pylist()
    rows = [{k: v[i] for k, v in cols.items()} for i in range(t.num_rows)]
    if order is not None:
        by_key = {r[KEY]: r for r in rows}
        rows = [by_key[k] for k in order if k in by_key]
    return rows


def open_feature_store(ws, schema_version: str = FEATURE_SCHEMA_VERSION) -> FeatureStore:
    """The feature store of a workspace: ``WORKSPACE/artifacts/features``."""
    return FeatureStore(ws.artifacts / "features", schema_version)
