"""PathSGD: Path-SGD (Neyshabur, Salakhutdinov & Srebro, NIPS 2015) on every network of a
PackedMLP, fused into the native training step (rule ``path_sgd`` of csrc/cpu/rules.h)."""
from __future__ import annotations

from ._base import Optimizer


class PathSGD(Optimizer):
    """Path-SGD with momentum and weight decay on every network of a PackedMLP.

    The rule. For unit h of network n (weights u_h in U, v_h in V), with the scalings taken from
    the weights *before* the step::

        kappa_U(h) = ||v_h||^2          (for each of the d incoming weights U[h, i])
        kappa_V(h) = ||u_h||^2          (for each of the k outgoing weights V[h, j])
        q = 1 / kappa,   q = 0 where kappa = 0 (or where 1 / kappa overflows the dtype)
        g = (grad + weight_decay * w) * q
        buf = momentum * buf + g        (buf = g on the first step)
        w = w - lr * buf

    ``grad`` is the gradient of the network's mean loss over the batch. With momentum = 0 and
    weight_decay = 0 this is the update of the paper, w_e <- w_e - lr * dL/dw_e / kappa_e(w).

    Derivation. Path-SGD is steepest descent with respect to the path regularizer
    phi_2(w)^2 = sum over input-hidden-output paths of the squared product of the path's
    weights, replaced by its diagonal quadratic approximation: the step minimizes
    <grad, dw> + 1/(2 lr) sum_e kappa_e dw_e^2 with kappa_e = 1/2 d^2 phi_2^2 / dw_e^2, giving
    dw_e = -lr grad_e / kappa_e. For y = sum_h v_h act(<u_h, x>) the paths through unit h are
    the pairs (i, j) with weight U[h, i] V[h, j], so phi_2^2 = sum_h ||u_h||^2 ||v_h||^2 and
    1/2 d^2 phi_2^2 / dU[h, i]^2 = ||v_h||^2, 1/2 d^2 phi_2^2 / dV[h, j]^2 = ||u_h||^2 (the
    paper's forward/backward dynamic programme gives the same for two layers:
    gamma_in(h) = ||u_h||^2, gamma_out(h) = ||v_h||^2 for p = 2). It does not depend on the
    activation (relu or linear).

    Invariance. Rescale a unit, u_h -> c u_h, v_h -> v_h / c (c > 0; relu(c z) = c relu(z), so
    the network's function is unchanged: Theorem 1's rescaling, ``PackedMLP.balance``). The
    gradients transform as grad_u -> grad_u / c and grad_v -> c grad_v, the scalings as
    kappa_U -> kappa_U / c^2 and kappa_V -> c^2 kappa_V, so the steps become
    du -> c du and dv -> dv / c: the updated unit is the rescaling of the updated original
    unit and computes the same function. The momentum buffers transform the same way, so by
    induction the whole trajectory (every network's function at every step) is invariant to
    the rescaling of the initial weights; plain SGD's step du -> du / c is not. Weight decay
    breaks the invariance (it is not a function of the network), as it does for any
    optimizer; at weight_decay = 0 the invariance holds exactly up to rounding (tested).

    Momentum is applied to the preconditioned gradient (the order the paper's authors' code
    intends: rescale the gradient, then a momentum SGD step), so momentum keeps the
    invariance. Weight decay is added before the scaling: the step is Path-SGD on the loss
    plus weight_decay / 2 ||w||^2.

    Zero rows. A unit with v_h = 0 has kappa_U = 0 but also grad_u = 0 (the gradient of u_h is
    proportional to v_h), and likewise u_h = 0 gives kappa_V = 0 and grad_v = 0 (relu(0) = 0;
    for the linear activation too): the step is 0/0, defined as 0. Such a unit computes the
    zero function and stays where it is (its momentum buffer still decays and moves it if it
    had momentum). Note that Path-SGD's steps grow as a layer shrinks (du ~ 1/||v_h||), the
    price of invariance: learning rates are not comparable with SGD's; choose them per width
    (the per-network lr array).

    Hyper-parameters are scalars or per-network arrays, as for MomentumSGD. The fused ``step``
    equals ``loss_and_grad`` followed by ``apply_update`` bit for bit.
    """

    rule = "path_sgd"
