"""A workspace = a catalog database + artifact folders. Every command works inside one.

Layout::

    WORKSPACE/
      catalog.db        SQLite catalog (WAL) unless ADLENS_DATABASE_URL points elsewhere
      blobs/            original image bytes, content-addressed by sha256
      artifacts/        derived data (hash index, embeddings, models, ...)
      reports/          HTML run reports
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from adlens.config import Settings, get_settings
from adlens.errors import WorkspaceError
from adlens.store.blobs import BlobStore
from adlens.store.db import make_engine, migrate

MARKER = ".adlens-workspace"


@dataclass
class Workspace:
    root: Path
    engine: sa.Engine
    settings: Settings

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
    for sub in ("", "blobs", "artifacts", "reports"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("adlens workspace\n")
    engine = make_engine(_db_url(root, settings))
    migrate(engine)
    return Workspace(root=root, engine=engine, settings=settings)


def open_workspace(root: Path | str | None = None, settings: Settings | None = None) -> Workspace:
    """Open an existing workspace, applying pending migrations."""
    settings = settings or get_settings()
    root = Path(root or settings.workspace)
    if not (root / MARKER).exists():
        raise WorkspaceError(
            f"{root} is not an adlens workspace; create it with `adlens init --workspace {root}`"
        )
    engine = make_engine(_db_url(root, settings))
    migrate(engine)
    return Workspace(root=root, engine=engine, settings=settings)
