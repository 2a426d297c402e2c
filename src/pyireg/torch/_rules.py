"""The native update rules in plain PyTorch ops, unit by unit through the layout: the rule of
the CUDA tensors' kernel set when ``pyireg._cuda`` was not built (``_kernels_cuda``'s
``CompositeKernels``), and the twin the tests compare the native rules with. The formulas are
csrc/engine/rule_coefs.h's (derivations in pyireg.optim), in its order of operations; results
agree with the native ones under the tolerance rule, not in bits (the native rules round each
coefficient into the weights' dtype once; torch may contract or reorder differently).
"""
import torch
from torch import Tensor

from ._checks import ADAM_RULES


def _rows(t: Tensor, offsets: Tensor, S: int, W: Tensor) -> Tensor:
    """A per-network value (N,) repeated over each network's units, as a column (S, 1)."""
    return torch.repeat_interleave(t.to(W.device, W.dtype), offsets.diff(), output_size=S).unsqueeze(1)


def inverse_kappa(kappa: Tensor, dtype: torch.dtype) -> Tensor:
    """1 / kappa in ``dtype``, 0 where kappa is not positive (or NaN) or the quotient overflows
    (rule_coefs.h's zero-row policy); kappa in float64."""
    q = 1.0 / kappa
    ok = (kappa > 0) & (q <= torch.finfo(dtype).max)
    return torch.where(ok, q, torch.zeros_like(q)).to(dtype)


def ddp_scale(U: Tensor, V: Tensor, X: Tensor, offsets: Tensor, alpha: Tensor, activation: str):
    """DDP-SGD's per-weight scaling (scale_U (S, d), scale_V (S, k)) on the batch X
    (rule_coefs.h's ddp_kappa_U, ddp_kappa_V, statistics in float64)."""
    S, d, k = U.shape[0], U.shape[1], V.shape[1]
    Xd, Ud, Vd = X.double(), U.double(), V.double()
    a = _rows(alpha, offsets, S, Ud)                     # (S, 1)
    Z = Xd @ Ud.T                                        # (B, S)
    B = X.shape[0]
    act = Z.clamp_min(0) if activation == "relu" else Z
    mask = (Z > 0).double() if activation == "relu" else torch.ones_like(Z)
    M = (Xd * Xd).mean(0)                                # (d,)
    Q = mask.T @ (Xd * Xd) / B                           # (S, d)
    Ez2, Ea2 = (Z * Z).mean(0).unsqueeze(1), (act * act).mean(0).unsqueeze(1)
    u2, v2 = (Ud * Ud).sum(1, keepdim=True), (Vd * Vd).sum(1, keepdim=True)
    kU = v2 * (a * a + a * (1 - a) * M + (1 - a) * Q)
    kV = a * a * u2 + a * (1 - a) * Ez2 + (1 - a) * Ea2
    return inverse_kappa(kU, U.dtype).reshape(S, d), inverse_kappa(kV, U.dtype).expand(S, k).contiguous()


def apply_update(U: Tensor, V: Tensor, gU: Tensor, gV: Tensor, offsets: Tensor, state_U: Tensor, state_V: Tensor,
                 lr: Tensor, momentum: Tensor, weight_decay: Tensor, rule: str, extra) -> None:
    """The rule's update of U, V and the state, in place (``extra``: _checks.RULE_EXTRA's
    tensors; for adam and adamw ``steps`` is advanced)."""
    S = U.shape[0]
    with torch.no_grad():
        if rule == "path_sgd":      # the scaling from the weights before the step
            qU = inverse_kappa((V.double() ** 2).sum(1, keepdim=True), U.dtype)
            qV = inverse_kappa((U.double() ** 2).sum(1, keepdim=True), U.dtype)
        if rule in ADAM_RULES:
            _, s2U, s2V, b1, b2, eps, steps = extra
            t = (steps + 1).double()
            b1d, b2d, lrd = b1.double(), b2.double(), lr.double()
            step_size = lrd / (1 - b1d ** t)
            bc2_sqrt = torch.sqrt(1 - b2d ** t)
            decay = (1 - lrd * weight_decay.double()) if rule == "adamw" else weight_decay
        for W, G, Sg, which in ((U, gU, state_U, "U"), (V, gV, state_V, "V")):
            r = lambda t: _rows(t, offsets, S, W)       # noqa: E731
            g = G.to(W.dtype)
            if rule in ("momentum_sgd", "nesterov_sgd", "path_sgd"):
                m, gd = r(momentum), g + r(weight_decay) * W
                if rule == "path_sgd":
                    gd = gd * (qU if which == "U" else qV)
                buf = m * Sg + gd
                if rule == "momentum_sgd":          # momentum 0: torch keeps no buffer
                    Sg.copy_(torch.where(m == 0, Sg, buf))
                    W.sub_(r(lr) * torch.where(m == 0, gd, buf))
                else:
                    Sg.copy_(buf)
                    W.sub_(r(lr) * (gd + m * buf if rule == "nesterov_sgd" else buf))
            elif rule == "ddp_sgd":
                W.sub_(r(lr) * ((g + r(weight_decay) * W) * Sg))
            else:
                S2 = s2U if which == "U" else s2V
                if rule == "adamw":
                    W.mul_(r(decay))
                else:
                    g = g + r(weight_decay) * W
                Sg.add_((g - Sg) * r(1 - b1d))
                S2.mul_(r(b2)).add_(r(1 - b2d) * g * g)
                W.sub_(r(step_size) * (Sg / (S2.sqrt() / r(bc2_sqrt) + r(eps))))
        if rule in ADAM_RULES:
            steps.add_(1)
