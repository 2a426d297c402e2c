"""Plain-PyTorch twins of every public operation of the native core, written the obvious way:
one ``nn.Sequential`` per network, ``F.cross_entropy``, autograd and ``torch.optim.SGD``.

Used by the tests and benchmarks to check the fast path; never used by it.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


def make_network(d: int, h: int, k: int, activation: str = "relu") -> nn.Sequential:
    act = nn.ReLU() if activation == "relu" else nn.Identity()
    return nn.Sequential(nn.Linear(d, h, bias=False), act, nn.Linear(h, k, bias=False))


def modules_from_packed(U, V, offsets, activation="relu", dtype=None):
    """One ``nn.Sequential`` per network, holding copies of the packed weights."""
    U = torch.as_tensor(np.asarray(U))
    V = torch.as_tensor(np.asarray(V))
    if dtype is not None:
        U, V = U.to(dtype), V.to(dtype)
    mods = []
    for n in range(len(offsets) - 1):
        a, b = int(offsets[n]), int(offsets[n + 1])
        m = make_network(U.shape[1], b - a, V.shape[1], activation).to(U.dtype)
        with torch.no_grad():
            m[0].weight.copy_(U[a:b])
            m[2].weight.copy_(V[a:b].T)
        mods.append(m)
    return mods


def packed_from_modules(modules):
    """(U, V, widths, activation) from a list of two-layer ``nn.Sequential`` networks."""
    if len(modules) == 0:
        raise ValueError("modules: expected at least one network")
    Us, Vs, widths, acts = [], [], [], set()
    for i, m in enumerate(modules):
        if not (isinstance(m, nn.Sequential) and len(m) == 3 and isinstance(m[0], nn.Linear)
                and isinstance(m[2], nn.Linear) and m[0].bias is None and m[2].bias is None
                and isinstance(m[1], (nn.ReLU, nn.Identity))):
            raise ValueError(f"modules[{i}]: expected nn.Sequential(Linear(d, H, bias=False), "
                             "ReLU() or Identity(), Linear(H, k, bias=False))")
        acts.add("relu" if isinstance(m[1], nn.ReLU) else "linear")
        Us.append(m[0].weight.detach().cpu().numpy())
        Vs.append(m[2].weight.detach().cpu().numpy().T)
        widths.append(m[0].weight.shape[0])
    if len(acts) != 1:
        raise ValueError("modules: expected the same activation in every network")
    if len({u.shape[1] for u in Us}) != 1 or len({v.shape[1] for v in Vs}) != 1:
        raise ValueError("modules: expected the same in_features and out_features in every network")
    return np.concatenate(Us), np.concatenate(Vs), widths, acts.pop()


def forward(modules, X) -> torch.Tensor:
    """Logits (N, B, k)."""
    X = torch.as_tensor(X)
    with torch.no_grad():
        return torch.stack([m(X.to(m[0].weight.dtype)) for m in modules])


def loss_and_grad(modules, X, y):
    """Per-network mean cross-entropy, and the gradients concatenated unit-major like (U, V)."""
    X, y = torch.as_tensor(X), torch.as_tensor(y, dtype=torch.long)
    losses, gU, gV = [], [], []
    for m in modules:
        m.zero_grad(set_to_none=True)
        loss = F.cross_entropy(m(X.to(m[0].weight.dtype)), y)
        loss.backward()
        losses.append(loss.item())
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


def sgd_step(modules, opt: torch.optim.SGD, X, y) -> np.ndarray:
    """One step of every network on (X, y); returns the per-network losses before the step."""
    X, y = torch.as_tensor(X), torch.as_tensor(y, dtype=torch.long)
    opt.zero_grad(set_to_none=True)
    losses = [F.cross_entropy(m(X.to(m[0].weight.dtype)), y) for m in modules]
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


def evaluate(modules, X, y):
    """Per-network error rate and mean loss over (X, y)."""
    X, y = torch.as_tensor(X), torch.as_tensor(y, dtype=torch.long)
    err, loss = [], []
    with torch.no_grad():
        for m in modules:
            out = m(X.to(m[0].weight.dtype))
            err.append((out.argmax(1) != y).double().mean().item())
            loss.append(F.cross_entropy(out, y).item())
    return np.array(err), np.array(loss)


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
