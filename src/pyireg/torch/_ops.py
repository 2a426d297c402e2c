"""The native core as PyTorch custom operators (namespace ``pyireg``).

Each operator takes the packed weights U (S, d) and V (S, k), a batch, and the *layout*: an int64
tensor ``offsets`` (N + 1) marking where each network's units begin, the activation and the
loss. Strings and a tensor are arguments torch.compile handles without graph breaks; the layout
selects a native engine (its plan of chunks and its scratch pool) from a bounded cache
(``engine_cache_info``). The real kernels run on CPU tensors and pass numpy views of them to the
engine: no copies of the weights, gradients, state or outputs (an input is copied only when it
is not C-contiguous; the tensors updated in place must be). Large gradients come from a pool
reused once nothing refers to them (``_GradientPool``). Every operator has a fake (meta) kernel for tracing; the differentiable
ones (``packed_forward``, ``packed_loss``) have autograd formulas; the in-place ones
(``packed_step``, ``packed_apply_update``) declare what they mutate.

    pyireg::packed_forward(U, V, X, offsets, activation, loss) -> (N, B, k)
    pyireg::packed_backward(grad_out, U, V, X, offsets, activation, loss, need_U, need_V, need_X)
        -> (gU, gV, gX); gradients of sum_n <grad_out[n], out[n]>; gX summed over the networks;
        a gradient not asked for is an empty tensor
    pyireg::packed_loss(U, V, X, y, weights, offsets, activation, loss, with_grad)
        -> (per-network mean loss (N,), gU, gV); with_grad=False: loss only, gU and gV empty
    pyireg::packed_step(U!, V!, X, y, weights, offsets, activation, loss, state_U!, state_V!,
        lr, momentum, weight_decay) -> per-network loss before the step (N,)
    pyireg::packed_apply_update(U!, V!, gU, gV, offsets, state_U!, state_V!, lr, momentum,
        weight_decay, activation, loss) -> ()

The ``loss`` argument of the operators that do not compute a loss does not change their
result; it only picks the same cached engine as the loss operators, so that one module's
operations share one engine (and its reader/writer lock).

The checked entry points below (``packed_forward`` ...) are what the module calls; in plain
eager mode they run the kernels without the dispatcher (see ``_eager``), with the same results.

Losses are returned in the weights' dtype (torch's convention); the engine accumulates them in
float64. Values are not checked for NaN or inf here (as in torch, they propagate); shapes,
dtypes, devices, label ranges and hyper-parameter ranges are checked and named.
"""
from collections import OrderedDict
import sys
import threading
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .. import _core

_ENGINE_TYPES = {torch.float32: _core.EngineF32, torch.float64: _core.EngineF64}
FLOAT_DTYPES = tuple(_ENGINE_TYPES)
ACTIVATIONS = ("relu", "linear")
LOSSES = ("cross_entropy", "squared")
RULE = "momentum_sgd"
EVAL_BLOCK = 256          # samples per block of the loss-only path (the engine's evaluate)


# --------------------------------------------------------------------------- engine cache
class _EngineCache:
    """Engines keyed by (dtype, d, k, activation, loss, offsets), least recently used first out.

    An engine holds the plan of its layout (a few int64 per chunk and network) and a pool of
    scratch workspaces grown to the largest batch it has seen (``Engine.workspace_bytes``), so
    the number kept is bounded; an evicted engine is rebuilt on its next use (a plan and the
    scratch regrown), with the same results. Lookups hash the offsets' bytes (8 (N + 1) bytes)."""

    def __init__(self, maxsize: int = 16):
        self._lock = threading.Lock()
        self._engines: "OrderedDict[tuple, object]" = OrderedDict()
        self.maxsize = maxsize
        self.hits = self.misses = self.evictions = 0

    def get(self, offsets: Tensor, dtype: torch.dtype, d: int, k: int, activation: str, loss: str):
        off = offsets.detach().numpy()
        key = (dtype, d, k, activation, loss, off.tobytes())
        with self._lock:
            engine = self._engines.get(key)
            if engine is not None:
                self._engines.move_to_end(key)
                self.hits += 1
                return engine
        # built outside the lock: a large layout takes a while, and other layouts need not wait
        engine = _ENGINE_TYPES[dtype](np.ascontiguousarray(off), d, k, activation, loss)
        with self._lock:
            engine = self._engines.setdefault(key, engine)
            self._engines.move_to_end(key)
            self.misses += 1
            self._trim()
        return engine

    def _trim(self) -> None:
        while len(self._engines) > self.maxsize:
            self._engines.popitem(last=False)
            self.evictions += 1

    def resize(self, maxsize: int) -> None:
        with self._lock:
            self.maxsize = maxsize
            self._trim()

    def clear(self) -> None:
        with self._lock:
            self._engines.clear()
            self.hits = self.misses = self.evictions = 0

    def info(self) -> dict:
        with self._lock:
            return dict(size=len(self._engines), maxsize=self.maxsize, hits=self.hits, misses=self.misses,
                        evictions=self.evictions,
                        workspace_bytes=sum(e.workspace_bytes for e in self._engines.values()))


