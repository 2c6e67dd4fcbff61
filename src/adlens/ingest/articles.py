"""Ingesting articles (contexts) from a JSONL or CSV file.

Columns: ``text`` (required), optional ``article_id`` (default ``art-`` + 16 hex digits of the
text's sha256), ``title``, ``topic``, ``ad_id`` (the ad the article was written for), ``url``.
Texts longer than ``MAX_TEXT_CHARS`` are rejected rather than silently truncated.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import sqlalchemy as sa

from adlens.errors import InvalidInput
from adlens.ingest.images import Progress
from adlens.ingest.manifest import clean_str, read_rows
from adlens.store import schema
from adlens.store.runs import finish_run, now, record_rejection, start_run
from adlens.types import IngestSummary, Rejection
from adlens.workspace import Workspace

MAX_TEXT_CHARS = 1_000_000


def ingest_articles(ws: Workspace, source: Path | str, progress: Progress | None = None) -> IngestSummary:
    """Ingest articles; a row whose id exists with the same text is 'already present'."""
    source = Path(source)
    rows = list(read_rows(source))
    run_id = start_run(ws.engine, "ingest-articles", str(source))
    summary = IngestSummary(run_id=run_id, kind="articles")
    a = schema.articles
    status = "failed"
    try:
        for done, (loc, row) in enumerate(rows, start=1):
            try:
                if isinstance(row, Rejection):
                    raise InvalidInput(row.reason)
                text = clean_str(row.get("text"))
                if not text:
                    raise InvalidInput("missing or empty 'text'")
                if len(text) > MAX_TEXT_CHARS:
                    raise InvalidInput(f"text too long ({len(text):,} chars > {MAX_TEXT_CHARS:,})")
                article_id = clean_str(row.get("article_id")) or f"art-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
                with ws.engine.begin() as conn:
                    existing = conn.execute(sa.select(a.c.text).where(a.c.article_id == article_id)).scalar()
                    if existing is None:
                        conn.execute(
                            sa.insert(a).values(
                                article_id=article_id,
                                title=clean_str(row.get("title")),
                                text=text,
                                topic=clean_str(row.get("topic")),
                                ad_id=clean_str(row.get("ad_id")),
                                url=clean_str(row.get("url")),
                                created_at=now(),
                            )
                        )
                        summary.added += 1
                    elif existing == text:
                        summary.already_present += 1
                    else:
                        raise InvalidInput(f"article_id {article_id!r} already exists with a different text")
            except InvalidInput as e:
                record_rejection(ws.engine, summary, Rejection(loc, str(e)))
            if progress:
                progress(done, len(rows))
        status = "done"
    finally:
        finish_run(ws.engine, run_id, status, summary.to_dict())
    return summary
