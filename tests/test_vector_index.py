"""VectorIndex: exact = brute force, ids, filters, approximate switch, save/load."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faiss")

from adlens.index import VectorIndex  # noqa: E402


def unit(n, d, seed=0, clusters=None):
    rng = np.random.default_rng(seed)
    if clusters:
        c = rng.normal(size=(clusters, d))
        x = c[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, d))
    else:
        x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute(q, xb, ids, k):
    S = q @ xb.T
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(S, order, 1), ids[order]


@pytest.fixture
def data():
    xb = unit(500, 16, seed=1)
    ids = np.arange(500, dtype=np.int64) * 7 + 1000  # arbitrary, non-contiguous
    cat = np.array(["shoes", "hats", "bags", "shirts"])[np.arange(500) % 4]
    price = np.arange(500) % 10
    return xb, ids, cat, price


@pytest.fixture
def index(data):
    xb, ids, cat, price = data
    idx = VectorIndex(16)
    idx.add(xb, ids=ids, metadata={"category": cat, "price": price})
    return idx


def test_exact_equals_brute_force(index, data):
    xb, ids, _, _ = data
    q = unit(20, 16, seed=2)
    scores, got = index.search(q, k=10)
    ref_s, ref_i = brute(q, xb, ids, 10)
    assert got.dtype == np.int64 and scores.dtype == np.float32 and got.shape == (20, 10)
    np.testing.assert_array_equal(got, ref_i)
    np.testing.assert_allclose(scores, ref_s, atol=1e-5)
    assert not index.is_approximate and index.kind == "flat" and len(index) == 500


def test_single_query_and_padding():
    idx = VectorIndex(4)
    idx.add(np.eye(4, dtype=np.float32)[:3], ids=[5, 6, 7])
    s, i = idx.search(np.array([1, 0, 0, 0], np.float32), k=5)
    assert i[0, 0] == 5 and set(i[0, 1:3]) == {6, 7}  # 6 and 7 tie at score 0
    assert (i[0, 3:] == -1).all() and np.isneginf(s[0, 3:]).all()
    empty = VectorIndex(4)
    s, i = empty.search(np.ones((2, 4), np.float32), 3)
    assert (i == -1).all() and np.isneginf(s).all()


def test_default_ids_continue():
    idx = VectorIndex(3)
    assert idx.add(np.eye(3, dtype=np.float32)).tolist() == [0, 1, 2]
    assert idx.add(np.eye(3, dtype=np.float32)[:1]).tolist() == [3]


@pytest.mark.parametrize("exact_filter_max", [20_000, 0])  # brute-force path and faiss IDSelector path
def test_filters_equal_brute_force_on_subset(data, exact_filter_max):
    xb, ids, cat, price = data
    idx = VectorIndex(16, exact_filter_max=exact_filter_max)
    idx.add(xb, ids=ids, metadata={"category": cat, "price": price})
    q = unit(5, 16, seed=3)
    # metadata dict: category in {shoes, hats} AND price == 3
    mask = np.isin(cat, ["shoes", "hats"]) & (price == 3)
    s, got = idx.search(q, k=8, filter={"category": ["shoes", "hats"], "price": 3})
    ref_s, ref_i = brute(q, xb[mask], ids[mask], 8)
    np.testing.assert_array_equal(got, ref_i)
    np.testing.assert_allclose(s, ref_s, atol=1e-5)
    # allowed-id collection (set or array; unknown ids ignored)
    allowed = set(ids[::50].tolist()) | {999_999}
    s, got = idx.search(q, k=4, filter=allowed)
    sel = np.isin(ids, list(allowed))
    np.testing.assert_array_equal(got, brute(q, xb[sel], ids[sel], 4)[1])
    # fewer allowed than k -> padded
    s, got = idx.search(q, k=4, filter=[ids[0]])
    assert (got[:, 0] == ids[0]).all() and (got[:, 1:] == -1).all()
    s, got = idx.search(q, k=4, filter={"category": "socks"})
    assert (got == -1).all()


def test_filter_errors(index):
    with pytest.raises(KeyError, match="no metadata column"):
        index.search(unit(1, 16), 3, filter={"colour": "red"})
    with pytest.raises(ValueError, match="integers"):
        index.search(unit(1, 16), 3, filter=np.array([0.5]))


@pytest.mark.parametrize("approx", ["hnsw", "ivf"])
def test_switches_to_approximate_with_good_recall(approx):
    xb = unit(4000, 32, seed=4, clusters=40)
    ids = np.arange(4000, dtype=np.int64) + 10
    idx = VectorIndex(32, approx_threshold=3000, approx=approx, nprobe=16)
    idx.add(xb[:2000], ids=ids[:2000])
    assert idx.kind == "flat"
    idx.add(xb[2000:], ids=ids[2000:])  # crosses the threshold
    assert idx.kind == approx and idx.is_approximate and len(idx) == 4000
    q = unit(100, 32, seed=5, clusters=40)
    _, got = idx.search(q, k=10)
    _, ref = brute(q, xb, ids, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, ref)])
    assert recall > 0.9, recall
    # small filtered searches stay exact on an approximate index
    allowed = ids[::97]
    _, got = idx.search(q, 5, filter=allowed)
    sel = np.isin(ids, allowed)
    np.testing.assert_array_equal(got, brute(q, xb[sel], ids[sel], 5)[1])
    np.testing.assert_allclose(idx.get_vectors(ids[[0, 3999]]), xb[[0, 3999]], atol=1e-6)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(tmp_path, data, kind):
    xb, ids, cat, price = data
    idx = VectorIndex(16, approx=kind if kind != "flat" else "hnsw", approx_threshold=None if kind == "flat" else 100)
    idx.add(xb, ids=ids, metadata={"category": cat, "price": price})
    assert idx.kind == kind
    q = unit(7, 16, seed=6)
    before = idx.search(q, 5)
    before_f = idx.search(q, 5, filter={"category": "bags"})
    idx.save(tmp_path / "vi")
    back = VectorIndex.load(tmp_path / "vi")
    assert back.kind == kind and len(back) == 500
    np.testing.assert_array_equal(back.ids, ids)
    np.testing.assert_array_equal(back.metadata["category"], cat)
    np.testing.assert_array_equal(back.metadata["price"], price)
    for a, b in zip(before, back.search(q, 5)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(before_f, back.search(q, 5, filter={"category": "bags"})):
        np.testing.assert_array_equal(a, b)
    # keeps working after load
    back.add(unit(1, 16, seed=9), ids=[1], metadata={"category": ["hats"], "price": [0]})
    assert len(back) == 501


def test_load_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError):
        VectorIndex.load(tmp_path / "nothing")


@pytest.mark.parametrize("approx", ["flat", "ivf"])
def test_remove(data, approx):
    xb, ids, cat, price = data
    idx = VectorIndex(16, approx="ivf", approx_threshold=None if approx == "flat" else 100)
    idx.add(xb, ids=ids, metadata={"category": cat, "price": price})
    gone = ids[:250:2]
    assert idx.remove(np.concatenate([gone, [123456]])) == len(gone)
    keep = ~np.isin(ids, gone)
    assert len(idx) == keep.sum()
    np.testing.assert_array_equal(idx.ids, ids[keep])
    np.testing.assert_array_equal(idx.metadata["category"], cat[keep])
    q = unit(10, 16, seed=7)
    _, got = idx.search(q, 5, filter={"category": "shoes"})
    assert not np.isin(got, gone).any()
    if approx == "flat":
        np.testing.assert_array_equal(idx.search(q, 5)[1], brute(q, xb[keep], ids[keep], 5)[1])
    assert idx.remove([]) == 0


def test_hnsw_remove_raises(data):
    xb, ids, _, _ = data
    idx = VectorIndex(16, approx="hnsw", approx_threshold=10)
    idx.add(xb, ids=ids)
    with pytest.raises(NotImplementedError, match="HNSW"):
        idx.remove(ids[:1])


@pytest.mark.parametrize(
    "call, err",
    [
        (lambda i: i.add(np.ones((2, 15), np.float32)), "shape"),
        (lambda i: i.add(np.full((1, 16), np.nan, np.float32)), "NaN"),
        (lambda i: i.add(unit(2, 16), ids=[1, 1]), "duplicates"),
        (lambda i: i.add(unit(2, 16), ids=[1000, 5]), "already in the index"),
        (lambda i: i.add(unit(2, 16), ids=[1]), "ids"),
        (lambda i: i.add(unit(1, 16), ids=[3], metadata={"category": ["x"]}), "metadata columns"),
        (lambda i: i.add(unit(1, 16), ids=[3], metadata={"category": ["x", "y"], "price": [1]}), "entries"),
        (lambda i: i.search(unit(1, 16), k=0), "k must be"),
        (lambda i: i.search(np.ones((1, 3), np.float32)), "shape"),
    ],
)
def test_invalid_inputs(index, call, err):
    with pytest.raises(ValueError, match=err):
        call(index)


def test_reserved_id_and_metadata_added_late_are_refused():
    from adlens.index.vector import VectorIndex

    idx = VectorIndex(dim=4)
    with pytest.raises(ValueError, match="-1 is reserved"):
        idx.add(unit(2, 4), ids=[7, -1])
    idx.add(unit(3, 4), ids=[1, 2, 3])  # no metadata
    with pytest.raises(ValueError, match="metadata columns"):  # used to leave 'category' with 2 of 5 rows
        idx.add(unit(2, 4), ids=[4, 5], metadata={"category": ["a", "b"]})
    assert len(idx) == 3
    _, i = idx.search(unit(1, 4), k=5)
    assert sorted(i[0][:3].tolist()) == [1, 2, 3] and i[0][3:].tolist() == [-1, -1]


def test_columns_start_again_after_every_row_is_removed():
    from adlens.index.vector import VectorIndex

    idx = VectorIndex(dim=4)
    idx.add(unit(2, 4), ids=[1, 2], metadata={"c": ["a", "b"]})
    assert idx.remove([1, 2]) == 2
    idx.add(unit(2, 4, seed=1), ids=[3, 4])  # was KeyError 'c'
    assert len(idx) == 2 and sorted(idx.search(unit(1, 4), k=2)[1][0].tolist()) == [3, 4]
    with pytest.raises(ValueError, match="metadata columns"):
        idx.add(unit(1, 4, seed=2), ids=[5], metadata={"c": ["x"]})


def test_constructor_validation():
    with pytest.raises(ValueError):
        VectorIndex(0)
    with pytest.raises(ValueError):
        VectorIndex(4, approx="lsh")
    with pytest.raises(KeyError):
        VectorIndex(4).get_vectors([1])


def test_metadata_filter_stays_right_across_adds_and_removes():
    # the filter caches integer codes per metadata column: they must follow every change
    rng = np.random.default_rng(40)
    idx = VectorIndex(4, approx_threshold=None)
    cats = rng.choice(["a", "b", "c"], 300)
    idx.add(rng.standard_normal((300, 4)).astype(np.float32), ids=np.arange(300), metadata={"cat": cats})
    assert idx.allowed_ids({"cat": "a"}).tolist() == np.flatnonzero(cats == "a").tolist()
    more = rng.choice(["a", "d"], 100)
    idx.add(rng.standard_normal((100, 4)).astype(np.float32), ids=np.arange(300, 400), metadata={"cat": more})
    all_cats = np.concatenate([cats, more])
    assert idx.allowed_ids({"cat": ["a", "d"]}).tolist() == np.flatnonzero(np.isin(all_cats, ["a", "d"])).tolist()
    idx.remove(np.arange(0, 400, 2))
    keep = np.arange(1, 400, 2)
    assert idx.allowed_ids({"cat": "d"}).tolist() == keep[all_cats[keep] == "d"].tolist()
    assert idx.allowed_ids({"cat": "zzz"}).tolist() == []
