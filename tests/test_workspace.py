import json

import numpy as np
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


def _old_workspace(root, stored: str | None):
    """A workspace as made before 2026-11-23 (no workspace.json), holding ad vectors of ``stored``."""
    from adlens.embed import get_embedder

    init_workspace(root, Settings(workspace=root, image_model=stored or LEGACY_IMAGE_MODEL)).close()
    (root / WORKSPACE_FILE).unlink()
    if stored:
        from adlens.store.embeddings import EmbeddingStore

        v = np.eye(2, 1280, dtype=np.float32)
        EmbeddingStore(root / "artifacts" / "embeddings").put(get_embedder(stored).model_id, "ads", ["a", "b"], v)


@pytest.mark.parametrize("stored, env, expected", [
    (None, None, LEGACY_IMAGE_MODEL),  # nothing stored: the default of the time
    (None, "efficientnet-lite0-int8", "efficientnet-lite0-int8"),  # nothing stored: nothing to mix
    ("efficientnet-lite0", None, "efficientnet-lite0"),
    ("efficientnet-lite0-int8", None, "efficientnet-lite0-int8"),  # built with the opt-in int8 model
    ("efficientnet-lite0-int8", "efficientnet-lite0-int8", "efficientnet-lite0-int8"),
])
def test_workspace_made_before_the_pin_gets_what_it_was_built_with(tmp_path, monkeypatch, stored, env, expected):
    root = tmp_path / "old"
    _old_workspace(root, stored)
    if env is None:
        monkeypatch.delenv("ADLENS_IMAGE_MODEL", raising=False)
    else:
        monkeypatch.setenv("ADLENS_IMAGE_MODEL", env)
    with open_workspace(root, Settings(workspace=root)) as ws:
        assert ws.image_model == expected
    assert _ws_file(root) == {"image_model": expected}


@pytest.mark.parametrize("stored, env", [("efficientnet-lite0", "efficientnet-lite0-int8"),
                                         ("efficientnet-lite0-int8", "efficientnet-lite0")])
def test_old_workspace_is_not_pinned_to_a_model_its_vectors_do_not_come_from(tmp_path, monkeypatch, stored, env):
    root = tmp_path / "old"
    _old_workspace(root, stored)
    monkeypatch.setenv("ADLENS_IMAGE_MODEL", env)
    with pytest.raises(WorkspaceError, match=f"holds ad or product vectors of image model '{stored}'.*'{env}'"):
        open_workspace(root, Settings(workspace=root))
    assert not (root / WORKSPACE_FILE).exists()  # nothing decided yet
    monkeypatch.delenv("ADLENS_IMAGE_MODEL")
    with open_workspace(root, Settings(workspace=root)) as ws:
        assert ws.image_model == stored


@pytest.mark.parametrize("name, match", [
    ("minilm", "embeds text, not images"),
    ("efficientnet-lite0-tuned", "cannot be built without arguments"),
])
def test_models_that_cannot_embed_images_are_not_pinned(tmp_path, name, match):
    root = tmp_path / "ws"
    with pytest.raises(WorkspaceError, match=match):
        init_workspace(root, Settings(workspace=root, image_model=name))
    assert not root.exists()  # refused before anything was written


def test_a_pin_that_cannot_be_written_is_a_workspace_error(tmp_path, monkeypatch):
    import adlens.workspace as wsmod

    root = tmp_path / "ro"
    _old_workspace(root, None)

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(wsmod.os, "replace", refuse)
    with pytest.raises(WorkspaceError, match="cannot record the image model.*must be writable"):
        open_workspace(root, Settings(workspace=root))
    assert [p.name for p in root.iterdir() if p.name.endswith(".tmp")] == []


def test_unknown_model_and_unreadable_pin_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("ADLENS_IMAGE_MODEL", raising=False)
    root = tmp_path / "ws"
    with pytest.raises(WorkspaceError, match=r"unknown image model 'effnet-typo'.*efficientnet-lite0-int8"):
        init_workspace(root, Settings(workspace=root, image_model="effnet-typo"))
    assert not root.exists()
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
