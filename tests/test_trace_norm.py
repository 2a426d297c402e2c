"""Section 3 of the paper: a linear network is a matrix factorization W = V^T U, and
||W||_tr <= group_l1 <= l2_penalty with equality at the SVD factorization (Eq. 3) and at every
stationary point of weight-decay training."""
import numpy as np
import pytest

import pyireg
from pyireg.experiments import trace_norm as TN


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are a few hundred microseconds of work per step: one native thread, since
    waking a second costs more than it saves on a busy machine (conftest restores the count)."""
    pyireg.set_num_threads(1)

# float64 sums of a few dozen products: relative rounding well below 1e-12
EXACT64 = 1e-12


def _orthonormal(rng, n, r):
    return np.linalg.qr(rng.standard_normal((n, r)))[0]


def _known_matrix(rng, k, d, s):
    """W = P diag(s) Q^T with the given singular values."""
    return _orthonormal(rng, k, len(s)) @ np.diag(s) @ _orthonormal(rng, d, len(s)).T


def test_trace_norm_is_the_sum_of_known_singular_values():
    rng = np.random.default_rng(0)
    widths, Us, Vs, expected = [], [], [], []
    for k, d, s in ((4, 7, [3.0, 1.0, 0.25]), (9, 2, [5.0, 0.5]), (1, 5, [2.0]), (6, 6, [1.0] * 6)):
        W = _known_matrix(rng, k, d, np.array(s))
        U, V = TN.svd_factorization(W)
        # any other factorization of the same W: U -> A U, V -> A^-T V
        A = rng.standard_normal((U.shape[0], U.shape[0])) + 3 * np.eye(U.shape[0])
        Us.append(A @ U), Vs.append(np.linalg.inv(A).T @ V), widths.append(U.shape[0])
        expected.append(sum(s))
    # networks must share d and k to be packed: pad each to the largest shape with zeros
    d, k = max(u.shape[1] for u in Us), max(v.shape[1] for v in Vs)
    U = np.vstack([np.pad(u, ((0, 0), (0, d - u.shape[1]))) for u in Us])
    V = np.vstack([np.pad(v, ((0, 0), (0, k - v.shape[1]))) for v in Vs])
    model = pyireg.PackedMLP.from_weights(widths, U, V, activation="linear", loss="squared")
    np.testing.assert_allclose(TN.trace_norm(model), expected, rtol=1e-6)   # float32 weights
    model64 = pyireg.PackedMLP.from_weights(widths, U, V, activation="linear", loss="squared", dtype="float64")
    np.testing.assert_allclose(TN.trace_norm(model64), expected, rtol=1e-11)


@pytest.mark.parametrize("dtype, rtol", [("float64", EXACT64), ("float32", 2e-6)])
def test_svd_factorization_has_l2_penalty_equal_group_l1_equal_trace_norm(dtype, rtol):
    rng = np.random.default_rng(1)
    d, k = 10, 7
    mats, widths, Us, Vs = [], [], [], []
    for rank, pad in ((1, 0), (3, 0), (7, 0), (4, 5)):     # low rank, full rank (k < d), zero units padded
        W = rng.standard_normal((k, rank)) @ rng.standard_normal((rank, d))
        U, V = TN.svd_factorization(W, width=min(k, d) + pad)
        np.testing.assert_allclose(V.T @ U, W, atol=1e-12 * np.abs(W).max())
        mats.append(W), widths.append(U.shape[0]), Us.append(U), Vs.append(V)
    model = pyireg.PackedMLP.from_weights(widths, np.vstack(Us), np.vstack(Vs), activation="linear",
                                          loss="squared", dtype=dtype)
    m = model.measures()
    ref = np.array([np.linalg.svd(W, compute_uv=False).sum() for W in mats])
    np.testing.assert_allclose(m["l2_penalty"], ref, rtol=rtol)
    np.testing.assert_allclose(m["group_l1"], ref, rtol=rtol)
    np.testing.assert_allclose(TN.trace_norm(model), ref, rtol=rtol)


@pytest.mark.parametrize("seed", range(4))
def test_any_factorization_l2_penalty_ge_group_l1_ge_trace_norm(seed):
    rng = np.random.default_rng(seed)
    d, k = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    widths = [1, 2, 3, min(d, k), max(d, k) + 3, 40]
    S = sum(widths)
    # rows of very different scales, so the layers start far from balanced
    U = rng.standard_normal((S, d)) * np.exp(rng.uniform(-2, 2, (S, 1)))
    V = rng.standard_normal((S, k)) * np.exp(rng.uniform(-2, 2, (S, 1)))
    model = pyireg.PackedMLP.from_weights(widths, U, V, activation="linear", loss="squared", dtype="float64")
    before = model.measures()
    tr = TN.trace_norm(model)
    assert np.all(before["l2_penalty"] >= before["group_l1"])
    model.balance()
    after = model.measures()
    np.testing.assert_allclose(after["l2_penalty"], after["group_l1"], rtol=EXACT64)
    np.testing.assert_allclose(after["group_l1"], before["group_l1"], rtol=EXACT64)   # invariant to rescaling
    np.testing.assert_allclose(TN.trace_norm(model), tr, rtol=1e-10)                  # same function
    assert np.all(after["group_l1"] >= tr * (1 - EXACT64))
    # one unit: ||u|| ||v|| is the trace norm of the rank-one v u^T; with more units it is
    # strictly larger unless the units happen to be aligned (not for random ones; one unit of
    # much larger scale than the others can bring it close, hence a margin far above rounding
    # rather than a large one)
    np.testing.assert_allclose(after["group_l1"][0], tr[0], rtol=EXACT64)
    assert np.all(after["group_l1"][1:] > tr[1:] * (1 + 1e-6))


def test_svd_factorization_refuses_a_width_below_the_rank():
    W = np.random.default_rng(0).standard_normal((4, 6))
    with pytest.raises(ValueError, match="width: expected at least the rank of W"):
        TN.svd_factorization(W, width=3)
    with pytest.raises(ValueError, match="W: expected a 2-d matrix"):
        TN.svd_factorization(np.ones(3))


def _weight_decay_problem():
    X, Y, _ = TN.regression_problem(n=60, d=6, k=4, rank=2, noise=0.3, seed=2)
    widths, lams = [1, 2, 3, 5, 8], [0.05, 0.5]
    grid = [(lam, w) for lam in lams for w in widths]
    model = pyireg.PackedMLP([w for _, w in grid], 6, 4, activation="linear", loss="squared", seed=0,
                             dtype="float64")
    return X, Y, model, np.array([lam for lam, _ in grid]), grid


def test_stationary_point_of_weight_decay_has_l2_penalty_equal_trace_norm():
    X, Y, model, lam, grid = _weight_decay_problem()
    gap0 = model.measures()["l2_penalty"] / TN.trace_norm(model) - 1
    assert np.all(gap0 > 1e-2)          # a random initialization is far from the identity
    iters, res, _ = TN.train_weight_decay(model, X, Y, lam, lr=0.05, momentum=0.9, max_iters=40000, tol=1e-11)
    assert np.all(res <= 1e-11), f"not stationary after {iters} steps: {res}"
    # At a stationary point lam (V V^T - U U^T) = R_V V^T - U R_U^T with R the residual, so the
    # layers are balanced as matrices (not only unit by unit) and ||W||_tr = ||U||_F^2 =
    # ||V||_F^2 exactly; a residual of 1e-11 leaves the identity exact far below 1e-8.
    gap = model.measures()["l2_penalty"] / TN.trace_norm(model) - 1
    np.testing.assert_array_less(np.abs(gap), 1e-8)


def test_wide_enough_weight_decay_networks_reach_the_convex_trace_norm_optimum():
    X, Y, model, lam, grid = _weight_decay_problem()
    TN.train_weight_decay(model, X, Y, lam, lr=0.05, momentum=0.9, max_iters=40000, tol=1e-11)
    obj = model.evaluate(X, Y)[1] + lam * model.measures()["l2_penalty"]
    for i, (la, w) in enumerate(grid):
        sol = TN.solve_trace_norm_regression(X, Y, la)
        if w >= sol.rank:
            # both are solved to a relative residual ~1e-11: their values agree to rounding
            assert abs(obj[i] / sol.objective - 1) < 1e-9, (la, w, obj[i], sol.objective)
        else:
            # a network narrower than the solution's rank cannot represent it
            assert obj[i] > sol.objective * (1 + 1e-4), (la, w, obj[i], sol.objective)
    assert any(w < TN.solve_trace_norm_regression(X, Y, la).rank for la, w in grid)   # both cases occur


@pytest.mark.parametrize("lam", [0.02, 0.3, 3.0])
def test_trace_norm_solver_meets_the_optimality_condition(lam):
    X, Y, _ = TN.regression_problem(n=50, d=7, k=5, rank=2, noise=0.5, seed=3)
    sol = TN.solve_trace_norm_regression(X, Y, lam)
    on, off = TN.trace_norm_optimality(sol.W, X, Y, lam)
    assert on < 1e-8 and off <= 1 + 1e-8, (on, off)
    # a slightly perturbed point violates it: the check can fail
    on_p, off_p = TN.trace_norm_optimality(sol.W * 1.01 + 1e-3, X, Y, lam)
    assert on_p > 1e-4 or off_p > 1 + 1e-4


def test_trace_norm_solver_agrees_with_cvxpy():
    cp = pytest.importorskip("cvxpy", reason="cvxpy is an optional dependency (pip install 'pyireg[convex]')")
    X, Y, _ = TN.regression_problem(n=50, d=7, k=5, rank=2, noise=0.5, seed=3)
    lam = 0.3
    sol = TN.solve_trace_norm_regression(X, Y, lam)
    W = cp.Variable((5, 7))
    obj = cp.sum_squares(X @ W.T - Y) / (2 * X.shape[0]) + lam * cp.normNuc(W)
    prob = cp.Problem(cp.Minimize(obj))
    prob.solve(solver="SCS", eps_abs=1e-10, eps_rel=1e-10, max_iters=100000)
    # SCS is a first-order conic solver: its objective is accurate to about its eps, relative
    assert sol.objective <= prob.value * (1 + 1e-6)
    assert abs(sol.objective / prob.value - 1) < 1e-5
    np.testing.assert_allclose(sol.W, W.value, atol=1e-3 * np.abs(sol.W).max())
