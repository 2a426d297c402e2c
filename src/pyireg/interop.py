"""Copies between a PackedMLP's packed weights and plain PyTorch modules (one
``nn.Sequential(Linear(d, H, bias=False), act, Linear(H, k, bias=False))`` per network).
Imports torch lazily: the core of pyireg needs only numpy."""
from __future__ import annotations

import numpy as np


def make_network(d: int, h: int, k: int, activation: str = "relu"):
    from torch import nn
    act = nn.ReLU() if activation == "relu" else nn.Identity()
    return nn.Sequential(nn.Linear(d, h, bias=False), act, nn.Linear(h, k, bias=False))


def modules_from_packed(U, V, offsets, activation="relu", dtype=None):
    """One ``nn.Sequential`` per network, holding copies of the packed weights."""
    import torch
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
    from torch import nn
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
