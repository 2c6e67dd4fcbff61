"""Step 8 of seed 000: one consolidated Parquet (pairs + features + teacher labels) and a dataset card.

* Written in bounded-memory batches with ``pyarrow.parquet.ParquetWriter`` (the seed hit OOM at 8.1 GB
  by embedding image bytes): only ``batch_size`` merged rows exist at a time.
* Images are referenced by content hash (``image_sha256``), never embedded; bytes are for export only.
* Embedding vectors (numpy arrays) are dropped unless ``include_vectors=True``.
* Card: ``<out>.card.json`` + ``<out>.card.md`` with pairs per type, label distribution, teacher(s),
  costs, columns.

Library entry point for ``adlens teach`` / dataset consolidation::

    card = build_dataset(pairs, labels, "ws/quality/dataset.parquet", pair_features=pf, ad_features=af,
                         ad_images=img_hashes, teacher_report=teacher.report())
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adlens.quality.pairs import PAIR_TYPES, as_records, pair_id as make_pair_id
from adlens.quality.teachers import label_summary

__all__ = ["build_dataset", "content_hash", "DATASET_FORMAT"]

DATASET_FORMAT = "adlens-quality-dataset/1"


def content_hash(data: bytes | str | os.PathLike) -> str:
    """sha256 hex of image bytes (or of the file at a path), streamed."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return hashlib.sha256(data).hexdigest()
    h = hashlib.sha256()
    with open(data, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _keyed(table: Any, key: str | tuple[str, ...]) -> dict[Any, dict[str, Any]]:
    if table is None:
        return {}
    if isinstance(table, Mapping) and table and all(isinstance(v, Mapping) for v in table.values()):
        return {k: dict(v) for k, v in table.items()}
    out = {}
    for r in as_records(table):
        k = tuple(r[x] for x in key) if isinstance(key, tuple) else r[key]
        out[k] = r
    return out


def _clean(v: Any, include_vectors: bool) -> Any:
    if isinstance(v, np.ndarray):
        return v.astype(float).tolist() if include_vectors and v.ndim == 1 else None
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return None  # never embed bytes
    return v


def _pa_type(v: Any):
    import pyarrow as pa

    if isinstance(v, bool):
        return pa.bool_()
    if isinstance(v, int):
        return pa.int64()
    if isinstance(v, float):
        return pa.float64()
    if isinstance(v, str):
        return pa.string()
    if isinstance(v, (list, tuple)):
        inner = next((x for x in v if x is not None), "")
        return pa.list_(pa.float64() if isinstance(inner, (int, float)) and not isinstance(inner, bool) else pa.string())
    return pa.string()


def build_dataset(pairs: Any, labels: Any, out_path: str | os.PathLike, pair_features: Any = None,
                  ad_features: Any = None, article_features: Any = None, ad_images: Mapping[Any, Any] | None = None,
                  teacher_report: Mapping[str, Any] | None = None, batch_size: int = 1000,
                  include_vectors: bool = False, drop_unlabelled: bool = False) -> dict[str, Any]:
    """Merge and write; returns the card (also written next to ``out_path``).

    Args:
        pairs: records ``pair_id, ad_id, article_id, pair_type`` (e.g. :func:`make_pairs` output).
        labels: teacher output rows (``pair_id``/``ad_id``+``article_id``, score, reasoning, teacher, cost, error).
        pair_features: F features per pair: ``{pair_id: row}`` or records with ``pair_id`` (or ad_id+article_id).
        ad_features: M features per ad: ``{ad_id: row}`` or records with ``ad_id``; article_features likewise.
        ad_images: ``{ad_id: sha256 hex | bytes | path}`` -> column ``image_sha256``.
        batch_size: rows merged and written at a time (bounded memory).
        include_vectors: keep 1-D numpy embeddings as list<double> columns (default: dropped).
        drop_unlabelled: skip pairs whose label has no score.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    P = as_records(pairs)
    L: dict[Any, dict] = {}
    for r in as_records(labels):
        L[r.get("pair_id") or make_pair_id(r.get("ad_id"), r.get("article_id"))] = r
    PF = _keyed(pair_features, "pair_id") if pair_features is not None and not (
        not isinstance(pair_features, Mapping) and as_records(pair_features) and "pair_id" not in as_records(pair_features)[0]) \
        else _keyed(pair_features, ("ad_id", "article_id"))
    AF = _keyed(ad_features, "ad_id")
    RF = _keyed(article_features, "article_id")
    hashes: dict[Any, str] = {}
    for k, v in (ad_images or {}).items():
        hashes[k] = v if isinstance(v, str) and len(v) == 64 and not os.path.exists(v) else content_hash(v)

    def merged(p: Mapping[str, Any]) -> dict[str, Any] | None:
        pid = p.get("pair_id") or make_pair_id(p["ad_id"], p["article_id"])
        lab = L.get(pid, {})
        if drop_unlabelled and lab.get("score") is None:
            return None
        row = {"pair_id": pid, "ad_id": p["ad_id"], "article_id": p["article_id"], "pair_type": p.get("pair_type")}
        for src, prefix in ((AF.get(p["ad_id"], {}), ""), (RF.get(p["article_id"], {}), "article_"),
                            (PF.get(pid) or PF.get((p["ad_id"], p["article_id"])) or {}, "")):
            for k, v in src.items():
                if k in ("pair_id", "ad_id", "article_id", "pair_type"):
                    continue
                name = k if (prefix == "" or k.startswith("article_")) else prefix + k
                row[name] = _clean(v, include_vectors)
        row["image_sha256"] = hashes.get(p["ad_id"])
        row["score"] = None if lab.get("score") is None else float(lab["score"])
        row["reasoning"] = lab.get("reasoning")
        row["teacher"] = lab.get("teacher")
        row["teacher_cost"] = float(lab.get("cost") or 0.0)
        row["label_error"] = lab.get("error") if lab else "no label"
        return row

    # schema: column order = first appearance; type = first non-null value (one cheap pass)
    types: dict[str, Any] = {}
    for p in P:
        r = merged(p)
        if r is None:
            continue
        for k, v in r.items():
            if k not in types or (types[k] is None and v is not None):
                types[k] = None if v is None else _pa_type(v)
    schema = pa.schema([(k, t if t is not None else pa.string()) for k, t in types.items()])
    schema = schema.with_metadata({"format": DATASET_FORMAT})

    n_rows, per_type, scores = 0, Counter(), []
    tmp = out_path.with_name(out_path.name + ".tmp")
    with pq.ParquetWriter(str(tmp), schema, compression="zstd") as w:
        for start in range(0, len(P), batch_size):
            rows = [r for r in (merged(p) for p in P[start:start + batch_size]) if r is not None]
            if not rows:
                continue
            for r in rows:
                for k in types:
                    r.setdefault(k, None)
                    v = r[k]
                    if isinstance(v, float) and math.isnan(v) and schema.field(k).type != pa.float64():
                        r[k] = None
            w.write_table(pa.Table.from_pylist(rows, schema=schema))
            n_rows += len(rows)
            per_type.update(r["pair_type"] for r in rows)
            scores.extend({"score": r["score"], "teacher": r["teacher"], "cost": r["teacher_cost"],
                           "error": r["label_error"]} for r in rows)
    os.replace(tmp, out_path)

    card = {
        "format": DATASET_FORMAT, "path": str(out_path), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "n_rows": n_rows, "n_ads": len({p["ad_id"] for p in P}),
        "pairs_per_type": {t: per_type.get(t, 0) for t in PAIR_TYPES} | {k: v for k, v in per_type.items() if k not in PAIR_TYPES},
        "labels": label_summary(scores), "teacher_report": dict(teacher_report) if teacher_report else None,
        "pairs_params": getattr(pairs, "params", None), "pairs_shortfall": getattr(pairs, "summary", lambda: None)(),
        "columns": [f"{f.name}:{f.type}" for f in schema], "images": "referenced by sha256 (column image_sha256), not embedded",
        "batch_size": batch_size,
    }
    card_json = out_path.with_name(out_path.stem + ".card.json")
    card_json.write_text(json.dumps(card, indent=2, default=str))
    lab = card["labels"]
    md = ["# Quality dataset card\n", f"- file: `{out_path.name}` ({DATASET_FORMAT}), created {card['created']}",
          f"- rows: {n_rows}, ads: {card['n_ads']}", f"- images: {card['images']}", "",
          "## Pairs per type", "", "| type | pairs |", "|---|---|",
          *[f"| {k} | {v} |" for k, v in card["pairs_per_type"].items()], "",
          "## Labels", "", f"- teachers: {lab['teachers']}", f"- scored: {lab['n_scored']} / {lab['n']}, errors: {lab['errors']}",
          f"- mean score: {lab['mean']}", f"- total teacher cost (USD): {lab['total_cost']:.4f}", "",
          "| score | count |", "|---|---|", *[f"| {k} | {v} |" for k, v in lab["histogram"].items()], ""]
    if teacher_report:
        md += ["## Teacher report", "", "```json", json.dumps(dict(teacher_report), indent=2, default=str), "```", ""]
    out_path.with_name(out_path.stem + ".card.md").write_text("\n".join(md))
    return card


def iter_batches(path: str | os.PathLike, batch_size: int = 1000, columns: Sequence[str] | None = None) -> Iterator[dict]:
    """Read the dataset back in bounded-memory batches as column dicts."""
    import pyarrow.parquet as pq

    f = pq.ParquetFile(str(path))
    for b in f.iter_batches(batch_size=batch_size, columns=columns):
        yield b.to_pydict()
