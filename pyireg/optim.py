"""MomentumSGD: the fused native training step of a PackedMLP."""
from __future__ import annotations

import numpy as np

from ._validate import per_network
from .model import PackedMLP


class MomentumSGD:
    """Mini-batch SGD with momentum and weight decay on every network of a PackedMLP.

    For each network n and each of its parameters w (both layers), one ``step`` does exactly
    what ``torch.optim.SGD(params, lr=lr[n], momentum=momentum[n], dampening=0,
    weight_decay=weight_decay[n], nesterov=False)`` does after ``loss.backward()`` on that
    network's mean cross-entropy over the batch::

        g = grad + weight_decay * w
        buf = momentum * buf + g        (buf = g on the first step)
        w = w - lr * buf

    Each hyper-parameter is a scalar or an array of one value per network, and may be changed
    between steps (the paper's schedule changes lr and momentum every epoch). Forward, backward
    and update run in one native call; nothing is allocated after the first step of a batch size.
    A network whose loss becomes NaN or inf is marked in ``diverged``; it cannot affect the others.
    """

    def __init__(self, model: PackedMLP, lr, momentum=0.0, weight_decay=0.0):
        if not isinstance(model, PackedMLP):
            raise TypeError(f"model: expected a PackedMLP, got {type(model).__name__}")
        self.model = model
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.bufU = np.zeros_like(model.U)
        self.bufV = np.zeros_like(model.V)
        self.diverged = np.zeros(model.num_networks, dtype=bool)
        self.steps = 0

    def _set(self, name, value, **kw):
        arr = per_network(value, name, self.model.num_networks, self.model.dtype, **kw)
        setattr(self, "_" + name, arr)

    lr = property(lambda self: self._lr, lambda self, v: self._set("lr", v))
    momentum = property(lambda self: self._momentum, lambda self, v: self._set("momentum", v))
    weight_decay = property(lambda self: self._weight_decay, lambda self, v: self._set("weight_decay", v))

    def step(self, X, y) -> np.ndarray:
        """One training step on the batch (X, y); returns each network's mean loss before it."""
        m = self.model
        X, y = m._Xy(X, y)
        loss = m._engine.sgd_step(m.U, m.V, self.bufU, self.bufV, X, y,
                                  self._lr, self._momentum, self._weight_decay)
        self.diverged |= ~np.isfinite(loss)
        self.steps += 1
        return loss

    def reset_state(self) -> None:
        """Zero the momentum buffers (as a freshly built torch optimizer would have)."""
        self.bufU[...] = 0
        self.bufV[...] = 0
        self.diverged[...] = False
        self.steps = 0
