"""The CUDA kernels of the ``pyireg::*`` operators, registered in ``_devices`` beside the CPU's
(``_kernels_cpu``, whose interface this follows): the one place where CUDA tensors become CUDA
engine arguments (``data_ptr()``, torch's current stream, a workspace from torch's caching
allocator).

- ``pyireg._cuda`` built: ``NativeKernels`` on the real engine for CUDA tensors.
- torch has CUDA but ``pyireg._cuda`` was not built: ``CompositeKernels``, the operators' formulas
  in plain PyTorch ops (``_composite``: one packed GEMM plus a segmented sum) with the rule in
  torch ops, and a one-time warning saying how to build the fast path. Correct, not fast.
- Inside ``pyireg.cuda.emulate()``: the operators on CPU tensors run ``NativeKernels`` on the
  emulated engine (``pyireg._cuda_emu``: the same kernels through the emulation of the CUDA
  execution model); outside it, the CPU kernels as before.
"""
import contextlib
import threading
import warnings

import numpy as np
import torch
from torch import Tensor

from .. import cuda as _pc
from . import _composite
from . import _rules
from ._checks import ADAM_RULES, RULE_EXTRA, check_layout, check_offsets, check_rule, check_shape, distinct_memory
from ._devices import register_kernels
from ._engines import CACHE
from ._kernels_cpu import CpuKernels

EVAL_BLOCK = 256  # samples per block of the loss-only path (the engine's evaluate)


def _nonnegative(weights) -> None:
    if weights is not None and bool((weights < 0).any()):
        raise ValueError(f"weights: expected non-negative entry weights, got {float(weights.min())}")


def check_labels(y: Tensor, k: int) -> None:
    """Class labels in [0, k), of any integer dtype, checked as given (before the int32 form the
    kernels take). The CPU kernels check the range themselves; the CUDA kernels would turn the
    loss and the gradients of every network into NaN, so it is checked here: one reduction and
    one synchronization per call."""
    if y.numel() == 0:
        return
    lo, hi = torch.aminmax(y.detach())
    if int(lo) >= 0 and int(hi) < k:
        return
    i = int(((y < 0) | (y >= k)).flatten().nonzero()[0, 0])
    raise ValueError(f"y: expected labels in [0, {k}), got {int(y.flatten()[i])} at index {i}")


def check_offset_values(offsets: Tensor, S: int) -> None:
    """The offsets' values, as the native engines check them (offsets[0] == 0, every width >= 1,
    offsets[-1] == S); the plain-op kernels would otherwise fail deep inside repeat_interleave,
    or not at all."""
    o = _host_offsets(offsets)
    if o[0] != 0:
        raise ValueError("offsets: expected offsets[0] == 0")
    if (np.diff(o) < 1).any():
        raise ValueError("offsets: expected strictly increasing offsets (every width >= 1)")
    if o[-1] != S:
        raise ValueError(f"U, V: expected {int(o[-1])} rows (offsets[-1]), got {S}")


def _scale_rows(G, scale, offsets):
    """G[offsets[n]:offsets[n+1]] *= scale[n], in place, with the offsets on G's device (modules
    keep them on the host)."""
    CpuKernels.scale_rows(G, scale.to(G.device), offsets.to(G.device))


def _mutated(extra):
    """The rule's state among its extra tensors (named): on the weights' device, like the rest of
    the state; per-network values (alpha, betas, eps), like lr, may be host tensors (moved)."""
    return [(n, t) for n, t in zip(RULE_EXTRA, extra) if n in ("state2_U", "state2_V", "steps")]


def _host_offsets(offsets: Tensor) -> np.ndarray:
    """The offsets on the host, for the engine cache's key (modules keep them on the CPU; a
    device copy costs a synchronization here)."""
    return offsets.detach().to("cpu", torch.int64).contiguous().numpy()


