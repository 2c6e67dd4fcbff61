"""Cores a process may use: affinity capped by a cgroup CPU quota (containers)."""

import math

import pytest

import adlens.cpus as cpus
from adlens.cpus import available_cpus, cgroup_cpu_limit


def _tree(tmp_path, files: dict[str, str], proc: str | None = "0::/\n"):
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    pc = tmp_path / "proc-cgroup"
    if proc is not None:
        pc.write_text(proc)
    return tmp_path, pc


@pytest.mark.parametrize("files, proc, expected", [
    ({}, None, None),                                                     # no cgroup files at all
    ({"cpu.max": "max 100000\n"}, "0::/\n", None),                          # v2, no quota
    ({"cpu.max": "150000 100000\n"}, "0::/\n", 1.5),                        # docker --cpus 1.5
    ({"cpu.max": "max 100000\n", "kubepods/pod1/cpu.max": "200000 100000\n"}, "0::/kubepods/pod1\n", 2.0),
    ({"cpu.max": "400000 100000\n", "a/cpu.max": "100000 50000\n"}, "0::/a\n", 2.0),  # the smaller wins
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None, None),  # v1, no quota
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, None, 3.0),  # v1 quota
    ({"cpu.max": "garbage\n"}, "0::/\n", None),                             # malformed: no limit
    ({"cpu.max": "100000 0\n"}, "0::/\n", None),                            # zero period: ignored
])
def test_cgroup_cpu_limit(tmp_path, files, proc, expected):
    root, pc = _tree(tmp_path, files, proc)
    got = cgroup_cpu_limit(root, pc)
    assert got == expected if expected is None else math.isclose(got, expected)


@pytest.mark.parametrize("limit, expected", [(None, 8), (1.5, 2), (0.2, 1), (2.0, 2), (64.0, 8)])
def test_available_cpus_is_affinity_capped_by_the_quota(monkeypatch, limit, expected):
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(cpus, "cgroup_cpu_limit", lambda: limit)
    assert available_cpus() == expected


def test_thread_defaults_follow_it(monkeypatch):
    from adlens.config import Settings
    from adlens.embed.base import default_num_threads

    monkeypatch.setattr(cpus, "available_cpus", lambda: 3)
    assert default_num_threads() == 3
    monkeypatch.delenv("ADLENS_WORKERS", raising=False)
    assert Settings().workers == available_cpus()  # the real machine's value, fixed at import