_CACHE = _EngineCache()


class _GradientPool:
    """Reused memory for the large gradients the operators return (gU, gV), and for the
    activations the autograd path keeps between forward and backward.

    A fresh allocation of a few hundred MB costs a page fault per 4 KiB page when first written
    (measured here: a 210 MB gradient took 213 ms to allocate and fill, 32 ms to refill), as
    much as the training step's arithmetic. A training loop frees its gradients every step
    (``zero_grad``), so the next step's can take the same memory. Buffers are numpy arrays
    wrapped by ``torch.from_numpy``: a tensor's storage holds a reference to its array, so an
    array nobody else refers to is free, whatever views or autograd did with the tensor. At
    most ``PER_SHAPE`` buffers per (shape, dtype), for the ``KEYS`` most recent of them, and
    only for gradients of at least ``MIN_BYTES``; ``clear_engine_cache`` empties it."""

    PER_SHAPE, KEYS, MIN_BYTES = 2, 8, 1 << 20

    def __init__(self):
        self._lock = threading.Lock()
        self._buffers: "OrderedDict[tuple, list]" = OrderedDict()
        probe = [np.empty(1)]
        self._free_refs = sys.getrefcount(probe[0])      # the list's reference and the argument's

    def empty(self, shape, dtype: torch.dtype) -> Tensor:
        np_dtype = np.float32 if dtype == torch.float32 else np.float64
        shape = tuple(int(n) for n in shape)
        if int(np.prod(shape)) * np.dtype(np_dtype).itemsize < self.MIN_BYTES:
            return torch.empty(shape, dtype=dtype)
        key = (shape, np_dtype)
        with self._lock:
            bufs = self._buffers.setdefault(key, [])
            self._buffers.move_to_end(key)
            for i in range(len(bufs)):
                if sys.getrefcount(bufs[i]) == self._free_refs:
                    return torch.from_numpy(bufs[i])
            arr = np.empty(shape, dtype=np_dtype)
            if len(bufs) < self.PER_SHAPE:
                bufs.append(arr)
            while len(self._buffers) > self.KEYS:
                self._buffers.popitem(last=False)
        return torch.from_numpy(arr)

    def nbytes(self) -> int:
        with self._lock:
            return sum(a.nbytes for bufs in self._buffers.values() for a in bufs)

    def clear(self) -> None:
        with self._lock:
            self._buffers.clear()


_POOL = _GradientPool()


def engine_cache_info() -> dict:
    """The engine cache: ``size`` (engines kept), ``maxsize``, ``hits``, ``misses``, ``evictions``,
    ``workspace_bytes`` (native scratch held by the kept engines) and ``gradient_pool_bytes``
    (gradient memory kept for reuse, see ``_GradientPool``)."""
    return dict(_CACHE.info(), gradient_pool_bytes=_POOL.nbytes())


def set_engine_cache_size(maxsize: int) -> None:
    """Keep at most ``maxsize`` engines (default 16; one per distinct layout, dtype and loss in
    use). Raise it when a program alternates between more layouts than that."""
    if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
        raise ValueError(f"maxsize: expected a positive integer, got {maxsize!r}")
    _CACHE.resize(maxsize)


def clear_engine_cache() -> None:
    """Drop every cached engine (and its scratch) and the gradient pool; reset the counters."""
    _CACHE.clear()
    _POOL.clear()


# --------------------------------------------------------------------------- checks
def check_device(t, name: str) -> None:
    """A CPU tensor, or an error that says why not (the CUDA backend is not built)."""
    dev = t.device
    if dev.type == "cpu" or dev.type == "meta":
        return
    if dev.type == "cuda":
        built = _core.build_config().get("cuda", False)
        raise RuntimeError(f"{name}: got a CUDA tensor ({dev}), but the CUDA backend of pyireg is "
                           + ("not available in this process" if built else
                              "not built (pyireg._core.build_config()['cuda'] is False)")
                           + "; move the tensors to the CPU with .cpu()")
    raise RuntimeError(f"{name}: expected a CPU tensor, got one on {dev} (pyireg runs on the CPU)")


def _float(t: Tensor, name: str, dtype: Optional[torch.dtype] = None) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    check_device(t, name)
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a float32 or float64 tensor, got {t.dtype}")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name}: expected {dtype} like U, got {t.dtype}")


