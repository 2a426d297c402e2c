"""A deep bias-free ReLU perceptron and the thesis's conditions C1-C3 measured on it (Figure 3's
check, at a width these machines run)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import thesis_measures as TM
from .._validate import positive_int


def perceptron(in_features: int, width: int, depth: int, out_features: int, *, seed: int = 0,
               dtype=torch.float64) -> nn.Sequential:
    """depth layers: (depth - 1) hidden ReLU layers of ``width`` units, bias-free, He-normal init."""
    for name, value in (("in_features", in_features), ("width", width), ("depth", depth),
                        ("out_features", out_features)):
        positive_int(value, name)
    if depth < 2:
        raise ValueError(f"depth: expected at least 2 layers, got {depth}")
    dims = [in_features] + [width] * (depth - 1) + [out_features]
    layers = []
    # the CPU stream seeded as torch.manual_seed(seed) seeds it (the same weights as ever), on a
    # copy that is restored afterwards; no GPU stream is touched (manual_seed reseeds them all)
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        for i in range(depth):
            lin = nn.Linear(dims[i], dims[i + 1], bias=False, dtype=dtype)
            nn.init.normal_(lin.weight, std=(2.0 / dims[i]) ** 0.5)
            layers.append(lin)
            if i < depth - 1:
                layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def weights_of(model: nn.Sequential):
    """The (out, in) weight matrices of the model's linear layers, as float64 numpy arrays."""
    return [m.weight.detach().to(torch.float64).numpy().copy() for m in model if isinstance(m, nn.Linear)]


def conditions_report(model: nn.Sequential, X, magnitudes=(1e-3, 1e-2, 1e-1), *, samples: int = 8) -> dict:
    """C1 (1/mu over ``samples`` inputs of X), C2 (flip ratio per magnitude) and C3 (the range of
    the per-unit norm ratios over the hidden layers) of the model's weights."""
    Ws = weights_of(model)
    X = np.asarray(X, np.float64)
    c1 = TM.c1(Ws, X[:samples])
    c3 = np.concatenate(TM.c3(Ws))
    return {"inv_mu": c1["inv_mu"], "inv_mu_inner": c1["inv_mu_inner"], "inv_mu_edge": c1["inv_mu_edge"],
            "flip_ratio": dict(zip(magnitudes, TM.c2(Ws, X, magnitudes).tolist())),
            "c3_min": float(c3.min()), "c3_max": float(c3.max())}