class NativeKernels:
    """The operators' computations on one CUDA engine module: the real one on CUDA tensors, or
    the emulated one on CPU tensors (``emulated``; every output then starts as NaN, and each
    call's workspace is an exactly sized, NaN-filled emulated device allocation)."""

    def __init__(self, mod, emulated: bool):
        self.mod, self.emulated = mod, emulated
        self.device_type = "cpu" if emulated else "cuda"

    # ------------------------------------------------------------ plumbing
    def _same_device(self, *named) -> None:
        """Every tensor on the kernels' device type and, on CUDA, on the first one's device (the
        weights'): a launch on another GPU's memory would fault."""
        first = None
        for name, t in named:
            if t is None:
                continue
            if t.device.type != self.device_type:
                raise RuntimeError(f"{name}: the {'emulated ' if self.emulated else ''}CUDA kernels got a tensor on "
                                   f"{t.device}; every tensor of a call must be on one "
                                   f"{'CPU (inside pyireg.cuda.emulate())' if self.emulated else 'CUDA device'}")
            if first is None:
                first = (name, t.device)
            elif not self.emulated and t.device != first[1]:
                raise RuntimeError(f"{name}: on {t.device}, but {first[0]} is on {first[1]}; every tensor of a call "
                                   "must be on one CUDA device")

    def _on(self, t):
        """The context of one engine call: t's GPU as the current device (launches and cuBLAS run
        on the current device, whatever torch.cuda.set_device says elsewhere)."""
        return contextlib.nullcontext() if self.emulated else torch.cuda.device(t.device)

    def _engine(self, U, V, offsets, activation, loss):
        check_offsets(offsets)
        off = _host_offsets(offsets)
        key = "cuda-emulated" if self.emulated else str(U.device)
        cls = self.mod.Engine32 if U.dtype == torch.float32 else self.mod.Engine64

        def build(o):
            if self.emulated:
                return cls(o, U.shape[1], V.shape[1], activation, loss, False)
            why = _pc._prepare_cublas(self.mod)  # libcublas.so.13 beside torch's nvidia wheels
            if why:
                raise RuntimeError(why)
            with torch.cuda.device(U.device):
                return cls(o, U.shape[1], V.shape[1], activation, loss, False)

        engine = CACHE.get(key, off, U.dtype, U.shape[1], V.shape[1], activation, loss, build)
        if U.shape[0] != engine.S:
            raise ValueError(f"U, V: expected {engine.S} rows (offsets[-1]), got {U.shape[0]}")
        return engine

    def _checked(self, U, V, X, offsets, activation, loss):
        check_layout(U, V, offsets, activation, loss)
        check_shape(X, "X", (None, U.shape[1]))
        return self._engine(U, V, offsets, activation, loss)

    def _stream(self, t) -> int:
        return 0 if self.emulated else torch.cuda.current_stream(t.device).cuda_stream

    def _workspace(self, engine, op, B, t, block=0):
        """(keep-alive tensor, address, bytes); the emulated engine allocates its own."""
        if self.emulated:
            return None, 0, 0
        n = int(engine.workspace_bytes(op, B, block))
        ws = torch.empty(max(n, 1), dtype=torch.uint8, device=t.device)
        return ws, ws.data_ptr(), n

    def _out(self, shape, like, dtype=None):
        t = torch.empty(shape, dtype=dtype or like.dtype, device=like.device)
        if self.emulated and t.is_floating_point():
            t.fill_(float("nan"))
        return t

    def _targets(self, y, weights, loss, dtype, k):
        if loss == "cross_entropy":
            check_labels(y, k)
            return y.to(torch.int32).contiguous(), None, None
        w = None if weights is None else weights.to(dtype).contiguous()
        return None, y.to(dtype).contiguous(), w

    @staticmethod
    def _p(t) -> int:
        return 0 if t is None else t.data_ptr()

    # ------------------------------------------------------------ the kernel set
    def forward(self, U, V, X, offsets, activation, loss, keep=False):
        """The outputs; with ``keep``, (outputs, None): the backward recomputes the first layer."""
        self._same_device(("U", U), ("V", V), ("X", X))
        engine = self._checked(U, V, X, offsets, activation, loss)
        N, B = offsets.shape[0] - 1, X.shape[0]
        out = self._out((N, B, V.shape[1]), U)
        if B:
            U, V, X = U.detach().contiguous(), V.detach().contiguous(), X.detach().contiguous()
            _ws, wp, wb = self._workspace(engine, "forward", B, U)
            with self._on(U):
                engine.forward(U.data_ptr(), V.data_ptr(), X.data_ptr(), B, out.data_ptr(), wp, wb, self._stream(U))
        return (out, None) if keep else out

    def backward(self, grad_out, U, V, X, offsets, activation, loss, need_U, need_V, need_X, act=None):
        self._same_device(("grad_out", grad_out), ("U", U), ("V", V), ("X", X))
        engine = self._checked(U, V, X, offsets, activation, loss)
        check_shape(grad_out, "grad_out", (offsets.shape[0] - 1, X.shape[0], V.shape[1]))
        gU = self._out(U.shape, U) if need_U else U.new_empty((0,))
        gV = self._out(V.shape, V) if need_V else V.new_empty((0,))
        gX = self._out(X.shape, X) if need_X else X.new_empty((0,))
        B = X.shape[0]
        if B == 0:
            gU.zero_(), gV.zero_()
            return gU, gV, gX
        U, V, X, G = (t.detach().contiguous() for t in (U, V, X, grad_out))
        _ws, wp, wb = self._workspace(engine, "backward", B, U)
        with self._on(U):
            engine.backward(U.data_ptr(), V.data_ptr(), X.data_ptr(), B, G.data_ptr(),
                            self._p(gU if need_U else None), self._p(gV if need_V else None),
                            self._p(gX if need_X else None), wp, wb, self._stream(U))
        return gU, gV, gX

    def loss(self, U, V, X, y, weights, offsets, activation, loss, with_grad):
        self._same_device(("U", U), ("V", V), ("X", X), ("y", y), ("weights", weights))
        engine = self._checked(U, V, X, offsets, activation, loss)
        B = X.shape[0]
        if B == 0:
            raise ValueError("X: expected at least one sample, got an empty batch (the mean loss is undefined)")
        _nonnegative(weights)
        lab, vals, w = self._targets(y, weights, loss, U.dtype, V.shape[1])
        U, V, X = U.detach().contiguous(), V.detach().contiguous(), X.detach().contiguous()
        N = offsets.shape[0] - 1
        losses = self._out((N,), U, torch.float64)
        if not with_grad:
            block = min(B, EVAL_BLOCK)
            errors = torch.empty((N,), dtype=torch.int64, device=U.device)
            _ws, wp, wb = self._workspace(engine, "evaluate", B, U, block)
            with self._on(U):
                engine.evaluate(U.data_ptr(), V.data_ptr(), X.data_ptr(), B, loss, self._p(lab), self._p(vals),
                                self._p(w), block, losses.data_ptr(), errors.data_ptr(), wp, wb, self._stream(U))
            return (losses / B).to(U.dtype), U.new_empty((0,)), V.new_empty((0,))
        gU, gV = self._out(U.shape, U), self._out(V.shape, V)
        _ws, wp, wb = self._workspace(engine, "loss_and_grad", B, U)
        with self._on(U):
            engine.loss_and_grad(U.data_ptr(), V.data_ptr(), X.data_ptr(), B, loss, self._p(lab), self._p(vals),
                                 self._p(w), losses.data_ptr(), gU.data_ptr(), gV.data_ptr(), wp, wb,
                                 self._stream(U))
        return losses.to(U.dtype), gU, gV

    scale_rows = staticmethod(_scale_rows)

    def _hyper(self, U, *vals):
        return [v.to(device=U.device, dtype=U.dtype).contiguous() for v in vals]

    @staticmethod
    def _inplace(t, name):
        if not t.is_contiguous():
            raise ValueError(f"{name}: expected a contiguous tensor (it is updated in place), got strides {t.stride()}")
        return t.detach()

    def _rule(self, rule, extra, N, U, V, fused):
        check_rule(rule, extra, N, U, V, fused)
        if rule in ADAM_RULES:
            raise ValueError(f"rule: {rule!r} runs on the CPU engine only; the "
                             f"{'emulated ' if self.emulated else ''}CUDA engine has 'momentum_sgd', 'nesterov_sgd', "
                             "'path_sgd' and 'ddp_sgd'")

    def step(self, U, V, X, y, weights, offsets, activation, loss, state_U, state_V, lr, momentum, weight_decay,
             rule="momentum_sgd", extra=(None,) * 7):
        self._same_device(("U", U), ("V", V), ("X", X), ("y", y), ("weights", weights), ("state_U", state_U),
                          ("state_V", state_V), *_mutated(extra))
        engine = self._checked(U, V, X, offsets, activation, loss)
        self._rule(rule, extra, offsets.shape[0] - 1, U, V, True)
        B = X.shape[0]
        if B == 0:
            raise ValueError("X: expected at least one sample, got an empty batch")
        _nonnegative(weights)
        lab, vals, w = self._targets(y, weights, loss, U.dtype, V.shape[1])
        Uw, Vw = self._inplace(U, "U"), self._inplace(V, "V")
        sU, sV = self._inplace(state_U, "state_U"), self._inplace(state_V, "state_V")
        Xc = X.detach().contiguous()
        distinct_memory(read=dict(X=Xc), U=Uw, V=Vw, state_U=sU, state_V=sV)
        lr, mom, wd = self._hyper(U, lr, momentum, weight_decay)
        if rule == "ddp_sgd":       # the scaling of this batch into the state, then the step that reads it
            self._ddp_scale(engine, Uw, Vw, Xc, extra[0], sU, sV)
        losses = self._out((offsets.shape[0] - 1,), U, torch.float64)
        _ws, wp, wb = self._workspace(engine, "step", B, U)
        with self._on(U):
            engine.step(Uw.data_ptr(), Vw.data_ptr(), Xc.data_ptr(), B, loss, self._p(lab), self._p(vals),
                        self._p(w), rule, sU.data_ptr(), sV.data_ptr(), lr.data_ptr(), mom.data_ptr(),
                        wd.data_ptr(), losses.data_ptr(), wp, wb, self._stream(U))
        return losses.to(U.dtype)

    def _ddp_scale(self, engine, U, V, X, alpha, sU, sV):
        (alpha,) = self._hyper(U, alpha)
        _ws, wp, wb = self._workspace(engine, "ddp_scale", X.shape[0], U)
        with self._on(U):
            engine.ddp_scale(U.data_ptr(), V.data_ptr(), X.data_ptr(), X.shape[0], alpha.data_ptr(), sU.data_ptr(),
                             sV.data_ptr(), wp, wb, self._stream(U))

    def ddp_scale(self, U, V, X, offsets, alpha, scale_U, scale_V, activation, loss):
        self._same_device(("U", U), ("V", V), ("X", X), ("scale_U", scale_U), ("scale_V", scale_V))
        engine = self._checked(U, V, X, offsets, activation, loss)
        if X.shape[0] == 0:
            raise ValueError("X: expected at least one sample, got an empty batch")
        U, V, X = (t.detach().contiguous() for t in (U, V, X))
        sU, sV = self._inplace(scale_U, "scale_U"), self._inplace(scale_V, "scale_V")
        distinct_memory(read=dict(U=U, V=V, X=X), scale_U=sU, scale_V=sV)
        self._ddp_scale(engine, U, V, X, alpha, sU, sV)

    def apply_update(self, U, V, gU, gV, offsets, state_U, state_V, lr, momentum, weight_decay, activation, loss,
                     rule="momentum_sgd", extra=(None,) * 7):
        self._same_device(("U", U), ("V", V), ("gU", gU), ("gV", gV), ("state_U", state_U), ("state_V", state_V),
                          *_mutated(extra))
        check_layout(U, V, offsets, activation, loss)
        self._rule(rule, extra, offsets.shape[0] - 1, U, V, False)
        engine = self._engine(U, V, offsets, activation, loss)
        Uw, Vw = self._inplace(U, "U"), self._inplace(V, "V")
        sU, sV = self._inplace(state_U, "state_U"), self._inplace(state_V, "state_V")
        gU, gV = gU.detach().contiguous(), gV.detach().contiguous()
        distinct_memory(read=dict(gU=gU, gV=gV), U=Uw, V=Vw, state_U=sU, state_V=sV)
        lr, mom, wd = self._hyper(U, lr, momentum, weight_decay)
        _ws, wp, wb = self._workspace(engine, "apply_update", 1, U)
        with self._on(U):
            engine.apply_update(Uw.data_ptr(), Vw.data_ptr(), gU.data_ptr(), gV.data_ptr(), rule, sU.data_ptr(),
                                sV.data_ptr(), lr.data_ptr(), mom.data_ptr(), wd.data_ptr(), wp, wb,
                                self._stream(U))


