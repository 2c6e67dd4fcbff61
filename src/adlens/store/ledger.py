"""The persistent dedup ledger: what was seen, when, how often, and which image is canonical.

One ledger row per distinct image (sha256 of the bytes). Near-duplicate images share a
``canonical_id``: the group's earliest-seen member, then the largest (pixel area), then the lowest
id. Groups only ever merge, so ``canonical_id`` acts as a union-find label kept in the database.

Lookups go through a Hamming index over the 64-bit pHash (see :mod:`adlens.dedup.index`); a
candidate is confirmed by the match rule of :mod:`adlens.dedup.match`, and identical aHash MD5 keys
(seed 000's exact key) always match. The index is an artifact rebuilt from the catalog whenever it
is missing or stale, so the database stays the single source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from adlens.dedup.index import HashIndex
from adlens.dedup.match import DEFAULT_DHASH_RADIUS, DEFAULT_PHASH_RADIUS
from adlens.errors import InvalidInput
from adlens.store import schema
from adlens.types import ImageHashes

_U64 = 1 << 64


def to_signed64(u: int) -> int:
    """uint64 -> int64 two's complement (how 64-bit hashes are stored in BIGINT columns)."""
    u = int(u)
    return u - _U64 if u >= (1 << 63) else u


def to_unsigned64(s: int) -> int:
    s = int(s)
    return s + _U64 if s < 0 else s


@dataclass(frozen=True)
class Match:
    """A ledger entry that a query image duplicates."""

    image_id: int
    method: str  # "ahash_exact" | "phash"
    phash_distance: int
    dhash_distance: int
    canonical_id: int
    first_seen: str
    last_seen: str
    times_seen: int
    ad_ids: tuple[str, ...]

    def to_dict(self) -> dict:
        d = self.__dict__.copy()
        d["ad_ids"] = list(self.ad_ids)
        return d


