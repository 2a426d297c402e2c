"""The CPU kernels of the ``pyireg::*`` operators: the one place where tensors become engine
arguments. Each function takes real CPU tensors, looks the layout's engine up (``_engines``),
checks the layout's values against the weights (also for an empty batch, where no native call
would check them), and calls the engine on numpy views of the tensors: no copies of the
weights, gradients, state or outputs (an input is copied only when it is not C-contiguous; the
tensors updated in place must be). Registered as the "cpu" kernel set (``_devices``).
"""
import numpy as np
import torch
from torch import Tensor

from .. import _core
from ._checks import RULE_EXTRA, check_layout, check_offsets, check_rule, check_shape
from ._devices import register_kernels
from ._engines import CACHE, POOL, step_lock

_ENGINE_TYPES = {torch.float32: _core.EngineF32, torch.float64: _core.EngineF64}
ADAM_RULES = ("adam", "adamw")
EVAL_BLOCK = 256          # samples per block of the loss-only path (the engine's evaluate)


def _view(t: Tensor) -> np.ndarray:
    """The numpy view of a CPU tensor, C-contiguous (copied only if it is not)."""
    return t.detach().contiguous().numpy()


def _inplace(t: Tensor, name: str) -> np.ndarray:
    """The numpy view of a tensor updated in place: it must be C-contiguous already."""
    if not t.is_contiguous():
        raise ValueError(f"{name}: expected a contiguous tensor (it is updated in place), got strides {t.stride()}")
    return t.detach().numpy()


def _on_cpu(*named) -> None:
    for name, t in named:
        if t is not None and t.device.type != "cpu":
            raise RuntimeError(f"{name}: the CPU kernels got a tensor on {t.device}; every tensor of a call must be "
                               "on the CPU")


def _engine(U: Tensor, V: Tensor, offsets: Tensor, activation: str, loss: str):
    """The engine of the layout; its construction validates the offsets (0 = offsets[0] < ... ),
    and the weights must have offsets[-1] rows."""
    check_offsets(offsets)
    engine = CACHE.get("cpu", offsets.detach().numpy(), U.dtype, U.shape[1], V.shape[1], activation, loss,
                       lambda off: _ENGINE_TYPES[U.dtype](off, U.shape[1], V.shape[1], activation, loss))
    if U.shape[0] != engine.S:
        raise ValueError(f"U, V: expected {engine.S} rows (offsets[-1]), got {U.shape[0]}")
    return engine


def _checked_engine(U, V, X, offsets, activation, loss):
    """The structural checks (the raw operators get no others) and the engine."""
    check_layout(U, V, offsets, activation, loss)
    check_shape(X, "X", (None, U.shape[1]))
    return _engine(U, V, offsets, activation, loss)


def _nonnegative(weights) -> None:
    if weights is not None and bool((weights < 0).any()):
        raise ValueError(f"weights: expected non-negative entry weights, got {float(weights.min())}")


def _adam(rule, extra):
    """The engine's ``adam`` argument (second moments, betas, eps and each network's step number
    of this update, one past ``steps``) and the ``steps`` tensor to advance; (None, None) for the
    other rules."""
    if rule not in ADAM_RULES:
        return None, None
    _, s2U, s2V, b1, b2, eps, steps = extra
    t = steps.detach().numpy() + 1
    if bool((t < 1).any()):
        raise ValueError(f"steps: expected step counts >= 0, got {int(t.min()) - 1}")
    return (_inplace(s2U, "state2_U"), _inplace(s2V, "state2_V"), _view(b1), _view(b2), _view(eps), t), steps


