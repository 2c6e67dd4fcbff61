"""Read-only queries over the catalog used by several commands."""

from __future__ import annotations

import sqlalchemy as sa

from adlens.store import schema


def catalog_counts(engine: sa.Engine) -> dict[str, int]:
    tables = {
        "ads": schema.creatives,
        "images": schema.images,
        "articles": schema.articles,
        "products": schema.products,
        "sightings": schema.sightings,
        "runs": schema.runs,
    }
    with engine.connect() as conn:
        counts = {k: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for k, t in tables.items()}
        counts["unique_creatives"] = conn.execute(
            sa.select(sa.func.count(sa.distinct(schema.ledger.c.canonical_id)))
        ).scalar_one()
    return counts
