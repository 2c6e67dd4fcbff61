"""Helpers for machine-readable output shared by the CLI modules."""

from __future__ import annotations

import math
from typing import Any


def json_safe(x: Any) -> Any:
    """NaN -> None recursively (dicts, lists, tuples), so ``--json`` output is strict JSON."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x