def _shape(t: Tensor, name: str, shape) -> None:
    if t.dim() != len(shape) or any(w is not None and w != g for w, g in zip(shape, t.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(t.shape)}")


def check_layout(U: Tensor, V: Tensor, offsets: Tensor, activation: str, loss: str) -> None:
    """Weights, layout and names (not the offsets' values: those are checked by the engine, in
    the kernel, so that tracing never reads tensor data)."""
    _float(U, "U")
    _float(V, "V", U.dtype)
    if U.dim() != 2 or V.dim() != 2 or U.shape[0] != V.shape[0]:
        raise ValueError(f"U, V: expected 2-d tensors (S, d) and (S, k) with the same rows, got "
                         f"{tuple(U.shape)} and {tuple(V.shape)}")
    if not isinstance(offsets, Tensor):
        raise TypeError(f"offsets: expected an int64 tensor of N + 1 offsets, got {type(offsets).__name__}")
    check_device(offsets, "offsets")
    if offsets.dtype != torch.int64 or offsets.dim() != 1 or offsets.shape[0] < 2:
        raise ValueError(f"offsets: expected a 1-d int64 tensor of N + 1 >= 2 offsets, got {offsets.dtype} "
                         f"of shape {tuple(offsets.shape)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected 'relu' or 'linear', got {activation!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss: expected 'cross_entropy' or 'squared', got {loss!r}")


def same_device(t: Tensor, name: str, U: Tensor) -> None:
    """t on the weights' device (a meta input to CPU weights would run no kernel at all)."""
    if t.device != U.device:
        raise ValueError(f"{name}: expected a tensor on the weights' device ({U.device}), got one on {t.device}")


def _batch(X: Tensor, U: Tensor) -> None:
    _float(X, "X", U.dtype)
    same_device(X, "X", U)
    _shape(X, "X", (None, U.shape[1]))


def _targets(y: Tensor, weights: Optional[Tensor], B: int, U: Tensor, V: Tensor, loss: str) -> None:
    if not isinstance(y, Tensor):
        raise TypeError(f"y: expected a torch.Tensor, got {type(y).__name__}")
    check_device(y, "y")
    same_device(y, "y", U)
    if loss == "cross_entropy":
        if y.dtype != torch.int32:
            raise TypeError(f"y: expected int32 class labels for the operator (the module converts), got {y.dtype}")
        _shape(y, "y", (B,))
        if weights is not None:
            raise ValueError("weights: entry weights apply to the squared loss only")
        return
    _float(y, "y", U.dtype)
    _shape(y, "y", (B, V.shape[1]))
    if weights is not None:
        _float(weights, "weights", U.dtype)
        _shape(weights, "weights", (B, V.shape[1]))


def _hyper(lr: Tensor, momentum: Tensor, weight_decay: Tensor, N: int, U: Tensor) -> None:
    for name, t in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        _float(t, name, U.dtype)
        _shape(t, name, (N,))


def _state(state_U: Tensor, state_V: Tensor, U: Tensor, V: Tensor) -> None:
    for name, s, w in (("state_U", state_U, U), ("state_V", state_V, V)):
        _float(s, name, U.dtype)
        _shape(s, name, tuple(w.shape))


def _view(t: Tensor) -> np.ndarray:
    """The numpy view of a CPU tensor, C-contiguous (copied only if it is not)."""
    return t.detach().contiguous().numpy()


def _inplace(t: Tensor, name: str) -> np.ndarray:
    """The numpy view of a tensor updated in place: it must be C-contiguous already."""
    if not t.is_contiguous():
        raise ValueError(f"{name}: expected a contiguous tensor (it is updated in place), got strides {t.stride()}")
    return t.detach().numpy()


def _engine(U: Tensor, V: Tensor, offsets: Tensor, activation: str, loss: str):
    return _CACHE.get(offsets, U.dtype, U.shape[1], V.shape[1], activation, loss)


def _real(*named) -> None:
    for name, t in named:
        if t is not None:
            check_device(t, name)


def _nonnegative(weights: Optional[Tensor]) -> None:
    if weights is not None and bool((weights < 0).any()):
        raise ValueError(f"weights: expected non-negative entry weights, got {float(weights.min())}")


# --------------------------------------------------------------------------- kernels
# The computations themselves, on real CPU tensors. The registered operators call them, and so
# does the eager fast path (``_eager``).
def _k_forward(U, V, X, offsets, activation, loss, keep=False):
    """The outputs; with ``keep``, (outputs, the hidden activations for _k_backward's ``act``)."""
    _real(("U", U), ("V", V), ("X", X), ("offsets", offsets))
    N, B = offsets.shape[0] - 1, X.shape[0]
    if B == 0:
        out = U.new_empty((N, 0, V.shape[1]))
        return (out, None) if keep else out
    engine = _engine(U, V, offsets, activation, loss)
    # the kept activations (S x B, as large as U for a batch of d) come from the pool too: a
    # fresh buffer every step would cost a page fault per page, like a fresh gradient
    act = _POOL.empty((U.shape[0], engine.activation_columns(B)), U.dtype) if keep else None
    out = torch.from_numpy(engine.forward(_view(U), _view(V), _view(X), None if act is None else act.numpy()))
    return (out, act) if keep else out


def _k_backward(grad_out, U, V, X, offsets, activation, loss, need_U, need_V, need_X, act=None):
    _real(("grad_out", grad_out), ("U", U), ("V", V), ("X", X), ("offsets", offsets))
    gU = _POOL.empty(U.shape, U.dtype) if need_U else U.new_empty((0,))
    gV = _POOL.empty(V.shape, V.dtype) if need_V else V.new_empty((0,))
    gX = torch.empty(X.shape, dtype=X.dtype) if need_X else X.new_empty((0,))
    if X.shape[0] == 0:
        gU.zero_(), gV.zero_()
        return gU, gV, gX
    _engine(U, V, offsets, activation, loss).backward(
        _view(U), _view(V), _view(X), _view(grad_out), gU.numpy() if need_U else None,
        gV.numpy() if need_V else None, gX.numpy() if need_X else None, None if act is None else act.numpy())
    return gU, gV, gX


def _k_loss(U, V, X, y, weights, offsets, activation, loss, with_grad):
    _real(("U", U), ("V", V), ("X", X), ("y", y), ("weights", weights), ("offsets", offsets))
    engine = _engine(U, V, offsets, activation, loss)
    B = X.shape[0]
    if B == 0:
        raise ValueError("X: expected at least one sample, got an empty batch (the mean loss is undefined)")
    _nonnegative(weights)
    u, v, x, t = _view(U), _view(V), _view(X), _view(y)
    w = None if weights is None else _view(weights)
    if not with_grad:
        _, total = engine.evaluate(u, v, x, t, w, min(B, EVAL_BLOCK))
        return torch.from_numpy(total / B).to(U.dtype), U.new_empty((0,)), V.new_empty((0,))
    gU = _POOL.empty(U.shape, U.dtype)
    gV = _POOL.empty(V.shape, V.dtype)
    losses = engine.loss_and_grad(u, v, x, t, w, gU.numpy(), gV.numpy())
    return torch.from_numpy(losses).to(U.dtype), gU, gV


def _k_scale_rows(G, scale, offsets):
    """G[offsets[n]:offsets[n+1]] *= scale[n], in place."""
    rows = torch.repeat_interleave(scale.to(G.dtype), offsets.diff(), output_size=G.shape[0])
    G.mul_(rows.view((-1,) + (1,) * (G.dim() - 1)))


def _k_step(U, V, X, y, weights, offsets, activation, loss, state_U, state_V, lr, momentum, weight_decay):
    _real(("U", U), ("V", V), ("X", X), ("y", y), ("weights", weights), ("offsets", offsets),
          ("state_U", state_U), ("state_V", state_V))
    engine = _engine(U, V, offsets, activation, loss)
    if X.shape[0] == 0:
        raise ValueError("X: expected at least one sample, got an empty batch")
    _nonnegative(weights)
    losses = engine.step(_inplace(U, "U"), _inplace(V, "V"), _view(X), _view(y),
                         None if weights is None else _view(weights), RULE, _inplace(state_U, "state_U"),
                         _inplace(state_V, "state_V"), _view(lr), _view(momentum), _view(weight_decay))
    return torch.from_numpy(losses).to(U.dtype)


def _k_apply_update(U, V, gU, gV, offsets, state_U, state_V, lr, momentum, weight_decay, activation, loss):
    _real(("U", U), ("V", V), ("gU", gU), ("gV", gV), ("offsets", offsets), ("state_U", state_U),
          ("state_V", state_V))
    _engine(U, V, offsets, activation, loss).apply_update(
        _inplace(U, "U"), _inplace(V, "V"), _view(gU), _view(gV), RULE, _inplace(state_U, "state_U"),
        _inplace(state_V, "state_V"), _view(lr), _view(momentum), _view(weight_decay))


def _loss_input_grad(g_loss, U, V, X, y, weights, offsets, activation, loss, forward, backward):
    """d(sum_n g_loss[n] loss[n]) / dX: the outputs are recomputed and the loss's gradient with
    respect to them formed in torch, then the native backward gives the input's gradient (the
    fused loss kernel computes only the weights' gradients)."""
    out = forward(U, V, X, offsets, activation, loss)
    B, k = X.shape[0], V.shape[1]
    if loss == "cross_entropy":
        G = torch.softmax(out, dim=-1) - torch.nn.functional.one_hot(y.long(), k).to(out.dtype)
    else:
        G = out - y
        if weights is not None:
            G = G * weights
    G = G * (g_loss.to(out.dtype) / B).view(-1, 1, 1)
    return backward(G.contiguous(), U, V, X, offsets, activation, loss, False, False, True)[2]


class _FirstOrderOnly(torch.autograd.Function):
    """Passes a gradient through; differentiating it again raises. Gradients are computed by the
    native core, outside autograd: with ``create_graph=True`` they would otherwise look like
    constants, and a second derivative would be silently wrong."""

    @staticmethod
    def forward(ctx, name, g, *inputs):
        ctx.name = name
        return g.view_as(g)

    @staticmethod
    def backward(ctx, *_):
        raise RuntimeError(f"pyireg::{ctx.name}: second derivatives are not supported (the gradient comes from "
                           "the native core, outside autograd)")


def _first_order(name, grads, inputs):
    """``grads`` as they are, or, when backward records a graph (create_graph=True), wrapped so
    that differentiating them raises instead of treating them as constants."""
    if not torch.is_grad_enabled() or torch.compiler.is_compiling():
        return grads
    live = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    return tuple(None if g is None else _FirstOrderOnly.apply(name, g, *live) for g in grads)


# --------------------------------------------------------------------------- registered operators
@torch.library.custom_op("pyireg::packed_forward", mutates_args=())
def packed_forward_op(U: Tensor, V: Tensor, X: Tensor, offsets: Tensor, activation: str = "relu",
                      loss: str = "cross_entropy") -> Tensor:
    return _k_forward(U, V, X, offsets, activation, loss)


@packed_forward_op.register_fake
def _(U, V, X, offsets, activation="relu", loss="cross_entropy"):
    return U.new_empty((offsets.shape[0] - 1, X.shape[0], V.shape[1]))


@torch.library.custom_op("pyireg::packed_backward", mutates_args=())
def packed_backward_op(grad_out: Tensor, U: Tensor, V: Tensor, X: Tensor, offsets: Tensor,
                       activation: str = "relu", loss: str = "cross_entropy", need_U: bool = True,
                       need_V: bool = True, need_X: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    return _k_backward(grad_out, U, V, X, offsets, activation, loss, need_U, need_V, need_X)


@packed_backward_op.register_fake
def _(grad_out, U, V, X, offsets, activation="relu", loss="cross_entropy", need_U=True, need_V=True, need_X=True):
    return (U.new_empty(U.shape) if need_U else U.new_empty((0,)),
            V.new_empty(V.shape) if need_V else V.new_empty((0,)),
            X.new_empty(X.shape) if need_X else X.new_empty((0,)))


def _forward_setup(ctx, inputs, output):
    U, V, X, offsets, activation, loss = inputs
    ctx.save_for_backward(U, V, X, offsets)
    ctx.layout = (activation, loss)


def _forward_backward(ctx, grad_out):
    U, V, X, offsets = ctx.saved_tensors
    nU, nV, nX = ctx.needs_input_grad[:3]
    if not (nU or nV or nX):
        return None, None, None, None, None, None
    gU, gV, gX = packed_backward_op(grad_out.contiguous(), U, V, X, offsets, *ctx.layout, nU, nV, nX)
    grads = _first_order("packed_forward", (gU if nU else None, gV if nV else None, gX if nX else None),
                         (U, V, X, grad_out))
    return (*grads, None, None, None)


packed_forward_op.register_autograd(_forward_backward, setup_context=_forward_setup)


@torch.library.custom_op("pyireg::packed_loss", mutates_args=())
def packed_loss_op(U: Tensor, V: Tensor, X: Tensor, y: Tensor, weights: Optional[Tensor], offsets: Tensor,
                   activation: str = "relu", loss: str = "cross_entropy",
                   with_grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    return _k_loss(U, V, X, y, weights, offsets, activation, loss, with_grad)


@packed_loss_op.register_fake
def _(U, V, X, y, weights, offsets, activation="relu", loss="cross_entropy", with_grad=True):
    N = offsets.shape[0] - 1
    if with_grad:
        return U.new_empty((N,)), U.new_empty(U.shape), V.new_empty(V.shape)
    return U.new_empty((N,)), U.new_empty((0,)), V.new_empty((0,))


def _targets_no_grad(y, weights):
    if y.requires_grad or (weights is not None and weights.requires_grad):
        raise ValueError("y, weights: gradients with respect to the targets or the entry weights are not "
                         "supported; detach them")


def _loss_setup(ctx, inputs, output):
    U, V, X, y, weights, offsets, activation, loss, with_grad = inputs
    _targets_no_grad(y, weights)
    _, gU, gV = output
    ctx.mark_non_differentiable(gU, gV)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(U, V, X, y, weights, offsets)
    ctx.layout = (activation, loss)
    # the fused gradients, used by the first backward only; a second backward through the same
    # graph (retain_graph=True) recomputes them (the eager path scales them in place)
    ctx.grads = (gU, gV) if with_grad else None


def _loss_backward(ctx, g_loss, _g_gU, _g_gV):
    if g_loss is None:
        return (None,) * 9
    U, V, X, y, weights, offsets = ctx.saved_tensors
    nU, nV, nX = ctx.needs_input_grad[:3]
    gU = gV = gX = None
    if nU or nV:
        if ctx.grads is None:
            _, gU, gV = packed_loss_op(U, V, X, y, weights, offsets, *ctx.layout, True)
        else:
            gU, gV = ctx.grads
            ctx.grads = None
        # out of place: a traced graph may not write into its forward outputs (the eager path
        # scales in place, and not at all for losses.sum())
        rows = torch.repeat_interleave(g_loss.to(U.dtype), offsets.diff(), output_size=U.shape[0]).unsqueeze(1)
        gU, gV = gU * rows, gV * rows
    if nX:
        gX = _loss_input_grad(g_loss, U, V, X, y, weights, offsets, *ctx.layout, packed_forward_op,
                              packed_backward_op)
    grads = _first_order("packed_loss", (gU if nU else None, gV if nV else None, gX), (U, V, X, g_loss))
    return grads + (None,) * 6


packed_loss_op.register_autograd(_loss_backward, setup_context=_loss_setup)


@torch.library.custom_op("pyireg::packed_step", mutates_args={"U", "V", "state_U", "state_V"})
def packed_step_op(U: Tensor, V: Tensor, X: Tensor, y: Tensor, weights: Optional[Tensor], offsets: Tensor,
                   activation: str, loss: str, state_U: Tensor, state_V: Tensor, lr: Tensor, momentum: Tensor,
                   weight_decay: Tensor) -> Tensor:
    return _k_step(U, V, X, y, weights, offsets, activation, loss, state_U, state_V, lr, momentum, weight_decay)


@packed_step_op.register_fake
def _(U, V, X, y, weights, offsets, activation, loss, state_U, state_V, lr, momentum, weight_decay):
    return U.new_empty((offsets.shape[0] - 1,))


@torch.library.custom_op("pyireg::packed_apply_update", mutates_args={"U", "V", "state_U", "state_V"})
def packed_apply_update_op(U: Tensor, V: Tensor, gU: Tensor, gV: Tensor, offsets: Tensor, state_U: Tensor,
                           state_V: Tensor, lr: Tensor, momentum: Tensor, weight_decay: Tensor,
                           activation: str = "relu", loss: str = "cross_entropy") -> None:
    _k_apply_update(U, V, gU, gV, offsets, state_U, state_V, lr, momentum, weight_decay, activation, loss)


@packed_apply_update_op.register_fake
def _(U, V, gU, gV, offsets, state_U, state_V, lr, momentum, weight_decay, activation="relu",
      loss="cross_entropy"):
    return None


# --------------------------------------------------------------------------- eager fast path
# A registered Python operator costs 50-200 us per call in the dispatcher (defaults filled in,
# autograd and in-place wrappers, alias checks, all in Python), which is several percent of a
# small model's training step. In plain eager mode the entry points below call the kernels
# directly (through an autograd.Function where a gradient is needed): the same kernels, the same
# results. Tracing (torch.compile, export, make_fx), dispatch and function modes, functorch
# transforms, tensor subclasses and tensors off the CPU (meta: the fake kernels) see the
# registered operators.
_PLAIN = (Tensor, torch.nn.Parameter)


def _eager(*tensors) -> bool:
    if torch.compiler.is_compiling():
        return False
    try:
        if (torch._C._len_torch_dispatch_stack() or torch._C._is_torch_function_mode_enabled()
                or torch._C._are_functorch_transforms_active()):
            return False
    except AttributeError:          # another torch: take the registered operators
        return False
    return all(t is None or (type(t) in _PLAIN and t.device.type == "cpu") for t in tensors)


def _bump(*tensors) -> None:
    """What the dispatcher does for a mutating operator: autograd then sees the change (a graph
    that saved one of these tensors refuses to backward through the old value)."""
    torch.autograd.graph.increment_version(list(tensors))


class _Forward(torch.autograd.Function):
    """The eager autograd path. It keeps the hidden activations (S x B, the memory a plain torch
    MLP's autograd keeps too), so that backward does not compute the first layer again."""
    @staticmethod
    def forward(ctx, U, V, X, offsets, activation, loss):
        out, act = _k_forward(U, V, X, offsets, activation, loss, keep=True)
        ctx.save_for_backward(U, V, X, offsets)
        ctx.layout = (activation, loss)
        ctx.act = act
        return out

    @staticmethod
    def backward(ctx, grad_out):
        U, V, X, offsets = ctx.saved_tensors
        nU, nV, nX = ctx.needs_input_grad[:3]
        act, ctx.act = ctx.act, None          # used once (retain_graph: recomputed after that)
        gU, gV, gX = _k_backward(grad_out.contiguous(), U, V, X, offsets, *ctx.layout, nU, nV, nX, act)
        grads = _first_order("packed_forward", (gU if nU else None, gV if nV else None, gX if nX else None),
                             (U, V, X, grad_out))
        return (*grads, None, None, None)


class _Loss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, U, V, X, y, weights, offsets, activation, loss, with_grad):
        _targets_no_grad(y, weights)
        losses, gU, gV = _k_loss(U, V, X, y, weights, offsets, activation, loss, with_grad)
        ctx.save_for_backward(U, V, X, y, weights, offsets)
        ctx.layout = (activation, loss)
        ctx.grads = (gU, gV) if with_grad else None    # used by the first backward only (see _loss_setup)
        return losses

    @staticmethod
    def backward(ctx, g_loss):
        U, V, X, y, weights, offsets = ctx.saved_tensors
        nU, nV, nX = ctx.needs_input_grad[:3]
        gU = gV = gX = None
        if nU or nV:
            if ctx.grads is None:
                _, gU, gV = _k_loss(U, V, X, y, weights, offsets, *ctx.layout, True)
            else:
                gU, gV = ctx.grads
                ctx.grads = None
            if not bool((g_loss == 1).all()):       # one check for both layers
                _k_scale_rows(gU, g_loss.contiguous(), offsets)
                _k_scale_rows(gV, g_loss.contiguous(), offsets)
        if nX:
            gX = _loss_input_grad(g_loss, U, V, X, y, weights, offsets, *ctx.layout, _k_forward, _k_backward)
        grads = _first_order("packed_loss", (gU if nU else None, gV if nV else None, gX), (U, V, X, g_loss))
        return grads + (None,) * 6


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


# --------------------------------------------------------------------------- checked entry points
def packed_forward(U: Tensor, V: Tensor, X: Tensor, offsets: Tensor, activation: str = "relu",
                   loss: str = "cross_entropy") -> Tensor:
    """Outputs (N, B, k) of every network on the batch X (B, d); differentiable in U, V and X.
    X may have any strides (it is made contiguous, differentiably); dtypes must match U's."""
    check_layout(U, V, offsets, activation, loss)
    _batch(X, U)
    X = X.contiguous()
    if _eager(U, V, X, offsets):
        if _needs_grad(U, V, X):
            return _Forward.apply(U, V, X, offsets, activation, loss)
        return _k_forward(U, V, X, offsets, activation, loss)
    return packed_forward_op(U, V, X, offsets, activation, loss)


def packed_backward(grad_out: Tensor, U: Tensor, V: Tensor, X: Tensor, offsets: Tensor, activation: str = "relu",
                    loss: str = "cross_entropy", need_U: bool = True, need_V: bool = True, need_X: bool = True):
    """(gU, gV, gX): the gradients of sum_n <grad_out[n], out[n]>, None for those not asked for
    (gX summed over the networks). Not itself differentiable."""
    check_layout(U, V, offsets, activation, loss)
    _batch(X, U)
    _float(grad_out, "grad_out", U.dtype)
    _shape(grad_out, "grad_out", (offsets.shape[0] - 1, X.shape[0], V.shape[1]))
    args = (grad_out.contiguous(), U, V, X.contiguous(), offsets, activation, loss, need_U, need_V, need_X)
    if _eager(*args[:5]) and not _needs_grad(*args[:4]):
        gU, gV, gX = _k_backward(*args)
    else:
        gU, gV, gX = packed_backward_op(*args)
    return gU if need_U else None, gV if need_V else None, gX if need_X else None


def targets(y: Tensor, weights: Optional[Tensor], B: int, loss: str, dtype: torch.dtype):
    """Targets and entry weights in the operators' form: int32 labels for cross-entropy (from any
    integer dtype); for the squared loss, values and weights of the weights' dtype (from any
    floating dtype). Not differentiable."""
    if not isinstance(y, Tensor):
        raise TypeError(f"y: expected a torch.Tensor, got {type(y).__name__}")
    check_device(y, "y")
    if loss == "cross_entropy":
        if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
            raise TypeError(f"y: expected integer class labels, got {y.dtype}")
        _shape(y, "y", (B,))
        return y.to(torch.int32).contiguous(), weights
    if not y.dtype.is_floating_point:
        raise TypeError(f"y: expected real targets (a floating tensor) for the squared loss, got {y.dtype}")
    y = y.to(dtype).contiguous()
    if weights is not None:
        if not isinstance(weights, Tensor):
            raise TypeError(f"weights: expected a torch.Tensor, got {type(weights).__name__}")
        check_device(weights, "weights")
        if not weights.dtype.is_floating_point:
            raise TypeError(f"weights: expected real entry weights (a floating tensor), got {weights.dtype}")
        weights = weights.to(dtype).contiguous()
    return y, weights


def packed_loss(U: Tensor, V: Tensor, X: Tensor, y: Tensor, offsets: Tensor, *, weights: Optional[Tensor] = None,
                activation: str = "relu", loss: str = "cross_entropy") -> Tensor:
    """Per-network mean loss (N,) on (X, y), differentiable in U, V and X (not in the targets).

    When a gradient will be needed (grad mode on and U, V or X requiring it) the loss and the
    weights' gradients come from one fused native pass, and backward only scales them per
    network by the incoming gradient (nothing at all for ``losses.sum()``); otherwise only the
    loss is computed. The gradient with respect to X, when X requires it, is computed in
    backward (outputs recomputed, then the native backward)."""
    check_layout(U, V, offsets, activation, loss)
    _batch(X, U)
    y, weights = targets(y, weights, X.shape[0], loss, U.dtype)
    _targets(y, weights, X.shape[0], U, V, loss)
    if torch.is_grad_enabled():
        _targets_no_grad(y, weights)
    X = X.contiguous()
    with_grad = _needs_grad(U, V)
    if _eager(U, V, X, y, weights, offsets):
        if with_grad or _needs_grad(X):
            return _Loss.apply(U, V, X, y, weights, offsets, activation, loss, with_grad)
        return _k_loss(U, V, X, y, weights, offsets, activation, loss, False)[0]
    return packed_loss_op(U, V, X, y, weights, offsets, activation, loss, with_grad)[0]


def packed_step(U: Tensor, V: Tensor, X: Tensor, y: Tensor, offsets: Tensor, state_U: Tensor, state_V: Tensor,
                lr: Tensor, momentum: Tensor, weight_decay: Tensor, *, weights: Optional[Tensor] = None,
                activation: str = "relu", loss: str = "cross_entropy") -> Tensor:
    """One fused training step in place (U, V and the momentum buffers state_U, state_V):
    torch.optim.SGD(momentum, dampening=0, weight_decay) on every network's mean loss, with
    per-network lr, momentum and weight_decay tensors (N,) of U's dtype; a zero buffer is
    torch's first step. Returns the losses before the step. Runs without autograd recording."""
    check_layout(U, V, offsets, activation, loss)
    _batch(X, U)
    y, weights = targets(y, weights, X.shape[0], loss, U.dtype)
    _targets(y, weights, X.shape[0], U, V, loss)
    _state(state_U, state_V, U, V)
    _hyper(lr, momentum, weight_decay, offsets.shape[0] - 1, U)
    args = (U, V, X.contiguous(), y, weights, offsets, activation, loss, state_U, state_V, lr.contiguous(),
            momentum.contiguous(), weight_decay.contiguous())
    with torch.no_grad():
        if _eager(*(a for a in args if not isinstance(a, str))):
            out = _k_step(*args)
            _bump(U, V, state_U, state_V)
            return out
        return packed_step_op(*args)


def packed_apply_update(U: Tensor, V: Tensor, gU: Tensor, gV: Tensor, offsets: Tensor, state_U: Tensor,
                        state_V: Tensor, lr: Tensor, momentum: Tensor, weight_decay: Tensor, *,
                        activation: str = "relu", loss: str = "cross_entropy") -> None:
    """The update of ``packed_step`` from given gradients gU, gV (in place, without autograd
    recording); equal bit for bit to the fused step given the fused loss's gradients."""
    check_layout(U, V, offsets, activation, loss)
    for name, g, w in (("gU", gU, U), ("gV", gV, V)):
        _float(g, name, U.dtype)
        if g.is_sparse:
            raise ValueError(f"{name}: sparse gradients are not supported")
        _shape(g, name, tuple(w.shape))
    _state(state_U, state_V, U, V)
    _hyper(lr, momentum, weight_decay, offsets.shape[0] - 1, U)
    args = (U, V, gU.contiguous(), gV.contiguous(), offsets, state_U, state_V, lr.contiguous(),
            momentum.contiguous(), weight_decay.contiguous(), activation, loss)
    with torch.no_grad():
        if _eager(*args[:10]):
            _k_apply_update(*args)
            _bump(U, V, state_U, state_V)
        else:
            packed_apply_update_op(*args)
