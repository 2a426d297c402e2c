"""The implicit bias of gradient descent in underdetermined least squares, on the packed engine
(a width-1 linear network whose output weight is held at 1)."""
import numpy as np
import pytest

import pyireg
from pyireg.experiments import min_norm as MN


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are a few hundred microseconds of work per step: one native thread, since
    waking a second costs more than it saves on a busy machine (conftest restores the count)."""
    pyireg.set_num_threads(1)

# The bar for "reaches the pseudo-inverse solution"; float64 runs get far below it.
REL = 1e-6


def _problem():
    X, y = MN.make_problem(n=15, p=60, seed=3)
    return X, y


def test_one_packed_step_is_a_gradient_step_on_theta():
    X, y = _problem()
    rng = np.random.default_rng(0)
    th0 = rng.standard_normal((3, X.shape[1]))
    lr, ridge = np.array([0.01, 0.02, 0.03]), np.array([0.0, 0.0, 0.5])
    got, _ = MN.gradient_descent(X, y, th0, lr=lr, ridge=ridge, iters=1)
    ref = th0 - lr[:, None] * ((X @ th0.T - y[:, None]).T @ X / len(y) + ridge[:, None] * th0)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_gradient_descent_from_zero_reaches_the_pseudo_inverse_solution(momentum):
    X, y = _problem()
    theta, _ = MN.gradient_descent(X, y, np.zeros((1, X.shape[1])), momentum=momentum, iters=3000)
    pinv = np.linalg.pinv(X) @ y
    assert np.linalg.norm(theta[0] - pinv) / np.linalg.norm(pinv) < REL
    # it interpolates, and every other interpolant is longer
    assert np.abs(X @ theta[0] - y).max() < 1e-9 * np.abs(y).max()


def test_gradient_descent_from_theta0_reaches_theta0_plus_the_minimum_norm_correction():
    X, y = _problem()
    rng = np.random.default_rng(1)
    th0 = rng.standard_normal((4, X.shape[1])) * np.array([[0.1], [1.0], [3.0], [10.0]])
    theta, _ = MN.gradient_descent(X, y, th0, iters=3000)
    pinv = np.linalg.pinv(X) @ y
    for t, s in zip(theta, th0):
        target = s + np.linalg.pinv(X) @ (y - X @ s)
        assert np.linalg.norm(t - target) / np.linalg.norm(target) < REL
        # ... which is not the minimum-norm solution: it keeps theta_0's null-space part
        null_part = s - np.linalg.pinv(X) @ (X @ s)
        np.testing.assert_allclose(np.linalg.norm(t - pinv), np.linalg.norm(null_part), rtol=REL)
        assert np.linalg.norm(t - pinv) > 0.05 * np.linalg.norm(pinv)


def test_ridge_meets_the_minimum_norm_solution_as_lambda_goes_to_zero():
    X, y = _problem()
    n = len(y)
    lams = np.array([1.0, 1e-2, 1e-4, 1e-6, 1e-8])
    pinv = np.linalg.pinv(X) @ y
    closed = np.vstack([MN.ridge_solution(X, y, lam) for lam in lams])
    # gradient descent on the ridge objective reaches the closed form (strongly convex: unique)
    gd, _ = MN.gradient_descent(X, y, np.zeros_like(closed), ridge=lams, iters=3000)
    np.testing.assert_allclose(gd, closed, rtol=0, atol=1e-10 * np.abs(closed).max())
    # ||theta_lam - X^+ y|| <= n lam / lambda_min(X X^T) ||X^+ y||: from the SVD, each component
    # of X^+ y is shrunk by s^2 / (s^2 + n lam)
    bound = n * lams / np.linalg.eigvalsh(X @ X.T).min()
    rel = np.linalg.norm(closed - pinv, axis=1) / np.linalg.norm(pinv)
    assert np.all(rel <= bound * (1 + 1e-9))
    assert np.all(rel >= 0.01 * bound)        # and the bound is of the right order: the gap is real
    assert rel[-1] < REL


def test_problem_must_be_underdetermined():
    with pytest.raises(ValueError, match="n: expected fewer samples than parameters"):
        MN.make_problem(n=10, p=10)
