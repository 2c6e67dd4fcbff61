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
from adlens.dedup.match import (
    DEFAULT_DHASH_RADIUS,
    DEFAULT_PHASH_RADIUS,
    near_duplicate_pairs,
)
from adlens.errors import InvalidInput
from adlens.ingest.manifest import iter_folder_files
from adlens.ingest.validate import load_image, open_checked, read_file
from adlens.report import render, thumbnail_uri


def _hash_one(path: Path, max_bytes: int, max_pixels: int):
    try:
        data = read_file(path, max_bytes)
        open_checked(data, str(path), max_pixels)  # header checks before any decoding
        return hashing.hash_image(data)  # JPEG draft-mode decode; truncation raises here
    except InvalidInput as e:
        return _reason(path, e)
    except MemoryError:
        return f"{path}: image too large to decode in memory"


def _reason(path: Path, e: Exception) -> str:
    """The error's message, naming the file once."""
    msg = str(e)
    return msg if str(path) in msg else f"{path}: {msg}"


def _group_labels(n: int, pairs) -> np.ndarray:
    """Group number per file from the links found so far (files alone are groups of one)."""
    labels = np.full(n, -1, np.int64)
    for gi, g in enumerate(group_pairs(n, pairs, min_size=1)):
        labels[g] = gi
    return labels


