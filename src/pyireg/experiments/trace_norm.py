"""Section 3 of the paper, executable: with linear activations network n computes
W_n x with W_n = V_n^T U_n (k x d), a matrix factorization (Eq. 2), and the weight-decay
penalty 1/2 (||U_n||_F^2 + ||V_n||_F^2) bounds the trace norm ||W_n||_tr, with equality at the
best factorization (Eq. 3):

    ||W||_tr  <=  sum_h ||u_h|| ||v_h||  <=  1/2 sum_h (||u_h||^2 + ||v_h||^2)

(the middle term is ``measures()["group_l1"]``, equal to the right after ``balance()``). So
training a wide enough linear network with weight decay lambda solves the convex problem
min_W L(W) + lambda ||W||_tr, and at any stationary point the penalty equals the trace norm.
This module computes trace norms, builds the SVD factorization, solves the convex problem
(accelerated proximal gradient with singular-value thresholding) and trains packed linear
networks to a stationary point.

``trace_norm`` belongs in the measures registry (``pyireg.measures``) once that exists.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from .._validate import per_network, positive_int
from ..model import PackedMLP
from ..optim import MomentumSGD
from ._common import DemoResult, num_threads, pyplot, save_figure


# ----------------------------------------------------------------------------- measures
def end_to_end(model: PackedMLP, i: int) -> np.ndarray:
    """Network i's end-to-end matrix W_i = V_i^T U_i (k x d) in float64: the map it computes
    when its activation is linear."""
    U, V = model.network(i)
    return V.astype(np.float64).T @ U.astype(np.float64)


def trace_norm(model: PackedMLP) -> np.ndarray:
    """Per network the trace (nuclear) norm of W_n = V_n^T U_n, the sum of its singular values
    (float64, shape (N,)). Defined for any activation; for a linear network it is the norm of
    the function the network computes."""
    return np.array([np.linalg.svd(end_to_end(model, i), compute_uv=False).sum()
                     for i in range(model.num_networks)])


def svd_factorization(W, width=None):
    """The balanced factorization of W (k x d) from its SVD W = P diag(s) Q^T: unit h has
    u_h = sqrt(s_h) q_h and v_h = sqrt(s_h) p_h, so V^T U = W and
    l2_penalty = group_l1 = ||W||_tr. ``width`` (>= the number of nonzero singular values
    kept, default min(k, d)) pads with zero units. Returns (U (width x d), V (width x k)) in
    float64."""
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"W: expected a 2-d matrix (k x d), got shape {W.shape}")
    P, s, Qt = np.linalg.svd(W, full_matrices=False)
    r = len(s)
    width = r if width is None else positive_int(width, "width")
    if width < int(np.sum(s > 0)):
        raise ValueError(f"width: expected at least the rank of W ({int(np.sum(s > 0))}), got {width}")
    keep = min(width, r)
    U = np.zeros((width, W.shape[1]))
    V = np.zeros((width, W.shape[0]))
    root = np.sqrt(s[:keep])
    U[:keep] = root[:, None] * Qt[:keep]
    V[:keep] = root[:, None] * P[:, :keep].T
    return U, V


# ----------------------------------------------------------------------------- the convex problem
@dataclasses.dataclass
class TraceNormSolution:
    W: np.ndarray            # (k, d) minimizer
    objective: float         # L(W) + lam ||W||_tr
    loss: float
    trace_norm: float
    rank: int
    iterations: int


def squared_loss(W, X, Y) -> float:
    """The squared loss of PackedMLP: mean over samples of 1/2 ||W x_b - y_b||^2 (float64)."""
    R = X @ W.T - Y
    return 0.5 * float(np.mean(np.sum(R * R, axis=1)))


def solve_trace_norm_regression(X, Y, lam, *, iters=20000, tol=1e-13) -> TraceNormSolution:
    """min_W 1/(2B) sum_b ||W x_b - y_b||^2 + lam ||W||_tr by accelerated proximal gradient
    (the prox of the trace norm is singular-value soft-thresholding) with step 1/Lipschitz and
    adaptive restart; stops when an iteration changes W by less than tol relative."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"X, Y: expected (B, d) and (B, k) with the same B, got {X.shape} and {Y.shape}")
    if not lam >= 0:
        raise ValueError(f"lam: expected a non-negative number, got {lam!r}")
    B = X.shape[0]
    step = B / np.linalg.norm(X, 2) ** 2
    XtX, YtX = X.T @ X / B, Y.T @ X / B
    W = np.zeros((Y.shape[1], X.shape[1]))
    Z, t = W.copy(), 1.0
    it = 0
    for it in range(1, iters + 1):
        G = Z @ XtX - YtX
        P, s, Qt = np.linalg.svd(Z - step * G, full_matrices=False)
        W_new = (P * np.maximum(s - step * lam, 0.0)) @ Qt
        change = np.linalg.norm(W_new - W)
        # restart the momentum when it points against the proximal step (O'Donoghue & Candes)
        if np.sum((Z - W_new) * (W_new - W)) > 0:
            t = 1.0
        t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
        Z = W_new + (t - 1) / t_new * (W_new - W)
        W, t = W_new, t_new
        if change <= tol * max(np.linalg.norm(W), 1e-300):
            break
    s = np.linalg.svd(W, compute_uv=False)
    loss = squared_loss(W, X, Y)
    return TraceNormSolution(W, loss + lam * s.sum(), loss, float(s.sum()),
                             int(np.sum(s > 1e-10 * max(s[0], 1e-300))), it)


