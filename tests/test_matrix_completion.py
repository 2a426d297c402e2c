"""Matrix completion on the packed engine: the one-hot encoding computes U^T V and the masked
squared loss, and gradient descent from a small initialization finds the minimum nuclear-norm
completion (compared with cvxpy + SCS, an optional dependency)."""
import numpy as np
import pytest

import pyireg
from pyireg.experiments import matrix_completion as MC


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are a few hundred microseconds of work per step: one native thread, since
    waking a second costs more than it saves on a busy machine (conftest restores the count)."""
    pyireg.set_num_threads(1)


def test_problem_has_the_asked_rank_and_number_of_observed_entries():
    p = MC.make_problem(12, 3, 50, n2=9, seed=4)
    assert p.M.shape == (12, 9) and p.observed == 50
    assert np.linalg.matrix_rank(p.M) == 3
    assert set(np.unique(p.mask)) == {0.0, 1.0}
    with pytest.raises(ValueError, match="observed: expected at most"):
        MC.make_problem(4, 1, 17)
    with pytest.raises(ValueError, match="rank: expected at most"):
        MC.make_problem(4, 5)


def test_one_hot_rows_give_the_completion_and_the_masked_loss():
    p = MC.make_problem(15, 2, 70, n2=11, seed=1)
    model = pyireg.PackedMLP([2, 5, 15], 15, 11, activation="linear", loss="squared", init_std=0.7, seed=0,
                             dtype="float64")
    got = MC.completions(model)
    loss = model.evaluate(np.eye(15), p.target, p.mask)[1]
    for i in range(model.num_networks):
        U, V = model.network(i)
        np.testing.assert_allclose(got[i], U.T @ V, rtol=1e-12, atol=1e-14)
        # 1/(2 n1) sum over observed entries: unobserved entries cost nothing
        ref = 0.5 * np.sum(p.mask * (U.T @ V - p.M) ** 2) / 15
        np.testing.assert_allclose(loss[i], ref, rtol=1e-12)


def test_gradient_descent_interpolates_the_observed_entries_at_every_scale_and_width():
    p = MC.make_problem(20, 2, 240, seed=0)
    model, grid, loss = MC.fit_by_gradient_descent(p, [2, 20], [0.3, 1e-6], iters=3000)
    G = MC.completions(model)
    scale = np.abs(p.M).max()
    for g in G:
        assert np.abs(p.mask * (g - p.M)).max() < 1e-4 * scale


def test_small_initialization_finds_the_minimum_nuclear_norm_completion():
    pytest.importorskip("cvxpy", reason="cvxpy is an optional dependency (pip install 'pyireg[convex]')")
    # 6 n r of the 400 entries: enough for the convex program to find a completion
    p = MC.make_problem(20, 2, 240, seed=0)
    Mc, nuc_min = MC.min_nuclear_norm_completion(p)
    # the solver's completion is feasible and no larger in nuclear norm than M (also feasible)
    assert np.abs(p.mask * (Mc - p.M)).max() < 1e-6 * np.abs(p.M).max()
    assert nuc_min <= MC.nuclear_norm(p.M) * (1 + 1e-7)
    model, grid, loss = MC.fit_by_gradient_descent(p, [20], [0.3, 1e-6], iters=3000)
    nuc = np.array([MC.nuclear_norm(g) for g in MC.completions(model)])
    dist = np.array([np.linalg.norm(g - Mc) / np.linalg.norm(Mc) for g in MC.completions(model)])
    big, small = 0, 1
    # From scale 1e-6 the completion's nuclear norm is that of the convex optimum up to SCS's
    # accuracy (1e-9) and what 3,000 steps leave of the fit (loss ~1e-11, i.e. entries off by
    # ~1e-5 relative): 1e-4 is an order of magnitude above both. From scale 0.3 the full-width
    # network keeps a part of its random start, which has a large nuclear norm.
    assert nuc[small] / nuc_min - 1 < 1e-4, nuc / nuc_min
    assert dist[small] < 1e-3, dist
    assert nuc[big] / nuc_min > 1.1, nuc / nuc_min
    assert dist[big] > 0.1, dist
