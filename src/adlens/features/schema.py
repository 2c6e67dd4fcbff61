"""Versioned feature schemas: every extractor declares its output columns up front.

A schema is an ordered tuple of :class:`FeatureSpec` (name, dtype, description, nullable). The
feature store keys cached rows by ``FEATURE_SCHEMA_VERSION`` (bump it whenever a column is added,
removed, renamed or its method changes so that old values would no longer be comparable).

Dtype vocabulary (maps one-to-one onto Parquet / Arrow types):

==================  ===========================================================
``"int32"``         counts
``"float32"``       scores and ratios; a null is NaN
``"bool"``          flags; a null is None
``"category"``      a short string from a closed set (e.g. face emotion)
``"string"``        free text (OCR text) or an identifier
``"list[string]"``  e.g. entity names
``"vector[N]"``     a float32 embedding of length N, or None when not computed
==================  ===========================================================

Example::

    >>> from adlens.features.schema import FeatureSpec, schema_names
    >>> schema_names((FeatureSpec("a", "int32", "x"), FeatureSpec("b", "float32", "y")))
    ['a', 'b']
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FEATURE_SCHEMA_VERSION", "FeatureSpec", "schema_names", "schema_fingerprint", "check_row", "NAN"]

#: Bump on any change of columns or methods (cached feature rows are keyed by it).
FEATURE_SCHEMA_VERSION = "features/1.0"

NAN = float("nan")

_BASE_DTYPES = {"int32", "float32", "bool", "category", "string", "list[string]"}


@dataclass(frozen=True)
class FeatureSpec:
    """One output column.

    Args:
        name: column name (unique within a schema).
        dtype: one of the dtype vocabulary above.
        description: the method, in one line.
        nullable: whether None / NaN is a legitimate value (e.g. "not computed").
    """

    name: str
    dtype: str
    description: str
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in _BASE_DTYPES and not (self.dtype.startswith("vector[") and self.dtype.endswith("]")):
            raise ValueError(f"unknown dtype {self.dtype!r} for feature {self.name!r}")


def schema_names(schema: Sequence[FeatureSpec]) -> list[str]:
    """Column names in schema order."""
    return [s.name for s in schema]


def schema_fingerprint(schema: Sequence[FeatureSpec]) -> str:
    """A short hash of (version, names, dtypes): changes whenever the columns change."""
    h = hashlib.sha1(FEATURE_SCHEMA_VERSION.encode())
    for s in schema:
        h.update(f"|{s.name}:{s.dtype}".encode())
    return h.hexdigest()[:12]


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def check_row(row: Mapping[str, Any], schema: Sequence[FeatureSpec]) -> None:
    """Raise ``ValueError`` if ``row`` misses a column, has an extra one, or a value of the wrong kind.

    Used by the tests (schema stability) and cheap enough for a debug assertion in pipelines.
    """
    names = schema_names(schema)
    missing = [n for n in names if n not in row]
    extra = [k for k in row if k not in names]
    if missing or extra:
        raise ValueError(f"row does not match schema: missing={missing} extra={extra}")
    for s in schema:
        v = row[s.name]
        if _is_null(v):
            if not s.nullable:
                raise ValueError(f"{s.name} is null but not nullable")
            continue
        ok = {
            "int32": lambda x: isinstance(x, int) and not isinstance(x, bool),
            "float32": lambda x: isinstance(x, float),
            "bool": lambda x: isinstance(x, bool),
            "category": lambda x: isinstance(x, str),
            "string": lambda x: isinstance(x, str),
            "list[string]": lambda x: isinstance(x, list) and all(isinstance(e, str) for e in x),
        }.get(s.dtype)
        if ok is None:  # vector[N]
            n = int(s.dtype[len("vector["):-1])
            shape = getattr(v, "shape", None)
            if shape != (n,):
                raise ValueError(f"{s.name} should be a vector of length {n}, got shape {shape}")
        elif not ok(v):
            raise ValueError(f"{s.name} should be {s.dtype}, got {type(v).__name__}: {v!r}")
