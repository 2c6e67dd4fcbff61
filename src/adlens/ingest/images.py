"""The shared image-ingestion engine used for ads and products.

Files are read, validated, decoded and hashed by a thread pool (PIL and hashlib release the GIL)
while the main thread writes each item in its own transaction, in input order. A crash or Ctrl-C
therefore loses at most the item in flight, and rerunning the same command skips what is done:
known content (by sha256) is not decoded again and known ids are not written twice.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from adlens.dedup import hashing
from adlens.errors import InvalidInput
from adlens.ingest.manifest import MANIFEST_SUFFIXES, clean_str, iter_folder_files, read_rows, resolve_path
from adlens.ingest.validate import load_image, read_file
from adlens.store import schema
from adlens.store.runs import now
from adlens.types import ImageHashes, ImageInfo, Rejection
from adlens.workspace import Workspace

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class ImageItem:
    """One input row: where it came from, the image file, and its other fields."""

    location: str
    path: Path
    fields: dict


@dataclass
class PreparedImage:
    item: ImageItem
    sha256: str
    data: bytes | None  # None when the catalog already holds this content
    info: ImageInfo | None
    hashes: ImageHashes | None


def image_items(
    source: Path,
    folder_fields: Callable[[Path], dict],
    row_fields: Callable[[str, dict], dict],
) -> Iterator[ImageItem | Rejection]:
    """Items of a folder (every file, recursively) or a CSV/JSONL manifest with a ``path`` column.

    ``folder_fields(relative_path)`` gives a folder file's fields; ``row_fields(location, row)``
    a manifest row's (raising InvalidInput rejects the row). Bad rows become Rejections.
    """
    source = Path(source)
    if source.is_dir():
        for p in iter_folder_files(source):
            yield ImageItem(str(p), p, folder_fields(p.relative_to(source)))
        return
    if not source.exists():
        raise InvalidInput(f"{source}: no such file or folder")
    if source.suffix.lower() not in MANIFEST_SUFFIXES:
        raise InvalidInput(f"{source}: expected a folder or a .csv/.jsonl manifest")
    for loc, row in read_rows(source):
        if isinstance(row, Rejection):
            yield row
            continue
        path = clean_str(row.get("path"))
        if not path:
            yield Rejection(loc, "missing 'path'")
            continue
        try:
            fields = row_fields(loc, row)
        except InvalidInput as e:
            yield Rejection(loc, str(e))
            continue
        yield ImageItem(f"{loc} ({path})", resolve_path(source, path), fields)


def hash_image(rgb) -> ImageHashes:
    """aHash (seed 000), pHash and dHash of a decoded, normalised image."""
    return hashing.hash_image(rgb).record(0)


def image_id_for_sha(conn: sa.Connection, sha256: str) -> int | None:
    return conn.execute(sa.select(schema.images.c.id).where(schema.images.c.sha256 == sha256)).scalar()


def _prepare(ws: Workspace, item: ImageItem) -> PreparedImage | Rejection:
    s = ws.settings
    try:
        data = read_file(item.path, s.max_file_bytes)
        sha = hashlib.sha256(data).hexdigest()
        with ws.engine.connect() as conn:
            if image_id_for_sha(conn, sha) is not None:
                return PreparedImage(item, sha, None, None, None)
        info, rgb = load_image(data, str(item.path), s.max_image_pixels)
        return PreparedImage(item, sha, data, info, hash_image(rgb))
    except InvalidInput as e:
        return Rejection(item.location, str(e))
    except MemoryError:
        return Rejection(item.location, f"{item.path}: image too large to decode in memory")


def prepare_parallel(
    ws: Workspace, items: Iterable[ImageItem | Rejection], workers: int | None = None
) -> Iterator[PreparedImage | Rejection]:
    """Prepare items on a thread pool, yielding results in input order with a bounded window."""
    workers = workers or ws.settings.workers
    window = max(4, 4 * workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="adlens-ingest") as pool:
        pending: deque = deque()
        for item in items:
            if isinstance(item, Rejection):
                pending.append(item)
            else:
                pending.append(pool.submit(_prepare, ws, item))
            while len(pending) >= window:
                yield _result(pending.popleft())
        while pending:
            yield _result(pending.popleft())


def _result(x):
    return x if isinstance(x, Rejection) else x.result()


def insert_image(ws: Workspace, conn: sa.Connection, prep: PreparedImage) -> tuple[int, bool]:
    """Store the blob and the images row if new. Returns ``(image_id, is_new)``.

    The blob is written before the row: a crash in between leaves an unreferenced blob that the
    next run reuses, never a row without its bytes.
    """
    existing = image_id_for_sha(conn, prep.sha256)
    if existing is not None:
        return existing, False
    if prep.data is None:  # raced with another writer that has since been rolled back
        raise InvalidInput(f"{prep.item.path}: content vanished from the catalog during ingest; rerun")
    ws.blobs.put(prep.sha256, prep.data)
    info = prep.info
    image_id = conn.execute(
        sa.insert(schema.images).values(
            sha256=prep.sha256,
            width=info.width,
            height=info.height,
            format=info.format,
            mode=info.mode,
            n_bytes=info.n_bytes,
            created_at=now(),
        )
    ).inserted_primary_key[0]
    return int(image_id), True

