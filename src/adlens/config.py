"""Settings read from the environment (prefix ``ADLENS_``) with safe defaults.

Config keys (all optional):

- ``ADLENS_WORKSPACE``     workspace folder (default ``./workspace``)
- ``ADLENS_DATABASE_URL``  SQLAlchemy URL of the catalog; default is SQLite inside the workspace
- ``ADLENS_MAX_IMAGE_PIXELS``  images with more pixels are rejected as decompression bombs
- ``ADLENS_MAX_FILE_BYTES``    files larger than this are rejected before decoding
- ``ADLENS_WORKERS``       worker threads for decoding/hashing (default: the cores available, the CPU
  affinity capped by a container's CPU quota, see ``adlens.cpus``)
- ``ADLENS_IMAGE_MODEL``   image embedder of ads and products, pinned in a workspace when it is
  created (default ``efficientnet-lite0-int8``; ``efficientnet-lite0`` is the fp32 original,
  1.6x slower; see ``adlens.workspace`` and ``adlens.embed.jobs``)
- ``ADLENS_DEDUP_CASCADE`` run the embedding dedup stage after hashing in ``adlens run`` (default true)
- ``ADLENS_CASCADE_THRESHOLD``  cosine at or above which two ad images are embedding duplicates (0.97)
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from adlens.cpus import available_cpus

# the image embedder of new workspaces (adlens.embed.jobs says why int8; existing ones keep theirs)
DEFAULT_IMAGE_MODEL = "efficientnet-lite0-int8"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADLENS_", extra="ignore")

    workspace: Path = Path("workspace")
    database_url: str | None = None
    # 50 megapixels: larger than any real banner or product photo, far below a bomb.
    max_image_pixels: int = 50_000_000
    max_file_bytes: int = 50 * 1024 * 1024
    workers: int = available_cpus()  # affinity capped by a container's CPU quota (adlens.cpus)
    # image embedder for ads, products, creative features and the dedup cascade (adlens.embed.jobs);
    # a workspace pins it when created (adlens.workspace)
    image_model: str = DEFAULT_IMAGE_MODEL
    dedup_cascade: bool = True
    cascade_threshold: float = 0.97  # tuned in adlens.dedup.cascade
    cascade_verify_min: float = 0.80  # pairs at [this, cascade_threshold) get the pixel check (adlens.dedup.verify)
    # re-layout stage: SIFT on new images and their candidates (~50 ms each) each run, so opt-in
    dedup_relayout: bool = False
    relayout_min_inliers: int = 12


def get_settings(**overrides) -> Settings:
    """Settings from the environment, with explicit overrides (e.g. CLI flags) winning."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