class Ledger:
    """Dedup ledger over a catalog.

    Parameters
    ----------
    engine : the catalog engine.
    index_path : where the pHash index artifact is saved.
    phash_radius, dhash_radius : the near-duplicate rule (see ``adlens.dedup.match``).
    """

    def __init__(
        self,
        engine: sa.Engine,
        index_path: Path,
        phash_radius: int = DEFAULT_PHASH_RADIUS,
        dhash_radius: int | None = DEFAULT_DHASH_RADIUS,
    ):
        self.engine = engine
        self.index_path = Path(index_path)
        self.phash_radius = phash_radius
        self.dhash_radius = dhash_radius
        self._index: HashIndex | None = None
        self._pending: list[tuple[int, int]] = []  # (image_id, phash) added in the open transaction

    # ------------------------------------------------------------------ index
    @property
    def index(self) -> HashIndex:
        if self._index is None:
            self._index = self._load_or_rebuild()
        return self._index

    def _load_or_rebuild(self) -> HashIndex:
        with self.engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(schema.image_hashes)).scalar_one()
        if self.index_path.exists():
            idx = HashIndex.load(self.index_path)
            if len(idx) == count:
                return idx
        idx = HashIndex()
        t = schema.image_hashes
        sql = sa.select(t.c.image_id, t.c.phash).order_by(t.c.image_id)
        with self.engine.connect() as conn:
            # plain DBAPI tuples: building Row objects for millions of rows costs seconds
            cursor = conn.connection.cursor()
            try:
                cursor.execute(str(sql.compile(conn)))
                while chunk := cursor.fetchmany(200_000):
                    arr = np.array(chunk, dtype=np.int64)
                    idx.add(arr[:, 0], arr[:, 1].view(np.uint64))
            finally:
                cursor.close()
        return idx

    def save(self) -> None:
        """Persist the index artifact (the catalog itself is always up to date)."""
        if self._index is not None:
            self.index_path.parent.mkdir(parents=True, exist_ok=True)
            self._index.save(self.index_path)

    def committed(self) -> None:
        """Call after the transaction that added images committed: they become searchable."""
        if self._pending:
            ids = np.array([p[0] for p in self._pending], dtype=np.int64)
            codes = np.array([p[1] for p in self._pending], dtype=np.uint64)
            self.index.add(ids, codes)
            self._pending.clear()

    def rolled_back(self) -> None:
        self._pending.clear()

    # ------------------------------------------------------------------ lookup
    def find(self, conn: sa.Connection, hashes: ImageHashes, exclude: int | None = None) -> list[Match]:
        """Ledger images that ``hashes`` duplicates, best first."""
        t = schema.image_hashes
        candidates: dict[int, str] = {}
        for (image_id,) in conn.execute(sa.select(t.c.image_id).where(t.c.ahash_md5 == hashes.ahash_md5)):
            candidates[image_id] = "ahash_exact"
        query = np.array([hashes.phash], dtype=np.uint64)
        ids, _ = self.index.radius_search(query, self.phash_radius)[0]
        for image_id in ids.tolist():
            candidates.setdefault(int(image_id), "phash")
        for image_id, _code in self._pending:  # same transaction, not yet in the index
            candidates.setdefault(image_id, "phash")
        candidates.pop(exclude, None)
        if not candidates:
            return []
        lg, im = schema.ledger, schema.image_hashes
        rows = conn.execute(
            sa.select(im.c.image_id, im.c.phash, im.c.dhash, lg.c.canonical_id, lg.c.first_seen, lg.c.last_seen, lg.c.times_seen)
            .join(lg, lg.c.image_id == im.c.image_id)
            .where(im.c.image_id.in_(list(candidates)))
        ).all()
        matches = []
        for r in rows:
            pd = int(bin(to_unsigned64(r.phash) ^ hashes.phash).count("1"))
            dd = int(bin(to_unsigned64(r.dhash) ^ hashes.dhash).count("1"))
            method = candidates[r.image_id]
            if method != "ahash_exact" and not (pd <= self.phash_radius and (self.dhash_radius is None or dd <= self.dhash_radius)):
                continue
            matches.append(Match(r.image_id, method, pd, dd, r.canonical_id, r.first_seen, r.last_seen, r.times_seen, ()))
        if not matches:
            return []
        ads = _ad_ids_by_image(conn, [m.image_id for m in matches])
        matches = [Match(**{**m.__dict__, "ad_ids": tuple(ads.get(m.image_id, ()))}) for m in matches]
        return sorted(matches, key=lambda m: (m.phash_distance, m.image_id))

    # ------------------------------------------------------------------ updates
    def add_image(self, conn: sa.Connection, image_id: int, hashes: ImageHashes, day: str) -> list[Match]:
        """Record a new image (inside the caller's transaction); link and merge its duplicates."""
        conn.execute(
            sa.insert(schema.image_hashes).values(
                image_id=image_id,
                ahash_md5=hashes.ahash_md5,
                ahash_bits=hashes.ahash_bits,
                phash=to_signed64(hashes.phash),
                dhash=to_signed64(hashes.dhash),
            )
        )
        conn.execute(
            sa.insert(schema.ledger).values(
                image_id=image_id, first_seen=day, last_seen=day, times_seen=0, canonical_id=image_id
            )
        )
        matches = self.find(conn, hashes, exclude=image_id)
        for m in matches:
            a, b = sorted((image_id, m.image_id))
            conn.execute(
                sa.insert(schema.dup_links).values(image_a=a, image_b=b, method=m.method, distance=float(m.phash_distance))
            )
        self._pending.append((image_id, hashes.phash))
        if matches:
            self._merge(conn, {image_id} | {m.canonical_id for m in matches})
        return matches

    def add_sighting(self, conn: sa.Connection, image_id: int, ad_id: str, day: str, run_id: str) -> bool:
        """Record that ``image_id`` was seen as ``ad_id`` on ``day``. False if already recorded."""
        s = schema.sightings
        exists = conn.execute(
            sa.select(s.c.image_id).where(s.c.image_id == image_id, s.c.ad_id == ad_id, s.c.day == day)
        ).first()
        if exists:
            return False
        conn.execute(sa.insert(s).values(image_id=image_id, ad_id=ad_id, day=day, run_id=run_id))
        lg = schema.ledger
        row = conn.execute(sa.select(lg).where(lg.c.image_id == image_id)).one()
        first_seen = min(row.first_seen, day)
        conn.execute(
            sa.update(lg)
            .where(lg.c.image_id == image_id)
            .values(first_seen=first_seen, last_seen=max(row.last_seen, day), times_seen=lg.c.times_seen + 1)
        )
        if first_seen != row.first_seen:  # an earlier sighting can change who is canonical
            self._merge(conn, {row.canonical_id})
        return True

    def link_by_embedding(self, image_ids, vectors, threshold: float, *, load=None, verify_min: float | None = None,
                          on_error=None, workers: int = 2, new=None, progress=None) -> list[dict]:
        """The embedding cascade over ledger images: link and merge pairs with cosine >= threshold
        that hashes left in different groups. Idempotent (existing links are not re-added).

        ``image_ids`` (N,) with ``vectors`` (N, D) L2-normalised. With ``load`` (row -> RGB array)
        grey-zone pairs (``verify_min`` <= cosine < threshold) whose pixels agree are linked too
        (:func:`adlens.dedup.cascade.verified_pairs`; ``on_error(row, reason)`` hears of images
        that could not be read; ``new``, bool per row: check only pairs with a new image). Returns
        the new links.
        """
        from adlens.dedup.cascade import (
            DEFAULT_VERIFY_MIN,
            embedding_pairs,
            new_links,
            verified_pairs,
        )
        from adlens.dedup.verify import EDITS

        image_ids = np.asarray(image_ids, dtype=np.int64)
        pairs = new_links(embedding_pairs(vectors, threshold), self._canonical_labels(image_ids))
        links = self._link(image_ids, pairs, "embedding", lambda cos: 1.0 - cos,
                           lambda cos: {"cosine": round(cos, 4)})
        if load is None:
            return links
        crops = verified_pairs(vectors, load, threshold=threshold,
                               verify_min=DEFAULT_VERIFY_MIN if verify_min is None else verify_min,
                               labels=self._canonical_labels(image_ids), workers=workers, on_error=on_error, new=new,
                               progress=progress)
        for code, edit in enumerate(EDITS):  # crops, then overlays (adlens.dedup.verify)
            links += self._link(image_ids, crops[crops[:, 4] == code, :3], "embedding", lambda cos: 1.0 - cos,
                                lambda cos, edit=edit: {"cosine": round(cos, 4), "pixel_check": True, "edit": edit})
        return links

    def link_by_relayout(self, image_ids, features, min_inliers: int, text=None, progress=None, new=None,
                         describe=None) -> list[dict]:
        """The re-layout stage over ledger images (:mod:`adlens.dedup.relayout`): link and merge
        images of other aspect ratios showing the same photo, among groups the earlier stages left
        apart. ``features``: one :class:`~adlens.dedup.relayout.PhotoFeatures` per image id;
        ``text``: row -> the image's OCR'd copy (the copy check; None skips it); ``new`` /
        ``describe``: incremental runs, see :func:`~adlens.dedup.relayout.relayout_pairs`.
        Links are stored with method ``"relayout"`` and distance ``1 / inliers``."""
        from adlens.dedup.relayout import relayout_pairs

        if int(min_inliers) < 1:
            raise InvalidInput(f"relayout min inliers must be >= 1, got {min_inliers}")
        image_ids = np.asarray(image_ids, dtype=np.int64)
        pairs = relayout_pairs(features, self._canonical_labels(image_ids), text=text, min_inliers=min_inliers,
                               progress=progress, new=new, describe=describe)
        return self._link(image_ids, pairs.astype(np.float64), "relayout", lambda n: 1.0 / n,
                          lambda n: {"inliers": int(n)})

    def _canonical_labels(self, image_ids: np.ndarray) -> np.ndarray:
        lg = schema.ledger
        with self.engine.connect() as conn:
            canon = dict(conn.execute(sa.select(lg.c.image_id, lg.c.canonical_id).where(lg.c.image_id.in_(image_ids.tolist()))).all())
        return np.array([canon[i] for i in image_ids.tolist()], dtype=np.int64)

    def _link(self, image_ids: np.ndarray, pairs: np.ndarray, method: str, distance, describe) -> list[dict]:
        """Store links ``(row i, row j, score)`` between different groups and merge the groups."""
        lg = schema.ledger
        links = []
        with self.engine.begin() as conn:
            for i, j, score in pairs.tolist():
                a, b = sorted((int(image_ids[int(i)]), int(image_ids[int(j)])))
                roots = {r for (r,) in conn.execute(sa.select(lg.c.canonical_id).where(lg.c.image_id.in_([a, b])))}
                if len(roots) < 2:
                    continue  # an earlier link of this run already joined them
                conn.execute(sa.insert(schema.dup_links).values(image_a=a, image_b=b, method=method, distance=distance(score)))
                self._merge(conn, roots)
                links.append({"image_a": a, "image_b": b, **describe(score)})
        return links

    def _merge(self, conn: sa.Connection, roots: set[int]) -> int:
        """Relabel every member of the groups ``roots`` with the group's canonical member."""
        lg, im = schema.ledger, schema.images
        members = conn.execute(
            sa.select(lg.c.image_id, lg.c.first_seen, (im.c.width * im.c.height).label("area"))
            .join(im, im.c.id == lg.c.image_id)
            .where(lg.c.canonical_id.in_(roots) | lg.c.image_id.in_(roots))
        ).all()
        canonical = min(members, key=lambda r: (r.first_seen, -r.area, r.image_id)).image_id
        ids = [r.image_id for r in members]
        conn.execute(sa.update(lg).where(lg.c.image_id.in_(ids)).values(canonical_id=canonical))
        return canonical


