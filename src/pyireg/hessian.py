"""The top of the Hessian spectrum of every network of a PackedMLP, and the edge-of-stability
experiment built on it.

``hessian_top(model, X, y)``: for each network n, the largest (algebraic) eigenvalue of the
Hessian of its mean training loss on (X, y) with respect to all of its weights (U_n and V_n).
The networks are written as one plain-torch packed model (one wide first layer Z = X U^T, the
second layer as a segmented sum by index_add, the per-network mean losses summed): the
networks share no weight, so the Hessian of the sum is block-diagonal and one double-backward
Hessian-vector product gives every network's own product at once. Lanczos with full
reorthogonalization runs on all networks together, with per-network inner products (segment
sums over the units) and a per-network convergence test on the Ritz residual; a network stops
(its value and iteration count frozen) when it converges or its Krylov space is exhausted.

ReLU's second derivative is taken as zero (autograd's convention, and the one of
``torch.autograd.functional.hessian``, which the tests compare with).

``edge_of_stability(...)``: full-batch gradient descent at several learning rates on the native
packed model (``MomentumSGD`` with momentum 0), recording ``hessian_top`` every few steps (Cohen et
al. 2021: the top eigenvalue rises to about 2 / lr and hovers there). Figures:
``pyireg.tutorial_plots.plot_edge_of_stability``.
"""
from __future__ import annotations

import numpy as np

from ._validate import positive_int

_BREAKDOWN = 1e-12  # beta below this times the network's Ritz scale: its Krylov space is exhausted


def _torch():
    import torch
    return torch


class _PackedHessian:
    """Hessian-vector products of every network's mean loss on (X, y), batched over networks."""

    def __init__(self, model, X, y, weights=None, dtype=None):
        torch = _torch()
        self.torch = torch
        dtype = dtype or torch.float64
        X, y, w = model._batch(X, y, weights)
        self.N, self.B = model.num_networks, X.shape[0]
        self.seg = torch.as_tensor(np.repeat(np.arange(self.N), np.diff(model.offsets)))
        self.U = torch.tensor(model.U, dtype=dtype, requires_grad=True)
        self.V = torch.tensor(model.V, dtype=dtype, requires_grad=True)
        Xt = torch.as_tensor(X).to(dtype)
        Z = Xt @ self.U.T                                                  # B x S
        A = torch.relu(Z) if model.activation == "relu" else Z
        out = torch.zeros(self.B, self.N, model.out_features, dtype=dtype)
        out = out.index_add(1, self.seg, A.unsqueeze(2) * self.V.unsqueeze(0))  # B x N x k
        if model.loss == "cross_entropy":
            yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
            logp = torch.log_softmax(out, dim=2)
            per = -logp.gather(2, yt.view(-1, 1, 1).expand(-1, self.N, 1))[..., 0]   # B x N
        else:
            r = (out - torch.as_tensor(y).to(dtype).unsqueeze(1)) ** 2
            if w is not None:
                r = r * torch.as_tensor(w).to(dtype).unsqueeze(1)
            per = 0.5 * r.sum(2)
        self.losses = per.mean(0)                                          # N
        self.gU, self.gV = torch.autograd.grad(self.losses.sum(), (self.U, self.V), create_graph=True)

    def hvp(self, qU, qV):
        dot = (self.gU * qU).sum() + (self.gV * qV).sum()
        hU, hV = self.torch.autograd.grad(dot, (self.U, self.V), retain_graph=True, allow_unused=True)
        return (hU if hU is not None else self.torch.zeros_like(qU)).detach(), \
            (hV if hV is not None else self.torch.zeros_like(qV)).detach()

    def dot(self, aU, aV, bU, bV):
        rows = (aU * bU).sum(1) + (aV * bV).sum(1)
        return self.torch.zeros(self.N, dtype=rows.dtype).index_add(0, self.seg, rows)

    def scale(self, c, aU, aV):
        s = c[self.seg].unsqueeze(1)
        return aU * s, aV * s


