import sqlalchemy as sa
import pytest

from adlens.errors import WorkspaceError
from adlens.store import schema
from adlens.store.db import current_version, make_engine, migrate
from adlens.workspace import init_workspace, open_workspace


def test_init_creates_layout_and_is_idempotent(settings):
    ws = init_workspace(settings.workspace, settings)
    for sub in ("blobs", "artifacts", "reports"):
        assert (ws.root / sub).is_dir()
    assert (ws.root / "catalog.db").exists()
    ws.close()
    ws2 = init_workspace(settings.workspace, settings)  # second init changes nothing
    with ws2.engine.connect() as conn:
        assert current_version(conn) == schema.SCHEMA_VERSION
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    ws2.close()


def test_open_requires_initialised_workspace(tmp_path, settings):
    with pytest.raises(WorkspaceError, match="not an adlens workspace"):
        open_workspace(tmp_path / "nothing", settings)


def test_workspace_path_that_is_a_file(tmp_path, settings):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(WorkspaceError, match="not a folder"):
        init_workspace(f, settings)


def test_migrations_apply_in_order_and_refuse_newer_schema(tmp_path, monkeypatch):
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    real = schema.SCHEMA_VERSION
    nxt = real + 1
    applied = []
    monkeypatch.setitem(schema.MIGRATIONS, nxt, lambda conn: applied.append(nxt))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", nxt)
    assert migrate(engine) == nxt and applied == [nxt]
    assert migrate(engine) == nxt and applied == [nxt]  # nothing re-applied
    monkeypatch.setattr(schema, "SCHEMA_VERSION", real)
    with pytest.raises(WorkspaceError, match="newer than this adlens"):
        migrate(engine)
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) >= {t.name for t in schema.V1_TABLES + schema.V2_TABLES}
