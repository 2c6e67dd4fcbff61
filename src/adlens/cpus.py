"""How many cores this process may use: its CPU affinity, capped by a cgroup CPU quota.

Why the quota: in a container started with ``docker run --cpus 2`` (or a Kubernetes CPU limit) on
a 64-core host, the affinity and ``os.cpu_count()`` both say 64. Sizing thread pools and ONNX
Runtime sessions by that starts 64 threads that the quota throttles to 2 cores' worth of time.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["available_cpus", "cgroup_cpu_limit"]


def cgroup_cpu_limit(root: str | os.PathLike = "/sys/fs/cgroup", proc_cgroup: str | os.PathLike = "/proc/self/cgroup") -> float | None:
    """CPUs' worth of time the cgroup quota allows (e.g. 1.5), or None without a quota.

    cgroup v2: ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``) of this process's cgroup
    and of the root seen here (a container sees its own cgroup as the root); v1:
    ``cpu/cpu.cfs_quota_us`` over ``cpu/cpu.cfs_period_us`` (quota -1 = none). The smallest limit
    found wins; unreadable or malformed files count as no limit.
    """
    root = Path(root)
    dirs = [root]
    try:
        for line in Path(proc_cgroup).read_text().splitlines():
            if line.startswith("0::"):
                dirs.insert(0, root / line[3:].strip().lstrip("/"))
    except OSError:
        pass
    limits = []
    for d in dirs:
        try:
            quota, period = (d / "cpu.max").read_text().split()[:2]
            if quota != "max" and float(period) > 0:
                limits.append(float(quota) / float(period))
        except (OSError, ValueError):
            pass
    try:
        quota = float((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = float((root / "cpu" / "cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            limits.append(quota / period)
    except (OSError, ValueError):
        pass
    return min(limits) if limits else None


def available_cpus() -> int:
    """Cores this process may use: CPU affinity (or the CPU count), capped by the cgroup quota
    rounded up (a 1.5-CPU quota runs 2 threads that together get 1.5 CPUs of time)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        n = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        n = min(n, math.ceil(limit))
    return max(1, n)