def _ad_ids_by_image(conn: sa.Connection, image_ids: list[int]) -> dict[int, list[str]]:
    c = schema.creatives
    out: dict[int, list[str]] = {}
    for image_id, ad_id in conn.execute(
        sa.select(c.c.image_id, c.c.ad_id).where(c.c.image_id.in_(image_ids)).order_by(c.c.ad_id)
    ):
        out.setdefault(image_id, []).append(ad_id)
    return out


def duplicate_groups(engine: sa.Engine) -> list[dict]:
    """Every ledger group with >= 2 creatives (ads), canonical first.

    Returns ``[{"canonical_id", "canonical_ad_id", "members": [{"ad_id", "image_id", "day",
    "exact", "linked_by"}...]}]`` where ``exact`` marks creatives whose file is byte-identical to the
    canonical and ``linked_by`` lists the later stages' links touching the member's image
    (``"embedding"``, ``"relayout"``; empty when hashes alone put it in the group).
    """
    lg, c, dl = schema.ledger, schema.creatives, schema.dup_links
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(lg.c.canonical_id, c.c.ad_id, c.c.image_id, c.c.day, c.c.source_path, lg.c.first_seen)
            .join(c, c.c.image_id == lg.c.image_id)
            .order_by(lg.c.canonical_id, lg.c.first_seen, c.c.day, c.c.ad_id)
        ).all()
        methods: dict[int, set[str]] = {}
        later = ("embedding", "relayout")  # dup_links also holds the hash stage's own links
        for a, b, method in conn.execute(sa.select(dl.c.image_a, dl.c.image_b, dl.c.method).where(dl.c.method.in_(later))):
            methods.setdefault(a, set()).add(method)
            methods.setdefault(b, set()).add(method)
    groups: dict[int, list] = {}
    for r in rows:
        groups.setdefault(r.canonical_id, []).append(r)
    out = []
    for canonical_id, members in groups.items():
        if len(members) < 2:
            continue
        # canonical creative: one showing the canonical image (earliest day, then ad_id)
        members.sort(key=lambda r: (r.image_id != canonical_id, r.day, r.ad_id))
        out.append(
            {
                "canonical_id": canonical_id,
                "canonical_ad_id": members[0].ad_id,
                "members": [
                    {
                        "ad_id": r.ad_id,
                        "image_id": r.image_id,
                        "day": r.day,
                        "path": r.source_path,
                        "exact": r.image_id == canonical_id,
                        "linked_by": sorted(methods.get(r.image_id, ())),
                    }
                    for r in members
                ],
            }
        )
    return out