class CpuKernels:
    """The computations themselves, on real CPU tensors; the operators and the eager fast path
    (``_ops``) call them."""

    @staticmethod
    def forward(U, V, X, offsets, activation, loss, keep=False):
        """The outputs; with ``keep``, (outputs, the hidden activations for backward's ``act``)."""
        _on_cpu(("U", U), ("V", V), ("X", X), ("offsets", offsets))
        engine = _checked_engine(U, V, X, offsets, activation, loss)
        N, B = offsets.shape[0] - 1, X.shape[0]
        if B == 0:
            out = U.new_empty((N, 0, V.shape[1]))
            return (out, None) if keep else out
        # the kept activations (S x B, as large as U for a batch of d) come from the pool too: a
        # fresh buffer every step would cost a page fault per page, like a fresh gradient
        act = POOL.empty((U.shape[0], engine.activation_columns(B)), U.dtype) if keep else None
        out = torch.from_numpy(engine.forward(_view(U), _view(V), _view(X), None if act is None else act.numpy()))
        return (out, act) if keep else out

    @staticmethod
    def backward(grad_out, U, V, X, offsets, activation, loss, need_U, need_V, need_X, act=None):
        _on_cpu(("grad_out", grad_out), ("U", U), ("V", V), ("X", X), ("offsets", offsets))
        engine = _checked_engine(U, V, X, offsets, activation, loss)
        check_shape(grad_out, "grad_out", (offsets.shape[0] - 1, X.shape[0], V.shape[1]))
        gU = POOL.empty(U.shape, U.dtype) if need_U else U.new_empty((0,))
        gV = POOL.empty(V.shape, V.dtype) if need_V else V.new_empty((0,))
        gX = torch.empty(X.shape, dtype=X.dtype) if need_X else X.new_empty((0,))
        if X.shape[0] == 0:
            gU.zero_(), gV.zero_()
            return gU, gV, gX
        engine.backward(_view(U), _view(V), _view(X), _view(grad_out), gU.numpy() if need_U else None,
                        gV.numpy() if need_V else None, gX.numpy() if need_X else None,
                        None if act is None else act.numpy())
        return gU, gV, gX

    @staticmethod
    def loss(U, V, X, y, weights, offsets, activation, loss, with_grad):
        _on_cpu(("U", U), ("V", V), ("X", X), ("y", y), ("weights", weights), ("offsets", offsets))
        engine = _checked_engine(U, V, X, offsets, activation, loss)
        B = X.shape[0]
        if B == 0:
            raise ValueError("X: expected at least one sample, got an empty batch (the mean loss is undefined)")
        _nonnegative(weights)
        u, v, x, t = _view(U), _view(V), _view(X), _view(y)
        w = None if weights is None else _view(weights)
        if not with_grad:
            _, total = engine.evaluate(u, v, x, t, w, min(B, EVAL_BLOCK))
            return torch.from_numpy(total / B).to(U.dtype), U.new_empty((0,)), V.new_empty((0,))
        gU = POOL.empty(U.shape, U.dtype)
        gV = POOL.empty(V.shape, V.dtype)
        losses = engine.loss_and_grad(u, v, x, t, w, gU.numpy(), gV.numpy())
        return torch.from_numpy(losses).to(U.dtype), gU, gV

    @staticmethod
    def scale_rows(G, scale, offsets):
        """G[offsets[n]:offsets[n+1]] *= scale[n], in place."""
        rows = torch.repeat_interleave(scale.to(G.dtype), offsets.diff(), output_size=G.shape[0])
        G.mul_(rows.view((-1,) + (1,) * (G.dim() - 1)))

    @staticmethod
    def step(U, V, X, y, weights, offsets, activation, loss, state_U, state_V, lr, momentum, weight_decay,
             rule="momentum_sgd", extra=(None,) * 7):
        _on_cpu(("U", U), ("V", V), ("X", X), ("y", y), ("weights", weights), ("offsets", offsets),
                ("state_U", state_U), ("state_V", state_V), *zip(RULE_EXTRA, extra))
        engine = _checked_engine(U, V, X, offsets, activation, loss)
        check_rule(rule, extra, offsets.shape[0] - 1, U, V, True)
        if X.shape[0] == 0:
            raise ValueError("X: expected at least one sample, got an empty batch")
        _nonnegative(weights)
        u, v, x = _inplace(U, "U"), _inplace(V, "V"), _view(X)
        sU, sV = _inplace(state_U, "state_U"), _inplace(state_V, "state_V")
        with step_lock(engine):     # Adam's step counts: read, the native step, written back, as one
            adam, steps = _adam(rule, extra)
            if rule == "ddp_sgd":       # the scaling of this batch, then the step that reads it
                engine.ddp_scale(u, v, x, _view(extra[0]), sU, sV)
            losses = engine.step(u, v, x, _view(y), None if weights is None else _view(weights), rule, sU, sV,
                                 _view(lr), _view(momentum), _view(weight_decay), adam)
            if adam is not None:
                steps.copy_(torch.from_numpy(adam[5]))
        return torch.from_numpy(losses).to(U.dtype)

    @staticmethod
    def apply_update(U, V, gU, gV, offsets, state_U, state_V, lr, momentum, weight_decay, activation, loss,
                     rule="momentum_sgd", extra=(None,) * 7):
        _on_cpu(("U", U), ("V", V), ("gU", gU), ("gV", gV), ("offsets", offsets), ("state_U", state_U),
                ("state_V", state_V), *zip(RULE_EXTRA, extra))
        check_layout(U, V, offsets, activation, loss)
        check_rule(rule, extra, offsets.shape[0] - 1, U, V, False)
        engine = _engine(U, V, offsets, activation, loss)
        with step_lock(engine):
            adam, steps = _adam(rule, extra)
            engine.apply_update(_inplace(U, "U"), _inplace(V, "V"), _view(gU), _view(gV), rule,
                                _inplace(state_U, "state_U"), _inplace(state_V, "state_V"), _view(lr),
                                _view(momentum), _view(weight_decay), adam)
            if adam is not None:
                steps.copy_(torch.from_numpy(adam[5]))

    @staticmethod
    def ddp_scale(U, V, X, offsets, alpha, scale_U, scale_V, activation, loss):
        _on_cpu(("U", U), ("V", V), ("X", X), ("offsets", offsets), ("alpha", alpha), ("scale_U", scale_U),
                ("scale_V", scale_V))
        engine = _checked_engine(U, V, X, offsets, activation, loss)
        if X.shape[0] == 0:
            raise ValueError("X: expected at least one sample, got an empty batch")
        engine.ddp_scale(_view(U), _view(V), _view(X), _view(alpha), _inplace(scale_U, "scale_U"),
                         _inplace(scale_V, "scale_V"))


register_kernels("cpu", CpuKernels)