def trace_norm_optimality(W, X, Y, lam):
    """How far W is from optimal for min L(W) + lam ||W||_tr, read from the subgradient condition
    -grad L(W) = lam (P Q^T + Z) with P, Q the singular vectors of W's nonzero singular values,
    P^T Z = 0, Z Q = 0 and ||Z||_2 <= 1. Returns (on_support, off_support):
    ||P^T G Q + lam I||_max / lam and ||(I - PP^T) G (I - QQ^T)||_2 / lam, with G = grad L(W);
    W is optimal exactly when the first is 0 and the second <= 1."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    G = (W @ X.T - Y.T) @ X / X.shape[0]
    P, s, Qt = np.linalg.svd(W, full_matrices=False)
    r = int(np.sum(s > 1e-10 * max(s[0], 1e-300)))
    P, Q = P[:, :r], Qt[:r].T
    on = np.abs(P.T @ G @ Q + lam * np.eye(r)).max() / lam if r else 0.0
    Gp = G - P @ (P.T @ G)
    Gp = Gp - (Gp @ Q) @ Q.T
    return float(on), float(np.linalg.norm(Gp, 2) / lam)


# ----------------------------------------------------------------------------- linear networks with weight decay
def stationarity(model: PackedMLP, X, Y, lam) -> np.ndarray:
    """Per network ||grad L + lam theta|| / (||grad L|| + lam ||theta||) over both layers: 0 at a
    stationary point of L + lam * l2_penalty, at most 1 (float64)."""
    lam_u = np.repeat(per_network(lam, "lam", model.num_networks, np.float64), model.widths)[:, None]
    _, gU, gV = model.loss_and_grad(X, Y)
    U, V = model.U.astype(np.float64), model.V.astype(np.float64)
    gU, gV = gU.astype(np.float64), gV.astype(np.float64)
    off = model.offsets[:-1]

    def norm(A, B):
        return np.sqrt(np.add.reduceat((A * A).sum(1) + (B * B).sum(1), off))

    return norm(gU + lam_u * U, gV + lam_u * V) / np.maximum(norm(gU, gV) + norm(lam_u * U, lam_u * V), 1e-300)


def train_weight_decay(model: PackedMLP, X, Y, lam, *, lr=0.05, momentum=0.9, max_iters=50000, tol=1e-12,
                       check_every=200, record_at=()):
    """Full-batch gradient descent with momentum and weight decay lam (a scalar or one value
    per network) until every network's ``stationarity`` is below tol or max_iters steps.
    At the iterations in ``record_at`` (and at the end, if any are given), records
    (iteration, l2_penalty, group_l1, trace_norm). Returns (iterations run, final
    stationarity, records)."""
    opt = MomentumSGD(model, lr, momentum, lam)
    record_at = set(int(i) for i in record_at)
    records = []
    it = 0
    res = stationarity(model, X, Y, lam)
    while it < max_iters and not np.all(res <= tol):
        if it in record_at:
            m = model.measures()
            records.append((it, m["l2_penalty"], m["group_l1"], trace_norm(model)))
        opt.step(X, Y)
        it += 1
        if it % check_every == 0:
            res = stationarity(model, X, Y, lam)
    res = stationarity(model, X, Y, lam)
    if record_at:
        m = model.measures()
        records.append((it, m["l2_penalty"], m["group_l1"], trace_norm(model)))
    return it, res, records


def regression_problem(n=200, d=12, k=8, rank=3, noise=0.5, seed=0):
    """Gaussian inputs X (n, d) and targets Y = X W*^T + noise with W* (k x d) of the given rank."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W = rng.standard_normal((k, rank)) @ rng.standard_normal((rank, d)) / np.sqrt(rank)
    return X, X @ W.T + noise * rng.standard_normal((n, k)), W


