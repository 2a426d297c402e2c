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


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("seed", [0, 1, 2, 4, 5])
def test_at_6_n_r_observations_small_initialization_recovers_the_truth_not_always_the_convex_optimum(seed):
    """n = 20, rank 2, 240 of 400 entries (6 n r). Gradient descent from scale 1e-6 finds the
    rank-2 truth on every seed (error 2e-6 - 8e-5 after 3,000 steps). The minimum nuclear-norm
    completion (SCS) is the truth on seeds 0 and 5 only; on seeds 1, 2 and 4 it has rank 3 and
    is 0.013 - 0.029 away from it, a nuclear norm 1e-4 - 4e-4 below the truth's. (Seed 3, where
    the convex solution is 0.157 away, is left out because SCS takes 18 s there; the numbers of
    all six seeds are in docs/tutorial-extra.md.)"""
    pytest.importorskip("cvxpy", reason="cvxpy is an optional dependency (pip install 'pyireg[convex]')")
    p = MC.make_problem(20, 2, 240, seed=seed)
    Mc, nuc_min = MC.min_nuclear_norm_completion(p)
    # the solver's completion is feasible and no larger in nuclear norm than M (also feasible)
    assert np.abs(p.mask * (Mc - p.M)).max() < 1e-6 * np.abs(p.M).max()
    assert nuc_min <= MC.nuclear_norm(p.M) * (1 + 1e-7)
    model, grid, loss = MC.fit_by_gradient_descent(p, [20, 2], [0.3, 1e-6], iters=3000, seed=seed)
    G = MC.completions(model)
    full_small = [i for i, (s, w) in enumerate(grid) if s == 1e-6 and w == 20][0]
    full_big = [i for i, (s, w) in enumerate(grid) if s == 0.3 and w == 20][0]
    g = G[full_small]
    assert _rel(g, p.M) < 1e-3                                   # the truth
    assert MC.numerical_rank(g) == 2
    assert abs(MC.nuclear_norm(g) / MC.nuclear_norm(p.M) - 1) < 1e-4
    # the convex optimum is never farther from g than from the truth, to within the fit
    assert abs(_rel(g, Mc) - _rel(p.M, Mc)) < 1e-3
    # from scale 0.3 the full-width network keeps a part of its random start
    assert MC.nuclear_norm(G[full_big]) / nuc_min > 1.1 and _rel(G[full_big], p.M) > 0.1


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_below_exact_recovery_small_initialization_is_not_the_minimum_nuclear_norm_completion(seed):
    """n = 20, rank 2, 100 of 400 entries (2.5 n r: too few for the convex program to recover M;
    its completion has rank 6-7 and is 0.42-0.61 from M on seeds 0-9). Gradient descent from
    scale 1e-6 interpolates the observed entries but is not the minimum nuclear-norm completion:
    on seeds 0-9 its nuclear norm is 1.067-1.155 times the minimum, it is 0.39-0.72 away from
    the convex solution and it has lower rank (4-6 against 6-7). It is not reliably closer to
    M either (0.16-0.77 against the convex 0.42-0.61: closer on 8 of 10 seeds), so that is not
    asserted. What is asserted holds on each of the six seeds tested with a margin."""
    pytest.importorskip("cvxpy", reason="cvxpy is an optional dependency (pip install 'pyireg[convex]')")
    p = MC.make_problem(20, 2, 100, seed=seed)
    Mc, nuc_min = MC.min_nuclear_norm_completion(p)
    assert np.abs(p.mask * (Mc - p.M)).max() < 1e-6 * np.abs(p.M).max()
    assert _rel(Mc, p.M) > 0.4                                   # the convex program does not recover M
    model, grid, loss = MC.fit_by_gradient_descent(p, [20], [1e-6], iters=10000, seed=seed)
    g = MC.completions(model)[0]
    assert np.abs(p.mask * (g - p.M)).max() < 1e-3 * np.abs(p.M).max()    # it interpolates
    assert MC.nuclear_norm(g) / nuc_min > 1.05                   # but not at the least nuclear norm
    assert _rel(g, Mc) > 0.35
    assert MC.numerical_rank(g) < MC.numerical_rank(Mc)
