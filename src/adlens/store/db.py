"""Engine creation and migrations for the catalog database."""

from __future__ import annotations

import sqlalchemy as sa

from adlens.errors import WorkspaceError
from adlens.store import schema


def make_engine(url: str, wal_autocheckpoint: int | None = None) -> sa.Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys.

    ``wal_autocheckpoint=0`` turns off checkpoints inside commits (SQLite's default runs one, with
    its fsync, in whichever commit crosses 1000 WAL pages): a latency-bound writer such as the
    service then checkpoints from a background thread instead."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            # WAL: readers never block the writer; NORMAL sync is durable at each checkpoint
            # and safe against application crashes (what "loses at most the item in flight" needs).
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            if wal_autocheckpoint is not None:
                cur.execute(f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint)}")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def current_version(conn: sa.Connection) -> int:
    if not sa.inspect(conn).has_table("meta"):
        return 0
    row = conn.execute(
        sa.select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
    ).first()
    return int(row[0]) if row else 0


def migrate(engine: sa.Engine) -> int:
    """Apply every pending migration in order, each in its own transaction. Returns the version."""
    with engine.begin() as conn:
        version = current_version(conn)
    if version > schema.SCHEMA_VERSION:
        raise WorkspaceError(
            f"catalog schema version {version} is newer than this adlens ({schema.SCHEMA_VERSION}); "
            "upgrade adlens"
        )
    for target in range(version + 1, schema.SCHEMA_VERSION + 1):
        with engine.begin() as conn:
            schema.MIGRATIONS[target](conn)
            upsert_meta(conn, "schema_version", str(target))
    return schema.SCHEMA_VERSION


def upsert_meta(conn: sa.Connection, key: str, value: str) -> None:
    t = schema.meta
    updated = conn.execute(sa.update(t).where(t.c.key == key).values(value=value)).rowcount
    if not updated:
        conn.execute(sa.insert(t).values(key=key, value=value))
