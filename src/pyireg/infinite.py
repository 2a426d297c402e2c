"""Section 4 of the paper for one output (k = 1, scalar v_h), in float64 numpy/torch: the squared
and the logistic loss, Theorem 1's objectives (4) and (5) and the maps between them, the convex
neural net over the continuous unit ball (Eq. 8) by column generation with an exact ReLU-unit
oracle, a certified lower bound from its dual, the support reduction to at most n*k + 1 units,
and both directions of Corollary 1.

Conventions (as ``pyireg.theory``): losses are means over the n samples, so lambda is the
paper's lambda divided by n. Squared loss: L(y, f) = (f - y)^2 / 2. Logistic loss: labels
y in {-1, +1}, L(y, f) = log(1 + exp(-y f)).
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from ._validate import MAX_HALVINGS, finite_objective, line_search_failed, nonnegative_number, positive_int

LOSSES = ("squared", "logistic")
# the largest |x| and |y| taken: squares and sums of squares of n d such values stay within float64
MAX_SCALE = 1e100


# ---------------------------------------------------------------------------- losses
def _check(X, y, loss):
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or len(y) != len(X) or len(y) == 0:
        raise ValueError(f"X, y: expected X (n, d) and y (n,) with n >= 1, got {X.shape} and {y.shape}")
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
    if loss == "logistic" and not np.all(np.abs(y) == 1):
        raise ValueError("y: the logistic loss expects labels in {-1, +1}")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError("X, y: expected finite values")
    for name, a in (("X", X), ("y", y)):
        if a.size and np.abs(a).max() > MAX_SCALE:
            raise ValueError(f"{name}: values up to {np.abs(a).max():.3g}, whose squares overflow float64 in the "
                             f"solvers (at most {MAX_SCALE:g}); rescale the data")
    return X, y


def _check_width(H, lam) -> int:
    """The width and penalty of objectives (4) and (5)."""
    nonnegative_number(lam, "lam")
    return positive_int(H, "H")


def loss_value(f, y, loss: str) -> float:
    """Mean loss over the samples (see the module's conventions)."""
    f, y = np.asarray(f, np.float64), np.asarray(y, np.float64)
    if loss == "squared":
        return float(0.5 * np.mean((f - y) ** 2))
    return float(np.mean(np.logaddexp(0.0, -y * f)))


def loss_grad(f, y, loss: str) -> np.ndarray:
    """d(mean loss) / d f_t, per sample."""
    f, y = np.asarray(f, np.float64), np.asarray(y, np.float64)
    n = len(y)
    if loss == "squared":
        return (f - y) / n
    return -y * _sigmoid(-y * f) / n


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _entropy_term(p):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)


def dual_value(f, y, loss: str, scale: float) -> float:
    """The dual objective -sum_t L_t^*(-alpha_t) at alpha = -scale * loss_grad(f) (feasible when
    scale * max_u |sum_t loss_grad_t relu(<u, x_t>)| <= lambda): a lower bound on (8)."""
    g = scale * loss_grad(f, y, loss)
    n = len(y)
    if loss == "squared":          # L_t(f) = (f - y_t)^2 / (2n):  L_t^*(z) = z y_t + n z^2 / 2
        return float(np.sum(-g * y) - n / 2 * np.sum(g * g))
    p = -n * g * y                 # in [0, 1] for scale in [0, 1]
    return float(-np.sum(_entropy_term(p) + _entropy_term(1 - p)) / n)


# ---------------------------------------------------------------------------- objectives (4), (5)
def network_output(U, v, X, activation: str = "relu") -> np.ndarray:
    Z = np.asarray(X, np.float64) @ np.asarray(U, np.float64).T
    return (np.maximum(Z, 0) if activation == "relu" else Z) @ np.asarray(v, np.float64).reshape(-1)


def objective4(U, v, X, y, lam: float, loss: str) -> float:
    """(4): mean loss + lam/2 sum_h (||u_h||^2 + v_h^2)."""
    U, v = np.asarray(U, np.float64), np.asarray(v, np.float64).reshape(-1)
    return loss_value(network_output(U, v, X), y, loss) + 0.5 * lam * float((U ** 2).sum() + (v ** 2).sum())


