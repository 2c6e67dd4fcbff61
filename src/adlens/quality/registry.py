"""A tiny versioned model registry: one folder per version under a root.

Layout::

    ROOT/
      v0001/  model.json  schema.json  metrics.json  card.json
      v0002/  ...

A version folder is written under a temporary name and renamed into place, so a crash never leaves a
half-written "latest". The root is chosen by the caller (e.g. ``<workspace>/models/quality``).

Example::

    reg = ModelRegistry(ws / "models" / "quality")
    v = reg.register(student, metrics=report, card={"teacher": "rubric"})
    student = reg.load()          # latest
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adlens.quality.student import QualityStudent, _json_default

__all__ = ["ModelRegistry"]

_VERSION = re.compile(r"^v(\d{4,})$")


class ModelRegistry:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def versions(self) -> list[str]:
        """Registered versions, oldest first."""
        if not self.root.is_dir():
            return []
        vs = [p.name for p in self.root.iterdir() if p.is_dir() and _VERSION.match(p.name)
              and (p / "model.json").exists()]
        return sorted(vs, key=lambda v: int(v[1:]))

    def latest(self) -> str | None:
        vs = self.versions()
        return vs[-1] if vs else None

    def path(self, version: str | None = None) -> Path:
        v = version or self.latest()
        if v is None:
            raise FileNotFoundError(f"no model registered under {self.root}")
        p = self.root / v
        if not (p / "model.json").exists():
            raise FileNotFoundError(f"no model {v} under {self.root}")
        return p

    def list(self) -> list[dict[str, Any]]:
        """One summary per version: version, created, headline metrics, card."""
        out = []
        for v in self.versions():
            p = self.root / v
            card = _read_json(p / "card.json")
            metrics = _read_json(p / "metrics.json")
            overall = (metrics or {}).get("overall", {})
            out.append({"version": v, "path": str(p), "created": (card or {}).get("created"),
                        "r2": overall.get("r2"), "mae": overall.get("mae"), "spearman": overall.get("spearman"),
                        "card": card})
        return out

    def register(self, student: QualityStudent, metrics: Mapping[str, Any] | None = None,
                 card: Mapping[str, Any] | None = None) -> str:
        """Save ``student`` (+ metrics and a card) as the next version; returns the version name."""
        self.root.mkdir(parents=True, exist_ok=True)
        last = self.latest()
        n = int(last[1:]) + 1 if last else 1
        while True:
            v = f"v{n:04d}"
            if not (self.root / v).exists():
                break
            n += 1
        tmp = self.root / f".tmp-{v}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        student.save(tmp, metrics=metrics)
        full_card = {"version": v, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "features": student.features, "best_iteration": student.best_iteration,
                     "params": student.params, **(dict(card) if card else {})}
        (tmp / "card.json").write_text(json.dumps(full_card, indent=2, sort_keys=True, default=_json_default))
        os.replace(tmp, self.root / v)
        return v

    def load(self, version: str | None = None) -> QualityStudent:
        """Load a version (default: latest)."""
        return QualityStudent.load(self.path(version))


def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None
