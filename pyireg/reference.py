"""Plain-PyTorch twins of every public operation of the native core, written the obvious way:
one ``nn.Sequential`` per network, ``F.cross_entropy`` or the squared loss written with torch
ops, autograd and ``torch.optim.SGD``. One function per engine operation, with the same name:
forward, backward, loss_and_grad, step, evaluate, balance, normalize_units, measures,
unit_balance.

Used by the tests and benchmarks to check the fast path; never used by it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .interop import make_network, modules_from_packed, packed_from_modules  # noqa: F401  (twins' inputs)


def squared_loss(out, target, weights=None):
    """Mean over the batch of 1/2 sum_j w_bj (out_bj - y_bj)^2 (the engine's squared loss)."""
    r = (out - target) ** 2
    if weights is not None:
        r = r * weights
    return 0.5 * r.sum(1).mean()


def _loss(out, y, loss, weights=None):
    if loss == "cross_entropy":
        return F.cross_entropy(out, y)
    return squared_loss(out, y.to(out.dtype), None if weights is None else weights.to(out.dtype))


def _targets(y, loss):
    return torch.as_tensor(y, dtype=torch.long) if loss == "cross_entropy" else torch.as_tensor(np.asarray(y))


def forward(modules, X) -> torch.Tensor:
    """Logits (N, B, k)."""
    X = torch.as_tensor(X)
    with torch.no_grad():
        return torch.stack([m(X.to(m[0].weight.dtype)) for m in modules])


def backward(modules, X, grad_out):
    """Gradients of sum_n <grad_out[n], out[n]> by autograd: (gU, gV, gX), gX summed over networks."""
    X = torch.as_tensor(X).clone().requires_grad_(True)
    G = torch.as_tensor(np.asarray(grad_out))
    gU, gV = [], []
    total = 0
    for n, m in enumerate(modules):
        m.zero_grad(set_to_none=True)
        total = total + (m(X.to(m[0].weight.dtype)) * G[n].to(m[0].weight.dtype)).sum()
    total.backward()
    for m in modules:
        gU.append(m[0].weight.grad.clone())
        gV.append(m[2].weight.grad.T.clone())
    return torch.cat(gU).numpy(), torch.cat(gV).numpy(), X.grad.numpy()


def loss_and_grad(modules, X, y, weights=None, loss="cross_entropy"):
    """Per-network mean loss, and the gradients concatenated unit-major like (U, V)."""
    X, y = torch.as_tensor(X), _targets(y, loss)
    w = None if weights is None else torch.as_tensor(np.asarray(weights))
    losses, gU, gV = [], [], []
    for m in modules:
        m.zero_grad(set_to_none=True)
        loss_n = _loss(m(X.to(m[0].weight.dtype)), y, loss, w)
        loss_n.backward()
        losses.append(loss_n.item())
        gU.append(m[0].weight.grad.clone())
        gV.append(m[2].weight.grad.T.clone())
    return np.array(losses), torch.cat(gU).cpu().numpy(), torch.cat(gV).cpu().numpy()


def make_sgd(modules, lr, momentum, weight_decay) -> torch.optim.SGD:
    """One torch.optim.SGD with a parameter group per network (per-network hyper-parameters)."""
    n = len(modules)
    lr, momentum, weight_decay = (np.broadcast_to(np.asarray(v, dtype=np.float64), (n,))
                                  for v in (lr, momentum, weight_decay))
    groups = [{"params": list(m.parameters()), "lr": float(lr[i]), "momentum": float(momentum[i]),
               "weight_decay": float(weight_decay[i])} for i, m in enumerate(modules)]
    return torch.optim.SGD(groups, lr=float(lr[0]), dampening=0.0, nesterov=False)


def step(modules, opt: torch.optim.Optimizer, X, y, weights=None, loss="cross_entropy") -> np.ndarray:
    """One step of every network on (X, y); returns the per-network losses before the step."""
    X, y = torch.as_tensor(X), _targets(y, loss)
    w = None if weights is None else torch.as_tensor(np.asarray(weights))
    opt.zero_grad(set_to_none=True)
    losses = [_loss(m(X.to(m[0].weight.dtype)), y, loss, w) for m in modules]
    torch.stack(losses).sum().backward()
    opt.step()
    return np.array([float(l.detach()) for l in losses])


def set_hyper(opt: torch.optim.SGD, lr=None, momentum=None, weight_decay=None) -> None:
    n = len(opt.param_groups)
    for key, val in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        if val is None:
            continue
        val = np.broadcast_to(np.asarray(val, dtype=np.float64), (n,))
        for g, v in zip(opt.param_groups, val):
            g[key] = float(v)


def evaluate(modules, X, y, weights=None, loss="cross_entropy"):
    """Per-network error rate (NaN for the squared loss) and mean loss over (X, y)."""
    X, y = torch.as_tensor(X), _targets(y, loss)
    w = None if weights is None else torch.as_tensor(np.asarray(weights))
    err, losses = [], []
    with torch.no_grad():
        for m in modules:
            out = m(X.to(m[0].weight.dtype))
            err.append((out.argmax(1) != y).double().mean().item() if loss == "cross_entropy" else float("nan"))
            losses.append(_loss(out, y, loss, w).item())
    return np.array(err), np.array(losses)


def packed_weights(modules):
    """The (U, V) of a list of modules, unit-major, as numpy arrays."""
    U, V, _, _ = packed_from_modules(modules)
    return U, V


# ----------------------------------------------------------------------------- Theorem 1
def _norms(U, V):
    U, V = torch.as_tensor(np.asarray(U)).double(), torch.as_tensor(np.asarray(V)).double()
    return U, V, U.norm(dim=1), V.norm(dim=1)


def balance(U, V):
    """(U, V) with every unit rescaled to ||u_h|| = ||v_h||; zero units (u_h = 0 or v_h = 0) zeroed."""
    U, V, nu, nv = _norms(U, V)
    live = (nu > 0) & (nv > 0)
    s = torch.where(live, torch.sqrt(nv / torch.where(live, nu, 1.0)), torch.zeros_like(nu))
    inv = torch.where(live, 1.0 / torch.where(live, s, 1.0), torch.zeros_like(nu))
    return (U * s[:, None]).numpy(), (V * inv[:, None]).numpy()


def normalize_units(U, V):
    """(U, V) with ||u_h|| = 1 and the scale moved into v_h; units with u_h = 0 get v_h = 0."""
    U, V, nu, _ = _norms(U, V)
    live = nu > 0
    inv = torch.where(live, 1.0 / torch.where(live, nu, 1.0), torch.zeros_like(nu))
    return (U * inv[:, None]).numpy(), (V * torch.where(live, nu, 0.0)[:, None]).numpy()


def measures(U, V, offsets):
    """Per-network l2_penalty, group_l1, path_l1, path_l2, from the path weights themselves."""
    U, V = torch.as_tensor(np.asarray(U)).double(), torch.as_tensor(np.asarray(V)).double()
    out = {k: [] for k in ("l2_penalty", "group_l1", "path_l1", "path_l2", "norm_U", "norm_V")}
    for n in range(len(offsets) - 1):
        u, v = U[offsets[n]:offsets[n + 1]], V[offsets[n]:offsets[n + 1]]
        paths = u[:, :, None] * v[:, None, :]            # H x d x k: weight of every path
        out["l2_penalty"].append(0.5 * (u.pow(2).sum() + v.pow(2).sum()).item())
        out["group_l1"].append((u.norm(dim=1) * v.norm(dim=1)).sum().item())
        out["path_l1"].append(paths.abs().sum().item())
        out["path_l2"].append(paths.pow(2).sum().sqrt().item())
        out["norm_U"].append(u.norm().item())
        out["norm_V"].append(v.norm().item())
    return {k: np.array(v) for k, v in out.items()}


def unit_balance(U, V):
    U, V, nu, nv = _norms(U, V)
    return (nu ** 2 - nv ** 2).numpy()
