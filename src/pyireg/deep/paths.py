"""Path norms of deep bias-free ReLU networks and Path-SGD (Neyshabur, Salakhutdinov & Srebro,
2015) for an nn.Sequential of bias-free nn.Linear and nn.ReLU layers, in plain PyTorch."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..measures import scaled_path_norm


def _mats(weights):
    Ws = [torch.as_tensor(W) for W in weights]
    if not Ws or any(W.ndim != 2 for W in Ws):
        raise ValueError("weights: expected a non-empty list of 2-d (out, in) matrices")
    for i in range(1, len(Ws)):
        if Ws[i].shape[1] != Ws[i - 1].shape[0]:
            raise ValueError(f"weights: layer {i} takes {Ws[i].shape[1]} inputs but layer {i - 1} gives "
                             f"{Ws[i - 1].shape[0]}")
    return Ws


def path_norm(weights, p: float = 2.0) -> float:
    """phi_p = (sum over input-output paths of prod_e |w_e|^p)^(1/p) for the layers
    ``weights`` (list of (out, in) matrices, applied first to last); p = inf gives the largest
    path product. One forward pass of |W|^p (a dynamic program over layers), in float64."""
    p = float(p)
    if not p > 0:
        raise ValueError(f"p: expected a positive number or inf, got {p!r}")
    Ws = [W.detach().to(torch.float64).abs() for W in _mats(weights)]
    g = torch.ones(Ws[0].shape[1], dtype=torch.float64)
    if p == float("inf"):
        for W in Ws:
            g = (W * g[None, :]).amax(1)
        return float(g.max())
    for W in Ws:
        g = W.pow(p) @ g
    direct = float(g.sum() ** (1.0 / p))
    if 0 < direct < math.inf or not all(bool(torch.isfinite(W).all()) for W in Ws):
        return direct
    # |w|^p over- or underflowed float64 (|w| = 100, p = 300): each layer scaled first
    return scaled_path_norm([W.cpu().numpy() for W in Ws], p)


def path_scaling(weights):
    """Path-SGD's per-weight scaling kappa_e = gamma_in(i)^2 gamma_out(j)^2 for the edge from
    unit i of layer l-1 to unit j of layer l: gamma_in^2 by a forward pass of the squared weights
    from all-ones inputs, gamma_out^2 by a backward pass from all-ones outputs (the thesis's
    dynamic program; kappa_e = 1/2 d^2 phi_2^2 / d w_e^2). Returns one tensor per layer."""
    Ws = [W.detach() for W in _mats(weights)]
    sq = [W * W for W in Ws]
    g_in = [torch.ones(Ws[0].shape[1], dtype=Ws[0].dtype)]
    for S in sq[:-1]:
        g_in.append(S @ g_in[-1])
    g_out = [torch.ones(Ws[-1].shape[0], dtype=Ws[-1].dtype)]
    for S in reversed(sq[1:]):
        g_out.append(S.T @ g_out[-1])
    g_out.reverse()
    return [go[:, None] * gi[None, :] for gi, go in zip(g_in, g_out)]


def _linears(model):
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model: expected an nn.Sequential, got {type(model).__name__}")
    lins = []
    for i, layer in enumerate(model):
        if isinstance(layer, nn.Linear):
            if layer.bias is not None:
                raise ValueError(f"model[{i}]: Path-SGD here takes bias-free nn.Linear layers (bias=False)")
            lins.append(layer)
        elif not isinstance(layer, (nn.ReLU, nn.Identity)):
            raise TypeError(f"model[{i}]: expected nn.Linear(bias=False), nn.ReLU or nn.Identity, got "
                             f"{type(layer).__name__}")
    if not lins:
        raise ValueError("model: holds no nn.Linear layer")
    return lins


class PathSGD(torch.optim.Optimizer):
    """Path-SGD: w_e <- w_e - lr * buf_e with buf = momentum * buf + grad_e / kappa_e (kappa from
    ``path_scaling`` of the weights before the step; 0/0 = 0 where kappa = 0). Steepest descent
    w.r.t. the diagonal of phi_2^2: every step, and so the whole trajectory of the network's
    function, is invariant to rescaling a hidden unit (incoming weights times c > 0, outgoing
    weights divided by c), which plain SGD's is not. Momentum acts on the rescaled gradient, so it
    keeps the invariance."""

    def __init__(self, model, lr: float, momentum: float = 0.0):
        if not lr > 0:
            raise ValueError(f"lr: expected a positive number, got {lr!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum: expected a number in [0, 1), got {momentum!r}")
        self._lins = _linears(model)
        super().__init__([lin.weight for lin in self._lins], {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        params = group["params"]
        kappas = path_scaling(params)
        for W, kappa in zip(params, kappas):
            if W.grad is None:
                continue
            q = torch.where(kappa > 0, 1.0 / torch.where(kappa > 0, kappa, torch.ones_like(kappa)),
                            torch.zeros_like(kappa))
            g = W.grad * q
            state = self.state[W]
            if group["momentum"] > 0:
                buf = state.get("momentum_buffer")
                buf = g.clone() if buf is None else buf.mul_(group["momentum"]).add_(g)
                state["momentum_buffer"] = buf
                g = buf
            W.add_(g, alpha=-group["lr"])
        return loss


@torch.no_grad()
def rescale_hidden(model, scales, optimizer=None) -> None:
    """Rescale every hidden unit: the incoming weights of unit j of hidden layer l times
    scales[l][j] > 0 and its outgoing weights divided by it (the function is unchanged). A Path-SGD
    optimizer's momentum buffers are rescaled the same way when given."""
    lins = _linears(model)
    if len(scales) != len(lins) - 1:
        raise ValueError(f"scales: expected {len(lins) - 1} vectors (one per hidden layer), got {len(scales)}")
    for lin_in, lin_out, s in zip(lins[:-1], lins[1:], scales):
        s = torch.as_tensor(s, dtype=lin_in.weight.dtype)
        if s.shape != (lin_in.weight.shape[0],) or not bool((s > 0).all()):
            raise ValueError(f"scales: expected positive vectors of the hidden widths, got shape {tuple(s.shape)}")
        for W, shape in ((lin_in.weight, s[:, None]), (lin_out.weight, 1.0 / s[None, :])):
            W.mul_(shape)
            if optimizer is not None and "momentum_buffer" in optimizer.state.get(W, {}):
                optimizer.state[W]["momentum_buffer"].mul_(shape)
