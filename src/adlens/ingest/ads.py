"""Ingesting ad creatives from a folder (recursively) or a CSV/JSONL manifest.

Manifest columns: ``path`` (required; relative to the manifest's folder), optional ``ad_id``,
``advertiser``, ``campaign``, ``text``, ``landing_url``, ``day`` (YYYY-MM-DD). Other columns are
ignored. Without ``ad_id`` an ad is named by its content (``ad-`` + 16 hex digits of sha256), so
the same file ingested twice is the same ad.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import sqlalchemy as sa

from adlens.errors import InvalidInput
from adlens.ingest.images import ImageItem, Progress, image_items, insert_image, prepare_parallel
from adlens.ingest.manifest import clean_str
from adlens.store import schema
from adlens.store.ledger import Ledger
from adlens.store.runs import finish_run, now, record_rejection, start_run
from adlens.types import IngestSummary, Rejection
from adlens.workspace import Workspace

AD_FIELDS = ("ad_id", "advertiser", "campaign", "text", "landing_url", "day")


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def parse_day(value: str | None, location: str) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value[:10]).isoformat()
    except ValueError:
        raise InvalidInput(f"{location}: day {value!r} is not a date (YYYY-MM-DD)") from None


def ad_items(source: Path, default_day: str) -> Iterator[ImageItem | Rejection]:
    """Records of a folder or manifest, validated except for the image itself."""

    def row_fields(loc: str, row: dict) -> dict:
        fields = {k: clean_str(row.get(k)) for k in AD_FIELDS}
        fields["day"] = parse_day(fields["day"], loc) or default_day
        return fields

    return image_items(source, lambda _rel: {"day": default_day}, row_fields)


def ingest_ads(
    ws: Workspace,
    source: Path | str,
    day: str | None = None,
    progress: Progress | None = None,
    ledger: Ledger | None = None,
) -> IngestSummary:
    """Ingest creatives into the catalog and the dedup ledger.

    Each item is committed on its own. Returns the run summary; rejections are also stored with
    the run. ``day`` (default: today, UTC) applies to rows without their own ``day``.

    >>> ingest_ads(ws, "sample/ads.csv").to_dict()["added"]  # doctest: +SKIP
    """
    default_day = parse_day(day, "--day") or today()
    items = list(ad_items(Path(source), default_day))
    ledger = ledger or ws.ledger()
    run_id = start_run(ws.engine, "ingest-ads", str(source))
    summary = IngestSummary(run_id=run_id, kind="ads")
    summary.extra = {"new_images": 0, "near_duplicates_of_known": 0, "new_sightings": 0}
    status = "failed"
    try:
        for done, prep in enumerate(prepare_parallel(ws, items), start=1):
            if isinstance(prep, Rejection):
                record_rejection(ws.engine, summary, prep)
            else:
                try:
                    _write_ad(ws, ledger, run_id, prep, summary)
                except InvalidInput as e:
                    ledger.rolled_back()
                    record_rejection(ws.engine, summary, Rejection(prep.item.location, str(e)))
            if progress:
                progress(done, len(items))
        status = "done"
    finally:
        ledger.save()
        finish_run(ws.engine, run_id, status, summary.to_dict())
    return summary


def _write_ad(ws: Workspace, ledger: Ledger, run_id: str, prep, summary: IngestSummary) -> None:
    f = prep.item.fields
    ad_id = f.get("ad_id") or f"ad-{prep.sha256[:16]}"
    c = schema.creatives
    counts = {"new_images": 0, "near_duplicates_of_known": 0, "new_sightings": 0, "added": 0}
    try:
        with ws.engine.begin() as conn:
            image_id, is_new = insert_image(ws, conn, prep)
            if is_new:
                matches = ledger.add_image(conn, image_id, prep.hashes, f["day"])
                counts["new_images"] = 1
                counts["near_duplicates_of_known"] = int(bool(matches))
            existing = conn.execute(sa.select(c.c.image_id).where(c.c.ad_id == ad_id)).scalar()
            if existing is not None and existing != image_id:
                raise InvalidInput(
                    f"{prep.item.path}: ad_id {ad_id!r} is already bound to a different image; "
                    "nothing was overwritten"
                )
            if existing is None:
                conn.execute(
                    sa.insert(c).values(
                        ad_id=ad_id,
                        image_id=image_id,
                        advertiser=f.get("advertiser"),
                        campaign=f.get("campaign"),
                        text=f.get("text"),
                        landing_url=f.get("landing_url"),
                        day=f["day"],
                        source_path=str(prep.item.path),
                        created_at=now(),
                    )
                )
                counts["added"] = 1
            counts["new_sightings"] = int(ledger.add_sighting(conn, image_id, ad_id, f["day"], run_id))
    except BaseException:
        ledger.rolled_back()
        raise
    ledger.committed()
    # counters change only once the item's transaction has committed
    added = counts.pop("added")
    summary.added += added
    summary.already_present += 1 - added
    for k, v in counts.items():
        summary.extra[k] += v
