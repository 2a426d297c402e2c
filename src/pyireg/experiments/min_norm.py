"""The implicit bias of gradient descent in underdetermined least squares (the tutorial's first
theorem): from theta_0 = 0 gradient descent on 1/(2n) ||X theta - y||^2 converges to the
minimum-norm interpolant X^+ y, because every gradient X^T(X theta - y) / n lies in the row
space of X; from any theta_0 it converges to theta_0 + X^+ (y - X theta_0), theta_0 plus the
minimum-norm correction; ridge regression with lambda -> 0 meets X^+ y.

Gradient descent runs on the packed engine: theta is the first layer of a width-1 linear
network whose output weight is held at v = 1 (the update is applied with a zero gradient for
V), so out = <theta, x> and the engine's squared loss is exactly the least-squares objective.
Each network is one run (its own theta_0, learning rate, momentum or ridge penalty), so every
run of a figure is one packed model; the closed forms are numpy.
"""
from __future__ import annotations

import time

import numpy as np

from .._validate import per_network, positive_int
from ..model import PackedMLP
from ..optim import MomentumSGD
from ._common import DemoResult, num_threads, pyplot, save_figure


def make_problem(n=20, p=100, sparse=5, noise=0.01, seed=42):
    """The tutorial's problem: X (n x p) standard Gaussian, theta* with ``sparse`` nonzero
    entries, y = X theta* + noise."""
    n, p = positive_int(n, "n"), positive_int(p, "p")
    if n >= p:
        raise ValueError(f"n: expected fewer samples than parameters (p = {p}) for an underdetermined problem, got {n}")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    theta = np.zeros(p)
    theta[:sparse] = rng.standard_normal(sparse)
    return X, X @ theta + noise * rng.standard_normal(n)


def min_norm_solution(X, y, theta0=None):
    """theta_0 + X^+ (y - X theta_0): the interpolant closest to theta_0 (theta_0 = 0: X^+ y)."""
    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    theta0 = np.zeros(X.shape[1]) if theta0 is None else np.asarray(theta0, np.float64)
    return theta0 + np.linalg.pinv(X) @ (y - X @ theta0)


def ridge_solution(X, y, lam):
    """argmin 1/(2n) ||X theta - y||^2 + lam/2 ||theta||^2 = X^T (X X^T + n lam I)^-1 y (the
    n x n form: p > n)."""
    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    n = X.shape[0]
    return X.T @ np.linalg.solve(X @ X.T + n * lam * np.eye(n), y)


def linear_model(thetas, dtype="float64") -> PackedMLP:
    """One width-1 linear network per row of ``thetas`` (m x p), first layer theta, output 1."""
    thetas = np.atleast_2d(np.asarray(thetas, dtype=np.float64))
    m = thetas.shape[0]
    return PackedMLP.from_weights([1] * m, thetas, np.ones((m, 1)), activation="linear", loss="squared",
                                  dtype=dtype)


def gradient_descent(X, y, thetas0, *, lr=None, momentum=0.0, ridge=0.0, iters=2000, record=None,
                     dtype="float64"):
    """Gradient descent on 1/(2n) ||X theta - y||^2 + ridge/2 ||theta||^2 from every row of
    ``thetas0`` at once (lr, momentum and ridge: scalars or one value per run), on the packed
    engine with the output weight held at 1. ``lr`` defaults to 1 / L with L the largest
    eigenvalue of X^T X / n. ``record``: a list of (m, p) targets whose distance to every run is
    returned at every iteration, as an (iters + 1, len(record), m) array. Returns (thetas, distances)."""
    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    model = linear_model(thetas0, dtype)
    m = model.num_networks
    if lr is None:
        lr = X.shape[0] / np.linalg.norm(X, 2) ** 2
    ridge = per_network(ridge, "ridge", m, np.float64)
    opt = MomentumSGD(model, lr, momentum, 0.0)     # weight decay would shrink v too: ridge is added to dU
    zeros_v = np.zeros_like(model.V)
    Y = y[:, None]
    targets = [np.asarray(t, np.float64) for t in (record or [])]
    dist = np.empty((iters + 1, len(targets), m))

    def measure(t):
        th = model.U.astype(np.float64)
        for j, tg in enumerate(targets):
            dist[t, j] = np.linalg.norm(th - tg, axis=1)

    measure(0)
    for t in range(iters):
        _, gU, _ = model.loss_and_grad(X, Y)
        opt.apply_update(gU + ridge[:, None].astype(model.dtype) * model.U, zeros_v)
        if targets:
            measure(t + 1)
    return model.U.astype(np.float64), (dist if targets else None)


