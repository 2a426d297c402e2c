"""Random ReLU features -> the arc-cosine kernel: the kernel formula against Monte Carlo, and the
ridge predictions converging to kernel ridge regression as H grows."""
import numpy as np
import pytest

from pyireg import kernel_contrast as KC


def test_arccos_kernel_against_monte_carlo():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 3))
    A[1] = -A[0]                                    # an angle of pi
    U = rng.standard_normal((400000, 3))
    F = np.maximum(A @ U.T, 0)
    mc = F @ F.T / len(U)
    K = KC.arccos_kernel(A, A)
    np.testing.assert_allclose(K, mc, atol=0.02 * np.abs(K).max())
    assert abs(K[0, 1]) < 1e-12                      # opposite directions never both fire
    np.testing.assert_allclose(np.diag(K), (A ** 2).sum(1) / 2, rtol=1e-12)


def test_random_features_converge_to_the_kernel():
    rng = np.random.default_rng(1)
    X, Xt = rng.standard_normal((30, 4)), rng.standard_normal((20, 4))
    y = np.sign(X[:, 0] * X[:, 1])
    fk = KC.kernel_ridge(X, y, Xt, 1e-2)
    dist = [np.mean([np.abs(KC.random_features_ridge(X, y, Xt, H, 1e-2, seed=s) - fk).max() for s in range(3)])
            for H in (10, 100, 1000, 10000)]
    assert dist[0] > dist[1] > dist[2] > dist[3]
    assert dist[3] < 0.1 * dist[0]                 # about 1/sqrt(H): 30x fewer from 10 to 10^4


def test_kernel_contrast_table():
    rng = np.random.default_rng(2)
    X, Xt = rng.standard_normal((25, 2)), rng.standard_normal((40, 2))
    f = lambda Z: np.maximum(Z @ np.array([1.0, 0.5]), 0) - np.maximum(Z @ np.array([-0.3, 1.0]), 0)
    out = KC.kernel_contrast(X, f(X), Xt, f(Xt), lam=1e-3, widths=(10, 1000), seeds=2)
    assert [r["H"] for r in out["random_features"]] == [10, 1000]
    assert out["random_features"][1]["distance_to_kernel"] < out["random_features"][0]["distance_to_kernel"]
    assert out["l1_net_units"] >= 1 and np.isfinite(out["l1_net_test_mse"]) and np.isfinite(out["kernel_test_mse"])


def test_bad_input_is_refused_with_the_argument_named():
    """NaN came back as NaN predictions, lam = 0 with two equal samples raised a raw
    LinAlgError, a 2-d y a broadcast error, H = -1 numpy's negative dimensions."""
    rng = np.random.default_rng(0)
    X, y, Xt = rng.standard_normal((6, 2)), rng.standard_normal(6), rng.standard_normal((3, 2))
    bad = X.copy()
    bad[2, 0] = np.nan
    with pytest.raises(ValueError, match="X: contains NaN or inf"):
        KC.kernel_ridge(bad, y, Xt, 0.1)
    for lam in (-1.0, float("nan"), np.array([0.1, 0.2])):
        with pytest.raises(ValueError, match="lam: expected a finite number >= 0"):
            KC.kernel_ridge(X, y, Xt, lam)
    # lam = 0 is the ridgeless limit: fine for distinct samples, refused (not LinAlgError) for equal ones
    ridgeless = KC.kernel_ridge(X, y, Xt, 0.0)
    np.testing.assert_allclose(KC.kernel_ridge(X, y, X, np.float64(0.0)), y, atol=1e-8)   # interpolates
    with pytest.raises(ValueError, match="lam: 0.0 leaves the kernel matrix singular"):
        KC.kernel_ridge(np.vstack([X, X[:1]]), np.append(y, 5.0), Xt, 0.0)
    np.testing.assert_array_equal(KC.kernel_ridge(X, y[:, None], Xt, 0.0), ridgeless)        # y (n, 1) as (n,)
    with pytest.raises(ValueError, match=r"X, y: expected X \(n, d\) and y \(n,\)"):
        KC.kernel_ridge(X, np.ones((6, 2)), Xt, 0.1)
    with pytest.raises(ValueError, match=r"X_test: expected shape \(m, 2\), got \(3, 3\)"):
        KC.random_features_ridge(X, y, rng.standard_normal((3, 3)), 10, 0.1)
    with pytest.raises(ValueError, match="H: expected a positive integer, got -1"):
        KC.random_features_ridge(X, y, Xt, -1, 0.1)
    with pytest.raises(ValueError, match=r"y_test: expected 3 finite targets"):
        KC.kernel_contrast(X, y, Xt, np.zeros(4), widths=(10,), seeds=1)