def objective5(U, v, X, y, lam: float, loss: str, tol: float = 1e-9) -> float:
    """(5): mean loss + lam sum_h |v_h|, inf when some ||u_h|| > 1 + tol."""
    U, v = np.asarray(U, np.float64), np.asarray(v, np.float64).reshape(-1)
    if len(U) and np.sqrt((U ** 2).sum(1)).max() > 1 + tol:
        return math.inf
    return loss_value(network_output(U, v, X), y, loss) + lam * float(np.abs(v).sum())


def to_unit_norm(U, v):
    """Theorem 1's map (4) -> (5): u_h -> u_h / ||u_h||, v_h -> v_h ||u_h|| (same function;
    units with u_h = 0 get v_h = 0). objective5 of the result <= objective4 of the input."""
    U, v = np.asarray(U, np.float64), np.asarray(v, np.float64).reshape(-1)
    n = np.sqrt((U ** 2).sum(1))
    safe = np.where(n > 0, n, 1.0)
    return U / safe[:, None], np.where(n > 0, v * n, 0.0)


def balance(U, v):
    """Theorem 1's rescaling: u_h -> sqrt(|v_h| / ||u_h||) u_h, v_h -> sqrt(||u_h|| / |v_h|) v_h,
    so ||u_h|| = |v_h| (same function); objective4 of the result = objective5 of
    ``to_unit_norm`` of it, the least objective4 over rescalings."""
    U, v = np.asarray(U, np.float64), np.asarray(v, np.float64).reshape(-1)
    n = np.sqrt((U ** 2).sum(1))
    a = np.abs(v)
    live = (n > 0) & (a > 0)
    s = np.sqrt(np.where(live, a, 1.0) / np.where(live, n, 1.0))
    return np.where(live[:, None], U * s[:, None], 0.0), np.where(live, v / s, 0.0)


def _torch_objective(loss, lam, X, y, penalty):
    import torch

    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)

    def f(U, v):
        out = torch.relu(Xt @ U.T) @ v
        data = 0.5 * ((out - yt) ** 2).mean() if loss == "squared" else torch.nn.functional.softplus(-yt * out).mean()
        if penalty == "l2":
            return data + 0.5 * lam * ((U * U).sum() + (v * v).sum())
        return data
    return f


def _init(X, H, seed, init_std, init):
    if init is not None:
        U0, v0 = np.array(init[0], np.float64), np.array(init[1], np.float64).reshape(-1)
        if U0.shape != (H, X.shape[1]) or v0.shape != (H,):
            raise ValueError(f"init: expected (U of shape {(H, X.shape[1])}, v of shape ({H},)), got "
                             f"{U0.shape} and {v0.shape}")
        return U0, v0
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((H, X.shape[1])) * init_std / math.sqrt(X.shape[1]),
            rng.standard_normal(H) * init_std / math.sqrt(H))


def _loss_and_grads(U, v, X, y, loss):
    Z = X @ U.T
    A = np.maximum(Z, 0)
    f = A @ v
    r = loss_grad(f, y, loss)
    return loss_value(f, y, loss), ((Z > 0) * r[:, None] * v[None, :]).T @ X, A.T @ r