def _check_memory(model, B: int, iters: int) -> None:
    """A rough float64 estimate, checked before anything is allocated: the graph of the loss and
    its gradient (a few B x S and B x S x k tensors) and the Lanczos vectors."""
    from . import _core
    S, d, k = model.num_units, model.in_features, model.out_features
    need = 8 * (6 * B * S * (k + 1) + (iters + 6) * S * (d + k))
    limit = _core.memory_limit()
    if need > limit:
        raise MemoryError(f"hessian_top: about {need / 2**30:.1f} GiB needed for {S} units, {B} samples and "
                          f"{iters} iterations, above the memory limit of {limit / 2**30:.1f} GiB; pass fewer "
                          "samples or iterations")


def hessian_top(model, X, y, *, weights=None, iters: int = 100, tol: float = 1e-6, seed: int = 0,
                return_info: bool = False):
    """The largest eigenvalue of each network's Hessian of its mean loss on (X, y), shape (N,),
    float64 (module docstring). Lanczos with full reorthogonalization for at most ``iters``
    iterations per network; a network has converged when its Ritz residual
    beta_j |s_j| <= tol * max(|theta|, 1e-30). With ``return_info``: (values, iterations,
    converged), iterations and converged per network. Memory: ``iters`` vectors the size of
    the weights in float64, plus the graph of the loss on the whole of X."""
    torch = _torch()
    iters = positive_int(iters, "iters")
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol: expected a finite tolerance > 0, got {tol!r}")
    _check_memory(model, np.shape(X)[0] if np.ndim(X) == 2 else 1, iters)
    P = _PackedHessian(model, X, y, weights)
    N = P.N
    gen = torch.Generator().manual_seed(int(seed))
    qU = torch.randn(P.U.shape, generator=gen, dtype=P.U.dtype)
    qV = torch.randn(P.V.shape, generator=gen, dtype=P.V.dtype)
    # a diverged network (non-finite loss or weights) gets NaN and takes no part (zero vectors)
    bad = ~torch.isfinite(P.losses.detach()) | ~torch.isfinite(P.dot(P.gU.detach(), P.gV.detach(), P.gU.detach(),
                                                                  P.gV.detach()))
    bad |= ~torch.isfinite(P.dot(P.U.detach(), P.V.detach(), P.U.detach(), P.V.detach()))
    qU, qV = P.scale(torch.where(bad, 0.0, 1.0 / torch.sqrt(P.dot(qU, qV, qU, qV))), qU, qV)
    Q = [(qU, qV)]
    alphas, betas = [], []
    value = torch.full((N,), float("nan"), dtype=torch.float64)
    its = torch.zeros(N, dtype=torch.int64)
    done = bad.clone()
    for j in range(iters):
        wU, wV = P.hvp(*Q[-1])
        wU, wV = P.scale((~bad).to(wU.dtype), torch.nan_to_num(wU), torch.nan_to_num(wV))
        a = P.dot(wU, wV, *Q[-1])
        alphas.append(a)
        for _ in range(2):  # full reorthogonalization, twice ("twice is enough")
            for q in Q:
                c = P.dot(wU, wV, *q)
                sU, sV = P.scale(c, *q)
                wU, wV = wU - sU, wV - sV
        b = torch.sqrt(P.dot(wU, wV, wU, wV))
        m = len(alphas)
        T = torch.diag_embed(torch.stack(alphas, 1))
        if m > 1:
            off = torch.stack(betas, 1)
            T = T + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
        theta, S = torch.linalg.eigh(T)
        top, s_last = theta[:, -1], S[:, -1, -1]
        scale = torch.clamp(theta.abs().max(1).values, min=1e-30)
        exhausted = b <= _BREAKDOWN * scale
        conv = exhausted | (b * s_last.abs() <= tol * torch.clamp(top.abs(), min=1e-30))
        new = conv & ~done
        value[new] = top[new]
        its[new] = j + 1
        done |= conv
        if bool(done.all()) or j == iters - 1:
            break
        inv = torch.where(exhausted, torch.zeros_like(b), 1.0 / torch.where(exhausted, torch.ones_like(b), b))
        betas.append(b)
        Q.append(P.scale(inv, wU, wV))
    value[~done] = top[~done]
    its[~done] = len(alphas)
    value[bad] = float("nan")
    its[bad] = 0
    out = value.numpy()
    if return_info:
        return out, its.numpy(), done.numpy()
    return out


