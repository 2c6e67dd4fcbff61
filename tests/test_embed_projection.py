"""CatalogProjection, PCA and the retrieval metrics, on tiny synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from adlens.embed.evaluate import evaluate_embeddings, pair_auc, retrieval_at_k, similarity_matrix
from adlens.embed.pca import PCA
from adlens.embed.projection import CatalogProjection


def clusters(n_per=40, n_classes=4, dim=48, signal=6, seed=0, spread=0.7):
    """Labelled clusters hidden in a few directions under strong isotropic noise, plus a large
    shared offset (like ImageNet features): raw cosine separates them poorly."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(signal, dim))
    centers = rng.normal(size=(n_classes, signal)) * spread
    y = np.repeat(np.arange(n_classes), n_per)
    X = centers[y] @ basis + rng.normal(scale=2.5, size=(len(y), dim)) + 8.0
    return X.astype(np.float32), y


# ------------------------------------------------------------------ metrics


def test_pair_auc_hand_computed():
    # 1-D embeddings: sims are products; labels a,a,b
    X = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    y = np.array(["a", "a", "b"])
    # pairs: (0,1) same sim .8; (0,2) diff sim 0; (1,2) diff sim .6 -> positive beats both
    assert pair_auc(X, y) == 1.0
    y2 = np.array(["a", "b", "a"])  # (0,2) same sim 0 < both negatives
    assert pair_auc(X, y2) == 0.0
    # ties count one half
    S = np.array([[1, 0.5, 0.5], [0.5, 1, 0.5], [0.5, 0.5, 1.0]])
    assert pair_auc(S, np.array([0, 0, 1]), metric="precomputed") == 0.5


def test_pair_auc_sampled_close_to_exact():
    X, y = clusters(n_per=30)
    exact = pair_auc(X, y)
    sampled = pair_auc(X, y, max_pairs=2000, random_state=1)
    assert abs(exact - sampled) < 0.05


def test_retrieval_at_k_hand_computed():
    X = np.array([[1, 0], [0.9, 0.1], [0.8, 0.2], [0, 1], [0.1, 0.9]], np.float32)
    y = np.array([0, 0, 0, 1, 1])
    r = retrieval_at_k(X, y, k=2)
    # items 0,1,2 find the other two class-0 items; 3 and 4 find each other + one class-0 item
    assert r["precision"] == pytest.approx((1 + 1 + 1 + 0.5 + 0.5) / 5)
    assert r["recall"] == pytest.approx(1.0)
    assert r["hit_rate"] == 1.0


def test_hamming_metric_matches_bits():
    bits = np.array([[1, 1, 0, 0], [1, 1, 0, 1], [0, 0, 1, 1]], bool)
    S = similarity_matrix(bits, "hamming")
    assert S[0, 1] == pytest.approx(0.75) and S[0, 2] == pytest.approx(0.0)
    packed = np.packbits(np.pad(bits, ((0, 0), (0, 4))), axis=1)  # 8 bits, 4 always equal
    assert similarity_matrix(packed, "hamming")[0, 1] == pytest.approx(7 / 8)
    assert pair_auc(bits, np.array([0, 0, 1]), metric="hamming") == 1.0


@pytest.mark.parametrize(
    "X, y, kw, err",
    [
        (np.zeros((3, 2)), np.zeros(4), {}, "labels"),
        (np.zeros(3), np.zeros(3), {}, "2-D"),
        (np.zeros((3, 2)), np.zeros(3), {"metric": "l1"}, "metric"),
        (np.zeros((3, 2)), np.zeros(3), {}, "same-label and different-label"),
    ],
)
def test_metric_invalid_inputs(X, y, kw, err):
    with pytest.raises(ValueError, match=err):
        pair_auc(X, y, **kw)


def test_retrieval_k_bounds():
    with pytest.raises(ValueError, match="k must be"):
        retrieval_at_k(np.eye(3), np.array([0, 0, 1]), k=3)


# ------------------------------------------------------------------ projection


@pytest.mark.parametrize("method", ["lda", "linear", "mlp"])
@pytest.mark.parametrize("output", ["embedding", "posterior", "hybrid"])
def test_projection_shapes(method, output):
    X, y = clusters()
    p = CatalogProjection(method=method, output=output, n_components=8, hidden=32, epochs=5).fit(X, y)
    Z = p.transform(X[:7])
    k = 3 if method == "lda" else 8  # LDA: at most n_classes - 1
    assert Z.shape == (7, {"embedding": k, "posterior": 4, "hybrid": k + 4}[output]) == (7, p.dim_)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-5)
    P = p.predict_proba(X[:7])
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-5)
    assert set(p.predict(X)) <= set(y)


