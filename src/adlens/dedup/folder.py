"""Folder mode: ``adlens dedup find DIR`` — deduplicate a plain folder, no workspace needed.

Every file under the folder is read, checked like an ingested file (empty, oversized, not an
image, unsupported format, decompression bomb, truncated) and hashed; rejected files are listed
with their reason. Groups hold >= 2 near-duplicate files; the first member is the one to keep
(largest pixel area, then first by path — a folder has no reliable "first seen").
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from adlens import __version__
from adlens.config import get_settings
from adlens.dedup import hashing
from adlens.dedup.groups import group_pairs
from adlens.dedup.match import DEFAULT_DHASH_RADIUS, DEFAULT_PHASH_RADIUS, near_duplicate_pairs
from adlens.errors import InvalidInput
from adlens.ingest.manifest import iter_folder_files
from adlens.ingest.validate import open_checked, read_file
from adlens.report import render, thumbnail_uri


def _hash_one(path: Path, max_bytes: int, max_pixels: int):
    try:
        data = read_file(path, max_bytes)
        open_checked(data, str(path), max_pixels)  # header checks before any decoding
        return hashing.hash_image(data)  # JPEG draft-mode decode; truncation raises here
    except InvalidInput as e:
        msg = str(e)
        return msg if str(path) in msg else f"{path}: {msg}"
    except MemoryError:
        return f"{path}: image too large to decode in memory"


def find_duplicates(
    folder: Path | str,
    phash_radius: int | None = None,
    dhash_radius: int | None = DEFAULT_DHASH_RADIUS,
    workers: int | None = None,
    progress=None,
) -> dict:
    """Near-duplicate groups of the images under ``folder``.

    Returns ``{"root", "files", "images", "groups": [[path, ...], ...], "files_in_groups",
    "rejected": [{"path", "reason"}], "rule": {...}}``; paths are as found under ``folder``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"{folder}: not a folder")
    settings = get_settings()
    phash_radius = DEFAULT_PHASH_RADIUS if phash_radius is None else phash_radius
    files = iter_folder_files(folder)
    results: list = [None] * len(files)
    with ThreadPoolExecutor(max_workers=workers or settings.workers) as pool:
        futures = [pool.submit(_hash_one, p, settings.max_file_bytes, settings.max_image_pixels) for p in files]
        for i, fut in enumerate(futures):
            results[i] = fut.result()
            if progress:
                progress(i + 1, len(files))
    ok = [i for i, r in enumerate(results) if not isinstance(r, str)]
    rejected = [{"path": str(files[i]), "reason": r} for i, r in enumerate(results) if isinstance(r, str)]
    groups: list[list[str]] = []
    if ok:
        batches = [results[i] for i in ok]
        phash = np.concatenate([b.phash for b in batches])
        dhash = np.concatenate([b.dhash for b in batches])
        md5 = np.concatenate([b.ahash_md5 for b in batches])
        area = np.concatenate([b.area for b in batches])
        pairs = near_duplicate_pairs(
            np.arange(len(ok)), phash, dhash, md5, phash_radius=phash_radius, dhash_radius=dhash_radius
        )
        for g in group_pairs(len(ok), pairs, min_size=2):
            members = sorted(g.tolist(), key=lambda k: (-int(area[k]), str(files[ok[k]])))
            groups.append([str(files[ok[k]]) for k in members])
        groups.sort(key=lambda g: g[0])
    return {
        "root": str(folder),
        "files": len(files),
        "images": len(ok),
        "groups": groups,
        "files_in_groups": sum(len(g) for g in groups),
        "rejected": rejected,
        "rule": {"phash_radius": phash_radius, "dhash_radius": dhash_radius, "exact": "aHash MD5"},
    }


def write_folder_report(result: dict, out_path: Path | str) -> Path:
    """HTML page with the thumbnail grid of every group and the rejected files."""
    groups = [[{"path": p, "thumb": thumbnail_uri(p)} for p in g] for g in result["groups"]]
    rule = result["rule"]
    return render(
        "dedup_folder.html",
        out_path,
        version=__version__,
        root=result["root"],
        n_files=result["files"],
        n_images=result["images"],
        n_in_groups=result["files_in_groups"],
        groups=groups,
        rejected=result["rejected"],
        rule=f"pHash ≤ {rule['phash_radius']} and dHash ≤ {rule['dhash_radius']}, or equal aHash MD5",
    )
