"""The C Thompson kernel gives the numpy fast path's win counts, on the same pooled draws."""

import numpy as np
import pytest

from adlens import native
from adlens.bandit import native_thompson as nt
from adlens.bandit import policies as P

pytestmark = pytest.mark.skipif(not nt.available(), reason="no C compiler")


def _both(a, b, n, scale, fixed, seed):
    """(numpy path frequencies, C kernel counts) from the same generator state."""
    ref = P._win_frequencies(P._beta_draws(a, b, n, np.random.default_rng(seed)), scale, fixed)
    rng = np.random.default_rng(seed)
    z = P._std_draws(rng, 2 * len(a), n, 0)
    m = int((a < 1).sum())
    counts = nt.win_counts(a, b, z, P._std_draws(rng, m, n, 1) if m else None, scale, fixed)
    return ref, counts


@pytest.mark.parametrize("small", [False, True])
def test_kernel_matches_numpy_path(small):
    g = np.random.default_rng(7)
    for _ in range(200):
        k, n = int(g.integers(2, 30)), int(g.choice([1, 3, 100, 1000, 4000]))
        a = g.uniform(0.2 if small else 1.0, 60, k)
        b = g.uniform(0.5, 600, k)
        fixed, scale = g.normal(0, 0.01, k), float(g.uniform(0.5, 40))
        ref, counts = _both(a, b, n, scale, fixed, int(g.integers(1 << 30)))
        assert counts.shape == (k,) and counts.dtype == np.int64
        assert counts.sum() >= n  # every draw has at least one winner
        ref_counts = ref * counts.sum()
        if small:  # expf vs numpy's SIMD exp may differ in the last bit: a rare flipped draw
            assert np.abs(ref_counts - counts).max() <= 1.0 + 1e-9
        else:
            np.testing.assert_array_equal(ref_counts.round().astype(np.int64), counts)


def test_tiny_shapes_underflow_like_numpy():
    """Shape 0.005 with no fixed terms: most boosted draws underflow to exactly 0 and tie; the
    kernel's exp must underflow (and go subnormal) where numpy's does, not clamp."""
    a, b = np.array([0.005, 0.005, 0.02]), np.array([0.995, 0.995, 3.0])
    for seed in range(5):
        ref, counts = _both(a, b, 1000, 12.0, np.zeros(3), seed)
        d = P._beta_draws(a, b, 1000, np.random.default_rng(seed))
        assert (d[:2] == 0).mean() > 0.3  # the case is real: many exact zeros
        assert np.abs(ref * counts.sum() - counts).max() <= 1.0 + 1e-9


def test_threads_loading_at_once_all_get_the_kernel(monkeypatch, tmp_path):
    import threading

    monkeypatch.setenv("ADLENS_CACHE_DIR", str(tmp_path))
    src = "int adlens_two(void){return 2;}"
    got = []
    threads = [threading.Thread(target=lambda: got.append(native.load("t_race", src, {}))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 6 and all(g is not None and g is got[0] for g in got)
    assert [p.name for p in (tmp_path / "t_race").iterdir()] == [f.name for f in (tmp_path / "t_race").glob("adlens_t_race_*.so")]


def test_an_unknown_home_means_no_kernel_not_an_error(monkeypatch):
    monkeypatch.delenv("ADLENS_CACHE_DIR", raising=False)

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(native.Path, "home", staticmethod(no_home))
    assert native.load("t_nohome", "int adlens_three(void){return 3;}", {}) is None


def test_ties_count_for_every_tied_arm_and_fixed_terms_dominate():
    a, b = np.array([2.0, 2.0, 2.0]), np.array([5.0, 5.0, 5.0])
    z = np.zeros((6, 10), np.float32)
    # scale 0: every arm's total is its fixed term; arms 0 and 2 tie for the maximum in all 10 draws
    assert nt.win_counts(a, b, z, None, 0.0, np.array([0.3, 0.1, 0.3])).tolist() == [10, 0, 10]
    # equal draws (same parameters, same normals), a fixed lead of 1 > scale * (draw difference = 0)
    assert nt.win_counts(a, b, z, None, 5.0, np.array([0.0, 1.0, 0.0])).tolist() == [0, 10, 0]


def test_bad_shapes_are_rejected():
    a = np.array([0.5, 2.0])
    z = np.ones((4, 5), np.float32)
    with pytest.raises(ValueError, match="e must have shape"):
        nt.win_counts(a, np.ones(2), z, None, 1.0, np.zeros(2))
    with pytest.raises(ValueError, match="shapes do not match"):
        nt.win_counts(a, np.ones(3), z, np.ones((1, 5)), 1.0, np.zeros(2))


def test_native_can_be_switched_off(monkeypatch, tmp_path):
    monkeypatch.setenv("ADLENS_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ADLENS_NATIVE", "0")
    assert native.load("t_off", "int f(void){return 1;}", {}) is None
    monkeypatch.setenv("ADLENS_NATIVE", "1")
    lib = native.load("t_on", "int adlens_one(void){return 1;}", {"adlens_one": ([], __import__("ctypes").c_int)})
    assert lib is not None and lib.adlens_one() == 1
    assert list((tmp_path / "t_on").glob("adlens_t_on_*.so"))  # cached on disk


def test_broken_source_falls_back_to_none(monkeypatch, tmp_path):
    monkeypatch.setenv("ADLENS_CACHE_DIR", str(tmp_path))
    assert native.load("t_bad", "this is not C", {}) is None
