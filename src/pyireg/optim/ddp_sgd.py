"""DDPSGD: data-dependent path-normalized SGD (Neyshabur, Tomioka, Salakhutdinov & Srebro,
ICLR 2016) on every network of a PackedMLP: a native scaling pass over the batch
(``ddp_scale``) followed by the fused training step of rule ``ddp_sgd`` (csrc/cpu/rules.h)."""
from __future__ import annotations

import numpy as np

from .._validate import per_network
from ._base import Optimizer


class DDPSGD(Optimizer):
    """DDP-SGD: SGD with the data-dependent path normalization's per-weight scaling.

    The measure (the paper's gamma_net, for y = sum_h v_h act(z_h), z_h = <u_h, x>, no biases).
    Each node v has gamma_v^2 = w_{->v}^T R_v w_{->v} with R_v = alpha D_v + (1 - alpha) C_v,
    D_v = diag(gamma_u^2 of v's inputs) (gamma = 1 at the inputs) and C_v the second moment
    E[h h^T] of v's incoming activations on the data (uncentred: the networks have no biases,
    so a mean could not be absorbed). Here::

        gamma_h^2   = alpha ||u_h||^2 + (1 - alpha) E[z_h^2]
        gamma_net   = sum_j gamma_j^2 = alpha sum_h gamma_h^2 ||v_h||^2 + (1 - alpha) E||y(x)||^2
                    = alpha^2 phi_2^2 + alpha (1 - alpha) sum_h E[z_h^2] ||v_h||^2 + (1 - alpha) E||y(x)||^2

    (``pyireg.measures``' ``ddp_path`` is sqrt(gamma_net); at alpha = 1 it is the l2 path norm.)

    The rule. DDP-SGD is w_e <- w_e - lr dL/dw_e / kappa_e with kappa_e = 1/2 d^2 gamma_net /
    dw_e^2 at the weights before the step, the statistics taken on the same batch as the
    gradient. Differentiating twice (the relu's second derivative, a point mass, is dropped,
    as autograd does) with M_i = E[x_i^2] and act' = 1{z > 0} (relu) or 1 (linear)::

        kappa(U[h, i]) = ||v_h||^2 (alpha^2 + alpha (1 - alpha) M_i + (1 - alpha) E[act'(z_h) x_i^2])
        kappa(V[h, j]) = alpha^2 ||u_h||^2 + alpha (1 - alpha) E[z_h^2] + (1 - alpha) E[act(z_h)^2]
        w = w - lr * (grad + weight_decay * w) / kappa       (1 / kappa := 0 where kappa = 0)

    At alpha = 1 this is Path-SGD without momentum (bit for bit: tested); at alpha = 0 kappa is
    the diagonal of the Gauss-Newton matrix of the squared loss, sum_j E[(d y_j / d w_e)^2].
    Rescaling a unit (u_h -> c u_h, v_h -> v_h / c, c > 0) scales kappa_U by 1/c^2 and
    kappa_V by c^2, so, as for Path-SGD, the trajectory is invariant to it. The zero-row
    policy is Path-SGD's: v_h = 0 gives kappa_U = 0 and a zero gradient; a unit that is never
    active on the batch (relu) has kappa_V = alpha^2 ||u_h||^2 and zero gradients of v_h.

    Cost: each ``step`` first runs ``ddp_scale`` (one first-layer product and one product of
    the activation mask with X * X, shaped like the step's dU product), then the fused step;
    measured 1.36x a MomentumSGD step (widths 1, 2, 4, ..., 2048, d = 100, batch 100). The two
    native calls run under the model's exclusive (writer) lock, so a step is one write: steps
    from several threads, and other writers, run one after another.

    No momentum (the paper's DDP-SGD has none; the rule's state holds the scaling ``kU``,
    ``kV`` of the last batch). ``alpha`` (in [0, 1]), lr and weight_decay are scalars or
    per-network arrays. ``apply_update(gU, gV)`` uses the scaling of the last ``step`` or
    ``prepare(X)``; after ``prepare(X)`` it equals ``step(X, y)`` bit for bit.
    """

    rule = "ddp_sgd"

    def __init__(self, model, lr, alpha=0.5, weight_decay=0.0):
        super().__init__(model, lr, momentum=0.0, weight_decay=weight_decay)
        self.alpha = alpha
        self._zero = np.zeros(model.num_networks, dtype=model.dtype)
        self._prepared = False      # whether bufU, bufV hold a batch's scaling (prepare or step)

    alpha = property(lambda self: self._alpha,
                     lambda self, v: setattr(self, "_alpha", per_network(v, "alpha", self._model.num_networks,
                                                                         self._model.dtype, low=0.0, high=1.0)))

    @property
    def momentum(self):
        return self._zero if hasattr(self, "_zero") else np.zeros(self._model.num_networks, self._model.dtype)

    @momentum.setter
    def momentum(self, value):
        if np.any(np.asarray(value) != 0):
            raise ValueError("momentum: DDPSGD has no momentum (its state holds the per-weight scaling); expected 0")

    @property
    def kU(self) -> np.ndarray:
        """1 / kappa of every weight of U from the last ``step`` or ``prepare`` (S, d)."""
        return self.bufU

    @property
    def kV(self) -> np.ndarray:
        """1 / kappa of every weight of V from the last ``step`` or ``prepare`` (S, k)."""
        return self.bufV

    def _hyper(self):
        return (self.rule, self.bufU, self.bufV, self._lr, self._zero, self._weight_decay)

    def prepare(self, X) -> None:
        """Compute the scaling from the batch X and the current weights (``step`` does this
        itself; call it before ``apply_update``)."""
        m = self._model
        X = m._X(X)
        with m._lock.write():       # writes the optimizer's state: one writer at a time
            m._engine.ddp_scale(m.U, m.V, X, self._alpha, self.bufU, self.bufV)
            self._prepared = True

    def _native_update(self, m, gU, gV) -> None:
        if not self._prepared:
            raise ValueError("apply_update: DDP-SGD scales each gradient by the batch's 1 / kappa, which is not "
                             "computed yet (an update would do nothing): call prepare(X) first (step does it itself)")
        super()._native_update(m, gU, gV)

    def reset_state(self) -> None:
        super().reset_state()
        self._prepared = False

    def _native_step(self, m, X, y, w) -> np.ndarray:
        # the scaling and the update are one write (Optimizer.step holds the lock across both)
        m._engine.ddp_scale(m.U, m.V, X, self._alpha, self.bufU, self.bufV)
        self._prepared = True
        return super()._native_step(m, X, y, w)
