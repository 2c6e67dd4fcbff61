"""``adlens dedup check``: look images up in a workspace's ledger without ingesting them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from adlens.errors import InvalidInput
from adlens.ingest.images import hash_image, image_id_for_sha
from adlens.ingest.validate import load_image, read_file
from adlens.workspace import Workspace


def check_images(ws: Workspace, paths: list[Path | str], cascade: bool = False, threshold: float | None = None,
                 embedder=None, **rule) -> list[dict]:
    """For each image: ``status`` is ``exact`` (these bytes are in the catalog), ``duplicate``
    (near-duplicate of ledger entries), ``new`` or ``error``; ``matches`` lists ledger entries
    (ad ids, first/last seen, times seen, distances), best first. Bad files do not stop the batch.

    ``cascade``: also compare the image's embedding with the stored ad embeddings (``embedder``,
    default the workspace's image model; cosine >= ``threshold``, default ``ADLENS_CASCADE_THRESHOLD``):
    ``embedding_matches`` lists ledger entries the hashes did not find (crops, overlays), best
    first, and an image with only those is ``embedding_duplicate``.
    """
    ledger = ws.ledger(**rule)
    lookup = _EmbeddingLookup(ws, threshold, embedder) if cascade else None
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
                found = lookup.matches(p, exclude={m.image_id for m in matches})
                entry["embedding_matches"] = found
                if found and entry["status"] == "new":
                    entry["status"] = "embedding_duplicate"
        except InvalidInput as e:
            entry.update(status="error", error=str(e))
        results.append(entry)
    return results


class _EmbeddingLookup:
    """Stored ad embeddings of the workspace, searched exactly for each checked image."""

    def __init__(self, ws: Workspace, threshold: float | None, embedder=None):
        from adlens.dedup.cascade import check_threshold
        from adlens.embed.base import get_embedder
        from adlens.embed.jobs import DEFAULT_IMAGE_MODEL

        self.ws = ws
        self.threshold = check_threshold(ws.settings.cascade_threshold if threshold is None else threshold)
        self.embedder = embedder or get_embedder(DEFAULT_IMAGE_MODEL)
        keys, self.vectors = ws.embeddings.load(self.embedder.model_id, "ads")
        if not len(keys):
            raise InvalidInput(f"no stored ad embeddings of {self.embedder.model_id} in the workspace; "
                               "run `adlens embed ads` (or `adlens run`) first")
        self.keys = list(keys)

    def matches(self, path, exclude: set[int]) -> list[dict]:
        from adlens.store import schema
        from adlens.store.ledger import _ad_ids_by_image

        res = self.embedder.embed_files([path])  # decoded the way the stored vectors were
        if res.errors:
            raise InvalidInput(f"{path}: {res.errors[0][1]}")
        cos = self.vectors @ res.vectors[0]
        hits = np.flatnonzero(cos >= self.threshold)
        if not len(hits):
            return []
        by_sha = {self.keys[i]: float(cos[i]) for i in hits}
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
                "times_seen": r.times_seen, "ad_ids": list(ads.get(r.id, ()))} for r in rows]
        return sorted(out, key=lambda m: (-m["cosine"], m["image_id"]))