def train4(X, y, H: int, lam: float, loss: str, *, seed: int = 0, iters: int = 500, init_std: float = 1.0,
           init=None):
    """A local minimum of (4) for width H by full-batch L-BFGS (torch, strong-Wolfe line search)
    in float64 from a Gaussian initialization (or ``init`` = (U, v)). Returns (U, v, objective4)."""
    import torch

    X, y = _check(X, y, loss)
    H = _check_width(H, lam)
    U0, v0 = _init(X, H, seed, init_std, init)
    U = torch.tensor(U0, requires_grad=True)
    v = torch.tensor(v0, requires_grad=True)
    f = _torch_objective(loss, lam, X, y, "l2")
    opt = torch.optim.LBFGS([U, v], lr=1.0, max_iter=iters, tolerance_grad=1e-12, tolerance_change=1e-15,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        val = f(U, v)
        val.backward()
        return val
    opt.step(closure)
    Un, vn = U.detach().numpy().copy(), v.detach().numpy().copy()
    if init is not None and objective4(Un, vn, X, y, lam, loss) > objective4(U0, v0, X, y, lam, loss):
        Un, vn = U0, v0                 # L-BFGS is not monotone in every corner case: keep the start
    return Un, vn, objective4(Un, vn, X, y, lam, loss)


# trial points may overflow: each is only compared, and the objective is checked finite
@np.errstate(over="ignore", invalid="ignore")
def train5(X, y, H: int, lam: float, loss: str, *, seed: int = 0, iters: int = 5000, init=None):
    """A local minimum of (5) for width H by accelerated proximal gradient (projection of each u_h
    on the unit ball, soft-thresholding of v), from unit-norm Gaussian directions (or ``init``
    projected on the feasible set); backtracking and restarts keep the objective monotone.
    Returns (U, v, objective5)."""
    X, y = _check(X, y, loss)
    H = _check_width(H, lam)
    U, v = _init(X, H, seed, 1.0, init)

    def prox(U, v, t):
        U = U / np.maximum(1.0, np.sqrt((U ** 2).sum(1, keepdims=True)))
        return U, np.sign(v) * np.maximum(np.abs(v) - t * lam, 0.0)

    if init is None:
        U = U / np.maximum(np.sqrt((U ** 2).sum(1, keepdims=True)), 1e-300)
    U, v = prox(U, v, 0.0)
    t, k = 1.0, 1.0
    xU, xv, yU, yv = U, v, U.copy(), v.copy()
    obj = objective5(U, v, X, y, lam, loss)
    still = 0
    for _ in range(iters):
        fy, gU, gv = _loss_and_grads(yU, yv, X, y, loss)
        finite_objective(fy, "train5")
        for _ in range(MAX_HALVINGS):
            cU, cv = prox(yU - t * gU, yv - t * gv, t)
            dU, dv = cU - yU, cv - yv
            fc = loss_value(network_output(cU, cv, X), y, loss)
            if fc <= fy + (gU * dU).sum() + (gv * dv).sum() + ((dU ** 2).sum() + (dv ** 2).sum()) / (2 * t) + 1e-15:
                break
            t /= 2
        else:
            raise line_search_failed("train5")
        new = fc + lam * float(np.abs(cv).sum())
        if new > obj:                      # restart without momentum
            yU, yv, k = xU.copy(), xv.copy(), 1.0
            continue
        beta = (k - 1) / (k + 2)
        yU, yv = cU + beta * (cU - xU), cv + beta * (cv - xv)
        still = still + 1 if obj - new <= 1e-14 * max(1.0, abs(obj)) else 0
        xU, xv, obj, k, t = cU, cv, new, k + 1, t * 1.1
        if still >= 20:
            break
    return xU, xv, objective5(xU, xv, X, y, lam, loss)


# ---------------------------------------------------------------------------- the ReLU-unit oracle
def _relu_sum(C, X, g):
    return np.maximum(C @ X.T, 0.0) @ g


def _orth_complement(x):
    """An orthonormal basis (d, d-1) of the hyperplane orthogonal to x."""
    q = np.linalg.qr(np.column_stack([x, np.eye(len(x))]))[0]
    return q[:, 1:len(x)]


def _exact_candidates(X, g, tol):
    """Candidate maximizers on the unit sphere of F(u) = sum_t g_t relu(<u, x_t>): the maximizer
    either lies inside a cell of the hyperplane arrangement {x_t^perp} (then it is w_S / ||w_S||,
    w_S = sum_{t in S} g_t x_t for the cell's pattern S, and every cell of a central arrangement
    in general position touches a ray where d - 1 hyperplanes meet, so its pattern is that
    ray's pattern with some signs on those d - 1) or on some x_t^perp (recursion in d - 1)."""
    n, d = X.shape
    keep = np.sqrt((X ** 2).sum(1)) > tol
    X, g = X[keep], g[keep]
    n = len(X)
    if d == 1:
        return np.array([[1.0], [-1.0]])
    if n == 0:
        return np.eye(d)[:1]
    cands = []
    for T in itertools.combinations(range(n), d - 1):
        T = list(T)
        _, s, vt = np.linalg.svd(X[T], full_matrices=True)
        if len(s) == d - 1 and s[-1] <= tol * max(1.0, s[0]):
            continue
        r = vt[-1]
        for sgn in (1.0, -1.0):
            base = (X @ (sgn * r)) > tol
            for signs in itertools.product((False, True), repeat=d - 1):
                S = base.copy()
                S[T] = signs
                w = g[S] @ X[S]
                nw = np.linalg.norm(w)
                if nw > 0:
                    cands.append(w / nw)
    for t in range(n):
        B = _orth_complement(X[t] / np.linalg.norm(X[t]))
        sub = _exact_candidates(X @ B, g, tol)
        cands.extend(sub @ B.T)
    return np.array(cands) if cands else np.eye(d)[:1]


def _multistart(X, g, starts, rng, iters=100):
    d = X.shape[1]
    C = np.vstack([rng.standard_normal((starts, d)), X, -X])
    C /= np.maximum(np.linalg.norm(C, axis=1, keepdims=True), 1e-300)
    best = C.copy()
    best_val = _relu_sum(C, X, g)
    for _ in range(iters):                 # move to the maximizer of the current cell's linear piece
        W = ((C @ X.T) > 0) * g @ X
        nw = np.linalg.norm(W, axis=1, keepdims=True)
        C = np.where(nw > 0, W / np.maximum(nw, 1e-300), C)
        val = _relu_sum(C, X, g)
        up = val > best_val
        best[up], best_val[up] = C[up], val[up]
        if not up.any():
            break
    return best


def relu_oracle(X, g, *, method: str = "auto", starts: int = 200, seed: int = 0):
    """max over ||u|| <= 1 of |sum_t g_t relu(<u, x_t>)|, and its maximizer u (unit norm, or 0).

    ``method="exact"`` enumerates the hyperplane arrangement (cost ~ n^(d-1) 2^d: small d only,
    exact for data in general position); ``"multistart"`` runs a cell-to-cell ascent from random
    directions and the data directions (a lower bound on the maximum); ``"auto"`` is exact when
    C(n, d-1) 2^d <= 2e5. Returns (u, value, method used)."""
    X = np.asarray(X, np.float64)
    g = np.asarray(g, np.float64)
    if X.ndim != 2 or g.shape != (X.shape[0],):
        raise ValueError(f"X, g: expected X (n, d) and g (n,), got {X.shape} and {g.shape}")
    if not (np.isfinite(X).all() and np.isfinite(g).all()):
        raise ValueError("X, g: expected finite values")
    n, d = X.shape
    # F depends on u only through its projection on the span of the data: solve there
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    r = int((s > 1e-12 * max(1.0, s[0] if len(s) else 1.0)).sum())
    Q = vt[:r].T                               # (d, r)
    Xr = X @ Q
    if method == "auto":
        method = "exact" if r <= 1 or math.comb(n, r - 1) * 2 ** r <= 2e5 else "multistart"
    if method not in ("exact", "multistart"):
        raise ValueError(f"method: expected 'auto', 'exact' or 'multistart', got {method!r}")
    best_u, best = np.zeros(d), 0.0
    for sign in (1.0, -1.0):
        if r == 0:
            break
        if method == "exact":
            C = _exact_candidates(Xr, sign * g, 1e-12)
        else:
            C = _multistart(Xr, sign * g, starts, np.random.default_rng(seed))
        vals = _relu_sum(C, Xr, sign * g)
        i = int(np.argmax(vals))
        if vals[i] > best:
            best, best_u = float(vals[i]), Q @ C[i]
    return best_u, best, method


# ---------------------------------------------------------------------------- convex NN (8)
# trial points may overflow: each is only compared, and the objective is checked finite
@np.errstate(over="ignore", invalid="ignore")
def _lasso(A, y, lam, loss, v0, iters=20000, tol=1e-13):
    """min_v mean loss(A v) + lam ||v||_1 by FISTA with backtracking and adaptive restart."""
    v = np.array(v0, np.float64)
    z, tk, step = v.copy(), 1.0, 1.0
    F = lambda v: loss_value(A @ v, y, loss) + lam * np.abs(v).sum()
    obj = F(v)
    for _ in range(iters):
        fz = finite_objective(loss_value(A @ z, y, loss), "convex_ball")
        g = A.T @ loss_grad(A @ z, y, loss)
        for _ in range(MAX_HALVINGS):
            vn = z - step * g
            vn = np.sign(vn) * np.maximum(np.abs(vn) - step * lam, 0.0)
            D = vn - z
            if loss_value(A @ vn, y, loss) <= fz + g @ D + D @ D / (2 * step) + 1e-16:
                break
            step /= 2
        else:
            raise line_search_failed("convex_ball")
        new = F(vn)
        if new > obj:
            z, tk = v.copy(), 1.0
            continue
        tn = (1 + math.sqrt(1 + 4 * tk * tk)) / 2
        z = vn + (tk - 1) / tn * (vn - v)
        small = obj - new <= tol * max(1.0, abs(obj))
        v, obj, tk, step = vn, new, tn, step * 1.2
        if small:
            break
    return v


@dataclasses.dataclass
class BallSolution:
    """The convex neural net over the unit ball: units W (m, d) of norm 1 and weights v (m,)."""
    W: np.ndarray
    v: np.ndarray
    objective: float          # (8) at (W, v)
    lower_bound: float        # a certified lower bound on the optimum of (8) (dual value)
    oracle_value: float       # max_u |sum_t loss_grad_t relu(<u, x_t>)| at the solution (<= lam at the optimum)
    iterations: int
    method: str

    @property
    def support(self) -> int:
        return int((self.v != 0).sum())


def convex_ball(X, y, lam: float, loss: str, *, method: str = "auto", max_units: int = 200, tol: float = 1e-6,
                seed: int = 0) -> BallSolution:
    """The convex neural net (8) over the continuous unit ball {||u|| <= 1} by fully corrective
    column generation: solve the l1 problem over the current units, ask the oracle for the unit
    most correlated with the loss gradient, add it while its correlation exceeds lam (1 + tol).
    The dual value at the final gradient, scaled to feasibility by the oracle's maximum, is a
    lower bound: ``objective - lower_bound`` is a certified optimality gap (exact oracle)."""
    X, y = _check(X, y, loss)
    if not lam > 0:
        raise ValueError(f"lam: expected a positive number, got {lam!r}")
    W = np.zeros((0, X.shape[1]))
    v = np.zeros(0)
    used = method
    it = 0
    for it in range(1, max_units + 1):
        f = network_output(W, v, X) if len(W) else np.zeros(len(y))
        u, s, used = relu_oracle(X, loss_grad(f, y, loss), method=method, seed=seed + it)
        if s <= lam * (1 + tol) or not np.any(u):
            break
        W = np.vstack([W, u / np.linalg.norm(u)])
        v = _lasso(np.maximum(X @ W.T, 0), y, lam, loss, np.append(v, 0.0))
        live = v != 0
        W, v = W[live], v[live]
    f = network_output(W, v, X) if len(W) else np.zeros(len(y))
    _, s, _ = relu_oracle(X, loss_grad(f, y, loss), method=method, seed=seed)
    obj = loss_value(f, y, loss) + lam * float(np.abs(v).sum())
    lb = dual_value(f, y, loss, min(1.0, lam / s) if s > 0 else 1.0)
    return BallSolution(W, v, obj, lb, s, it, used)


def support_reduction(A, V, tol: float = 1e-12):
    """Carathéodory for convex neural nets: given features A (n, m) (A[t, j] = relu(<w_j, x_t>))
    and top-layer weights V (m,) or (m, k), return V' with at most n*k + 1 nonzero rows, the same
    outputs A V' = A V and the same group-l1 norm sum_j ||V'_j|| (so the same objective (8) for
    any loss), each V'_j a nonnegative multiple of V_j.

    Writing V_j = c_j e_j (c_j = ||V_j||, e_j a unit vector), the outputs and the norm are the
    conic combination sum_j c_j (vec(a_j e_j^T), 1) in R^(n k + 1); while more than
    rank-many c_j are positive, a null-space direction z of those columns (sum_j z_j = 0 by the
    last row) moves c -> c - theta z until one c_j reaches 0, keeping c >= 0."""
    A = np.asarray(A, np.float64)
    V0 = np.asarray(V, np.float64)
    V = V0.reshape(len(V0), -1)
    n, m = A.shape
    if V.shape[0] != m:
        raise ValueError(f"V: expected {m} rows (one per column of A), got {V.shape}")
    c = np.sqrt((V ** 2).sum(1))
    E = np.where(c[:, None] > 0, V / np.where(c > 0, c, 1.0)[:, None], 0.0)
    M = np.vstack([np.einsum("tj,jk->tkj", A, E).reshape(n * V.shape[1], m), np.ones((1, m))])
    scale = np.abs(M).max(axis=0, initial=0) + 1.0
    while True:
        S = np.flatnonzero(c > tol * c.max(initial=0))
        c[np.setdiff1d(np.arange(m), S)] = 0.0
        if len(S) <= 1:
            break
        Ms = M[:, S] / scale[S]
        _, sv, vt = np.linalg.svd(Ms, full_matrices=True)
        rank = int((sv > 1e-10 * sv[0]).sum())
        if rank >= len(S):
            break
        z = vt[-1] / scale[S]
        if not (z > 0).any():
            z = -z
        pos = z > 0
        ratio = c[S][pos] / z[pos]
        i = int(np.argmin(ratio))
        c[S] -= ratio[i] * z
        c[S[pos][i]] = 0.0                     # the coefficient the step drove to zero, exactly
        c = np.maximum(c, 0.0)
    out = c[:, None] * E
    return out.reshape(V0.shape)


def network_from_convex(W, v):
    """The width-len(v) network of (4) computing the same function as the convex net (W, v) with
    objective4 = loss + lam ||v||_1 (balanced units: u_h = sqrt|v_h| w_h, v_h -> sign sqrt|v_h|)."""
    W, v = np.asarray(W, np.float64), np.asarray(v, np.float64)
    r = np.sqrt(np.abs(v))
    return W * r[:, None], np.sign(v) * r


def corollary1_table(X, y, lam: float, loss: str, widths, *, restarts: int = 3, method: str = "auto",
                     iters: int = 500, seed: int = 0) -> list[dict]:
    """Both directions of Corollary 1 on one problem. The convex net over the unit ball is solved
    (value P, certified lower bound D) and its solution reduced to at most n + 1 units (s of
    them). For each width H: ``trained`` is the best objective (4) over ``restarts`` L-BFGS runs
    from random initializations (always >= D: Theorem 1 maps any width-H network to a feasible
    point of (8) with no larger objective); ``built`` is objective (4) of the network built from
    the reduced convex solution, padded with zero units, for H >= s (equal to P: the network
    attains the convex optimum), else None. Rows: dicts with H, trained, built, P, D, s, n."""
    X, y = _check(X, y, loss)
    restarts, iters = positive_int(restarts, "restarts"), positive_int(iters, "iters")
    widths = list(widths) if not isinstance(widths, (int, np.integer)) else [widths]
    if not widths:
        raise ValueError("widths: expected at least one width, got none")
    widths = [positive_int(H, "widths") for H in widths]      # before the convex solve, not after it
    sol = convex_ball(X, y, lam, loss, method=method, seed=seed)
    A = np.maximum(X @ sol.W.T, 0)
    v_red = support_reduction(A, sol.v) if len(sol.v) else sol.v
    live = v_red != 0
    Wr, vr = sol.W[live], v_red[live]
    s = len(vr)
    rows = []
    for H in widths:
        trained = min(train4(X, y, H, lam, loss, seed=seed + 1000 * r + H, iters=iters)[2] for r in range(restarts))
        built = None
        if H >= s:
            U, v = network_from_convex(Wr, vr)
            U = np.vstack([U, np.zeros((H - s, X.shape[1]))])
            built = objective4(U, np.append(v, np.zeros(H - s)), X, y, lam, loss)
        rows.append({"H": int(H), "n": len(y), "support": s, "convex_P": sol.objective, "convex_D": sol.lower_bound,
                     "trained": trained, "built": built})
    return rows
