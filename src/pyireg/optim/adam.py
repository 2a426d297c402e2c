"""Adam and AdamW on every network of a PackedMLP, with per-network hyper-parameters: the update
rules ``adam`` and ``adamw`` of the native core (csrc/cpu/rules.h, formulas in
csrc/engine/rule_coefs.h), fused into the training step."""
from __future__ import annotations

import numpy as np

from .._validate import per_network
from ._base import Optimizer


class Adam(Optimizer):
    """torch.optim.Adam (``amsgrad=False``, ``maximize=False``) on every network of a PackedMLP.

    For each network n and each of its weights w, one ``step`` (the network's t-th) does what
    ``torch.optim.Adam(params, lr=lr[n], betas=(beta1[n], beta2[n]), eps=eps[n],
    weight_decay=weight_decay[n])`` does after ``loss.backward()`` on the network's mean loss::

        g = grad + weight_decay * w                 (the L2 penalty, added to the gradient)
        m = m + (g - m) * (1 - beta1)               (m, v start at zero)
        v = beta2 * v + (1 - beta2) * g * g
        w = w - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    ``AdamW`` decouples the decay instead: ``w = w * (1 - lr * weight_decay)`` before the moment
    update, and g = grad. For SGD the two are the same step (lr * wd * w either way); for Adam
    they are not, because the L2 term passes through the division by sqrt(v).

    Every hyper-parameter is a scalar or an array of one value per network and may be changed
    between steps; ``t`` holds each network's step count (the bias corrections use it).
    State: first moments ``bufU``/``bufV``, second moments ``sqU``/``sqV``. The fused ``step``
    equals ``loss_and_grad`` followed by ``apply_update`` bit for bit.
    """

    rule = "adam"

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(model, lr, momentum=0.0, weight_decay=weight_decay)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.sqU = np.zeros(model.U.shape, model.U.dtype)
        self.sqV = np.zeros(model.V.shape, model.V.dtype)
        self.t = np.zeros(model.num_networks, dtype=np.int64)
        self._zero = np.zeros(model.num_networks, dtype=model.dtype)

    beta1 = property(lambda self: self._beta1,
                     lambda self, v: self._set("beta1", v, low=0.0, high=1.0, high_open=True))
    beta2 = property(lambda self: self._beta2,
                     lambda self, v: self._set("beta2", v, low=0.0, high=1.0, high_open=True))
    eps = property(lambda self: self._eps, lambda self, v: self._set_eps(v))

    def _set_eps(self, v):
        e = per_network(v, "eps", self._model.num_networks, self._model.dtype, low=0.0)
        if np.any(e <= 0):
            raise ValueError("eps: expected values > 0")
        self._eps = e

    @property
    def momentum(self):
        return self._zero if hasattr(self, "_zero") else np.zeros(self._model.num_networks, self._model.dtype)

    @momentum.setter
    def momentum(self, value):
        if np.any(np.asarray(value) != 0):
            raise ValueError("momentum: Adam has no momentum argument (use betas); expected 0")

    def _hyper(self, t):
        return (self.rule, self.bufU, self.bufV, self._lr, self._zero, self._weight_decay,
                (self.sqU, self.sqV, self._beta1, self._beta2, self._eps, t))

    def _native_step(self, m, X, y, w) -> np.ndarray:
        t = self.t + 1                 # each network's step count, advanced inside the write lock
        loss = m._engine.step(m.U, m.V, X, y, w, *self._hyper(t))
        self.t = t
        return loss

    def _native_update(self, m, gU, gV) -> None:
        t = self.t + 1
        m._engine.apply_update(m.U, m.V, gU, gV, *self._hyper(t))
        self.t = t

    def reset_state(self) -> None:
        super().reset_state()
        with self._model._lock.write():
            self.sqU[...] = 0
            self.sqV[...] = 0
            self.t[...] = 0


class AdamW(Adam):
    """torch.optim.AdamW on every network: Adam with decoupled weight decay,
    ``w = w * (1 - lr * weight_decay)`` before the moment update (see ``Adam``). torch's default
    weight_decay for AdamW is 0.01; it is kept here."""

    rule = "adamw"

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(model, lr, betas=betas, eps=eps, weight_decay=weight_decay)
