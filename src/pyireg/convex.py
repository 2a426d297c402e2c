"""Convex neural nets (Eq. 7-9 of the paper): a fixed library of unit-norm hidden units and a
(group-)l1 penalty on the top layer,

    min_V  L(act(X W^T) V) + lam * sum_h ||v_h||          W: the library, rows of norm 1,

solved by FISTA with backtracking. For the softmax loss the value and gradient come from the
native packed kernels (the library is the first layer of a one-network PackedMLP); for the
squared loss 1/(2n) sum_i ||f(x_i) - onehot(y_i)||^2, from the fixed feature matrix.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ._validate import MAX_HALVINGS, as_float_array, as_labels, finite_objective, line_search_failed
from .model import PackedMLP


@dataclasses.dataclass
class ConvexResult:
    V: np.ndarray            # (m, k): top-layer weights of every library unit
    support: np.ndarray      # indices of the units with v_h != 0
    objective: float
    loss: float
    iterations: int
    history: np.ndarray      # objective per iteration


def random_library(d: int, m: int, seed: int = 0) -> np.ndarray:
    """m directions drawn uniformly on the unit sphere of R^d."""
    W = np.random.default_rng(seed).standard_normal((m, d))
    return W / np.linalg.norm(W, axis=1, keepdims=True)


def data_library(X, m: int | None = None, seed: int = 0) -> np.ndarray:
    """Normalized data points (m of them at random, or all)."""
    X = np.asarray(X, dtype=np.float64)
    idx = np.arange(len(X)) if m is None else np.random.default_rng(seed).choice(len(X), m, replace=False)
    W = X[idx]
    return W / np.maximum(np.linalg.norm(W, axis=1, keepdims=True), 1e-300)


def network_library(model: PackedMLP, i: int = 0) -> np.ndarray:
    """The normalized hidden units u_h / ||u_h|| of network i (units with u_h = 0 left out)."""
    U, _ = model.network(i)
    n = np.linalg.norm(U.astype(np.float64), axis=1)
    return U[n > 0] / n[n > 0, None]


def group_l1(V) -> float:
    return float(np.sqrt((np.asarray(V, np.float64) ** 2).sum(1)).sum())


# trial points may overflow: each is only compared, and the objective is checked finite
@np.errstate(over="ignore", invalid="ignore")
def fit(X, y, *, library, lam: float, loss: str = "softmax", num_classes: int | None = None,
        activation: str = "relu", iters: int = 5000, tol: float = 1e-10, V0=None) -> ConvexResult:
    """Solve the convex neural net over ``library`` (m x d, rows of norm <= 1).

    Stops when the relative change of the objective stays below ``tol`` for 10 iterations or
    after ``iters`` iterations. Returns the weights, the support (units with v_h != 0), the
    optimal objective and its history.
    """
    X = as_float_array(X, "X", np.float64, 2)
    if X.shape[0] == 0:
        raise ValueError("X: expected at least one sample, got none")
    W = np.asarray(library, dtype=np.float64)
    if W.ndim != 2 or W.shape[1] != X.shape[1]:
        raise ValueError(f"library: expected shape (m, {X.shape[1]}), got {W.shape}")
    if np.any(np.linalg.norm(W, axis=1) > 1 + 1e-5):
        raise ValueError("library: expected rows of norm at most 1")
    if loss not in ("softmax", "squared"):
        raise ValueError(f"loss: expected 'softmax' or 'squared', got {loss!r}")
    if not lam >= 0:
        raise ValueError(f"lam: expected a non-negative number, got {lam!r}")
    if num_classes is None:
        y = np.asarray(y)
        k = int(y.max()) + 1 if y.size and y.dtype.kind in "iub" else 1
    else:
        k = int(num_classes)
    y = as_labels(y, "y", X.shape[0], k)
    m, n = W.shape[0], len(y)
    if loss == "softmax":
        net = PackedMLP([m], X.shape[1], k, activation=activation, dtype="float64", init_std=1.0)
        net.U[...] = W

        def f_and_grad(V):
            net.V[...] = V
            l, _, gV = net.loss_and_grad(X, y)
            return float(l[0]), gV

        def f(V):
            net.V[...] = V
            return float(net.evaluate(X, y, batch_size=4096)[1][0])
    else:
        Z = X @ W.T
        A = np.maximum(Z, 0) if activation == "relu" else Z
        Y = np.eye(k)[y]

        def f(V):
            R = A @ V - Y
            return 0.5 * float((R * R).sum()) / n

        def f_and_grad(V):
            R = A @ V - Y
            return 0.5 * float((R * R).sum()) / n, A.T @ R / n

    def prox(V, t):
        nrm = np.sqrt((V * V).sum(1))
        return V * np.maximum(0.0, 1.0 - t * lam / np.maximum(nrm, 1e-300))[:, None]

    V = np.zeros((m, k)) if V0 is None else np.array(V0, dtype=np.float64)
    Yv, tk, step = V.copy(), 1.0, 1.0
    hist = []
    obj_prev, still = np.inf, 0
    it = 0
    for it in range(1, iters + 1):
        fy, g = f_and_grad(Yv)
        finite_objective(fy, "convex.fit")
        for _ in range(MAX_HALVINGS):   # backtracking on the quadratic upper bound
            Vn = prox(Yv - step * g, step)
            D = Vn - Yv
            if f(Vn) <= fy + (g * D).sum() + (D * D).sum() / (2 * step) + 1e-15:
                break
            step *= 0.5
        else:
            raise line_search_failed("convex.fit")
        obj = f(Vn) + lam * group_l1(Vn)
        if obj > obj_prev:        # adaptive restart keeps FISTA monotone
            tk, Yv = 1.0, V.copy()
            continue
        tn = (1 + np.sqrt(1 + 4 * tk * tk)) / 2
        Yv = Vn + ((tk - 1) / tn) * (Vn - V)
        V, tk = Vn, tn
        hist.append(obj)
        still = still + 1 if abs(obj_prev - obj) <= tol * max(1.0, abs(obj)) else 0
        obj_prev = obj
        step *= 1.2   # let the step grow back
        if still >= 10:
            break
    lval = f(V)
    support = np.flatnonzero(np.sqrt((V * V).sum(1)) > 0)
    return ConvexResult(V, support, lval + lam * group_l1(V), lval, it, np.array(hist))
