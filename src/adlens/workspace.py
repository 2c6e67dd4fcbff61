"""A workspace = a catalog database + artifact folders. Every command works inside one.

Layout::

    WORKSPACE/
      catalog.db        SQLite catalog (WAL) unless ADLENS_DATABASE_URL points elsewhere
      blobs/            original image bytes, content-addressed by sha256
      artifacts/        derived data (hash index, embeddings, models, ...)
      reports/          HTML run reports
      workspace.json    what the workspace was created with: {"image_model": ...}

The image model is pinned when a workspace is created (``ADLENS_IMAGE_MODEL`` or ``adlens init
--image-model``; default :data:`adlens.config.DEFAULT_IMAGE_MODEL`). Creative feature rows, the
fitted joint space and the learned product projection are derived from that model's vectors and
are not re-derived on a switch, so a workspace keeps its model for life: asking for another one
on an existing workspace is an error, never a silent mix. Workspaces made before the pin existed
are pinned on first open to the model their stored ad and product vectors come from (fp32
EfficientNet-Lite0, the default then, unless ``ADLENS_IMAGE_MODEL`` chose int8); with no stored
vectors, to ``ADLENS_IMAGE_MODEL`` if set, else fp32.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from adlens.config import Settings, get_settings
from adlens.errors import WorkspaceError
from adlens.store.blobs import BlobStore
from adlens.store.db import make_engine, migrate

MARKER = ".adlens-workspace"
WORKSPACE_FILE = "workspace.json"
# what every workspace created before the pin was made with (the default until 2026-11-23)
LEGACY_IMAGE_MODEL = "efficientnet-lite0"


@dataclass
class Workspace:
    root: Path
    engine: sa.Engine
    settings: Settings
    # registry name of the image embedder this workspace's vectors come from (pinned at creation)
    image_model: str = LEGACY_IMAGE_MODEL

    @property
    def blobs(self) -> BlobStore:
        return BlobStore(self.root / "blobs")

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def embeddings(self):
        """Vectors per (content hash, model id), in Parquet under ``artifacts/embeddings``."""
        from adlens.store.embeddings import EmbeddingStore

        return EmbeddingStore(self.artifacts / "embeddings")

    @property
    def models_dir(self) -> Path:
        """Exported model files (e.g. ONNX graphs) and fitted models of this workspace."""
        return self.artifacts / "models"

    def ledger(self, **rule):
        """The dedup ledger of this workspace (``rule``: phash_radius, dhash_radius)."""
        from adlens.store.ledger import Ledger

        return Ledger(self.engine, self.artifacts / "dedup" / "phash.index", **rule)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _db_url(root: Path, settings: Settings) -> str:
    return settings.database_url or f"sqlite:///{(root / 'catalog.db').resolve()}"


def init_workspace(root: Path | str | None = None, settings: Settings | None = None) -> Workspace:
    """Create (or upgrade) a workspace at ``root``; idempotent."""
    settings = settings or get_settings()
    root = Path(root or settings.workspace)
    if root.exists() and not root.is_dir():
        raise WorkspaceError(f"workspace path {root} exists and is not a folder")
    created = not (root / MARKER).exists()
    image_model = _image_model(root, settings, created)  # checked before anything is written
    for sub in ("", "blobs", "artifacts", "reports"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    _write_pin(root, image_model)
    (root / MARKER).write_text("adlens workspace\n")
    engine = make_engine(_db_url(root, settings))
    migrate(engine)
    return Workspace(root=root, engine=engine, settings=settings, image_model=image_model)


def open_workspace(root: Path | str | None = None, settings: Settings | None = None) -> Workspace:
    """Open an existing workspace, applying pending migrations."""
    settings = settings or get_settings()
    root = Path(root or settings.workspace)
    if not (root / MARKER).exists():
        raise WorkspaceError(
            f"{root} is not an adlens workspace; create it with `adlens init --workspace {root}`"
        )
    image_model = _image_model(root, settings, created=False)
    _write_pin(root, image_model)
    engine = make_engine(_db_url(root, settings))
    migrate(engine)
    return Workspace(root=root, engine=engine, settings=settings, image_model=image_model)


def _image_model(root: Path, settings: Settings, created: bool) -> str:
    """The workspace's image model: the pinned one, or the one to pin now (module docs)."""
    path = root / WORKSPACE_FILE
    asked = settings.image_model if "image_model" in settings.model_fields_set else None
    if path.exists():
        try:
            pinned = json.loads(path.read_text())["image_model"]
            if not isinstance(pinned, str) or not pinned:
                raise ValueError("image_model is not a name")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise WorkspaceError(f"{path}: unreadable workspace settings ({e}); it must hold "
                                 f'{{"image_model": "<embedder name>"}}') from e
        _check_same(root, pinned, asked, "was created with")
        return pinned
    if created:
        model = settings.image_model
    else:  # made before the pin: what its stored vectors come from decides
        built = _models_with_vectors(root, {LEGACY_IMAGE_MODEL, "efficientnet-lite0-int8"} | ({asked} if asked else set()))
        if len(built) == 1:
            model = built[0]
            _check_same(root, model, asked, "holds ad or product vectors of")
        else:  # none stored (nothing to mix), or several: the setting, else the default of the time
            model = asked or LEGACY_IMAGE_MODEL
    _check_image_embedder(root, model)
    return model


def _check_same(root: Path, model: str, asked: str | None, what: str) -> None:
    if asked is not None and asked != model:
        raise WorkspaceError(
            f"workspace {root} {what} image model {model!r}, but ADLENS_IMAGE_MODEL (or the settings) ask "
            f"for {asked!r}. Its creative features, joint space and product projection are built on {model!r} "
            f"vectors and would be mixed with {asked!r} ones: unset ADLENS_IMAGE_MODEL for this workspace, "
            f"or create a new workspace for {asked!r}.")


def _models_with_vectors(root: Path, names: set[str]) -> list[str]:
    """Which of the image models ``names`` have ad or product vectors stored in the workspace."""
    from adlens.embed import get_embedder
    from adlens.store.embeddings import EmbeddingStore

    store = EmbeddingStore(root / "artifacts" / "embeddings")
    found = []
    for name in sorted(names):
        try:
            model_id = get_embedder(name).model_id
        except Exception:  # unknown or not buildable: reported by _check_image_embedder if it is chosen
            continue
        if store.has(model_id, "ads") or store.has(model_id, "products"):
            found.append(name)
    return found


def _check_image_embedder(root: Path, name: str) -> None:
    """A name that cannot embed images would be pinned for life: refuse it now, saying why."""
    from adlens.embed import available_embedders, get_embedder

    if name not in available_embedders():
        raise WorkspaceError(f"unknown image model {name!r} for workspace {root}; registered embedders: "
                             f"{', '.join(sorted(available_embedders()))}")
    try:
        modality = get_embedder(name).modality
    except Exception as e:  # e.g. a plug-in that needs a checkpoint path
        raise WorkspaceError(f"image model {name!r} cannot be built without arguments ({type(e).__name__}: {e}); "
                             "a workspace's image model must be a registered name that needs none") from None
    if "image" not in modality.split("+"):
        raise WorkspaceError(f"{name!r} embeds {modality}, not images; it cannot be a workspace's image model")


def _write_pin(root: Path, model: str) -> None:
    path = root / WORKSPACE_FILE
    if path.exists():
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # atomic for readers
    try:
        tmp.write_text(json.dumps({"image_model": model}, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WorkspaceError(f"cannot record the image model in {path} ({e}); the workspace must be writable") from None
