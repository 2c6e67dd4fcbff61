"""Union-find, grouping pairs, canonical choice, and the near-duplicate pair rule."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from adlens.dedup.groups import UnionFind, choose_canonical, group_pairs
from adlens.dedup.hashing import hamming64
from adlens.dedup.match import near_duplicate_pairs


def as_lists(groups):
    return [g.tolist() for g in groups]


# ---------------------------------------------------------------- union-find
def test_union_find_basics():
    uf = UnionFind(6)
    assert uf.union(0, 1) and uf.union(1, 2) and uf.union(4, 5)
    assert not uf.union(2, 0)  # already together
    assert uf.find(2) == uf.find(0) != uf.find(3)
    assert uf.size(1) == 3 and uf.n_sets == 3
    assert as_lists(uf.groups()) == [[0, 1, 2], [3], [4, 5]]
    k = uf.add()
    uf.union(k, 3)
    assert as_lists(uf.groups()) == [[0, 1, 2], [3, 6], [4, 5]]


def test_union_by_size_keeps_trees_shallow():
    uf = UnionFind(1000)
    for i in range(999):  # a long chain
        uf.union(i, i + 1)
    assert uf.size(0) == 1000 and uf.n_sets == 1
    depth = 0
    x = 999
    while uf.parent[x] != x:
        x, depth = uf.parent[x], depth + 1
    assert depth <= 2


# ---------------------------------------------------------------- group_pairs
def test_group_pairs_with_n_and_ids():
    assert as_lists(group_pairs(5, [(0, 3), (3, 4)])) == [[0, 3, 4], [1], [2]]
    assert as_lists(group_pairs(5, [(0, 3), (3, 4)], min_size=2)) == [[0, 3, 4]]
    ids = [40, 10, 30, 20]
    pairs = [(10, 40, 2), (30, 20, 0)]  # (i, j, distance) as near_duplicate_pairs returns
    assert as_lists(group_pairs(ids, pairs)) == [[10, 40], [20, 30]]
    assert as_lists(group_pairs(ids, np.zeros((0, 3), np.int64))) == [[10], [20], [30], [40]]
    assert group_pairs(0, []) == []


def test_group_pairs_errors():
    with pytest.raises(ValueError, match="unknown ids"):
        group_pairs([1, 2], [(1, 3)])
    with pytest.raises(ValueError, match="duplicates"):
        group_pairs([1, 1], [])


@pytest.mark.parametrize("seed", range(5))
def test_group_pairs_matches_union_find(seed):
    rng = np.random.default_rng(seed)
    n = 500
    pairs = rng.integers(0, n, (int(rng.integers(50, 600)), 2))
    chain = np.stack([np.arange(100, 199), np.arange(101, 200)], axis=1)[::-1]  # long path
    pairs = np.concatenate([pairs, chain])
    uf = UnionFind(n)
    for a, b in pairs:
        uf.union(int(a), int(b))
    assert as_lists(group_pairs(n, pairs)) == as_lists(uf.groups())


# ---------------------------------------------------------------- canonical
def test_choose_canonical_rules():
    # earliest first_seen wins even against a bigger image
    assert choose_canonical([7, 3, 5], ["2024-01-02", "2024-01-03", "2024-01-01"], [10, 99, 10]) == 5
    # tie on first_seen -> largest area
    assert choose_canonical([7, 3, 5], [1, 1, 1], [10, 10, 40]) == 5
    # tie on both -> smallest id
    assert choose_canonical([7, 3, 5], [1, 1, 1], [10, 10, 10]) == 3
    days = np.array(["2024-03-01", "2024-02-01"], dtype="datetime64[D]")
    assert choose_canonical([1, 2], days, [5, 5]) == 2
    assert choose_canonical([9, 4]) == 4
    assert choose_canonical([9, 4], area=[1, 2]) == 4
    with pytest.raises(ValueError):
        choose_canonical([])
    with pytest.raises(ValueError):
        choose_canonical([1, 2], first_seen=[1])


# ---------------------------------------------------------------- pair rule
def flip(code: int, bits) -> int:
    for b in bits:
        code ^= 1 << b
    return code


def test_near_duplicate_pairs_rule():
    base_p, base_d = 0x0123456789ABCDEF, 0x7777000011112222
    ph = np.array([base_p, flip(base_p, range(5)), flip(base_p, range(20)), flip(base_p, range(3)), 0], np.uint64)
    dh = np.array([base_d, flip(base_d, range(4)), base_d, flip(base_d, range(30)), 99], np.uint64)
    ids = [10, 11, 12, 13, 14]
    # pHash within 6 AND dHash within 8: (10, 11); 13 is pHash-close but dHash-far
    assert near_duplicate_pairs(ids, ph, dh, None, phash_radius=6, dhash_radius=8) == [(10, 11, 5)]
    # pHash alone (dhash_radius=None): 13 joins; (11, 13) are 2 bits apart
    assert near_duplicate_pairs(ids, ph, dh, None, phash_radius=6, dhash_radius=None) == [
        (10, 11, 5),
        (10, 13, 3),
        (11, 13, 2),
    ]
    # radius boundary is inclusive
    assert near_duplicate_pairs(ids, ph, dh, None, phash_radius=4, dhash_radius=8) == []
    assert near_duplicate_pairs(ids, ph, dh, None, phash_radius=5, dhash_radius=4) == [(10, 11, 5)]
    # equal aHash keys always pair, whatever the distances
    keys = [hashlib.md5(s.encode()).hexdigest() for s in "abcda"]
    got = near_duplicate_pairs(ids, ph, dh, keys, phash_radius=-1)
    assert got == [(10, 14, int(hamming64(ph[0], ph[4])))]
    arr = near_duplicate_pairs(ids, ph, dh, keys, phash_radius=6, dhash_radius=8, as_array=True)
    assert arr.tolist() == [[10, 11, 5], [10, 14, int(hamming64(ph[0], ph[4]))]]


def test_near_duplicate_pairs_matches_brute_force():
    rng = np.random.default_rng(3)
    n = 300
    ph = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    dh = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    for i in range(0, 120, 2):  # plant near pairs at varying distances
        ph[i + 1] = np.uint64(flip(int(ph[i]), rng.choice(64, i % 14, replace=False).tolist()))
        dh[i + 1] = np.uint64(flip(int(dh[i]), rng.choice(64, i % 17, replace=False).tolist()))
    ids = rng.permutation(10_000)[:n]
    got = near_duplicate_pairs(ids, ph, dh, None, phash_radius=9, dhash_radius=11)
    P, D = hamming64(ph[:, None], ph[None, :]), hamming64(dh[:, None], dh[None, :])
    exp = sorted(
        (min(ids[i], ids[j]), max(ids[i], ids[j]), int(P[i, j]))
        for i in range(n)
        for j in range(i + 1, n)
        if P[i, j] <= 9 and D[i, j] <= 11
    )
    assert got == [tuple(map(int, e)) for e in exp] and len(got) > 20


def test_near_duplicate_pairs_validation():
    with pytest.raises(ValueError):
        near_duplicate_pairs([1, 2], np.zeros(3, np.uint64))
    with pytest.raises(ValueError):
        near_duplicate_pairs([1, 1], np.zeros(2, np.uint64))
    assert near_duplicate_pairs([], np.zeros(0, np.uint64)) == []
    assert near_duplicate_pairs([5], np.zeros(1, np.uint64), np.zeros(1, np.uint64), ["k"]) == []
