"""Ingesting a product catalogue from a folder or a CSV/JSONL manifest.

Manifest columns: ``path`` (required, the product image; relative to the manifest's folder),
optional ``product_id``, ``title``, ``category``, ``url``. In folder mode the category is the
name of the sub-folder a file sits in (``products/shoes/x.jpg`` -> ``shoes``) and the product id
is ``prod-`` + 16 hex digits of the image's sha256.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from adlens.errors import InvalidInput
from adlens.ingest.images import ImageItem, Progress, image_items, insert_image, prepare_parallel
from adlens.ingest.manifest import clean_str
from adlens.store import schema
from adlens.store.runs import finish_run, now, record_rejection, start_run
from adlens.types import IngestSummary, Rejection
from adlens.workspace import Workspace

PRODUCT_FIELDS = ("product_id", "title", "category", "url")


def product_items(source: Path) -> Iterator[ImageItem | Rejection]:
    return image_items(
        source,
        lambda rel: {"category": rel.parts[-2] if len(rel.parts) > 1 else None},
        lambda _loc, row: {k: clean_str(row.get(k)) for k in PRODUCT_FIELDS},
    )


def ingest_products(ws: Workspace, source: Path | str, progress: Progress | None = None) -> IngestSummary:
    """Ingest product images and metadata; one transaction per product, rerunnable."""
    items = list(product_items(Path(source)))
    run_id = start_run(ws.engine, "ingest-products", str(source))
    summary = IngestSummary(run_id=run_id, kind="products")
    status = "failed"
    p = schema.products
    try:
        for done, prep in enumerate(prepare_parallel(ws, items), start=1):
            try:
                if isinstance(prep, Rejection):
                    raise InvalidInput(prep.reason)
                f = prep.item.fields
                product_id = f.get("product_id") or f"prod-{prep.sha256[:16]}"
                with ws.engine.begin() as conn:
                    image_id, _ = insert_image(ws, conn, prep)
                    existing = conn.execute(sa.select(p.c.image_id).where(p.c.product_id == product_id)).scalar()
                    if existing is not None and existing != image_id:
                        raise InvalidInput(
                            f"{prep.item.path}: product_id {product_id!r} is already bound to a different image"
                        )
                    if existing is None:
                        conn.execute(
                            sa.insert(p).values(
                                product_id=product_id,
                                image_id=image_id,
                                title=f.get("title"),
                                category=f.get("category"),
                                url=f.get("url"),
                                source_path=str(prep.item.path),
                                created_at=now(),
                            )
                        )
                        summary.added += 1
                    else:
                        summary.already_present += 1
            except InvalidInput as e:
                location = prep.path if isinstance(prep, Rejection) else prep.item.location
                record_rejection(ws.engine, summary, Rejection(location, str(e)))
            if progress:
                progress(done, len(items))
        status = "done"
    finally:
        finish_run(ws.engine, run_id, status, summary.to_dict())
    return summary