def demo(out, *, n=20, p=100, iters=3000, lams=(1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5, 1e-6), seed=42,
         threads=1) -> DemoResult:
    """GD from 0, with and without momentum, and from three random theta_0; ridge paths."""
    import pandas as pd
    t0 = time.perf_counter()
    X, y = make_problem(n, p, seed=seed)
    rng = np.random.default_rng(seed + 1)
    starts = np.vstack([np.zeros(p), np.zeros(p), rng.standard_normal((3, p))])
    labels = ["GD from 0", "GD + momentum 0.9 from 0", "GD from random θ0 (1)", "GD from random θ0 (2)",
              "GD from random θ0 (3)"]
    momentum = np.array([0.0, 0.9, 0.0, 0.0, 0.0])
    pinv = min_norm_solution(X, y)
    own = np.vstack([min_norm_solution(X, y, s) for s in starts])
    with num_threads(threads):
        thetas, dist = gradient_descent(X, y, starts, momentum=momentum, iters=iters,
                                        record=[np.tile(pinv, (len(starts), 1)), own])
        ridge_gd, _ = gradient_descent(X, y, np.zeros((len(lams), p)), ridge=np.array(lams), iters=iters)
    rows = []
    for i, lab in enumerate(labels):
        rows.append({"run": lab, "||θ||": np.linalg.norm(thetas[i]),
                     "train MSE": float(np.mean((X @ thetas[i] - y) ** 2)),
                     "||θ - X⁺y|| / ||X⁺y||": np.linalg.norm(thetas[i] - pinv) / np.linalg.norm(pinv),
                     "||θ - (θ0 + X⁺(y - Xθ0))|| / ||·||": np.linalg.norm(thetas[i] - own[i]) / np.linalg.norm(own[i])})
    for j, lam in enumerate(lams):
        closed = ridge_solution(X, y, lam)
        rows.append({"run": f"ridge λ={lam:g}", "||θ||": np.linalg.norm(closed),
                     "train MSE": float(np.mean((X @ closed - y) ** 2)),
                     "||θ - X⁺y|| / ||X⁺y||": np.linalg.norm(closed - pinv) / np.linalg.norm(pinv),
                     "||θ - (θ0 + X⁺(y - Xθ0))|| / ||·||": np.nan,
                     "GD on ridge vs closed form": np.linalg.norm(ridge_gd[j] - closed) / np.linalg.norm(closed)})
    table = pd.DataFrame(rows)

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    its = np.arange(iters + 1)
    for i, lab in enumerate(labels):
        axes[0].semilogy(its, dist[:, 0, i] / np.linalg.norm(pinv), color=f"C{i}", label=lab + ": to X⁺y")
        if i >= 2:
            axes[0].semilogy(its, dist[:, 1, i] / np.linalg.norm(own[i]), color=f"C{i}", ls="--",
                             label=lab + ": to θ0 + min-norm correction")
    axes[0].set_xlabel("gradient-descent iteration")
    axes[0].set_ylabel("relative distance")
    axes[0].set_title(f"underdetermined least squares, n={n}, p={p}")
    axes[0].legend(fontsize=6)
    axes[0].grid(alpha=0.3)
    rr = table[table["run"].str.startswith("ridge")]
    axes[1].loglog(lams, rr["||θ - X⁺y|| / ||X⁺y||"], "o-", label="ridge (closed form) to X⁺y")
    ev = np.linalg.eigvalsh(X @ X.T)
    axes[1].loglog(lams, n * np.array(lams) / ev.min(), "k--", lw=1, label="bound n λ / λ_min(X Xᵀ)")
    axes[1].set_xlabel("ridge λ")
    axes[1].set_ylabel("||θ_λ - X⁺y|| / ||X⁺y||")
    axes[1].set_title("ridge meets the minimum-norm solution as λ → 0")
    axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3)
    fig_path = save_figure(fig, out / "min-norm.png")

    gd = table.iloc[:len(labels)]
    summary = [
        f"n={n} samples, p={p} parameters, {iters} full-batch steps of lr 1/L on the packed engine: from 0 the "
        f"distance to X⁺y is {gd.iloc[0]['||θ - X⁺y|| / ||X⁺y||']:.1e} (plain) and "
        f"{gd.iloc[1]['||θ - X⁺y|| / ||X⁺y||']:.1e} (momentum 0.9), relative; from random θ0 the runs stop "
        f"{gd.iloc[2:]['||θ - X⁺y|| / ||X⁺y||'].min():.2f} - {gd.iloc[2:]['||θ - X⁺y|| / ||X⁺y||'].max():.2f} "
        f"away from X⁺y but within {gd.iloc[2:]['||θ - (θ0 + X⁺(y - Xθ0))|| / ||·||'].max():.1e} of "
        f"θ0 + X⁺(y - Xθ0); ||X⁺y|| = {np.linalg.norm(pinv):.3f} against "
        f"{gd.iloc[2:]['||θ||'].min():.2f} - {gd.iloc[2:]['||θ||'].max():.2f} for those.",
        f"Ridge: relative distance to X⁺y {rr['||θ - X⁺y|| / ||X⁺y||'].iloc[0]:.2g} at λ={lams[0]:g} down to "
        f"{rr['||θ - X⁺y|| / ||X⁺y||'].iloc[-1]:.1e} at λ={lams[-1]:g}, under the bound n λ / λ_min(X Xᵀ); "
        f"gradient descent on the ridge objective reaches the closed form within "
        f"{rr['GD on ridge vs closed form'].max():.1e}.",
    ]
    return DemoResult("min-norm", table, fig_path, summary, time.perf_counter() - t0)
