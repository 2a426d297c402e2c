"""The machinery every optimizer of a PackedMLP shares: per-network hyper-parameters, per-weight
state, the fused native step and the unfused update."""
from __future__ import annotations

import numpy as np

from .. import _profile
from .._validate import as_float_array, per_network
from ..model import PackedMLP



def nonfinite_units(gU: np.ndarray, gV: np.ndarray):
    """Which units' gradient rows hold NaN or inf (bool, one per unit), or None when every entry
    is finite. max and min propagate NaN and meet any inf, so the common all-finite case costs
    two SIMD reductions per array instead of isfinite's boolean copy (80 against 445 us on a
    3.6 MB gradient)."""
    if all(a.size == 0 or (np.isfinite(a.max()) and np.isfinite(a.min())) for a in (gU, gV)):
        return None
    return ~(np.isfinite(gU).all(axis=1) & np.isfinite(gV).all(axis=1))

class Optimizer:
    """Base class: an update rule of the native core (``rule``) with per-network learning rate,
    momentum and weight decay, and per-weight state shaped like U and V (``bufU``, ``bufV``).

    Each hyper-parameter is a scalar or an array of one value per network, converted to the
    model's dtype and checked there (finite; lr >= 0, momentum in [0, 1), weight decay >= 0);
    it may be changed between steps. The optimizer is bound to the model it was built for: its
    state belongs to that model's weights.
    """

    rule: str = ""

    def __init__(self, model: PackedMLP, lr, momentum=0.0, weight_decay=0.0):
        if not isinstance(model, PackedMLP):
            raise TypeError(f"model: expected a PackedMLP, got {type(model).__name__}")
        self._model = model
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        # np.zeros takes zeroed pages from the system as they are first written (np.zeros_like
        # would fill them all here: 1.5-2 s for the 940 MB of 2.1 million units)
        self.bufU = np.zeros(model.U.shape, model.U.dtype)
        self.bufV = np.zeros(model.V.shape, model.V.dtype)
        self.diverged = np.zeros(model.num_networks, dtype=bool)
        self.steps = 0

    @property
    def model(self) -> PackedMLP:
        """The model this optimizer was built for (fixed: build a new optimizer for another model)."""
        return self._model

    @model.setter
    def model(self, other) -> None:
        raise AttributeError("model: an optimizer stays bound to the model it was built for (its momentum buffers "
                             "belong to that model's weights); build a new optimizer for another model")

    def _set(self, name, value, **limits):
        setattr(self, "_" + name, per_network(value, name, self._model.num_networks, self._model.dtype, **limits))

    lr = property(lambda self: self._lr, lambda self, v: self._set("lr", v, low=0.0))
    momentum = property(lambda self: self._momentum,
                        lambda self, v: self._set("momentum", v, low=0.0, high=1.0, high_open=True))
    weight_decay = property(lambda self: self._weight_decay, lambda self, v: self._set("weight_decay", v, low=0.0))

    def _hyper(self):
        return (self.rule, self.bufU, self.bufV, self._lr, self._momentum, self._weight_decay)

    def step(self, X, y, weights=None) -> np.ndarray:
        """One training step on the batch (X, y[, weights]); returns each network's mean loss
        before it (float64, shape (N,)). Forward, loss, backward and update run in one native
        call; nothing is allocated after the first step of a batch size."""
        m = self._model
        X, y, w = m._batch(X, y, weights)
        with _profile.section("native training step"), m._lock.write():
            loss = self._native_step(m, X, y, w)
            self.diverged |= ~np.isfinite(loss)
            self.steps += 1
        return loss

    def _native_step(self, m, X, y, w) -> np.ndarray:
        """The native call(s) of one fused step, under the model's write lock (a rule with more
        state to prepare or advance overrides this, not ``step``)."""
        return m._engine.step(m.U, m.V, X, y, w, *self._hyper())

    def apply_update(self, gU, gV) -> None:
        """Apply the rule to given gradients (shaped like U and V): the unfused path, which the
        fused ``step`` equals bit for bit when given ``model.loss_and_grad``'s gradients. A
        network whose gradients hold NaN or inf (a diverged network's, as ``loss_and_grad``
        returns them) is updated as the fused step would update it, and the others train on. It
        is marked in ``diverged`` from its gradients, where ``step`` marks it from its loss: with
        the squared loss a float32 gradient can overflow one step before the float64 loss does,
        so the unfused path may mark a network a step earlier."""
        m = self._model
        gU = as_float_array(gU, "gU", m.dtype, 2, m.U.shape, finite=False)
        gV = as_float_array(gV, "gV", m.dtype, 2, m.V.shape, finite=False)
        bad_units = nonfinite_units(gU, gV)
        with m._lock.write():
            self._native_update(m, gU, gV)
            if bad_units is not None:
                self.diverged |= np.logical_or.reduceat(bad_units, m.offsets[:-1])
            self.steps += 1

    def _native_update(self, m, gU, gV) -> None:
        """The native call of ``apply_update``, under the model's write lock."""
        m._engine.apply_update(m.U, m.V, gU, gV, *self._hyper())

    def reset_state(self) -> None:
        """Zero the state (as a freshly built optimizer would have)."""
        with self._model._lock.write():
            self.bufU[...] = 0
            self.bufV[...] = 0
            self.diverged[...] = False
            self.steps = 0
