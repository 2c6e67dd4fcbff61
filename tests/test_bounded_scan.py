"""BoundedScan: the same top-k as a brute-force float scan, whatever the data, and fewer rows read."""

import numpy as np
import pytest

from adlens.index import VectorIndex
from adlens.index import bounded_scan as bs_mod
from adlens.index.bounded_scan import BoundedScan

pytestmark = pytest.mark.skipif(not bs_mod.kernels_available(), reason="no C compiler for the scan kernels")


def structured(n, d, seed, rank=12):
    """Embedding-like: a shared mean direction plus a few strong directions plus weak noise."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).normal(size=(rank, d))
    mean = np.random.default_rng(98).normal(size=d)
    x = 1.5 * mean + rng.normal(size=(n, rank)) @ basis * 0.8 + rng.normal(size=(n, d)) * 0.15
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute(x, q, k):
    s = x @ q
    order = np.lexsort((np.arange(len(s)), -s))[:k]
    return s[order], order


def assert_same_topk(x, scan, q, k, **kw):
    scores, rows, stats = scan.search(x, q, k, **kw)
    ref_s, _ = brute(x, q, k)
    assert len(rows) == min(k, len(x)) and len(set(rows.tolist())) == len(rows)
    np.testing.assert_allclose(scores, ref_s, rtol=1e-6, atol=2e-6)
    # ids agree except inside exact float ties (then any tied row is a correct answer)
    np.testing.assert_allclose(x[rows] @ q, ref_s, rtol=1e-6, atol=2e-6)
    assert np.all(np.diff(scores) <= 0)
    return stats


@pytest.mark.parametrize("portable", [False, True])
def test_top_k_equals_brute_force_and_prunes(portable):
    lib = bs_mod._kernels()
    lib.adlens_scan_portable(int(portable))
    try:
        x = structured(4000, 200, 0)
        scan = BoundedScan(segments=(24, 48, 96)).build(x)
        qs = structured(40, 200, 1)
        exact_rows = []
        for q in qs:
            stats = assert_same_topk(x, scan, q, 10)
            exact_rows.append(stats["rows"][-1])
            ids = scan.search(x, q, 10)[1]
            assert set(ids.tolist()) == set(brute(x, q, 10)[1].tolist())
        # the bounds must actually exclude rows on data with dominant directions
        assert np.median(exact_rows) < 0.1 * len(x)
    finally:
        lib.adlens_scan_portable(0)


def test_exact_on_isotropic_non_unit_vectors_and_queries():
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(3000, 77)) * rng.uniform(0.01, 50, size=(3000, 1))).astype(np.float32)
    scan = BoundedScan(segments=(20,)).build(x)
    for q in (rng.normal(size=(15, 77)) * 7).astype(np.float32):
        assert_same_topk(x, scan, q, 7)


def test_ties_and_duplicates():
    base = structured(50, 64, 4)
    x = np.repeat(base, 40, axis=0)  # every vector 40 times
    scan = BoundedScan(segments=(8, 16)).build(x)
    for q in structured(5, 64, 5):
        scores, rows, _ = scan.search(x, q, 25)
        ref_s, _ = brute(x, q, 25)
        np.testing.assert_allclose(scores, ref_s, atol=2e-6)
        assert len(set(rows.tolist())) == 25


def test_extend_with_out_of_range_vectors_and_keep_rows():
    x = structured(3000, 96, 6)
    scan = BoundedScan(segments=(16, 32)).build(x[:1500])
    extra = x[1500:] * 4.0  # 4x the fitted scales: codes clip, errors are measured
    scan.extend(extra)
    full = np.ascontiguousarray(np.concatenate([x[:1500], extra]))
    for q in structured(10, 96, 7):
        assert_same_topk(full, scan, q, 10)
    rng = np.random.default_rng(8)
    mask = rng.random(len(full)) > 0.3
    scan.keep_rows(mask)
    kept = np.ascontiguousarray(full[mask])
    assert scan.n == len(kept)
    for q in structured(10, 96, 9):
        assert_same_topk(kept, scan, q, 10)


@pytest.mark.parametrize("n,d,segments,k", [(1, 1, (128, 256), 10), (5, 3, (1, 2), 10), (300, 37, (10, 11, 36), 300),
                                             (2, 40, (256,), 1), (400, 33, (5, 40), 3)])
def test_small_shapes(n, d, segments, k):
    x = np.random.default_rng(n + d).normal(size=(n, d)).astype(np.float32)
    scan = BoundedScan(segments=segments).build(x)
    q = np.random.default_rng(1).normal(size=d).astype(np.float32)
    assert_same_topk(x, scan, q, k)


def test_large_sums_do_not_overflow():
    # |codes| = 127 and |query codes| = 16383 over 9,000 coordinates: 1.9e10, far beyond int32
    d = 9000
    x = np.ones((40, d), np.float32)
    x[::2] *= -1
    x[5] *= 0.5
    scan = BoundedScan(segments=(d,), rotate=False).build(x)  # identity: codes stay +-127
    assert np.abs(scan.codes[0]).max() == 127
    for portable in (0, 1):
        bs_mod._kernels().adlens_scan_portable(portable)
        try:
            scores, rows, _ = scan.search(x, np.ones(d, np.float32), 3)
        finally:
            bs_mod._kernels().adlens_scan_portable(0)
        assert scores.tolist() == [9000.0] * 3 and rows.tolist() == [1, 3, 7]


@pytest.mark.parametrize("m", [16, 48, 256, 1024, 1040])
def test_scan_kernels_sum_exactly_in_every_path(m):
    # The AVX2 full scan takes four rows at a time when m is a multiple of 16 up to 1024 (one int32
    # partial a row); 1040 and the survivors' scan take one row at a time. Row counts that are not
    # multiples of four leave a remainder. Codes at +-127 against query codes at +-16383 drive the
    # sums to the int32 edge.
    lib = bs_mod._kernels()
    rng = np.random.default_rng(m)
    n = 11
    codes = rng.integers(-127, 128, size=(n, m)).astype(np.int8)
    codes[0], codes[1] = 127, -127
    q = rng.integers(-16383, 16384, size=m).astype(np.int16)
    q[:] = np.where(np.arange(m) % 3 == 0, 16383, q)
    q2 = np.full(m, 16383, np.int16)
    exact = codes.astype(np.int64) @ q.astype(np.int64)
    rows = np.array([9, 2, 0, 7, 7, 1, 10], np.int64)  # scattered, repeated, 7 = 4 + 3
    for portable in (0, 1):
        lib.adlens_scan_portable(portable)
        try:
            out = np.empty(n, np.float32)
            lib.adlens_scan_all(bs_mod._ptr(codes), n, m, bs_mod._ptr(q), np.float32(0.5), bs_mod._ptr(out))
            np.testing.assert_array_equal(out, (np.float32(0.5) * exact.astype(np.float32)))
            top = np.empty(2, np.float32)
            lib.adlens_scan_all(bs_mod._ptr(codes), 2, m, bs_mod._ptr(q2), np.float32(1.0), bs_mod._ptr(top))
            assert top.tolist() == [float(np.float32(127 * 16383 * m)), float(np.float32(-127 * 16383 * m))]
            acc = np.full(len(rows), 1.0, np.float32)
            lib.adlens_scan_rows(bs_mod._ptr(codes), m, bs_mod._ptr(q), np.float32(2.0), bs_mod._ptr(rows),
                                 len(rows), bs_mod._ptr(acc))
            np.testing.assert_array_equal(acc, np.float32(1.0) + np.float32(2.0) * exact[rows].astype(np.float32))
        finally:
            lib.adlens_scan_portable(0)


def test_keep_kernel_keeps_the_same_rows_in_both_paths():
    # the AVX2 path takes eight rows at a time; 37 rows leave a remainder for the scalar loop.
    # Rows exactly at tau are kept; -inf (filtered-out) rows never are.
    lib = bs_mod._kernels()
    rng = np.random.default_rng(3)
    n = 37
    a = rng.normal(size=n).astype(np.float32)
    e = [rng.random(n).astype(np.float32) for _ in range(4)]
    w = np.array([0.5, 0.25, 1e-4, 0.3], np.float32)
    a[[2, 9, 36]] = -np.inf
    known = (w[0] * e[0] + w[1] * e[1]) + w[2] * e[2]  # float32, in the kernel's order
    bound = (a + known) + w[3] * e[3]
    tau = np.float32(np.sort(bound[np.isfinite(bound)])[20])  # 34 finite rows, 14 at or above it
    expected = np.flatnonzero(bound >= tau)
    assert len(expected) == 14 and 2 not in expected
    results = []
    for portable in (0, 1):
        lib.adlens_scan_portable(portable)
        try:
            rows, pa, pk = np.empty(n, np.int64), np.empty(n, np.float32), np.empty(n, np.float32)
            m = lib.adlens_keep(bs_mod._ptr(a), n, *(bs_mod._ptr(x) for x in e), bs_mod._ptr(w), float(tau),
                                bs_mod._ptr(rows), bs_mod._ptr(pa), bs_mod._ptr(pk))
        finally:
            lib.adlens_scan_portable(0)
        assert rows[:m].tolist() == expected.tolist()
        np.testing.assert_array_equal(pa[:m], a[expected])
        np.testing.assert_array_equal(pk[:m], known[expected])
        results.append(rows[:m].tolist())
    assert results[0] == results[1]


def test_rejects_a_different_matrix():
    x = structured(100, 32, 10)
    scan = BoundedScan(segments=(4, 8)).build(x)
    with pytest.raises(ValueError, match="matrix this scan was built from"):
        scan.search(x[:50], x[0], 5)
    with pytest.raises(ValueError, match="segments"):
        BoundedScan(segments=(0,))
    with pytest.raises(ValueError, match="segments"):
        BoundedScan(segments=(64, 32))


def test_save_load_round_trip_and_corrupt_file(tmp_path):
    x = structured(500, 48, 11)
    scan = BoundedScan(segments=(8, 16)).build(x)
    scan.save(tmp_path / "s.npz")
    back = BoundedScan.load(tmp_path / "s.npz")
    q = structured(1, 48, 12)[0]
    a, b = scan.search(x, q, 10), back.search(x, q, 10)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises((ValueError, OSError)):
        BoundedScan.load(tmp_path / "bad.npz")


# ------------------------------------------------------------------ through VectorIndex


def test_vector_index_uses_the_scan_and_matches_faiss(tmp_path):
    x = structured(3000, 64, 13)
    ids = np.arange(3000, dtype=np.int64) * 7 + 3
    fast = VectorIndex(64, bounded_scan_min=1000, bounded_scan_segments=(8, 16))
    plain = VectorIndex(64, bounded_scan_min=None)
    for idx in (fast, plain):
        idx.add(x, ids=ids)
    qs = structured(12, 64, 14)

    def same(a, b):
        for q in qs:
            sa, ia = a.search(q, k=10)
            sb, ib = b.search(q, k=10)
            np.testing.assert_allclose(sa, sb, atol=2e-6)
            assert set(ia[0].tolist()) == set(ib[0].tolist())

    same(fast, plain)
    assert fast._scan is not None and fast._scan.n == 3000
    more = structured(500, 64, 15)
    for idx in (fast, plain):
        idx.add(more, ids=np.arange(500) + 100_000)
        idx.remove(ids[::3])
    assert fast._scan.n == len(fast) == 3500 - 1000
    same(fast, plain)

    fast.save(tmp_path / "ix")
    assert (tmp_path / "ix" / "bounded_scan.npz").exists()
    loaded = VectorIndex.load(tmp_path / "ix")
    assert loaded._scan is not None and loaded._scan.n == len(loaded)
    same(loaded, plain)

    # stale or corrupt codes: a warning, then correct answers from rebuilt codes
    (tmp_path / "ix" / "bounded_scan.npz").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        broken = VectorIndex.load(tmp_path / "ix")
    same(broken, plain)


def test_vector_index_falls_back_without_kernels(monkeypatch):
    monkeypatch.setattr("adlens.index.vector.kernels_available", lambda: False)
    x = structured(2000, 32, 16)
    idx = VectorIndex(32, bounded_scan_min=100)
    idx.add(x)
    s, i = idx.search(x[:1], k=5)
    assert idx._scan is None
    assert i[0, 0] == 0 and s[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_small_index_is_not_coded(tmp_path):
    idx = VectorIndex(16)  # default bounded_scan_min 20k
    idx.add(structured(50, 16, 17))
    idx.search(structured(1, 16, 18), k=3)
    assert idx._scan is None
    idx.save(tmp_path / "small")
    assert not (tmp_path / "small" / "bounded_scan.npz").exists()


def test_tiny_scores_fall_back_to_a_full_scan():
    # bounds underflow below float32's normal range; the answer must still be the top-k
    x = np.array([[1e-23], [2e-23], [3e-23]], np.float32)
    q = np.array([1e-22], np.float32)
    scores, rows, _ = BoundedScan().build(x).search(x, q, 2)
    ref_s, ref_rows = brute(x, q, 2)  # subnormal products: float32 itself ties some of them
    assert rows.tolist() == ref_rows.tolist() and scores.tolist() == ref_s.tolist()


def test_codes_of_other_vectors_are_not_used_after_load(tmp_path):
    x = structured(3000, 32, 20)
    idx = VectorIndex(32, bounded_scan_min=100, bounded_scan_segments=(8,))
    idx.add(x, ids=np.arange(3000))
    idx.save(tmp_path / "ix")
    old_codes = (tmp_path / "ix" / "bounded_scan.npz").read_bytes()
    idx.remove(np.arange(50))
    idx.add(structured(50, 32, 21) * 3, ids=np.arange(5000, 5050))  # same count, other vectors
    idx.save(tmp_path / "ix")
    (tmp_path / "ix" / "bounded_scan.npz").write_bytes(old_codes)  # as a crash mid-save could leave
    with pytest.warns(UserWarning, match="other vectors"):
        back = VectorIndex.load(tmp_path / "ix")
    plain = VectorIndex(32, bounded_scan_min=None)
    plain.add(back.get_vectors(back.ids), ids=back.ids)
    for q in structured(10, 32, 22):
        assert set(back.search(q, k=10)[1][0]) == set(plain.search(q, k=10)[1][0])


def test_filtered_search_equals_brute_force_over_allowed_rows():
    x = structured(3000, 48, 30)
    scan = BoundedScan(segments=(12,)).build(x)
    rng = np.random.default_rng(31)
    for q, frac in zip(structured(12, 48, 32), [0.5, 0.1, 0.01, 0.003] * 3):
        allowed = rng.random(len(x)) < frac
        scores, rows, stats = scan.search(x, q, 10, allowed=allowed)
        sub = np.flatnonzero(allowed)
        # a selective filter's first stage reads only the allowed rows; a broad one reads them all
        assert stats["rows"][0] == (len(sub) if frac <= 0.25 else len(x))
        ref_s, ref_rows = brute(x[sub], q, 10)
        assert rows.tolist() == sub[ref_rows].tolist() or np.allclose(scores, ref_s, rtol=1e-6, atol=2e-6)
        np.testing.assert_allclose(scores, ref_s, rtol=1e-6, atol=2e-6)
        assert allowed[rows].all() and len(rows) == min(10, len(sub))
    assert len(scan.search(x, x[0], 5, allowed=np.zeros(len(x), bool))[1]) == 0
    with pytest.raises(ValueError, match="one bool per row"):
        scan.search(x, x[0], 5, allowed=np.ones(7, bool))


def test_vector_index_filters_through_the_scan_match_faiss():
    x = structured(4000, 40, 33)
    cats = np.array(["shoes", "hats", "bags", "rare"])[np.random.default_rng(34).choice(4, 4000, p=[.5, .3, .199, .001])]
    ids = np.arange(4000) * 3 + 1
    fast = VectorIndex(40, bounded_scan_min=1000, bounded_scan_segments=(10,))
    plain = VectorIndex(40, bounded_scan_min=None)
    for idx in (fast, plain):
        idx.add(x, ids=ids, metadata={"category": cats})
    for q in structured(8, 40, 35):
        for flt in ({"category": "shoes"}, {"category": ["hats", "rare"]}, {"category": "rare"},
                    {"category": "none-such"}, ids[::7].tolist(), [ids[3], 999_999]):
            sa, ia = fast.search(q, k=10, filter=flt)
            sb, ib = plain.search(q, k=10, filter=flt)
            np.testing.assert_allclose(sa, sb, rtol=1e-6, atol=2e-6)  # includes -inf padding
            assert set(ia[0].tolist()) == set(ib[0].tolist())
    assert fast._scan is not None
