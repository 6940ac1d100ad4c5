import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring import kmeans, knn, knn_recall, near_duplicates, normalize, typicality, uniqueness


def brute_force_knn(x: np.ndarray, k: int, center: bool):
    """Reference: full cosine distance matrix in numpy, self removed by index."""
    z = x - x.mean(axis=0) if center else x.copy()
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    d = 1 - z @ z.T
    np.fill_diagonal(d, np.inf)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, 1), idx


def clustered(n: int, d: int, n_centers: int, seed: int, noise: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_centers, d))
    return (centers[rng.integers(0, n_centers, n)] + noise * rng.normal(size=(n, d))).astype(
        np.float32
    )


@pytest.mark.parametrize("center", [False, True])
def test_exact_knn_matches_numpy_reference(center):
    x = np.random.default_rng(1).normal(size=(400, 24)).astype(np.float32)
    got = knn(x, 5, center=center)
    ref_d, ref_i = brute_force_knn(x.astype(np.float64), 5, center)
    assert got.exact
    np.testing.assert_allclose(got.distances, ref_d, atol=1e-5)
    assert knn_recall(got.indices, ref_i) == 1.0
    assert not np.any(got.indices == np.arange(400)[:, None])


def test_self_excluded_exactly_once_with_duplicates():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    x[10] = x[20]
    x[30] = x[31] = x[32] = x[33] = x[34]  # five identical rows
    nb = knn(x, 3)
    assert nb.indices[10, 0] == 20 and nb.distances[10, 0] == pytest.approx(0, abs=1e-6)
    assert nb.indices[20, 0] == 10
    for i in range(30, 35):
        others = set(range(30, 35)) - {i}
        assert set(nb.indices[i].tolist()) <= others
        np.testing.assert_allclose(nb.distances[i], 0, atol=1e-6)


def test_exact_duplicate_pair_is_least_unique():
    x = np.random.default_rng(3).normal(size=(300, 32))
    x[7] = x[123]
    u = uniqueness(x, k=3)
    assert set(np.argsort(u)[:2].tolist()) == {7, 123}
    assert u.max() == pytest.approx(1.0)
    assert np.all((u >= 0) & (u <= 1))


def test_outlier_is_most_unique():
    x = clustered(500, 16, 5, seed=4, noise=0.1)
    x[42] = np.random.default_rng(9).normal(size=16) * 10
    assert np.argmax(uniqueness(x, k=3)) == 42


@settings(max_examples=25, deadline=None)
@given(st.integers(5, 60), st.integers(2, 12), st.integers(1, 4), st.integers(0, 10_000))
def test_uniqueness_properties(n, d, k, seed):
    k = min(k, n - 1)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    u = uniqueness(x, k=k)
    assert u.shape == (n,) and np.all((u >= 0) & (u <= 1 + 1e-9))
    perm = rng.permutation(n)
    np.testing.assert_allclose(uniqueness(x[perm], k=k), u[perm], atol=1e-5)
    x2 = np.vstack([x, x[:1]])  # duplicate row 0: it and its copy become least unique
    u2 = uniqueness(x2, k=k)
    assert u2[0] <= u2.min() + 1e-6 and u2[-1] <= u2.min() + 1e-6


def test_approximate_index_recall_on_clustered_data():
    x = clustered(20_000, 64, 50, seed=5)
    approx = knn(x, 3, exact_threshold=5_000)
    assert not approx.exact
    sample = np.random.default_rng(0).choice(x.shape[0], 2_000, replace=False)
    exact = knn(x, 3, exact_threshold=10**9)
    assert exact.exact
    recall = knn_recall(approx.indices[sample], exact.indices[sample])
    assert recall >= 0.95, f"IVF recall@3 {recall:.3f}"


def test_validation_errors():
    x = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(ValueError, match="smaller than the number of items"):
        knn(x, 5)
    with pytest.raises(ValueError, match=">= 1"):
        knn(x, 0)
    bad = x.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        uniqueness(bad)
    with pytest.raises(ValueError, match="2-D"):
        uniqueness(x[0])
    with pytest.raises(ValueError, match="at least 1 rows"):
        uniqueness(np.zeros((0, 3)))


def test_near_duplicates_groups():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(200, 16))
    x[50] = x[10] + 1e-4
    x[90] = x[10] - 1e-4
    x[150] = x[60]
    groups = near_duplicates(x, threshold=0.001)
    assert [g.tolist() for g in groups] == [[10, 50, 90], [60, 150]]
    with pytest.raises(ValueError, match="cosine distance"):
        near_duplicates(x, threshold=3)


def test_typicality_prefers_dense_regions():
    rng = np.random.default_rng(7)
    dense = rng.normal(size=(100, 8)) * 0.05 + 1
    sparse = rng.normal(size=(10, 8)) * 3
    t = typicality(np.vstack([dense, sparse]), k=5, center=False)
    assert t[:100].mean() > t[100:].mean()
    assert t.max() == pytest.approx(1.0)


def test_kmeans_deterministic_and_recovers_clusters():
    x = clustered(2_000, 16, 4, seed=8, noise=0.05)
    a1, c1 = kmeans(x, 4, seed=1)
    a2, _ = kmeans(x, 4, seed=1)
    np.testing.assert_array_equal(a1, a2)
    assert c1.shape == (4, 16) and len(np.unique(a1)) == 4


def test_normalize_keeps_zero_rows():
    z = normalize(np.array([[0.0, 0.0], [3.0, 4.0]]))
    np.testing.assert_allclose(z, [[0, 0], [0.6, 0.8]])