@pytest.mark.parametrize("method", ["lda", "linear", "mlp"])
def test_projection_separates_unseen_points(method):
    X, y = clusters(n_per=60, seed=1)
    Xt, yt = clusters(n_per=60, seed=1)[0][1::2], y[1::2]  # odd rows held out
    Xf, yf = X[0::2], y[0::2]
    p = CatalogProjection(method=method, n_components=16, hidden=64, epochs=40, temperature=0.1).fit(Xf, yf)
    raw = pair_auc(Xt, yt)
    got = pair_auc(p.transform(Xt), yt)
    # measured: raw 0.78; lda 0.985, linear 0.95, mlp 0.98
    assert raw < 0.8 and got > 0.94, (raw, got)
    assert retrieval_at_k(p.transform(Xt), yt, 5)["precision"] > 0.85
    assert (p.predict(Xt) == yt).mean() > 0.85


def test_projection_training_reduces_loss_and_is_seeded():
    X, y = clusters()
    a = CatalogProjection(method="mlp", n_components=8, hidden=32, epochs=20, random_state=3).fit(X, y)
    b = CatalogProjection(method="mlp", n_components=8, hidden=32, epochs=20, random_state=3).fit(X, y)
    assert a.loss_curve_[-1] < a.loss_curve_[0]
    np.testing.assert_array_equal(a.transform(X), b.transform(X))


@pytest.mark.parametrize("method", ["lda", "linear", "mlp"])
def test_projection_save_load_round_trip(tmp_path, method):
    X, y = clusters()
    labels = np.array(["shirt", "shoe", "hat", "bag"])[y]
    p = CatalogProjection(method=method, n_components=8, hidden=16, epochs=3, output="hybrid").fit(X, labels)
    path = p.save(tmp_path / "proj.npz")
    q = CatalogProjection.load(path)
    np.testing.assert_array_equal(p.transform(X), q.transform(X))
    assert q.get_params() == p.get_params()
    assert list(q.predict(X[:5])) == list(p.predict(X[:5]))


def test_projection_errors():
    X, y = clusters()
    with pytest.raises(RuntimeError, match="not fitted"):
        CatalogProjection().transform(X)
    for kw, msg in [({"method": "svm"}, "method"), ({"output": "logits"}, "output"),
                    ({"temperature": 0}, "temperature"), ({"input_dropout": 1.0}, "dropout"),
                    ({"posterior_weight": 2}, "posterior_weight")]:
        with pytest.raises(ValueError, match=msg):
            CatalogProjection(**kw).fit(X, y)
    with pytest.raises(ValueError, match="2 distinct labels"):
        CatalogProjection().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="NaN"):
        CatalogProjection().fit(np.full_like(X, np.nan), y)
    p = CatalogProjection(method="lda").fit(X, y)
    with pytest.raises(ValueError, match="X must be"):
        p.transform(X[:, :5])


# ------------------------------------------------------------------ PCA


def test_pca_matches_svd_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(300, 10)) * np.arange(10, 0, -1)).astype(np.float32)
    pca = PCA(3, normalize=False).fit(X)
    _, s, vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    np.testing.assert_allclose(np.abs(pca.components_), np.abs(vt[:3]), atol=1e-4)
    np.testing.assert_allclose(pca.explained_variance_, s[:3] ** 2 / 299, rtol=1e-4)
    assert np.all(np.diff(pca.explained_variance_) <= 0)
    Z = PCA(3).fit_transform(X)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1, atol=1e-5)
    q = PCA.load(pca.save(tmp_path / "pca"))
    np.testing.assert_array_equal(q.transform(X), pca.transform(X))
    with pytest.raises(ValueError):
        PCA(11).fit(X)
    with pytest.raises(RuntimeError):
        PCA(2).transform(X)


def test_evaluate_embeddings_keys():
    X, y = clusters(n_per=10)
    r = evaluate_embeddings(X, y, k=3)
    assert set(r) == {"auc", "precision", "recall", "hit_rate", "k"}
