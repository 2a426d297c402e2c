"""The operators' formulas in plain PyTorch ops, differentiable by autograd: the path that
gradients take when they must themselves be differentiable (``create_graph=True``, and inside
``torch.func`` transforms, whose backward always records a graph). The same formulas as the
native kernels (csrc/cpu/kernels.h), written with whole-tensor ops:

    Z = X U^T (B, S),  A = act(Z),  out[n] = A[:, units of n] V[units of n]    (N, B, k)
    given G = d/d(out) (N, B, k), with G_h = G[network of unit h]:
        dV[h, j] = sum_b A[b, h] G_h[b, j]       dA[b, h] = sum_j G_h[b, j] V[h, j]
        dZ = dA * act'(Z)                        dU = dZ^T X,  dX = dZ U
    losses: cross-entropy G = (softmax(out) - onehot(y)) / B;  squared G = w (out - y) / B

They run on any device torch runs on, and take O(S B k) memory (the per-unit products), against
the kernels' O(chunk x B) scratch: use them for second-order work on models that fit.
"""
import torch
import torch.nn.functional as F
from torch import Tensor


def unit_network(offsets: Tensor, S: int) -> Tensor:
    """The network of every unit (S,), from offsets (N + 1)."""
    N = offsets.shape[0] - 1
    return torch.repeat_interleave(torch.arange(N, device=offsets.device), offsets.diff(), output_size=S)


def one_hot(y: Tensor, k: int, dtype: torch.dtype) -> Tensor:
    """(B, k) indicators of the labels; unlike F.one_hot, no data-dependent checks (vmap)."""
    return (y.long().unsqueeze(-1) == torch.arange(k, device=y.device)).to(dtype)


def _act(Z: Tensor, activation: str) -> Tensor:
    return torch.relu(Z) if activation == "relu" else Z


def forward(U: Tensor, V: Tensor, X: Tensor, offsets: Tensor, activation: str) -> Tensor:
    """Outputs (N, B, k)."""
    N, B, k = offsets.shape[0] - 1, X.shape[0], V.shape[1]
    A = _act(X @ U.T, activation)                             # (B, S)
    P = A.T.unsqueeze(2) * V.unsqueeze(1)                     # (S, B, k): unit h's share of its output
    return P.new_zeros((N, B, k)).index_add(0, unit_network(offsets, U.shape[0]), P)


def forward_vjp(grad_out: Tensor, U: Tensor, V: Tensor, X: Tensor, offsets: Tensor, activation: str,
                need_U: bool, need_V: bool, need_X: bool):
    """(gU, gV, gX) of sum_n <grad_out[n], out[n]>, None for those not asked for."""
    Z = X @ U.T                                               # (B, S)
    A = _act(Z, activation)
    Gh = grad_out.index_select(0, unit_network(offsets, U.shape[0]))   # (S, B, k)
    gV = (A.T.unsqueeze(2) * Gh).sum(1) if need_V else None
    gU = gX = None
    if need_U or need_X:
        dZ = (Gh * V.unsqueeze(1)).sum(2).T                   # dA (B, S)
        if activation == "relu":
            dZ = dZ * (Z > 0).to(dZ.dtype)
        gU = dZ.T @ X if need_U else None
        gX = dZ @ U if need_X else None
    return gU, gV, gX


def losses(U, V, X, y, weights, offsets, activation: str, loss: str) -> Tensor:
    """Per-network mean loss (N,)."""
    out = forward(U, V, X, offsets, activation)
    if loss == "cross_entropy":
        logp = F.log_softmax(out, dim=-1)
        return -logp.gather(2, y.long().view(1, -1, 1).expand(out.shape[0], -1, 1)).squeeze(2).mean(1)
    r = (out - y) ** 2
    if weights is not None:
        r = r * weights
    return 0.5 * r.sum(2).mean(1)


def loss_vjp(g_loss: Tensor, U, V, X, y, weights, offsets, activation: str, loss: str,
             need_U: bool, need_V: bool, need_X: bool):
    """(gU, gV, gX) of sum_n g_loss[n] loss[n], differentiable in every input (the gradient with
    respect to the outputs depends on them through the softmax or the residual)."""
    out = forward(U, V, X, offsets, activation)
    B, k = X.shape[0], V.shape[1]
    if loss == "cross_entropy":
        G = torch.softmax(out, dim=-1) - one_hot(y, k, out.dtype)
    else:
        G = out - y
        if weights is not None:
            G = G * weights
    G = G * (g_loss.to(out.dtype) / B).view(-1, 1, 1)
    return forward_vjp(G, U, V, X, offsets, activation, need_U, need_V, need_X)
