"""Theorem 1 and Corollary 1 on real data: the tables and figure behind `pyireg theorem1` and
`pyireg convex`."""
from __future__ import annotations

import contextlib

import numpy as np

from .. import convex as C
from .. import data as D
from .. import theory as T
from ..model import PackedMLP


def _problem(dataset, n, classes, seed):
    # enough samples that n remain after keeping only the chosen classes
    total = {"mnist5k": 5000, "digits": 1797, "mnist1d": 5000}.get(dataset, 5000)
    ds = D.load(dataset, n_train=total - 200, n_val=100, n_test=100, seed=seed)
    X, y = ds.X_train.astype(np.float64), ds.y_train
    if classes is not None:
        keep = np.isin(y, classes)
        X, y = X[keep], np.searchsorted(classes, y[keep])
    if len(y) < n:
        raise ValueError(f"n: only {len(y)} samples of the chosen classes in {dataset}, asked for {n}")
    return X[:n], y[:n], (len(classes) if classes is not None else ds.num_classes)


def theorem1_table(dataset="mnist5k", n=300, lams=(1e-3, 1e-2, 3e-2), width=128, iters=2000, seed=0,
                   out_features=None):
    """For k = 2 (digits 3 vs 5) and k = 10 (``out_features``: 2 or 10 for one of them; for k = 1
    see :func:`theorem1_scalar_table`): objective (4) by full-batch momentum GD with weight
    decay, objective (5) by accelerated proximal gradient, from the same initialization; the
    (5) value of the balanced, normalized (4) solution; and each optimizer restarted from the
    other's rescaled solution. Returns (DataFrame, traces)."""
    import pandas as pd
    rows, traces = [], {}
    lams = np.asarray(lams, dtype=np.float64)
    cases = {2: (3, 5), 10: None}
    for sel in ((3, 5), None) if out_features is None else (cases[out_features],):
        X, y, k = _problem(dataset, n, None if sel is None else np.array(sel), seed)
        m0 = PackedMLP([width] * len(lams), X.shape[1], k, seed=seed, dtype="float64")
        m4, m5 = m0.copy(), m0.copy()
        t4 = T.train_objective4(m4, X, y, lams, iters=iters)
        t5 = T.train_objective5(m5, X, y, lams, iters=iters)
        v4, v5 = t4.objective[-1], t5.objective[-1]
        b4 = m4.copy()
        b4.balance()
        gap_balance = np.abs(m4.measures()["l2_penalty"] - b4.measures()["l2_penalty"]) / m4.measures()["l2_penalty"]
        b4.normalize_units()
        v5_of_4 = T.objective5(b4, X, y, lams)
        cross5 = T.train_objective5(b4.copy(), X, y, lams, iters=iters // 4).objective[-1]
        b5 = m5.copy()
        b5.balance()
        cross4 = T.train_objective4(b5, X, y, lams, iters=iters // 4).objective[-1]
        traces[k] = (t4, t5)
        for j, lam in enumerate(lams):
            best = min(v4[j], v5[j], cross4[j], cross5[j])
            rows.append({"k": k, "n": len(y), "H": width, "lambda": lam, "objective4": v4[j], "objective5": v5[j],
                         "rel_gap_4_vs_5": abs(v4[j] - v5[j]) / best,
                         "objective5_of_normalized_4": v5_of_4[j],
                         "identity_error": abs(v5_of_4[j] - v4[j]) / v4[j] if gap_balance[j] < 1e-3 else np.nan,
                         "l2_drop_by_balance": gap_balance[j],
                         "(5) restarted from (4)": cross5[j], "(4) restarted from (5)": cross4[j]})
    return pd.DataFrame(rows), traces


@contextlib.contextmanager
def _one_thread():
    """torch and BLAS on one thread: the k = 1 problems are tiny, and extra threads only contend on
    a busy host (500 proximal iterations at n = 300, H = 64 took 0.3 s on one thread against
    2-9 s on two, with other jobs on the 2 cores)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(1)
    except ImportError:         # scikit-learn's dependency; without it BLAS keeps its threads
        limits = None
    try:
        yield
    finally:
        torch.set_num_threads(before)
        if limits is not None:
            limits.restore_original_limits()


#: `pyireg theorem1 --quick`: sizes that run in seconds (either k).
QUICK = dict(n=100, width=32, iters=300)


def theorem1_scalar(X, y, lams, loss: str, *, width=64, iters=500, seed=0, return_solutions=False):
    """Theorem 1 as the paper states it: one output (k = 1, scalar v_h) and ``loss`` "squared" or
    "logistic" (labels +-1), in float64 (:mod:`pyireg.infinite`). For each lambda, from one
    Gaussian initialization of ``width`` units: (4) by L-BFGS (``iters`` iterations at most) and (5)
    by accelerated proximal gradient (``iters`` iterations); the (4) solution balanced
    (||u_h|| = |v_h|, the same function) and normalized to unit ||u_h||, whose (5) value must equal
    the balanced (4) value (Theorem 1's identity, to rounding, since lam/2 (||u_h||^2 + v_h^2) =
    lam ||u_h|| |v_h| there), and each solver restarted from the other's rescaled solution
    (``iters // 4``), which can only lower it. Returns a list of rows (dicts); with
    ``return_solutions`` also, per lambda, {"balanced4": (U, v), "normalized4": (U, v),
    "solution5": (U, v)}."""
    with _one_thread():
        return _theorem1_scalar(X, y, lams, loss, width, iters, seed, return_solutions)


def _theorem1_scalar(X, y, lams, loss, width, iters, seed, return_solutions):
    from .. import infinite as I
    rows, sols = [], []
    for lam in np.asarray(lams, dtype=np.float64).reshape(-1):
        lam = float(lam)
        init = I._init(np.asarray(X, np.float64), int(width), seed, 1.0, None)
        U4, v4, o4 = I.train4(X, y, width, lam, loss, iters=iters, init=init)
        U5, v5, o5 = I.train5(X, y, width, lam, loss, iters=iters, init=init)
        Ub, vb = I.balance(U4, v4)
        o4b = I.objective4(Ub, vb, X, y, lam, loss)
        Un, vn = I.to_unit_norm(Ub, vb)
        o5_of_4 = I.objective5(Un, vn, X, y, lam, loss)
        group = float(np.sum(np.sqrt((Ub ** 2).sum(1)) * np.abs(vb)))
        l2 = 0.5 * float((Ub ** 2).sum() + (vb ** 2).sum())
        cross5 = I.train5(X, y, width, lam, loss, iters=max(1, iters // 4), init=(Un, vn))[2]
        cross4 = I.train4(X, y, width, lam, loss, iters=max(1, iters // 4), init=I.balance(U5, v5))[2]
        best = min(o4, o5, cross4, cross5)
        rows.append({"k": 1, "loss": loss, "n": len(y), "H": int(width), "lambda": lam, "objective4": o4,
                     "objective5": o5, "rel_gap_4_vs_5": abs(o4 - o5) / best,
                     "objective4_balanced": o4b, "objective5_of_normalized_4": o5_of_4,
                     "identity_error": abs(o5_of_4 - o4b) / o4b,
                     "group_norm_error": abs(l2 - group) / max(group, 1e-300),
                     "(5) restarted from (4)": cross5, "(4) restarted from (5)": cross4})
        sols.append({"balanced4": (Ub, vb), "normalized4": (Un, vn), "solution5": (U5, v5)})
    return (rows, sols) if return_solutions else rows


def theorem1_scalar_table(dataset="mnist5k", n=300, lams=(1e-3, 1e-2, 3e-2), width=64, iters=500,
                          losses=("squared", "logistic"), seed=0):
    """:func:`theorem1_scalar` on digits 3 (label -1) vs 5 (label +1) of ``dataset``, the first
    ``n`` of them, for each loss. Returns a DataFrame."""
    import pandas as pd
    X, y, _ = _problem(dataset, n, np.array((3, 5)), seed)
    y = np.where(y == 1, 1.0, -1.0)
    rows = []
    for loss in losses:
        rows += theorem1_scalar(X, y, lams, loss, width=width, iters=iters, seed=seed)
    return pd.DataFrame(rows)


def plot_theorem1_scalar(table, path):
    """Objectives (4) and (5) per lambda, and (5) of the balanced, normalized (4) solution."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    losses = list(dict.fromkeys(table["loss"]))
    fig, axes = plt.subplots(1, len(losses), figsize=(5.5 * len(losses), 3.8), squeeze=False)
    for ax, loss in zip(axes[0], losses):
        t = table[table["loss"] == loss]
        ax.plot(t["lambda"], t["objective4"], "o-", label="(4) weight decay, L-BFGS")
        ax.plot(t["lambda"], t["objective5"], "s--", label="(5) unit norm + l1, proximal")
        ax.plot(t["lambda"], t["objective5_of_normalized_4"], "x", ms=10, label="(5) at the rescaled (4) solution")
        ax.set_xscale("log")
        ax.set_xlabel("λ")
        ax.set_ylabel("objective")
        ax.set_title(f"Theorem 1, k = 1, {loss} loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_theorem1(traces, lams, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(traces), figsize=(5.5 * len(traces), 3.8), squeeze=False)
    for ax, (k, (t4, t5)) in zip(axes[0], traces.items()):
        for j, lam in enumerate(lams):
            c = f"C{j}"
            ax.plot(t4.iterations[1:], t4.objective[1:, j], "-", color=c, label=f"(4) weight decay, λ={lam:g}")
            ax.plot(t5.iterations[1:], t5.objective[1:, j], "--", color=c, label=f"(5) unit norm + group-l1, λ={lam:g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("iteration (full batch)")
        ax.set_ylabel("objective")
        ax.set_title(f"Theorem 1, k = {k}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def corollary1_table(dataset="mnist5k", n=60, widths=(30, 120, 480), lam=3e-3, iters=4000, seed=0,
                     extra_random=200):
    """Train weight-decay networks (objective 4) of widths below and above n; build a library
    from each network's normalized units plus random unit directions; solve the convex neural
    net over it. Reports the network's objective (5), the convex optimum, and support sizes."""
    import pandas as pd
    X, y, k = _problem(dataset, n, np.array((3, 5)), seed)
    widths = list(widths)
    model = PackedMLP(widths, X.shape[1], k, seed=seed, dtype="float64")
    T.train_objective4(model, X, y, lam, iters=iters, record_every=iters)
    model.balance()
    model.normalize_units()
    net5 = T.objective5(model, X, y, lam)
    rows = []
    for i, H in enumerate(widths):
        own = C.network_library(model, i)
        lib = np.concatenate([own, C.random_library(X.shape[1], extra_random, seed + 1)])
        _, Vi = model.network(i)
        V0 = np.zeros((len(lib), k))
        V0[:len(own)] = Vi[np.linalg.norm(model.network(i)[0], axis=1) > 0]
        res = C.fit(X, y, library=lib, lam=lam, loss="softmax", num_classes=k, iters=20000, tol=1e-12)
        warm = C.fit(X, y, library=lib, lam=lam, loss="softmax", num_classes=k, iters=20000, tol=1e-12, V0=V0)
        best = warm if warm.objective < res.objective else res
        rows.append({"n": n, "H": H, "H > n": H > n, "k": k, "lambda": lam,
                     "network objective (5)": net5[i], "convex optimum": best.objective,
                     "convex - network": best.objective - net5[i],
                     "network units used": int((np.linalg.norm(Vi, axis=1) > 1e-8 * np.abs(Vi).max()).sum()),
                     "convex support": len(best.support), "bound n*k+1": n * k + 1,
                     "support from random units": int((best.support >= len(own)).sum())})
    return pd.DataFrame(rows)
