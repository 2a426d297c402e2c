"""NesterovSGD: torch.optim.SGD(nesterov=True)'s update on every network of a PackedMLP, fused
into the native training step (rule ``nesterov_sgd`` of csrc/cpu/rules.h)."""
from __future__ import annotations

from ._base import Optimizer


class NesterovSGD(Optimizer):
    """SGD with Nesterov momentum and weight decay on every network of a PackedMLP.

    For each network n and each weight w, one ``step`` does what ``torch.optim.SGD(params,
    lr=lr[n], momentum=momentum[n], dampening=0, weight_decay=weight_decay[n], nesterov=True)``
    does::

        g = grad + weight_decay * w
        buf = momentum * buf + g        (buf = g on the first step)
        w = w - lr * (g + momentum * buf)

    Hyper-parameters are scalars or per-network arrays, as for MomentumSGD.
    """

    rule = "nesterov_sgd"
