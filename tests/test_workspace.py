import json

import pytest
import sqlalchemy as sa

from adlens.config import DEFAULT_IMAGE_MODEL, Settings
from adlens.embed.jobs import image_model
from adlens.errors import WorkspaceError
from adlens.store import schema
from adlens.store.db import current_version, make_engine, migrate
from adlens.workspace import LEGACY_IMAGE_MODEL, WORKSPACE_FILE, init_workspace, open_workspace


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


# --------------------------------------------------------------------------- the pinned image model


def _ws_file(root):
    return json.loads((root / WORKSPACE_FILE).read_text())


def test_new_workspace_pins_the_default_image_model_and_keeps_it(tmp_path, monkeypatch):
    monkeypatch.delenv("ADLENS_IMAGE_MODEL", raising=False)
    root = tmp_path / "ws"
    with init_workspace(root, Settings(workspace=root)) as ws:
        assert ws.image_model == DEFAULT_IMAGE_MODEL == "efficientnet-lite0-int8"
        assert image_model(ws) == DEFAULT_IMAGE_MODEL
    assert _ws_file(root) == {"image_model": "efficientnet-lite0-int8"}
    # later sessions without the setting keep the pin; init again changes nothing
    with open_workspace(root, Settings(workspace=root)) as ws, init_workspace(root, Settings(workspace=root)) as ws2:
        assert ws.image_model == ws2.image_model == "efficientnet-lite0-int8"


def test_the_setting_at_creation_is_pinned_and_a_different_one_later_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "ws"
    monkeypatch.setenv("ADLENS_IMAGE_MODEL", "efficientnet-lite0")
    init_workspace(root, Settings(workspace=root)).close()
    monkeypatch.delenv("ADLENS_IMAGE_MODEL")
    with open_workspace(root, Settings(workspace=root)) as ws:
        assert ws.image_model == image_model(ws) == "efficientnet-lite0"
        assert image_model() == DEFAULT_IMAGE_MODEL  # no workspace: the setting's default
    monkeypatch.setenv("ADLENS_IMAGE_MODEL", "efficientnet-lite0-int8")
    before = (root / WORKSPACE_FILE).read_bytes()
    for make in (open_workspace, init_workspace):
        with pytest.raises(WorkspaceError, match=r"created with image model 'efficientnet-lite0'.*'efficientnet-lite0-int8'"):
            make(root, Settings(workspace=root))
    assert (root / WORKSPACE_FILE).read_bytes() == before
    # the same model, asked for explicitly, is fine
    with open_workspace(root, Settings(workspace=root, image_model="efficientnet-lite0")) as ws:
        assert ws.image_model == "efficientnet-lite0"


@pytest.mark.parametrize("env, expected", [(None, LEGACY_IMAGE_MODEL), ("efficientnet-lite0-int8", "efficientnet-lite0-int8")])
def test_workspace_made_before_the_pin_gets_what_it_was_built_with(tmp_path, monkeypatch, env, expected):
    root = tmp_path / "old"
    init_workspace(root, Settings(workspace=root)).close()
    (root / WORKSPACE_FILE).unlink()  # as every workspace made before 2026-11-23
    if env is None:
        monkeypatch.delenv("ADLENS_IMAGE_MODEL", raising=False)
    else:
        monkeypatch.setenv("ADLENS_IMAGE_MODEL", env)
    with open_workspace(root, Settings(workspace=root)) as ws:
        assert ws.image_model == expected
    assert _ws_file(root) == {"image_model": expected}


def test_unknown_model_and_unreadable_pin_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("ADLENS_IMAGE_MODEL", raising=False)
    root = tmp_path / "ws"
    with pytest.raises(WorkspaceError, match=r"unknown image model 'effnet-typo'.*efficientnet-lite0-int8"):
        init_workspace(root, Settings(workspace=root, image_model="effnet-typo"))
    assert not (root / WORKSPACE_FILE).exists() and not (root / ".adlens-workspace").exists()
    init_workspace(root, Settings(workspace=root)).close()
    for text in ("{not json", "[]", '{"image_model": 3}', "{}"):
        (root / WORKSPACE_FILE).write_text(text)
        with pytest.raises(WorkspaceError, match="workspace.json: unreadable workspace settings"):
            open_workspace(root, Settings(workspace=root))
        assert (root / WORKSPACE_FILE).read_text() == text  # left for the user to fix


def test_cli_init_image_model_and_status(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from adlens.cli import app

    monkeypatch.delenv("ADLENS_IMAGE_MODEL", raising=False)
    runner = CliRunner()
    root = tmp_path / "ws"
    r = runner.invoke(app, ["init", "-w", str(root), "--image-model", "efficientnet-lite0"])
    assert r.exit_code == 0 and "image model: efficientnet-lite0" in r.output
    r = runner.invoke(app, ["status", "-w", str(root), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["image_model"] == "efficientnet-lite0"
    r = runner.invoke(app, ["init", "-w", str(root), "--image-model", "efficientnet-lite0-int8"])
    assert r.exit_code != 0 and "created with image model 'efficientnet-lite0'" in r.output
    assert _ws_file(root) == {"image_model": "efficientnet-lite0"}