def find_duplicates(
    folder: Path | str,
    phash_radius: int | None = None,
    dhash_radius: int | None = DEFAULT_DHASH_RADIUS,
    workers: int | None = None,
    progress=None,
    cascade: bool = False,
    cascade_threshold: float | None = None,
    verify_min: float | None = None,
    cascade_progress=None,
    relayout: bool = False,
    relayout_min_inliers: int | None = None,
    relayout_progress=None,
) -> dict:
    """Near-duplicate groups of the images under ``folder``.

    Returns ``{"root", "files", "images", "groups": [[path, ...], ...], "files_in_groups",
    "rejected": [{"path", "reason"}], "rule": {...}}``; paths are as found under ``folder``.
    With ``cascade`` the images are also embedded and pairs with cosine >= ``cascade_threshold``
    that hashes did not group are added, reported apart: ``"embedding_pairs": [[a, b, cos]]``,
    ``"crop_pairs"`` and ``"overlay_pairs"``: ``[[a, b, cos, agreement]]`` (grey-zone pairs,
    ``verify_min <= cos < threshold``, that are the same creative by their pixels, one a crop of the
    other or the other with a sticker or strip over it: :func:`adlens.dedup.cascade.verified_pairs`), ``"embedding_groups"`` (the
    groups those links form or extend, hash members included) and ``"embedding_errors"``.
    With ``relayout`` the re-layout stage (:mod:`adlens.dedup.relayout`) links images of other
    aspect ratios that show the same photo, among those the earlier stages left apart:
    ``"relayout_pairs": [[a, b, inliers]]``, ``"relayout_groups"`` (groups those links form or
    extend) and ``"relayout_errors"`` (files it could not decode, with the reason).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"{folder}: not a folder")
    from adlens.dedup.cascade import check_threshold

    for value in (cascade_threshold, verify_min):  # before any work, with or without --cascade
        if value is not None:
            check_threshold(value)
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
    stages: dict = {}  # what the optional stages add, reported apart from hash groups
    if ok:
        batches = [results[i] for i in ok]
        phash = np.concatenate([b.phash for b in batches])
        dhash = np.concatenate([b.dhash for b in batches])
        md5 = np.concatenate([b.ahash_md5 for b in batches])
        area = np.concatenate([b.area for b in batches])
        pairs = near_duplicate_pairs(
            np.arange(len(ok)), phash, dhash, md5, phash_radius=phash_radius, dhash_radius=dhash_radius
        )
        def keep_first(g):
            members = sorted(g.tolist(), key=lambda k: (-int(area[k]), str(files[ok[k]])))
            return [str(files[ok[k]]) for k in members]

        groups = sorted(keep_first(g) for g in group_pairs(len(ok), pairs, min_size=2))
        linked = [tuple(p) for p in pairs]  # every link so far, for the next stage's "already grouped"
        if cascade:
            extra = _cascade(files, ok, pairs, cascade_threshold, verify_min, settings, workers, cascade_progress)
            extra_groups = [keep_first(g) for g in group_pairs(len(ok), [*pairs, *extra["pairs"]], min_size=2)
                            if any(int(i) in extra["nodes"] for i in g)]
            stages["embedding_pairs"] = [[str(files[ok[int(i)]]), str(files[ok[int(j)]]), round(float(c), 4)]
                                         for i, j, c in extra["cosine_pairs"]]
            for key, edit in (("crop_pairs", "crop"), ("overlay_pairs", "overlay")):
                stages[key] = [[str(files[ok[int(i)]]), str(files[ok[int(j)]]), round(float(c), 4), round(float(a), 4)]
                               for i, j, c, a, e in extra["crops"] if e == edit]
            stages["embedding_groups"] = sorted(extra_groups)
            stages["embedding_threshold"] = extra["threshold"]
            stages["verify_min"] = extra["verify_min"]
            stages["embedding_errors"] = extra["errors"]
            linked += [(i, j) for i, j, _ in extra["pairs"]]
        if relayout:
            rel = _relayout(files, ok, linked, settings, workers, relayout_min_inliers, relayout_progress)
            nodes = {int(x) for x in rel["pairs"][:, :2].ravel()}
            stages["relayout_pairs"] = [[str(files[ok[int(i)]]), str(files[ok[int(j)]]), int(n)] for i, j, n in rel["pairs"]]
            stages["relayout_groups"] = sorted(
                keep_first(g) for g in group_pairs(len(ok), [*linked, *[(i, j) for i, j, _ in rel["pairs"]]], min_size=2)
                if any(int(i) in nodes for i in g))
            stages["relayout_min_inliers"] = rel["min_inliers"]
            stages["relayout_errors"] = rel["errors"]
    return {
        "root": str(folder),
        "files": len(files),
        "images": len(ok),
        "groups": groups,
        "files_in_groups": sum(len(g) for g in groups),
        "rejected": rejected,
        "rule": {"phash_radius": phash_radius, "dhash_radius": dhash_radius, "exact": "aHash MD5"},
        **stages,
    }


def _cascade(files, ok, hash_pairs, threshold, verify_min, settings, workers, progress=None):
    """Embedding pairs among the hashed files that hashes left apart, and pixel-checked crops and overlays."""
    from adlens.dedup.cascade import (
        DEFAULT_COSINE_THRESHOLD,
        DEFAULT_VERIFY_MIN,
        embedding_pairs,
        new_links,
        verified_pairs,
    )
    from adlens.dedup.verify import EDITS
    from adlens.embed.base import get_embedder
    from adlens.embed.jobs import image_model

    threshold = DEFAULT_COSINE_THRESHOLD if threshold is None else threshold
    verify_min = DEFAULT_VERIFY_MIN if verify_min is None else verify_min
    res = get_embedder(settings.image_model if settings is not None else image_model()).embed_files([files[i] for i in ok])
    labels = _group_labels(len(ok), hash_pairs)
    pairs = embedding_pairs(res.vectors, threshold)
    if len(pairs):  # rows of res.vectors are positions in res.ok, i.e. among the hashed files
        pairs[:, 0], pairs[:, 1] = res.ok[pairs[:, 0].astype(int)], res.ok[pairs[:, 1].astype(int)]
    pairs = new_links(pairs, labels)
    errors = []

    def load(k: int) -> np.ndarray:  # k: a row of res.vectors
        path = files[ok[int(res.ok[k])]]
        return np.asarray(load_image(read_file(path, settings.max_file_bytes), str(path), settings.max_image_pixels)[1])

    def failed(k: int, reason: str) -> None:
        errors.append({"path": str(files[ok[int(res.ok[k])]]), "reason": f"pixel check: {reason}"})

    # crops: only pairs the hashes and the cosine left apart are checked
    linked = _group_labels(len(ok), [*hash_pairs, *[(int(i), int(j)) for i, j, _ in pairs]])
    crops = verified_pairs(res.vectors, load, threshold=threshold, verify_min=verify_min,
                           labels=linked[res.ok], workers=workers or settings.workers, on_error=failed,
                           progress=progress)
    if len(crops):
        crops[:, 0], crops[:, 1] = res.ok[crops[:, 0].astype(int)], res.ok[crops[:, 1].astype(int)]
    crops = [(int(i), int(j), float(c), float(a), EDITS[int(e)]) for i, j, c, a, e in crops]
    cosine = [(int(i), int(j), float(c)) for i, j, c in pairs]
    every = cosine + [(i, j, c) for i, j, c, *_ in crops]
    nodes = {x for i, j, _ in every for x in (i, j)}
    return {"pairs": every, "cosine_pairs": cosine, "crops": crops, "nodes": nodes, "threshold": threshold, "verify_min": verify_min,
            "errors": sorted(errors, key=lambda e: e["path"])}


def _features_one(path: Path, max_bytes: int, max_pixels: int):
    from adlens.dedup.relayout import photo_features

    try:
        img = open_checked(read_file(path, max_bytes), str(path), max_pixels)
        return photo_features(np.asarray(img.convert("RGB")))
    except InvalidInput as e:
        return _reason(path, e)
    except (OSError, ValueError, MemoryError) as e:  # decoding errors surface here
        return f"{path}: cannot decode for the re-layout stage ({e})"


def _relayout(files, ok, linked, settings, workers, min_inliers, progress):
    """Re-layout links among the hashed files that the earlier stages left apart."""
    from adlens.dedup.relayout import (
        DEFAULT_MIN_INLIERS,
        PhotoFeatures,
        ocr_reader,
        relayout_pairs,
    )

    min_inliers = DEFAULT_MIN_INLIERS if min_inliers is None else int(min_inliers)
    if min_inliers < 1:
        raise InvalidInput(f"relayout min inliers must be >= 1, got {min_inliers}")
    try:
        read = ocr_reader()  # before any work: without OCR the stage cannot run
    except RuntimeError as e:
        raise InvalidInput(str(e)) from None
    with ThreadPoolExecutor(max_workers=workers or settings.workers) as pool:
        feats = list(pool.map(lambda i: _features_one(files[i], settings.max_file_bytes, settings.max_image_pixels), ok))
    errors = [{"path": str(files[ok[k]]), "reason": f} for k, f in enumerate(feats) if isinstance(f, str)]
    feats = [PhotoFeatures(aspect=1.0) if isinstance(f, str) else f for f in feats]  # no box: never a candidate
    labels = _group_labels(len(ok), linked)

    def text(k: int) -> str | None:  # only images with a photo match get here; they decoded above
        try:
            img = open_checked(read_file(files[ok[k]], settings.max_file_bytes), str(files[ok[k]]), settings.max_image_pixels)
            return read(np.asarray(img.convert("RGB")))
        except Exception as e:  # noqa: BLE001 - a file changed since, or OCR failed: no link, reported
            errors.append({"path": str(files[ok[k]]), "reason": f"copy check: {e}"})
            return None

    pairs = relayout_pairs(feats, labels, text=text, min_inliers=min_inliers, workers=workers or settings.workers,
                           progress=progress)
    return {"pairs": pairs, "min_inliers": min_inliers, "errors": errors}


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
        embedding_groups=[[{"path": p, "thumb": thumbnail_uri(p)} for p in g] for g in result["embedding_groups"]]
        if "embedding_groups" in result else None,
        embedding_threshold=result.get("embedding_threshold"),
        verify_min=result.get("verify_min"),
        relayout_groups=[[{"path": p, "thumb": thumbnail_uri(p)} for p in g] for g in result["relayout_groups"]]
        if "relayout_groups" in result else None,
        relayout_min_inliers=result.get("relayout_min_inliers"),
    )
