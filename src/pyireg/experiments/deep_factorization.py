"""Deep matrix factorization: matrix completion by gradient descent on depth-L linear
factorizations W_L ... W_1 (pyireg.deep.DeepLinear) from a small initialization, for L = 1..4,
against the minimum nuclear-norm completion (cvxpy). The tutorial says that depth strengthens
the low-rank bias; this demonstration measures the effective rank and the nuclear norm of what
gradient descent finds at each depth, on several seeds, and docs/tutorial-extra.md reports what
held.

The problem is the matrix-completion demonstration's (pyireg.experiments.matrix_completion):
M = A B^T / sqrt(rank), observed on ``observed_factor * n * rank`` entries drawn at random. The
loss is DeepLinear.fit_entries's, 1/2 sum over observed (i, j) of (P - M)_ij^2 / |observed|,
minimized by full-batch gradient descent in float64 until it is below ``tol`` or ``max_steps``
steps were taken (the table records both).
"""
from __future__ import annotations

import time

import numpy as np

from .._validate import positive_int
from ._common import DemoResult, pyplot, save_figure
from .matrix_completion import make_problem, min_nuclear_norm_completion, nuclear_norm, numerical_rank


def effective_rank(M) -> float:
    """The entropy effective rank (Roy and Vetterli, 2007): exp(-sum_i p_i ln p_i) with
    p = sigma / ||sigma||_1, the normalized singular values (1 for a rank-one matrix, r for r
    equal singular values; 0 for the zero matrix)."""
    s = np.linalg.svd(np.asarray(M, dtype=np.float64), compute_uv=False)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def fit_depth(problem, depth: int, *, init_scale=1e-2, lr=0.25, max_steps=30000, tol=1e-9, seed=0, chunk=500):
    """Gradient descent on a depth-``depth`` factorization (every factor n x n entrywise
    N(0, init_scale^2), n = max(n1, n2)) until the loss is below ``tol`` or ``max_steps`` steps.

    ``lr`` is relative: the step is lr |observed| / (L ||P_obs(M)||_2^(2 - 2/L)), since the
    loss averages over the observed entries and, at a balanced solution, the curvature of the
    depth-L product grows like L sigma_max^(2 - 2/L). Returns (product (n1 x n2), final loss,
    steps taken)."""
    import torch

    from ..deep import DeepLinear
    depth = positive_int(depth, "depths")
    n1, n2 = problem.M.shape
    n = max(n1, n2)
    dims = [n2] + [n] * (depth - 1) + [n1]           # product (out, in) = (n1, n2)
    net = DeepLinear(dims, init_scale=float(init_scale), seed=int(seed), dtype=torch.float64)
    top = np.linalg.norm(problem.target, 2)
    step = float(lr) * problem.observed / (depth * top ** (2 - 2 / depth))
    losses, steps = [np.inf], 0
    while steps < max_steps:
        k = min(chunk, max_steps - steps)
        losses = net.fit_entries(problem.target, problem.mask, lr=step, steps=k)
        steps += k
        if not np.isfinite(losses[-1]) or losses[-1] < tol:
            break
    P = net.product().detach().numpy().astype(np.float64)
    # fit_entries records the loss before each step: the loss of the final product, recomputed
    final = 0.5 * float(((problem.mask * (P - problem.M)) ** 2).sum()) / max(problem.observed, 1)
    return P, final, steps


