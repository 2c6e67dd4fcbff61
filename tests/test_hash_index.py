"""HashIndex: exact against brute-force numpy, incl. radius boundaries, tails, k-NN, save/load."""

from __future__ import annotations

import numpy as np
import pytest

import adlens.dedup.index as index_mod
from adlens.dedup.hashing import hamming64, to_int64
from adlens.dedup.index import HashIndex


def random_codes(rng, n):
    return rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)


def flip_bits(rng, code, d):
    """``code`` with exactly ``d`` distinct random bits flipped."""
    mask = 0
    for b in rng.choice(64, d, replace=False):
        mask |= 1 << int(b)
    return np.uint64(int(code) ^ mask)


def planted(rng, n_random=5000, n_centres=20):
    """Random codes plus, around each centre, neighbours at every distance 0..16."""
    codes = list(random_codes(rng, n_random))
    centres = random_codes(rng, n_centres)
    for c in centres:
        codes += [flip_bits(rng, c, d) for d in range(17) for _ in range(2)]
    codes = np.array(codes, np.uint64)
    ids = rng.permutation(10 * codes.size)[: codes.size].astype(np.int64)  # sparse, unordered ids
    return ids, codes, centres


def brute_radius(ids, codes, q, r):
    d = hamming64(codes, q)
    hit = np.flatnonzero(d <= r)
    order = np.lexsort((ids[hit], d[hit]))
    return ids[hit][order], d[hit][order]


@pytest.fixture(params=["tables", "auto"])
def force_tables(request, monkeypatch):
    """'tables': never fall back to the linear scan (small test indexes would always prefer it)."""
    if request.param == "tables":
        monkeypatch.setattr(index_mod, "_SCAN_COST", 0)
    return request.param


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(42)
    ids, codes, centres = planted(rng)
    queries = np.concatenate([centres, random_codes(rng, 10), codes[:5]])
    return ids, codes, queries


@pytest.mark.parametrize("radius", [0, 1, 3, 4, 5, 7, 8, 10, 11, 12, 15, 16, 20, 64])
def test_radius_search_equals_brute_force(data, radius, force_tables):
    ids, codes, queries = data
    index = HashIndex()
    index.add(ids, codes)
    res = index.radius_search(queries, radius)
    assert len(res) == queries.size
    for q, (got_ids, got_d) in zip(queries, res):
        exp_ids, exp_d = brute_radius(ids, codes, q, radius)
        assert np.array_equal(got_ids, exp_ids)
        assert np.array_equal(got_d, exp_d)
    qi, pid, pd = index.radius_pairs(queries, radius)
    assert qi.size == sum(r[0].size for r in res)
    assert np.array_equal(pid, np.concatenate([r[0] for r in res]))


def test_radius_boundary_inclusive(force_tables):
    rng = np.random.default_rng(0)
    q = random_codes(rng, 1)[0]
    codes = np.array([flip_bits(rng, q, d) for d in range(20)], np.uint64)
    index = HashIndex()
    index.add(np.arange(20) + 100, codes)
    for r in range(20):
        ids, d = index.radius_search([q], r)[0]
        assert ids.tolist() == list(range(100, 101 + r))  # distance r in, r + 1 out
        assert d.tolist() == list(range(r + 1))


def test_incremental_adds_tail_and_rebuild(data, force_tables):
    ids, codes, queries = data
    index = HashIndex()
    for lo in range(0, codes.size, 700):  # forces tail scans, then rebuilds past 4096
        index.add(ids[lo : lo + 700], codes[lo : lo + 700])
        seen = slice(0, lo + 700)
        for q in queries[:8]:
            got_ids, got_d = index.radius_search([q], 9)[0]
            exp_ids, exp_d = brute_radius(ids[seen], codes[seen], q, 9)
            assert np.array_equal(got_ids, exp_ids) and np.array_equal(got_d, exp_d)
    assert len(index) == codes.size


def test_heavy_buckets_fall_back_to_scan():
    """Many identical codes (one huge bucket): the linear-scan fallback gives the same answer."""
    rng = np.random.default_rng(7)
    base = random_codes(rng, 1)[0]
    codes = np.concatenate([np.full(6000, base, np.uint64), random_codes(rng, 3000)])
    codes[100:200] = [flip_bits(rng, base, 5) for _ in range(100)]
    ids = np.arange(codes.size, dtype=np.int64)
    queries = np.concatenate([[base, flip_bits(rng, base, 3)], random_codes(rng, 5)])
    index = HashIndex()
    index.add(ids, codes)
    for r in (2, 6, 9):
        for queries_ in (queries, queries[:1], queries[2:]):
            for q, (got_ids, got_d) in zip(queries_, index.radius_search(queries_, r)):
                exp_ids, exp_d = brute_radius(ids, codes, q, r)
                assert np.array_equal(got_ids, exp_ids) and np.array_equal(got_d, exp_d)


