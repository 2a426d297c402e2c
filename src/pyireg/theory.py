"""Theorem 1 of the paper, executable: weight decay on both layers (objective 4) and unit-norm
hidden units with a (group-)l1 penalty on the top layer (objective 5) have the same optimal
value, because each unit can be rescaled without changing the function.

Objectives use the mean loss over the n samples (the paper's sum, divided by n; lambda scales
accordingly):
    (4)  L(U, V) + lambda/2 * sum_h (||u_h||^2 + ||v_h||^2)
    (5)  L(U, V) + lambda * sum_h ||v_h||      subject to ||u_h|| <= 1
Every network of a packed model is one problem, so several lambdas (or widths, or seeds) are
solved at once: lam is a scalar or one value per network.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ._validate import per_network
from .model import PackedMLP
from .optim import MomentumSGD


def _lam(model, lam):
    return per_network(lam, "lam", model.num_networks, np.float64)


def _full_loss(model, X, y):
    return model.evaluate(X, y, batch_size=4096)[1]


def objective4(model: PackedMLP, X, y, lam) -> np.ndarray:
    """Mean loss + lambda/2 sum_h (||u_h||^2 + ||v_h||^2), per network."""
    return _full_loss(model, X, y) + _lam(model, lam) * model.measures()["l2_penalty"]


def objective5(model: PackedMLP, X, y, lam, tol: float = 1e-5) -> np.ndarray:
    """Mean loss + lambda sum_h ||v_h|| per network; inf where some ||u_h|| > 1 + tol (infeasible)."""
    nU = np.sqrt((model.U.astype(np.float64) ** 2).sum(1))
    nV = np.sqrt((model.V.astype(np.float64) ** 2).sum(1))
    feasible = np.maximum.reduceat(nU, model.offsets[:-1]) <= 1 + tol
    val = _full_loss(model, X, y) + _lam(model, lam) * np.add.reduceat(nV, model.offsets[:-1])
    return np.where(feasible, val, np.inf)


@dataclasses.dataclass
class Trace:
    iterations: np.ndarray   # (T,)
    objective: np.ndarray    # (T, N)


def train_objective4(model: PackedMLP, X, y, lam, *, iters=2000, lr=0.5, momentum=0.9, record_every=10) -> Trace:
    """Full-batch gradient descent with momentum and weight decay lam on both layers: the
    packed MomentumSGD on the whole data set each step, which minimizes objective (4)."""
    opt = MomentumSGD(model, lr, momentum, _lam(model, lam))
    its, vals = [], []
    for t in range(iters + 1):
        if t % record_every == 0 or t == iters:
            its.append(t)
            vals.append(objective4(model, X, y, lam))
        if t < iters:
            opt.step(X, y)
    return Trace(np.array(its), np.array(vals))


def project_rows(U: np.ndarray) -> np.ndarray:
    """Every row of U projected onto the unit ball (||u_h|| <= 1), in float64."""
    U = np.asarray(U, dtype=np.float64)
    return U / np.maximum(1.0, np.sqrt((U ** 2).sum(1)))[:, None]


def group_soft_threshold(V: np.ndarray, thresh: np.ndarray) -> np.ndarray:
    """v_h -> max(0, 1 - thresh_h / ||v_h||) v_h for every row (the prox of thresh_h * ||v_h||),
    in float64."""
    V = np.asarray(V, dtype=np.float64)
    n = np.sqrt((V ** 2).sum(1))
    return V * np.maximum(0.0, 1.0 - thresh / np.maximum(n, 1e-300))[:, None]


def project_units(model: PackedMLP) -> None:
    """Project every u_h of the model onto the unit ball, in place."""
    model.U[...] = project_rows(model.U).astype(model.dtype)


def train_objective5(model: PackedMLP, X, y, lam, *, iters=2000, step=1.0, record_every=10) -> Trace:
    """Accelerated proximal gradient for objective (5), every network with its own step size:
    a gradient step on the loss (native loss_and_grad) from the extrapolated point, then the
    prox of the constraint and penalty (projection of each u_h on the unit ball, group
    soft-thresholding of each v_h by step * lambda). The step is found by backtracking on the
    quadratic upper bound and momentum restarts whenever the objective would rise, so the
    objective never increases."""
    project_units(model)
    lam_n = _lam(model, lam)
    N, w = model.num_networks, model.widths
    off = model.offsets[:-1]
    t = np.full(N, float(step))
    k = np.ones(N)
    xU, xV = model.U.astype(np.float64), model.V.astype(np.float64)
    yU, yV = xU.copy(), xV.copy()
    obj = objective5(model, X, y, lam)
    its, vals = [0], [obj.copy()]

    def put(U, V):
        model.U[...] = U
        model.V[...] = V

    def per_net(A):
        return np.add.reduceat(A.sum(1), off)

    for it in range(1, iters + 1):
        put(yU, yV)
        fy, gU, gV = model.loss_and_grad(X, y)
        while True:
            tu = np.repeat(t, w)[:, None]
            cU = project_rows(yU - tu * gU)
            cV = group_soft_threshold(yV - tu * gV, np.repeat(t * lam_n, w))
            put(cU, cV)
            fc = _full_loss(model, X, y)
            dU, dV = cU - yU, cV - yV
            bound = fy + per_net(dU * gU) + per_net(dV * gV) + (per_net(dU ** 2) + per_net(dV ** 2)) / (2 * t)
            bad = fc > bound + 1e-12 * np.abs(fy)
            if not bad.any():
                break
            t = np.where(bad, t / 2, t)
        new_obj = fc + lam_n * np.add.reduceat(np.sqrt((cV ** 2).sum(1)), off)
        up = new_obj > obj                      # restart these: back to x, no momentum
        keep = np.repeat(~up, w)[:, None]
        beta = np.repeat(np.where(up, 0.0, (k - 1) / (k + 2)), w)[:, None]
        nU, nV = np.where(keep, cU, xU), np.where(keep, cV, xV)
        yU, yV = nU + beta * (nU - xU), nV + beta * (nV - xV)
        xU, xV = nU, nV
        obj = np.where(up, obj, new_obj)
        k = np.where(up, 1.0, k + 1)
        t *= 1.05
        if it % record_every == 0 or it == iters:
            its.append(it)
            vals.append(obj.copy())
    put(xU, xV)
    return Trace(np.array(its), np.array(vals))
