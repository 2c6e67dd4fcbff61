"""Plain records passed between the library's modules."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rejection:
    """An input that was not accepted, and why (shown in run summaries and reports)."""

    path: str
    reason: str


@dataclass(frozen=True)
class ImageInfo:
    """A validated image: content hash of the original bytes plus what decoding found."""

    sha256: str
    width: int
    height: int
    format: str
    mode: str
    n_bytes: int


@dataclass(frozen=True)
class ImageHashes:
    """Perceptual hashes of one image. ``ahash_md5`` is seed 000's exact key."""

    ahash_md5: str
    ahash_bits: bytes  # 1024 bits (32x32) packed, 128 bytes
    phash: int  # 64-bit, stored as signed int64 in the catalog
    dhash: int  # 64-bit


@dataclass
class CreativeRecord:
    """One ad creative as read from a folder or manifest row (before ingestion)."""

    path: str
    ad_id: str | None = None
    advertiser: str | None = None
    campaign: str | None = None
    text: str | None = None
    landing_url: str | None = None
    day: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class IngestSummary:
    """What one ingest run did. Every input ends up in exactly one of the counters."""

    run_id: str
    kind: str
    added: int = 0
    already_present: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # kind-specific counters

    @property
    def total(self) -> int:
        return self.added + self.already_present + len(self.rejected)

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "total": self.total,
            "added": self.added,
            "already_present": self.already_present,
            **self.extra,
            "rejected": [{"path": r.path, "reason": r.reason} for r in self.rejected],
        }