def test_small_gather_chunks(monkeypatch, data):
    ids, codes, queries = data
    monkeypatch.setattr(index_mod, "_SCAN_COST", 0)
    monkeypatch.setattr(index_mod, "_CHUNK_CANDIDATES", 16)  # many chunks, some of one query
    monkeypatch.setattr(index_mod, "_CHUNK_PROBES", 600)  # one query per probe block
    index = HashIndex()
    index.add(ids, codes)
    for q, (got_ids, got_d) in zip(queries, index.radius_search(queries, 9)):
        exp_ids, exp_d = brute_radius(ids, codes, q, 9)
        assert np.array_equal(got_ids, exp_ids) and np.array_equal(got_d, exp_d)


def test_multi_index_tables_are_used(data, monkeypatch):
    ids, codes, queries = data
    index = HashIndex()
    index.add(ids, codes)
    index.radius_search(queries[:1], 5)
    assert index._n_indexed == len(index)  # > 4096 codes: tables built, not a tail scan
    monkeypatch.setattr(index_mod, "_SCAN_COST", 0)
    monkeypatch.setattr(HashIndex, "_flat_range", None)  # would raise if called
    assert index.radius_search(queries[:3], 11)[0][0].size > 0


def test_large_layout_three_tables(monkeypatch):
    """From 2**18 codes on, 3 substrings of 21/21/22 bits (checked on a small index)."""
    monkeypatch.setattr(index_mod, "_layout", lambda n: (21, 21, 22))
    monkeypatch.setattr(index_mod, "_SCAN_COST", 0)
    rng = np.random.default_rng(5)
    ids, codes, centres = planted(rng, n_random=3000, n_centres=10)
    index = HashIndex()
    index.add(ids, codes)
    for r in (0, 2, 3, 5, 6, 8, 9, 11, 12, 14):
        for q, (got_ids, got_d) in zip(centres, index.radius_search(centres, r)):
            exp_ids, exp_d = brute_radius(ids, codes, q, r)
            assert np.array_equal(got_ids, exp_ids) and np.array_equal(got_d, exp_d)
    assert index._widths == (21, 21, 22)


@pytest.mark.parametrize("k", [1, 3, 10, 50])
def test_knn_equals_brute_force(data, k, force_tables):
    ids, codes, queries = data
    index = HashIndex()
    index.add(ids, codes)
    got_ids, got_d = index.knn(queries, k)
    assert got_ids.shape == got_d.shape == (queries.size, k)
    for q, gi, gd in zip(queries, got_ids, got_d):
        d = hamming64(codes, q)
        order = np.lexsort((ids, d))[:k]  # ties at the k-th distance: smaller ids first
        assert np.array_equal(gi, ids[order])
        assert np.array_equal(gd, d[order])


def test_knn_pads_when_index_small():
    index = HashIndex()
    assert index.knn([1], 2)[0].tolist() == [[-1, -1]]
    index.add([5, 9], np.array([0b1, 0b111], np.uint64))
    ids, d = index.knn([0], 4)
    assert ids.tolist() == [[5, 9, -1, -1]] and d.tolist() == [[1, 3, -1, -1]]


def test_signed_codes_and_validation():
    index = HashIndex()
    codes = np.array([2**63, 2**64 - 1, 3], np.uint64)
    index.add(np.array([1, 2, 3]), to_int64(codes))  # catalog form: signed int64
    assert index.radius_search([np.int64(-1)], 0)[0][0].tolist() == [2]
    assert index.codes.tolist() == codes.tolist() and index.ids.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="already in the index"):
        index.add([3], [0])
    with pytest.raises(ValueError, match="duplicates"):
        index.add([7, 7], [0, 1])
    with pytest.raises(ValueError, match="non-negative"):
        index.add([-4], [0])
    with pytest.raises(ValueError, match="differ in length"):
        index.add([8, 9], [0])
    with pytest.raises(ValueError):
        index.radius_search([0], -1)
    assert len(index) == 3
    assert HashIndex().radius_search([1, 2], 3)[1][0].size == 0


def test_save_load_round_trip(tmp_path, data, force_tables):
    ids, codes, queries = data
    index = HashIndex()
    index.add(ids[:2000], codes[:2000])
    index.radius_search(queries[:1], 3)  # built tables ...
    index.add(ids[2000:], codes[2000:])  # ... plus an unindexed tail
    path = tmp_path / "phash.idx"
    index.save(path)
    loaded = HashIndex.load(path)
    assert loaded._n_indexed == 0 and loaded.build()._n_indexed == len(loaded)
    assert len(loaded) == len(index)
    assert np.array_equal(loaded.ids, index.ids) and np.array_equal(loaded.codes, index.codes)
    for a, b in zip(index.radius_search(queries, 10), loaded.radius_search(queries, 10)):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.array_equal(index.knn(queries, 5)[0], loaded.knn(queries, 5)[0])
    (tmp_path / "junk").write_bytes(b"not an index")
    with pytest.raises(ValueError, match="not a HashIndex file"):
        HashIndex.load(tmp_path / "junk")
