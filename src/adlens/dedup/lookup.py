"""``adlens dedup check``: look images up in a workspace's ledger without ingesting them."""

from __future__ import annotations

import hashlib
from pathlib import Path

from adlens.errors import InvalidInput
from adlens.ingest.images import hash_image, image_id_for_sha
from adlens.ingest.validate import load_image, read_file
from adlens.workspace import Workspace


def check_images(ws: Workspace, paths: list[Path | str], **rule) -> list[dict]:
    """For each image: ``status`` is ``exact`` (these bytes are in the catalog), ``duplicate``
    (near-duplicate of ledger entries), ``new`` or ``error``; ``matches`` lists ledger entries
    (ad ids, first/last seen, times seen, distances), best first. Bad files do not stop the batch.
    """
    ledger = ws.ledger(**rule)
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
        except InvalidInput as e:
            entry.update(status="error", error=str(e))
        results.append(entry)
    return results
