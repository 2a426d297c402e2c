"""MomentumSGD: torch.optim.SGD's update on every network of a PackedMLP, fused into the native
training step (rule ``momentum_sgd`` of csrc/cpu/rules.h)."""
from __future__ import annotations

from ._base import Optimizer


class MomentumSGD(Optimizer):
    """Mini-batch SGD with momentum and weight decay on every network of a PackedMLP.

    For each network n and each of its parameters w (both layers), one ``step`` does exactly
    what ``torch.optim.SGD(params, lr=lr[n], momentum=momentum[n], dampening=0,
    weight_decay=weight_decay[n], nesterov=False)`` does after ``loss.backward()`` on that
    network's mean loss over the batch::

        g = grad + weight_decay * w
        buf = momentum * buf + g        (buf = g on the first step)
        w = w - lr * buf

    Each hyper-parameter is a scalar or an array of one value per network, and may be changed
    between steps (the paper's schedule changes lr and momentum every epoch). A network whose
    loss becomes NaN or inf is marked in ``diverged``; it cannot affect the others.
    """

    rule = "momentum_sgd"
