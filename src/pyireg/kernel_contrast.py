"""The contrast of Section 4 with kernel methods: l2 on the top layer only, with the hidden units
frozen at random (random ReLU features), converges as H grows to kernel ridge regression under
the arc-cosine kernel of degree 1 (Cho & Saul, 2009); training both layers with weight decay is
instead the l1-regularized convex neural net (Theorem 1, ``pyireg.infinite``). One output,
squared loss, float64 numpy.

Random-feature model: f(x) = sum_h v_h relu(<u_h, x>) / sqrt(H), u_h ~ N(0, I_d) frozen,
objective (1/2n) sum_t (f(x_t) - y_t)^2 + lam/2 ||v||^2, solved exactly (the limit of training V
alone with weight decay lam). Its kernel (1/H) sum_h relu(<u_h, x>) relu(<u_h, x'>) tends to

    k(x, x') = ||x|| ||x'|| (sin t + (pi - t) cos t) / (2 pi),   t = angle(x, x'),

and the predictions to k(X*, X) (K + n lam I)^(-1) y.
"""
from __future__ import annotations

import numpy as np

from ._validate import nonnegative_number, positive_int


def arccos_kernel(A, B) -> np.ndarray:
    """E_u[relu(<u, a>) relu(<u, b>)] for u ~ N(0, I): the degree-1 arc-cosine kernel / 2."""
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    na, nb = np.linalg.norm(A, axis=1), np.linalg.norm(B, axis=1)
    denom = np.outer(na, nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.clip(np.where(denom > 0, (A @ B.T) / np.where(denom > 0, denom, 1.0), 1.0), -1.0, 1.0)
    t = np.arccos(cos)
    return denom * (np.sin(t) + (np.pi - t) * cos) / (2 * np.pi)


def _problem(X, y, X_test, lam):
    """X (n, d), y (n,) (or (n, 1)), X_test (m, d), finite, float64; lam >= 0 (0: the ridgeless
    limit, the minimum-norm interpolant, which needs a nonsingular kernel matrix)."""
    X, y, X_test = np.asarray(X, np.float64), np.asarray(y, np.float64), np.asarray(X_test, np.float64)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if X.ndim != 2 or len(X) == 0 or y.shape != (len(X),):
        raise ValueError(f"X, y: expected X (n, d) and y (n,) with n >= 1, got {X.shape} and {y.shape}")
    if X_test.ndim != 2 or X_test.shape[1] != X.shape[1]:
        raise ValueError(f"X_test: expected shape (m, {X.shape[1]}), got {X_test.shape}")
    for name, a in (("X", X), ("y", y), ("X_test", X_test)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name}: contains NaN or inf")
    nonnegative_number(lam, "lam")
    return X, y, X_test


def _solve(A, y, lam):
    """(A + n lam I)^-1 y, A the n x n kernel (or feature Gram) matrix."""
    try:
        return np.linalg.solve(A + len(y) * lam * np.eye(len(y)), y)
    except np.linalg.LinAlgError:
        raise ValueError(f"lam: {lam!r} leaves the kernel matrix singular (two samples coincide, or more samples "
                         "than features span): pass lam > 0") from None


def kernel_ridge(X, y, X_test, lam: float) -> np.ndarray:
    """Predictions on X_test of ridge regression under ``arccos_kernel`` (mean squared loss / 2 +
    lam/2 ||f||_H^2)."""
    X, y, X_test = _problem(X, y, X_test, lam)
    K = arccos_kernel(X, X)
    alpha = _solve(K, y, lam)
    return arccos_kernel(X_test, X) @ alpha


def random_features_ridge(X, y, X_test, H: int, lam: float, *, seed: int = 0) -> np.ndarray:
    """Predictions on X_test of the top-layer-only model with H frozen random units (exact ridge
    solution in the n x n dual form, so any H is cheap)."""
    X, y, X_test = _problem(X, y, X_test, lam)
    H = positive_int(H, "H")
    U = np.random.default_rng(seed).standard_normal((H, X.shape[1]))
    F = np.maximum(X @ U.T, 0) / np.sqrt(H)
    Ft = np.maximum(X_test @ U.T, 0) / np.sqrt(H)
    alpha = _solve(F @ F.T, y, lam)
    return Ft @ (F.T @ alpha)


def kernel_contrast(X, y, X_test, y_test, *, lam: float = 1e-3, widths=(10, 100, 1000, 10000), seeds: int = 3,
                    lam_l1: float | None = None) -> dict:
    """The data of one figure: for each width H, the random-features model's test mean squared
    error (mean over ``seeds`` draws of the units) and its largest distance to the kernel limit's
    predictions; the kernel limit's test error; and, for contrast, the convex neural net with both
    layers trained (l1 on the top layer over the unit ball = weight decay on both layers,
    ``pyireg.infinite.convex_ball`` with ``lam_l1``, default ``lam``): its test error and number
    of units. Returns a dict of lists and numbers."""
    from .infinite import convex_ball, network_output

    X, y, X_test = _problem(X, y, X_test, lam)
    y_test = np.asarray(y_test, np.float64)
    if y_test.shape != (len(X_test),) or not np.isfinite(y_test).all():
        raise ValueError(f"y_test: expected {len(X_test)} finite targets (one per row of X_test), got shape "
                         f"{y_test.shape}")
    seeds = positive_int(seeds, "seeds")
    fk = kernel_ridge(X, y, X_test, lam)
    mse = lambda f: float(np.mean((f - y_test) ** 2))
    rows = []
    for H in widths:
        preds = [random_features_ridge(X, y, X_test, H, lam, seed=s) for s in range(seeds)]
        rows.append({"H": int(H), "test_mse": float(np.mean([mse(p) for p in preds])),
                     "distance_to_kernel": float(np.mean([np.abs(p - fk).max() for p in preds]))})
    sol = convex_ball(X, y, lam if lam_l1 is None else lam_l1, "squared")
    f_l1 = network_output(sol.W, sol.v, X_test) if len(sol.v) else np.zeros(len(y_test))
    return {"random_features": rows, "kernel_test_mse": mse(fk), "l1_net_test_mse": mse(f_l1),
            "l1_net_units": sol.support, "lam": lam}
