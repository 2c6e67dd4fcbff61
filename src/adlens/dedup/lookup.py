"""``adlens dedup check``: look images up in a workspace's ledger without ingesting them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from adlens.errors import AdlensError, InvalidInput
from adlens.ingest.images import hash_image, image_id_for_sha
from adlens.ingest.validate import load_image, read_file
from adlens.workspace import Workspace

_MAX_CHECKED = 50  # grey-zone stored ads pixel-checked per looked-up image (best cosine first)


def check_images(ws: Workspace, paths: list[Path | str], cascade: bool = False, threshold: float | None = None,
                 embedder=None, verify_min: float | None = None, **rule) -> list[dict]:
    """For each image: ``status`` is ``exact`` (these bytes are in the catalog), ``duplicate``
    (near-duplicate of ledger entries), ``new`` or ``error``; ``matches`` lists ledger entries
    (ad ids, first/last seen, times seen, distances), best first. Bad files do not stop the batch.

    ``cascade``: also compare the image's embedding with the stored ad embeddings (``embedder``,
    default the workspace's image model; cosine >= ``threshold``, default ``ADLENS_CASCADE_THRESHOLD``):
    ``embedding_matches`` lists ledger entries the hashes did not find (crops, overlays), best
    first, and an image with only those is ``embedding_duplicate``. Stored ads from cosine
    ``verify_min`` (default ``ADLENS_CASCADE_VERIFY_MIN``) up to the threshold are pixel-checked
    (:mod:`adlens.dedup.verify`) and listed too when one image is a crop of the other or the other
    with a sticker or strip over it (``"pixel_check": true`` with the ``edit``, ``crop`` or
    ``overlay``, and the ``agreement``).
    """
    ledger = ws.ledger(**rule)
    lookup = _EmbeddingLookup(ws, threshold, embedder, verify_min) if cascade else None
    results = []
    for p in paths:
        entry = {"path": str(p), "status": "new", "matches": []}
        try:
            data = read_file(p, ws.settings.max_file_bytes)
            _info, rgb = load_image(data, str(p), ws.settings.max_image_pixels)
            hashes = hash_image(rgb)
            sha = hashlib.sha256(data).hexdigest()
            with ws.engine.connect() as conn:
                same_bytes = image_id_for_sha(conn, sha)
                matches = ledger.find(conn, hashes)
            if same_bytes is not None:
                entry["status"] = "exact"
                matches.sort(key=lambda m: (m.image_id != same_bytes, m.phash_distance))
            elif matches:
                entry["status"] = "duplicate"
            entry["matches"] = [m.to_dict() for m in matches]
            if lookup is not None:
                found = lookup.matches(p, exclude={m.image_id for m in matches}, rgb=np.asarray(rgb))
                entry["embedding_matches"] = found
                if found and entry["status"] == "new":
                    entry["status"] = "embedding_duplicate"
        except InvalidInput as e:
            entry.update(status="error", error=str(e))
        results.append(entry)
    return results


class _EmbeddingLookup:
    """Stored ad embeddings of the workspace, searched exactly for each checked image."""

    def __init__(self, ws: Workspace, threshold: float | None, embedder=None, verify_min: float | None = None):
        from adlens.dedup.cascade import check_threshold
        from adlens.embed.base import get_embedder
        from adlens.embed.jobs import image_model

        self.ws = ws
        self.threshold = check_threshold(ws.settings.cascade_threshold if threshold is None else threshold)
        self.verify_min = check_threshold(ws.settings.cascade_verify_min if verify_min is None else verify_min)
        self.embedder = embedder or get_embedder(image_model(ws))
        keys, self.vectors = ws.embeddings.load(self.embedder.model_id, "ads")
        if not len(keys):
            raise InvalidInput(f"no stored ad embeddings of {self.embedder.model_id} in the workspace; "
                               "run `adlens embed ads` (or `adlens run`) first")
        self.keys = list(keys)
        self._cache: dict = {}

    def _shas_of(self, image_ids: set[int]) -> set[str]:
        from adlens.store import schema

        if not image_ids:
            return set()
        im = schema.images
        with self.ws.engine.connect() as conn:
            return set(conn.execute(sa.select(im.c.sha256).where(im.c.id.in_(list(image_ids)))).scalars())

    def _prepared(self, sha256: str):
        """A stored ad prepared for the pixel check, kept for the next looked-up image (bounded)."""
        from adlens.dedup.verify import prepare
        from adlens.ingest.validate import load_image

        if sha256 not in self._cache:
            if len(self._cache) >= _MAX_CHECKED * 4:
                self._cache.pop(next(iter(self._cache)))
            data = self.ws.blobs.get(sha256)
            self._cache[sha256] = prepare(np.asarray(load_image(data, f"image {sha256[:12]}",
                                                                self.ws.settings.max_image_pixels)[1]))
        return self._cache[sha256]

    def matches(self, path, exclude: set[int], rgb: np.ndarray | None = None) -> list[dict]:
        """Ledger entries at cosine >= threshold, and with ``rgb`` (the image's pixels) those of the
        50 best in the grey zone (not found by hashes) the pixel check confirms as crops or overlays."""
        import cv2

        from adlens.dedup.verify import pixel_agreement, prepare
        from adlens.store import schema
        from adlens.store.ledger import _ad_ids_by_image

        res = self.embedder.embed_files([path])  # decoded the way the stored vectors were
        if res.errors:
            raise InvalidInput(f"{path}: {res.errors[0][1]}")
        cos = self.vectors @ res.vectors[0]
        by_sha = {self.keys[i]: float(cos[i]) for i in np.flatnonzero(cos >= self.threshold)}
        checked: dict[str, tuple[str, float]] = {}
        if rgb is not None:  # the best grey-zone ads the hashes did not find, pixel-checked
            known = self._shas_of(exclude)
            grey = [i for i in np.argsort(-cos) if self.verify_min <= cos[i] < self.threshold
                    and self.keys[i] not in known][:_MAX_CHECKED]
            query = None
            for i in grey:
                try:
                    query = prepare(rgb) if query is None else query
                    a = pixel_agreement(query, self._prepared(self.keys[i]))
                except (OSError, ValueError, AdlensError, cv2.error):  # no verdict: not listed
                    if query is None:
                        break  # the looked-up image itself cannot be checked
                    continue
                link = a.linked()
                if link is not None:
                    checked[self.keys[i]] = (link[0], round(link[1], 4))
                    by_sha[self.keys[i]] = float(cos[i])
        if not by_sha:
            return []
        lg, im = schema.ledger, schema.images
        with self.ws.engine.connect() as conn:
            rows = conn.execute(
                sa.select(im.c.id, im.c.sha256, lg.c.canonical_id, lg.c.first_seen, lg.c.last_seen, lg.c.times_seen)
                .join(lg, lg.c.image_id == im.c.id).where(im.c.sha256.in_(list(by_sha)))
            ).all()
            rows = [r for r in rows if r.id not in exclude]
            ads = _ad_ids_by_image(conn, [r.id for r in rows])
        out = [{"image_id": r.id, "method": "embedding", "cosine": round(by_sha[r.sha256], 4),
                "canonical_id": r.canonical_id, "first_seen": r.first_seen, "last_seen": r.last_seen,
                "times_seen": r.times_seen, "ad_ids": list(ads.get(r.id, ())),
                **({"pixel_check": True, "edit": checked[r.sha256][0], "agreement": checked[r.sha256][1]}
                   if r.sha256 in checked else {})} for r in rows]
        return sorted(out, key=lambda m: (-m["cosine"], m["image_id"]))