def demo(out, *, n=20, rank=2, observed_factor=2.5, depths=(1, 2, 3, 4), seeds=(0, 1, 2), init_scale=1e-2,
         lr=0.25, max_steps=30000, tol=1e-9, solver="CLARABEL", threads=1) -> DemoResult:
    """For each seed (a problem and an initialization): gradient descent at every depth against
    the minimum nuclear-norm completion. Writes deep-matrix-factorization.png and the solutions
    (deep-matrix-factorization.npz: M, mask and the convex solution of each seed, and the
    product of each depth) into ``out``; returns the table (one row per seed and depth)."""
    import pandas as pd
    import torch
    t0 = time.perf_counter()
    depths = [positive_int(d, "depths") for d in depths]
    seeds = [int(s) for s in seeds]
    if not depths or not seeds:
        raise ValueError("depths, seeds: expected at least one of each")
    if not (np.isfinite(observed_factor) and observed_factor > 0):
        raise ValueError(f"observed_factor: expected a positive number, got {observed_factor!r}")
    problems = [make_problem(n, rank, int(round(observed_factor * n * rank)), seed=s) for s in seeds]
    old = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    rows, arrays = [], {}
    try:
        for seed, pb in zip(seeds, problems):
            Xc, nuc_min = min_nuclear_norm_completion(pb, solver=solver)
            arrays.update({f"M_seed{seed}": pb.M, f"mask_seed{seed}": pb.mask, f"convex_seed{seed}": Xc})
            base = {"seed": seed, "observed": pb.observed, "convex effective rank": effective_rank(Xc),
                    "convex rank": numerical_rank(Xc), "convex nuclear norm": nuc_min,
                    "convex error": np.linalg.norm(Xc - pb.M) / np.linalg.norm(pb.M)}
            for L in depths:
                P, loss, steps = fit_depth(pb, L, init_scale=init_scale, lr=lr, max_steps=max_steps, tol=tol,
                                           seed=seed)
                arrays[f"depth{L}_seed{seed}"] = P
                rows.append({**base, "depth": L, "steps": steps, "loss": loss, "effective rank": effective_rank(P),
                             "rank": numerical_rank(P), "nuclear norm": nuclear_norm(P),
                             "nuclear / minimum": nuclear_norm(P) / nuc_min,
                             "error": np.linalg.norm(P - pb.M) / np.linalg.norm(pb.M),
                             "distance to convex": np.linalg.norm(P - Xc) / np.linalg.norm(Xc)})
    finally:
        torch.set_num_threads(old)
    cols = ["seed", "depth", "observed", "steps", "loss", "effective rank", "rank", "nuclear norm",
            "nuclear / minimum", "error", "distance to convex", "convex effective rank", "convex rank",
            "convex nuclear norm", "convex error"]
    table = pd.DataFrame(rows)[cols]

    out.mkdir(parents=True, exist_ok=True)
    from .store import Disk
    Disk().write_atomic(out / "deep-matrix-factorization.npz", lambda f: np.savez(f, **arrays))
    fig_path = _plot(table, out / "deep-matrix-factorization.png", n=n, rank=rank, observed_factor=observed_factor,
                     tol=tol)
    return DemoResult("deep-matrix-factorization", table, fig_path, _summary(table, rank, tol),
                      time.perf_counter() - t0)


def _plot(table, path, *, n, rank, observed_factor, tol):
    """Effective rank and nuclear norm / minimum against depth, one line per seed; a cross marks
    a run whose loss is still above ``tol`` (not an interpolating solution yet)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2))
    for c, (seed, t) in enumerate(table.groupby("seed")):
        t = t.sort_values("depth")
        kw = dict(color=f"C{c}", marker="o", ms=4)
        axes[0].plot(t["depth"], t["effective rank"], label=f"GD, seed {seed}", **kw)
        axes[0].axhline(t["convex effective rank"].iloc[0], color=f"C{c}", ls="--", lw=1,
                        label=f"min nuclear norm (convex), seed {seed}")
        axes[1].plot(t["depth"], t["nuclear / minimum"], label=f"GD, seed {seed}", **kw)
        moving = t[t["loss"] >= tol]
        for ax, col in ((axes[0], "effective rank"), (axes[1], "nuclear / minimum")):
            ax.scatter(moving["depth"], moving[col], marker="x", s=70, color="k", zorder=3,
                       label=f"loss still >= {tol:g}" if c == 0 else None)
    axes[0].axhline(rank, color="k", ls=":", lw=1, label=f"true rank {rank}")
    axes[1].axhline(1.0, color="k", ls="--", lw=1, label="min nuclear norm (convex)")
    depths = sorted(table["depth"].unique())
    for ax in axes:
        ax.set_xticks(depths)
        ax.set_xlabel("depth L of the factorization W_L ... W_1")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[0].set_ylabel("effective rank (entropy of the singular values)")
    axes[0].set_title(f"n={n}, rank {rank}, {observed_factor:g} n r entries observed")
    axes[1].set_ylabel("nuclear norm / convex minimum")
    axes[1].set_title("nuclear norm of the GD completion")
    return save_figure(fig, path)


def _summary(table, rank, tol) -> list:
    """The measured facts, as sentences (nothing here is assumed about depth)."""
    lines = []
    for L, t in table.groupby("depth"):
        ok = int((t["loss"] < tol).sum())
        lines.append(f"depth {L}: effective rank {t['effective rank'].min():.3g} - {t['effective rank'].max():.3g}, "
                     f"nuclear norm / minimum {t['nuclear / minimum'].min():.4g} - {t['nuclear / minimum'].max():.4g}, "
                     f"error to M {t['error'].min():.3g} - {t['error'].max():.3g}; loss below {tol:g} on {ok} of "
                     f"{len(t)} seeds")
    c = table.drop_duplicates("seed")
    lines.append(f"convex minimum: effective rank {c['convex effective rank'].min():.3g} - "
                 f"{c['convex effective rank'].max():.3g}, error to M {c['convex error'].min():.3g} - "
                 f"{c['convex error'].max():.3g} (true rank {rank})")
    mono = sum(bool(np.all(np.diff(t.sort_values("depth")["effective rank"].to_numpy()) <= 0))
               for _, t in table.groupby("seed"))
    lines.append(f"effective rank non-increasing with depth on {mono} of {table['seed'].nunique()} seeds")
    return lines
