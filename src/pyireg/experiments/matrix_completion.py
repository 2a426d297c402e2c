"""Matrix completion by gradient descent on a factorization, on the packed engine: the implicit
bias of Section 3 of the paper and of the tutorial, which says that gradient descent on U and V
initialized near zero finds the minimum nuclear-norm solution. Measured here (n = 20, rank 2,
docs/tutorial-extra.md), that holds only where both recover the truth. With 6 n r observed
entries, GD from scale 1e-6 finds the rank-2 truth on every seed tried (0-5), while the convex
minimum is the truth on seeds 0 and 5 only (0.013-0.157 away from it elsewhere). With 2.5 n r,
too few for the convex program to recover M, GD interpolates but is not the convex minimum: its
nuclear norm is 1.07-1.16 times the least one, its rank is lower (4-6 against 6-7), and it is
0.39-0.72 away from the convex solution (seeds 0-9). The tests assert exactly this.

A matrix M (n1 x n2) seen on a subset of its entries is fitted by two-layer linear networks
with d = n1 inputs and k = n2 outputs: the input of row i is the one-hot vector e_i and its
target is row i of M, so network n's prediction is the matrix U_n^T V_n (n1 x n2), of rank at
most its width. The loss is the engine's squared loss weighted by the 0/1 mask of observed
entries, 1/(2 n1) sum over observed (i, j) of (U^T V - M)_ij^2, and every network takes
full-batch gradient descent steps (MomentumSGD with momentum 0, no weight decay). One packed
model holds every (initialization scale, width) pair.

The reference is the minimum nuclear-norm completion, min ||X||_tr subject to X_ij = M_ij on
the observed entries, solved by cvxpy with SCS (the optional ``convex`` extra:
``pip install "pyireg[convex]"``).
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from .._validate import positive_int
from ..model import PackedMLP
from ..optim import MomentumSGD
from ._common import DemoResult, num_threads, pyplot, save_figure


@dataclasses.dataclass
class CompletionProblem:
    M: np.ndarray       # (n1, n2) the true matrix
    mask: np.ndarray    # (n1, n2) 1.0 where observed, 0.0 elsewhere
    rank: int
    seed: int

    @property
    def observed(self) -> int:
        return int(self.mask.sum())

    @property
    def target(self) -> np.ndarray:
        """M on the observed entries, 0 elsewhere (what the networks and the solver see)."""
        return self.mask * self.M


def make_problem(n=50, rank=5, observed=None, *, n2=None, seed=0) -> CompletionProblem:
    """M = A B^T / sqrt(rank) with A (n x rank), B (n2 x rank) standard Gaussian (entries of
    variance 1), observed on ``observed`` entries drawn uniformly without replacement (default
    3 n rank)."""
    n = positive_int(n, "n")
    n2 = n if n2 is None else positive_int(n2, "n2")
    rank = positive_int(rank, "rank")
    if rank > min(n, n2):
        raise ValueError(f"rank: expected at most min(n, n2) = {min(n, n2)}, got {rank}")
    observed = 3 * n * rank if observed is None else positive_int(observed, "observed")
    if observed > n * n2:
        raise ValueError(f"observed: expected at most n * n2 = {n * n2} entries, got {observed}")
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, rank)) @ rng.standard_normal((n2, rank)).T / np.sqrt(rank)
    mask = np.zeros(n * n2)
    mask[rng.choice(n * n2, observed, replace=False)] = 1.0
    return CompletionProblem(M, mask.reshape(n, n2), rank, seed)


def fit_by_gradient_descent(problem: CompletionProblem, widths, init_scales, *, lr=0.4, iters=10000, seed=0,
                            dtype="float64"):
    """Full-batch gradient descent from N(0, scale^2) entries in both layers, for every pair of
    ``init_scales`` x ``widths`` at once (one packed model; network order: scale-major).

    ``lr`` is relative: the step is lr * n1 / ||mask * M||_2, because the loss averages over
    the n1 rows and the curvature at a completion grows with the observed matrix's largest
    singular value; lr = 0.4 is stable for every problem tried here. Returns (model, grid of
    (scale, width), final loss per network)."""
    widths = [positive_int(w, "widths") for w in widths]
    scales = [float(s) for s in init_scales]
    if not scales or min(scales) <= 0:
        raise ValueError(f"init_scales: expected positive numbers, got {list(init_scales)}")
    grid = [(s, w) for s in scales for w in widths]
    n1, n2 = problem.M.shape
    model = PackedMLP([w for _, w in grid], n1, n2, activation="linear", loss="squared",
                      init_std=np.array([s for s, _ in grid]), seed=seed, dtype=dtype)
    Y = problem.target
    step = float(lr) * n1 / np.linalg.norm(Y, 2)
    opt = MomentumSGD(model, step, 0.0)
    X = np.eye(n1)
    for _ in range(int(iters)):
        opt.step(X, Y, problem.mask)
    return model, grid, model.evaluate(X, Y, problem.mask)[1]


def completions(model: PackedMLP) -> np.ndarray:
    """Every network's completed matrix U_n^T V_n: its outputs on the one-hot rows, (N, n1, n2)."""
    return model.forward(np.eye(model.in_features)).astype(np.float64)