# ----------------------------------------------------------------------------- the demonstration
def demo(out, *, widths=(1, 2, 3, 4, 6, 8, 16), lams=(0.03, 0.3, 1.0), n=200, d=12, k=8, rank=3, noise=0.5,
         max_iters=30000, seed=0, threads=1) -> DemoResult:
    """Linear networks of several widths trained with weight decay lambda (one packed model),
    against the convex trace-norm-regularized regression; plus the SVD factorization."""
    import pandas as pd
    t0 = time.perf_counter()
    X, Y, _ = regression_problem(n, d, k, rank, noise, seed)
    widths, lams = [int(w) for w in widths], [float(x) for x in lams]
    grid = [(lam, w) for lam in lams for w in widths]
    lam_n = np.array([g[0] for g in grid])
    model = PackedMLP([g[1] for g in grid], d, k, activation="linear", loss="squared", seed=seed, dtype="float64")
    with num_threads(threads):
        iters, res, records = train_weight_decay(
            model, X, Y, lam_n, max_iters=max_iters,
            record_at=np.unique(np.geomspace(1, max_iters, 200).astype(int)))
        loss = model.evaluate(X, Y)[1]
    convex = {lam: solve_trace_norm_regression(X, Y, lam) for lam in lams}
    meas, tr = model.measures(), trace_norm(model)
    rows = []
    for i, (lam, w) in enumerate(grid):
        c = convex[lam]
        obj = loss[i] + lam * meas["l2_penalty"][i]
        rows.append({"lambda": lam, "H": w, "convex rank": c.rank, "objective": obj, "convex optimum": c.objective,
                     "objective / optimum - 1": obj / c.objective - 1, "l2_penalty": meas["l2_penalty"][i],
                     "group_l1": meas["group_l1"][i], "trace_norm": tr[i],
                     "l2_penalty / trace_norm - 1": meas["l2_penalty"][i] / tr[i] - 1,
                     "stationarity": res[i]})
    table = pd.DataFrame(rows)

    # the SVD factorization of random matrices of several shapes and ranks: all three equal
    rng = np.random.default_rng(seed + 1)
    svd_gap = 0.0
    for kk, dd, rr in ((8, 12, 3), (12, 5, 5), (30, 30, 30), (1, 20, 1)):
        Wr = rng.standard_normal((kk, rr)) @ rng.standard_normal((rr, dd))
        U, V = svd_factorization(Wr)
        m = PackedMLP.from_weights([U.shape[0]], U, V, activation="linear", loss="squared", dtype="float64")
        ref = np.linalg.svd(Wr, compute_uv=False).sum()
        mm = m.measures()
        svd_gap = max(svd_gap, abs(mm["l2_penalty"][0] / ref - 1), abs(mm["group_l1"][0] / ref - 1))

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    floor = 1e-16
    for j, lam in enumerate(lams):
        t = table[table["lambda"] == lam]
        ax.semilogy(t["H"], np.maximum(t["objective / optimum - 1"].abs(), floor), "o-", color=f"C{j}",
                    label=f"λ={lam:g} (convex rank {convex[lam].rank})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("hidden units H")
    ax.set_ylabel("|objective / convex optimum - 1|")
    ax.set_title("weight decay on a linear net = trace-norm regularization\nonce H >= rank")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    its = np.array([r[0] for r in records])
    l2 = np.array([r[1] for r in records])
    g1 = np.array([r[2] for r in records])
    trs = np.array([r[3] for r in records])
    shown = [i for i, (lam, w) in enumerate(grid) if lam == lams[len(lams) // 2] and w in (widths[0], widths[-1])]
    for c, i in enumerate(shown):
        ax.loglog(its, np.maximum(l2[:, i] / trs[:, i] - 1, floor), "-", color=f"C{c}",
                  label=f"H={grid[i][1]}: l2_penalty / trace norm - 1")
        ax.loglog(its, np.maximum(g1[:, i] / trs[:, i] - 1, floor), "--", color=f"C{c}",
                  label=f"H={grid[i][1]}: group_l1 / trace norm - 1")
    ax.set_xlabel("iteration (full batch, momentum 0.9)")
    ax.set_ylabel(f"ratio - 1 (floor {floor:g})")
    ax.set_title(f"penalties meet the trace norm at a stationary point (λ={lams[len(lams) // 2]:g})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig_path = save_figure(fig, out / "trace-norm.png")

    wide = table[table["H"] >= table["convex rank"]]
    narrow = table[table["H"] < table["convex rank"]]
    summary = [
        f"SVD factorizations of 4 random matrices: l2_penalty and group_l1 equal the trace norm within "
        f"{svd_gap:.1e} relative.",
        f"{len(grid)} linear networks (widths {widths}, lambdas {lams}) trained with weight decay in one packed model, "
        f"{iters} full-batch steps: stationarity residual <= {res.max():.1e}; "
        f"|l2_penalty / trace norm - 1| <= {table['l2_penalty / trace_norm - 1'].abs().max():.1e} at every width.",
        f"Networks at least as wide as the convex solution's rank reach the convex optimum within "
        f"{wide['objective / optimum - 1'].abs().max():.1e} relative; narrower ones stay "
        + (f"{narrow['objective / optimum - 1'].min():.1e} - {narrow['objective / optimum - 1'].max():.1e} above it."
           if len(narrow) else "(none were narrower)."),
    ]
    return DemoResult("trace-norm", table, fig_path, summary, time.perf_counter() - t0)
