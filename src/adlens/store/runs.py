"""Run bookkeeping: every ingest or pipeline run gets a row and its rejections are kept."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa

from adlens.store import schema
from adlens.types import Rejection


def now() -> datetime:
    return datetime.now(UTC)


def start_run(engine: sa.Engine, kind: str, source: str | None) -> str:
    run_id = f"{kind}-{now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(
            sa.insert(schema.runs).values(
                run_id=run_id, kind=kind, source=source, started_at=now(), status="running"
            )
        )
    return run_id


def add_rejection(conn: sa.Connection, run_id: str, rejection: Rejection) -> None:
    conn.execute(sa.insert(schema.rejections).values(run_id=run_id, path=rejection.path, reason=rejection.reason))


def record_rejection(engine: sa.Engine, summary, rejection: Rejection) -> None:
    """Count a rejection in the run's summary and store it with the run (its own transaction)."""
    summary.rejected.append(rejection)
    with engine.begin() as conn:
        add_rejection(conn, summary.run_id, rejection)


def finish_run(engine: sa.Engine, run_id: str, status: str, summary: dict) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.update(schema.runs)
            .where(schema.runs.c.run_id == run_id)
            .values(finished_at=now(), status=status, summary_json=json.dumps(summary))
        )


def recent_runs(engine: sa.Engine, limit: int = 20) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.runs).order_by(schema.runs.c.started_at.desc()).limit(limit)
        ).mappings()
        out = []
        for r in rows:
            d = dict(r)
            d["summary"] = json.loads(d.pop("summary_json") or "{}")
            out.append(d)
        return out