def nuclear_norm(M) -> float:
    return float(np.linalg.svd(np.asarray(M, dtype=np.float64), compute_uv=False).sum())


def min_nuclear_norm_completion(problem: CompletionProblem, *, solver="SCS", eps=1e-9, max_iters=100000):
    """min ||X||_tr subject to X = M on the observed entries, by cvxpy. ``solver``: "SCS" (a
    first-order conic solver, accuracy ``eps``, at most ``max_iters`` iterations; fast on the
    n = 50 problems here, slow on some small degenerate ones) or "CLARABEL" (interior point,
    accurate to about 1e-8, its time grows quickly with n). Returns (X, ||X||_tr)."""
    try:
        import cvxpy as cp
    except ImportError as e:   # pragma: no cover - depends on the environment
        raise ImportError("min_nuclear_norm_completion needs cvxpy: pip install 'pyireg[convex]'") from e
    X = cp.Variable(problem.M.shape)
    prob = cp.Problem(cp.Minimize(cp.normNuc(X)), [cp.multiply(problem.mask, X) == problem.target])
    if solver == "SCS":
        prob.solve(solver="SCS", eps_abs=eps, eps_rel=eps, max_iters=max_iters)
    elif solver == "CLARABEL":
        prob.solve(solver="CLARABEL")
    else:
        raise ValueError(f"solver: expected 'SCS' or 'CLARABEL', got {solver!r}")
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"{solver} did not solve the nuclear-norm completion: status {prob.status}")
    return np.asarray(X.value), nuclear_norm(X.value)


def numerical_rank(M, rtol=1e-3) -> int:
    s = np.linalg.svd(M, compute_uv=False)
    return int(np.sum(s > rtol * s[0]))


def compare(problem: CompletionProblem, model: PackedMLP, grid, loss, convex):
    """One row per network: its loss, nuclear norm against the minimum, error to M and distance
    to the convex solution (relative Frobenius norms)."""
    Mc, nuc_min = convex
    M = problem.M
    rows = []
    for (scale, w), Mg, l in zip(grid, completions(model), loss):
        rows.append({"observed": problem.observed, "init_scale": scale, "H": w, "loss": l,
                     "nuclear_norm": nuclear_norm(Mg), "nuclear / minimum": nuclear_norm(Mg) / nuc_min,
                     "error": np.linalg.norm(Mg - M) / np.linalg.norm(M),
                     "convex error": np.linalg.norm(Mc - M) / np.linalg.norm(M),
                     "distance to convex": np.linalg.norm(Mg - Mc) / np.linalg.norm(Mc),
                     "rank": numerical_rank(Mg)})
    return rows