def edge_of_stability(widths=(16, 64), lrs=(0.1, 0.4, 0.8, 1.2), *, steps: int = 1000, every: int = 50,
                      samples: int = 200, d: int = 10, teacher_width: int = 8, activation: str = "relu",
                      init_scale: float = 0.3, seed: int = 0, iters: int = 60, tol: float = 1e-5):
    """Full-batch GD (the native ``MomentumSGD`` with momentum 0) of every (width, lr) pair,
    packed into one model, on a squared-loss regression of a random ReLU teacher (``samples`` Gaussian
    inputs in ``d`` dimensions, one output) from a small initialization (``init_scale`` times
    the default standard deviations, so the sharpness starts low and rises), recording each
    network's loss and ``hessian_top`` every ``every`` steps. Returns a tidy pandas DataFrame with columns
    step, width, lr, two_over_lr, loss, hessian_top, lanczos_iters.

    Learning rates at which 2 / lr is below the initial sharpness diverge or settle at once;
    the experiment shows the rise of the sharpness (progressive sharpening) up to 2 / lr and its
    hovering there while the loss keeps falling, non-monotonically. At the defaults (about 3 s)
    lr 0.8 and 1.2 reach their 2 / lr (2.5, 1.67) and hover there; at lr 0.1 and 0.4 (2 / lr =
    20, 5) the sharpness is still rising at step 1,000 (about 2-3)."""
    import pandas as pd

    from .model import PackedMLP
    from .optim import MomentumSGD
    widths, lrs = [positive_int(w, "widths") for w in widths], [float(v) for v in lrs]
    if not lrs or not all(np.isfinite(v) and v > 0 for v in lrs):
        raise ValueError(f"lrs: expected learning rates > 0, got {lrs!r}")
    steps, every = positive_int(steps, "steps"), positive_int(every, "every")
    X, y = teacher_regression(samples, d, teacher_width, seed)
    pairs = [(w, lr) for lr in lrs for w in widths]
    if not (np.isfinite(init_scale) and init_scale > 0):
        raise ValueError(f"init_scale: expected a finite scale > 0, got {init_scale!r}")
    H = np.array([w for w, _ in pairs], dtype=np.float64)
    model = PackedMLP([w for w, _ in pairs], d, 1, activation=activation, loss="squared", seed=seed + 1,
                      init_std=(np.full(len(pairs), init_scale / np.sqrt(d)), init_scale / np.sqrt(H)), dtype="float64")
    opt = MomentumSGD(model, np.array([lr for _, lr in pairs]), 0.0, 0.0)
    rows = []
    for s in range(steps + 1):
        if s % every == 0 or s == steps:
            top, its, _ = hessian_top(model, X, y, iters=iters, tol=tol, seed=s, return_info=True)
            _, loss = model.evaluate(X, y)
            rows += [{"step": s, "width": w, "lr": lr, "two_over_lr": 2.0 / lr, "loss": float(loss[i]),
                      "hessian_top": float(top[i]), "lanczos_iters": int(its[i])} for i, (w, lr) in enumerate(pairs)]
        if s < steps:
            opt.step(X, y)  # diverged networks are marked in opt.diverged and do not touch the others
    return pd.DataFrame(rows)


def teacher_regression(samples: int, d: int, width: int, seed: int):
    """Gaussian inputs (samples x d) and the outputs (samples x 1) of a random two-layer ReLU
    teacher of the given width, scaled to unit variance: a small deterministic regression task."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, d))
    W = rng.standard_normal((width, d)) / np.sqrt(d)
    a = rng.standard_normal(width)
    y = np.maximum(X @ W.T, 0) @ a
    y = (y - y.mean()) / max(float(y.std()), 1e-12)
    return X, y[:, None]