class CompositeKernels:
    """The kernel set in plain PyTorch ops, for CUDA tensors when ``pyireg._cuda`` was not built
    (``_composite``'s formulas; torch.optim.SGD's momentum recursion for the rule)."""

    _warned = False
    _lock = threading.Lock()

    @classmethod
    def _warn(cls):
        with cls._lock:
            if cls._warned:
                return
            cls._warned = True
        warnings.warn("pyireg: CUDA tensors run on plain PyTorch ops because pyireg._cuda was not built; for the fast "
                      "path reinstall with `pip install . -Ccmake.define.PYIREG_CUDA=ON` (needs nvcc)",
                      RuntimeWarning, stacklevel=4)

    @staticmethod
    def _checked(U, V, offsets, activation, loss):
        check_layout(U, V, offsets, activation, loss)
        check_offset_values(offsets, U.shape[0])

    @classmethod
    def forward(cls, U, V, X, offsets, activation, loss, keep=False):
        cls._warn()
        cls._checked(U, V, offsets, activation, loss)
        out = _composite.forward(U.detach(), V.detach(), X.detach(), offsets.to(U.device), activation)
        return (out, None) if keep else out

    @classmethod
    def backward(cls, grad_out, U, V, X, offsets, activation, loss, need_U, need_V, need_X, act=None):
        cls._warn()
        cls._checked(U, V, offsets, activation, loss)
        gU, gV, gX = _composite.forward_vjp(grad_out.detach(), U.detach(), V.detach(), X.detach(),
                                            offsets.to(U.device), activation, need_U, need_V, need_X)
        return (gU if need_U else U.new_empty((0,)), gV if need_V else V.new_empty((0,)),
                gX if need_X else X.new_empty((0,)))

    @classmethod
    def loss(cls, U, V, X, y, weights, offsets, activation, loss, with_grad):
        cls._warn()
        cls._checked(U, V, offsets, activation, loss)
        if loss == "cross_entropy":
            check_labels(y, V.shape[1])     # a label out of range is a device-side assert on CUDA
        off = offsets.to(U.device)
        args = (U.detach(), V.detach(), X.detach(), y, weights, off, activation, loss)
        losses = _composite.losses(*args)
        if not with_grad:
            return losses, U.new_empty((0,)), V.new_empty((0,))
        gU, gV, _ = _composite.loss_vjp(torch.ones_like(losses), *args, True, True, False)
        return losses, gU, gV

    scale_rows = staticmethod(_scale_rows)

    @classmethod
    def apply_update(cls, U, V, gU, gV, offsets, state_U, state_V, lr, momentum, weight_decay, activation, loss,
                     rule="momentum_sgd", extra=(None,) * 7):
        cls._warn()
        cls._checked(U, V, offsets, activation, loss)
        check_rule(rule, extra, offsets.shape[0] - 1, U, V, False)
        distinct_memory(read=dict(gU=gU, gV=gV), U=U, V=V, state_U=state_U, state_V=state_V, state2_U=extra[1],
                        state2_V=extra[2])
        _rules.apply_update(U, V, gU, gV, offsets.to(U.device), state_U, state_V, lr, momentum, weight_decay, rule,
                            extra)

    @classmethod
    def ddp_scale(cls, U, V, X, offsets, alpha, scale_U, scale_V, activation, loss):
        cls._warn()
        cls._checked(U, V, offsets, activation, loss)
        distinct_memory(read=dict(U=U, V=V, X=X), scale_U=scale_U, scale_V=scale_V)
        sU, sV = _rules.ddp_scale(U.detach(), V.detach(), X.detach(), offsets.to(U.device), alpha, activation)
        scale_U.copy_(sU)
        scale_V.copy_(sV)

    @classmethod
    def step(cls, U, V, X, y, weights, offsets, activation, loss, state_U, state_V, lr, momentum, weight_decay,
             rule="momentum_sgd", extra=(None,) * 7):
        check_rule(rule, extra, offsets.shape[0] - 1, U, V, True)
        if rule == "ddp_sgd":
            cls.ddp_scale(U, V, X, offsets, extra[0], state_U, state_V, activation, loss)
        losses, gU, gV = cls.loss(U, V, X, y, weights, offsets, activation, loss, True)
        cls.apply_update(U, V, gU, gV, offsets, state_U, state_V, lr, momentum, weight_decay, activation, loss, rule,
                         (None,) + tuple(extra[1:]))
        return losses


class _CpuOrEmulated:
    """The "cpu" kernel set: the CPU kernels, or the emulated CUDA kernels inside emulate()."""

    def __init__(self, cpu, emulated):
        self._cpu, self._emulated = cpu, emulated

    def __getattr__(self, name):
        return getattr(self._emulated if self._emulated is not None and _pc.emulating() else self._cpu, name)


def _register() -> None:
    try:
        emu = _pc._emu()
    except ImportError:
        emu = None
    register_kernels("cpu", _CpuOrEmulated(CpuKernels, None if emu is None else NativeKernels(emu, True)))
    native = _pc._native()
    if native is not None:
        register_kernels("cuda", NativeKernels(native, False))
    elif torch.cuda.is_available():
        register_kernels("cuda", CompositeKernels)


_register()
