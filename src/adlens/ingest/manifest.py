"""Turning a folder or a CSV/JSONL manifest into records, with every bad row reported.

A manifest's ``path`` column is resolved relative to the manifest's own folder (absolute paths
are kept), so a corpus folder can be moved as a whole.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from adlens.errors import InvalidInput
from adlens.types import Rejection

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


def iter_folder_files(root: Path) -> list[Path]:
    """All regular files under ``root`` (recursively, sorted, hidden files and folders skipped)."""
    files = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.is_file():
            files.append(p)
    return files


def read_rows(path: Path) -> Iterator[tuple[str, dict | Rejection]]:
    """Yield ``(location, row)`` for each row of a CSV or JSONL file, or a Rejection for bad rows.

    ``location`` is ``file:line`` so that errors point at the exact input.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path}: manifest not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames:
                raise InvalidInput(f"{path}: empty manifest (no header row)")
            for i, row in enumerate(reader, start=2):
                loc = f"{path}:{i}"
                if None in row:  # more cells than header columns
                    yield loc, Rejection(loc, "row has more cells than the header")
                    continue
                yield loc, {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}
    elif suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f, start=1):
                loc = f"{path}:{i}"
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    yield loc, Rejection(loc, f"invalid JSON ({e.msg})")
                    continue
                if not isinstance(obj, dict):
                    yield loc, Rejection(loc, "JSON line is not an object")
                    continue
                yield loc, obj
    else:
        raise InvalidInput(f"{path}: unsupported manifest type {suffix!r} (use .csv or .jsonl)")


def clean_str(value, max_len: int | None = None) -> str | None:
    """Empty strings and None become None; other scalars become stripped strings."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from pandas-written CSVs
        return None
    s = str(value).strip()
    if not s:
        return None
    return s[:max_len] if max_len else s


def resolve_path(manifest: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else (manifest.parent / p)