def demo(out, *, n=50, rank=5, observed_factors=(3, 6), init_scales=(1e-1, 3e-2, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6),
         widths=None, iters=10000, lr=0.4, seed=0, threads=1, solver="SCS") -> DemoResult:
    """For each number of observed entries (a multiple of n * rank): gradient descent from every
    init scale x width (one packed model) against the minimum nuclear-norm completion."""
    import pandas as pd
    t0 = time.perf_counter()
    widths = list(widths) if widths is not None else sorted({rank, 2 * rank, n // 2, n})
    rows, convex_err = [], {}
    for f in observed_factors:
        problem = make_problem(n, rank, int(round(f * n * rank)), seed=seed)
        convex = min_nuclear_norm_completion(problem, solver=solver)
        with num_threads(threads):
            model, grid, loss = fit_by_gradient_descent(problem, widths, init_scales, lr=lr, iters=iters, seed=seed)
        part = compare(problem, model, grid, loss, convex)
        for r in part:
            r["observed / (n r)"] = f
        rows += part
        convex_err[f] = part[0]["convex error"]
    table = pd.DataFrame(rows)[["observed / (n r)", "observed", "init_scale", "H", "loss", "nuclear_norm",
                                "nuclear / minimum", "error", "convex error", "distance to convex", "rank"]]

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = ["--", "-", ":", "-."]
    floor = 1e-8      # about the convex solver's accuracy: smaller values are drawn at the floor
    for j, f in enumerate(observed_factors):
        t = table[table["observed / (n r)"] == f]
        for c, w in enumerate(widths):
            tw = t[t["H"] == w]
            kw = dict(color=f"C{c}", ls=styles[j % 4], marker="o", ms=3)
            axes[0].loglog(tw["init_scale"], np.maximum(np.abs(tw["nuclear / minimum"] - 1), floor),
                           label=f"{f:g} n r observed, H={w}", **kw)
            axes[1].loglog(tw["init_scale"], np.maximum(tw["error"], floor), **kw)
        axes[1].axhline(max(convex_err[f], floor), color="k", ls=styles[j % 4], lw=1,
                        label=f"min nuclear norm (convex), {f:g} n r observed")
    for ax in axes:
        ax.set_ylim(bottom=floor / 2)
    axes[0].set_xlabel("initialization scale (std of every weight)")
    axes[0].set_ylabel(f"|nuclear norm / minimum - 1|  (floor {floor:g})")
    axes[0].set_title(f"GD on U, V: n={n}, rank {rank}")
    axes[0].legend(fontsize=6, ncol=2)
    axes[1].set_xlabel("initialization scale (std of every weight)")
    axes[1].set_ylabel(f"||completion - M||_F / ||M||_F  (floor {floor:g})")
    axes[1].set_title("error to the true matrix")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.invert_xaxis()
    fig_path = save_figure(fig, out / "matrix-completion.png")

    summary = []
    smin, smax = min(init_scales), max(init_scales)
    for f in observed_factors:
        t = table[table["observed / (n r)"] == f]
        lo, hi = t[t["init_scale"] == smin], t[t["init_scale"] == smax]
        summary.append(
            f"{f:g} n r = {int(t['observed'].iloc[0])} observed entries: the convex completion's error to M is "
            f"{convex_err[f]:.2g}. Init scale {smax:g}: nuclear norm / minimum {hi['nuclear / minimum'].min():.4f} - "
            f"{hi['nuclear / minimum'].max():.4f}, error {hi['error'].min():.2g} - {hi['error'].max():.2g}; "
            f"init scale {smin:g}: nuclear norm / minimum {lo['nuclear / minimum'].min():.6f} - "
            f"{lo['nuclear / minimum'].max():.6f}, error {lo['error'].min():.2g} - {lo['error'].max():.2g}, "
            f"distance to the convex solution {lo['distance to convex'].min():.2g} - "
            f"{lo['distance to convex'].max():.2g} (widths {widths}).")
    return DemoResult("matrix-completion", table, fig_path, summary, time.perf_counter() - t0)
