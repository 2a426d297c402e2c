"""The native core as PyTorch custom operators (namespace ``pyireg``), their autograd and the
checked entry points the module calls.

Each operator takes the packed weights U (S, d) and V (S, k), a batch, and the *layout*: an int64
tensor ``offsets`` (N + 1) marking where each network's units begin, the activation and the
loss. Strings and a tensor are arguments torch.compile handles without graph breaks. The real
kernels are looked up by the weights' device (``_devices``; the CPU's are ``_kernels_cpu``, which
picks the layout's engine from a bounded cache, ``_engines``). Every operator has a fake (meta)
kernel for tracing; the differentiable ones (``packed_forward``, ``packed_loss``) have autograd
formulas; the in-place ones (``packed_step``, ``packed_apply_update``) declare what they mutate.

    pyireg::packed_forward(U, V, X, offsets, activation, loss) -> (N, B, k)
    pyireg::packed_backward(grad_out, U, V, X, offsets, activation, loss, need_U, need_V, need_X)
        -> (gU, gV, gX); gradients of sum_n <grad_out[n], out[n]>; gX summed over the networks;
        a gradient not asked for is an empty tensor
    pyireg::packed_loss(U, V, X, y, weights, offsets, activation, loss, with_grad)
        -> (per-network mean loss (N,), gU, gV); with_grad=False: loss only, gU and gV empty
    pyireg::packed_step(U!, V!, X, y, weights, offsets, activation, loss, state_U!, state_V!,
        lr, momentum, weight_decay, rule, alpha, state2_U!, state2_V!, beta1, beta2, eps, steps!)
        -> per-network loss before the step (N,)
    pyireg::packed_apply_update(U!, V!, gU, gV, offsets, state_U!, state_V!, lr, momentum,
        weight_decay, activation, loss, rule, state2_U!, state2_V!, beta1, beta2, eps, steps!) -> ()
    pyireg::packed_ddp_scale(U, V, X, offsets, alpha, scale_U!, scale_V!, activation, loss) -> ()

``rule`` names the native update rule (``_checks.RULES``); the tensors after it are None unless
the rule uses them (DDP-SGD: ``alpha``; Adam and AdamW: second moments, betas, eps and the
per-network step counts, which the operators advance).

The ``loss`` argument of the operators that do not compute a loss does not change their
result; it only picks the same cached engine as the loss operators, so that one module's
operations share one engine (and its reader/writer lock).

Gradients. One backward formula per operator (``forward_grads``, ``loss_grads``), shared by the
registered autograd and the eager fast path. First-order gradients come from the native core.
When backward records a graph (``create_graph=True``; always inside ``torch.func.grad``,
``jacrev``, ``vjp``) and the gradient depends on something that requires grad, they come from
the same formulas in plain PyTorch ops (``_composite``) instead, so they can be differentiated
again: Hessian-vector products and nested transforms work. ``torch.func.vmap`` runs the
operators once per batch entry (a loop, ``_loop_vmap``); the in-place operators refuse vmap.

The checked entry points below (``packed_forward`` ...) are what the module calls; in plain
eager mode they run the kernels without the dispatcher (see ``_eager``), with the same results.

Losses are returned in the weights' dtype (torch's convention); the engine accumulates them in
float64. Values are not checked for NaN or inf here (as in torch, they propagate); shapes,
dtypes, devices, label ranges and hyper-parameter ranges are checked and named.
"""
from types import SimpleNamespace
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from . import _composite
from . import _kernels_cpu  # noqa: F401  (registers the "cpu" kernels)
from . import _kernels_cuda  # registers the "cuda" kernels (the emulated ones inside pyireg.cuda.emulate())
from ._checks import (RULE_EXTRA, ACTIVATIONS, ADAM_RULES, FLOAT_DTYPES, LOSSES, RULES, check_batch, check_device,  # noqa: F401
                      check_float, check_hyper, check_layout, check_rule, check_shape, check_state, check_targets,
                      one_device, same_device, targets, targets_no_grad)
from ._devices import has_kernels, kernels_for
from ._engines import clear_engine_cache, engine_cache_info, set_engine_cache_size  # noqa: F401


# --------------------------------------------------------------------------- backward formulas
def _graph_needed(*tensors) -> bool:
    """Whether gradients must be differentiable: backward records a graph and one of the
    tensors they depend on requires grad."""
    return torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in tensors)


def forward_grads(grad_out, U, V, X, offsets, activation, loss, needs, kernels, act=None):
    """(gU, gV, gX) of packed_forward, None where not needed. ``kernels`` runs the first-order
    backward (the device's kernel set, or the registered operators); ``act``: the activations
    the eager forward kept."""
    nU, nV, nX = needs
    if not (nU or nV or nX):
        return None, None, None
    if _graph_needed(grad_out, U, V, X):
        return _composite.forward_vjp(grad_out, U, V, X, offsets, activation, nU, nV, nX)
    gU, gV, gX = kernels.backward(grad_out.contiguous(), U, V, X, offsets, activation, loss, nU, nV, nX, act)
    return gU if nU else None, gV if nV else None, gX if nX else None


def loss_grads(g_loss, U, V, X, y, weights, offsets, activation, loss, needs, fused, kernels, in_place):
    """(gU, gV, gX) of sum_n g_loss[n] loss[n]. ``fused``: a list holding the forward's fused
    (gU, gV), taken by the first backward (a second one through the same graph, retain_graph,
    recomputes them); ``in_place``: scale them in place (the eager path owns them; a traced graph
    may not write into its forward outputs)."""
    nU, nV, nX = needs
    if g_loss is None:
        return None, None, None
    if _graph_needed(g_loss, U, V, X):
        return _composite.loss_vjp(g_loss, U, V, X, y, weights, offsets, activation, loss, nU, nV, nX)
    gU = gV = gX = None
    if nU or nV:
        grads = fused.pop() if fused else None
        if grads is None:
            _, gU, gV = kernels.loss(U, V, X, y, weights, offsets, activation, loss, True)
        else:
            gU, gV = grads
        if in_place:
            if not bool((g_loss == 1).all()):       # nothing to do for losses.sum()
                kernels.scale_rows(gU, g_loss.contiguous(), offsets)
                kernels.scale_rows(gV, g_loss.contiguous(), offsets)
        else:
            rows = torch.repeat_interleave(g_loss.to(U.dtype), offsets.diff(), output_size=U.shape[0]).unsqueeze(1)
            gU, gV = gU * rows, gV * rows
    if nX:
        gX = _loss_input_grad(g_loss, U, V, X, y, weights, offsets, activation, loss, kernels)
    return gU if nU else None, gV if nV else None, gX


def _loss_input_grad(g_loss, U, V, X, y, weights, offsets, activation, loss, kernels):
    """d(sum_n g_loss[n] loss[n]) / dX: the outputs are recomputed and the loss's gradient with
    respect to them formed in torch, then the native backward gives the input's gradient (the
    fused loss kernel computes only the weights' gradients)."""
    out = kernels.forward(U, V, X, offsets, activation, loss)
    B, k = X.shape[0], V.shape[1]
    if loss == "cross_entropy":
        G = torch.softmax(out, dim=-1) - _composite.one_hot(y, k, out.dtype)
    else:
        G = out - y
        if weights is not None:
            G = G * weights
    G = G * (g_loss.to(out.dtype) / B).view(-1, 1, 1)
    return kernels.backward(G.contiguous(), U, V, X, offsets, activation, loss, False, False, True, None)[2]


# --------------------------------------------------------------------------- registered operators
def _kernels(U: Tensor):
    return kernels_for(U.device, "U")


@torch.library.custom_op("pyireg::packed_forward", mutates_args=())
def packed_forward_op(U: Tensor, V: Tensor, X: Tensor, offsets: Tensor, activation: str = "relu",
                      loss: str = "cross_entropy") -> Tensor:
    return _kernels(U).forward(U, V, X, offsets, activation, loss)


@packed_forward_op.register_fake
def _(U, V, X, offsets, activation="relu", loss="cross_entropy"):
    one_device("packed_forward", (("U", U), ("V", V), ("X", X), ("offsets", offsets)))
    check_layout(U, V, offsets, activation, loss)
    return U.new_empty((offsets.shape[0] - 1, X.shape[0], V.shape[1]))


@torch.library.custom_op("pyireg::packed_backward", mutates_args=())
def packed_backward_op(grad_out: Tensor, U: Tensor, V: Tensor, X: Tensor, offsets: Tensor,
                       activation: str = "relu", loss: str = "cross_entropy", need_U: bool = True,
                       need_V: bool = True, need_X: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    return _kernels(U).backward(grad_out, U, V, X, offsets, activation, loss, need_U, need_V, need_X)


@packed_backward_op.register_fake
def _(grad_out, U, V, X, offsets, activation="relu", loss="cross_entropy", need_U=True, need_V=True, need_X=True):
    one_device("packed_backward", (("grad_out", grad_out), ("U", U), ("V", V), ("X", X), ("offsets", offsets)))
    check_layout(U, V, offsets, activation, loss)
    return (U.new_empty(U.shape) if need_U else U.new_empty((0,)),
            V.new_empty(V.shape) if need_V else V.new_empty((0,)),
            X.new_empty(X.shape) if need_X else X.new_empty((0,)))


@torch.library.custom_op("pyireg::packed_loss", mutates_args=())
def packed_loss_op(U: Tensor, V: Tensor, X: Tensor, y: Tensor, weights: Optional[Tensor], offsets: Tensor,
                   activation: str = "relu", loss: str = "cross_entropy",
                   with_grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    return _kernels(U).loss(U, V, X, y, weights, offsets, activation, loss, with_grad)


@packed_loss_op.register_fake
def _(U, V, X, y, weights, offsets, activation="relu", loss="cross_entropy", with_grad=True):
    one_device("packed_loss", (("U", U), ("V", V), ("X", X), ("y", y), ("weights", weights), ("offsets", offsets)))
    check_layout(U, V, offsets, activation, loss)
    N = offsets.shape[0] - 1
    if with_grad:
        return U.new_empty((N,)), U.new_empty(U.shape), V.new_empty(V.shape)
    return U.new_empty((N,)), U.new_empty((0,)), V.new_empty((0,))


_RULE_MUTATES = {"state2_U", "state2_V", "steps"}


@torch.library.custom_op("pyireg::packed_step", mutates_args={"U", "V", "state_U", "state_V"} | _RULE_MUTATES)
def packed_step_op(U: Tensor, V: Tensor, X: Tensor, y: Tensor, weights: Optional[Tensor], offsets: Tensor,
                   activation: str, loss: str, state_U: Tensor, state_V: Tensor, lr: Tensor, momentum: Tensor,
                   weight_decay: Tensor, rule: str = "momentum_sgd", alpha: Optional[Tensor] = None,
                   state2_U: Optional[Tensor] = None, state2_V: Optional[Tensor] = None,
                   beta1: Optional[Tensor] = None, beta2: Optional[Tensor] = None, eps: Optional[Tensor] = None,
                   steps: Optional[Tensor] = None) -> Tensor:
    return _kernels(U).step(U, V, X, y, weights, offsets, activation, loss, state_U, state_V, lr, momentum,
                            weight_decay, rule, (alpha, state2_U, state2_V, beta1, beta2, eps, steps))


@packed_step_op.register_fake
def _(U, V, X, y, weights, offsets, activation, loss, state_U, state_V, lr, momentum, weight_decay,
      rule="momentum_sgd", alpha=None, state2_U=None, state2_V=None, beta1=None, beta2=None, eps=None, steps=None):
    extra = (alpha, state2_U, state2_V, beta1, beta2, eps, steps)
    one_device("packed_step", (("U", U), ("V", V), ("X", X), ("y", y), ("weights", weights), ("offsets", offsets),
                               ("state_U", state_U), ("state_V", state_V), ("lr", lr), ("momentum", momentum),
                               ("weight_decay", weight_decay), *zip(RULE_EXTRA, extra)))
    check_layout(U, V, offsets, activation, loss)
    check_rule(rule, extra, offsets.shape[0] - 1, U, V, True)
    return U.new_empty((offsets.shape[0] - 1,))


@torch.library.custom_op("pyireg::packed_apply_update",
                         mutates_args={"U", "V", "state_U", "state_V"} | _RULE_MUTATES)
def packed_apply_update_op(U: Tensor, V: Tensor, gU: Tensor, gV: Tensor, offsets: Tensor, state_U: Tensor,
                           state_V: Tensor, lr: Tensor, momentum: Tensor, weight_decay: Tensor,
                           activation: str = "relu", loss: str = "cross_entropy", rule: str = "momentum_sgd",
                           state2_U: Optional[Tensor] = None, state2_V: Optional[Tensor] = None,
                           beta1: Optional[Tensor] = None, beta2: Optional[Tensor] = None,
                           eps: Optional[Tensor] = None, steps: Optional[Tensor] = None) -> None:
    _kernels(U).apply_update(U, V, gU, gV, offsets, state_U, state_V, lr, momentum, weight_decay, activation, loss,
                             rule, (None, state2_U, state2_V, beta1, beta2, eps, steps))


@packed_apply_update_op.register_fake
def _(U, V, gU, gV, offsets, state_U, state_V, lr, momentum, weight_decay, activation="relu",
      loss="cross_entropy", rule="momentum_sgd", state2_U=None, state2_V=None, beta1=None, beta2=None, eps=None,
      steps=None):
    extra = (None, state2_U, state2_V, beta1, beta2, eps, steps)
    one_device("packed_apply_update", (("U", U), ("V", V), ("gU", gU), ("gV", gV), ("offsets", offsets),
                                       ("state_U", state_U), ("state_V", state_V), ("lr", lr),
                                       ("momentum", momentum), ("weight_decay", weight_decay),
                                       *zip(RULE_EXTRA, extra)))
    check_layout(U, V, offsets, activation, loss)
    check_rule(rule, extra, offsets.shape[0] - 1, U, V, False)
    return None


@torch.library.custom_op("pyireg::packed_ddp_scale", mutates_args={"scale_U", "scale_V"})
def packed_ddp_scale_op(U: Tensor, V: Tensor, X: Tensor, offsets: Tensor, alpha: Tensor, scale_U: Tensor,
                        scale_V: Tensor, activation: str = "relu", loss: str = "cross_entropy") -> None:
    _kernels(U).ddp_scale(U, V, X, offsets, alpha, scale_U, scale_V, activation, loss)


@packed_ddp_scale_op.register_fake
def _(U, V, X, offsets, alpha, scale_U, scale_V, activation="relu", loss="cross_entropy"):
    one_device("packed_ddp_scale", (("U", U), ("V", V), ("X", X), ("offsets", offsets), ("alpha", alpha),
                                    ("scale_U", scale_U), ("scale_V", scale_V)))
    check_layout(U, V, offsets, activation, loss)
    return None


# The first-order backward of the registered path: the registered operators (so that tracing
# sees them); act is the eager path's only.
_REGISTERED = SimpleNamespace(
    forward=packed_forward_op,
    backward=lambda g, U, V, X, off, act_name, loss, nU, nV, nX, act=None: packed_backward_op(
        g, U, V, X, off, act_name, loss, nU, nV, nX),
    loss=packed_loss_op)


def _forward_setup(ctx, inputs, output):
    U, V, X, offsets, activation, loss = inputs
    ctx.save_for_backward(U, V, X, offsets)
    ctx.layout = (activation, loss)


def _forward_backward(ctx, grad_out):
    U, V, X, offsets = ctx.saved_tensors
    grads = forward_grads(grad_out, U, V, X, offsets, *ctx.layout, ctx.needs_input_grad[:3], _REGISTERED)
    return (*grads, None, None, None)


packed_forward_op.register_autograd(_forward_backward, setup_context=_forward_setup)


def _loss_setup(ctx, inputs, output):
    U, V, X, y, weights, offsets, activation, loss, with_grad = inputs
    targets_no_grad(y, weights)
    _, gU, gV = output
    ctx.mark_non_differentiable(gU, gV)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(U, V, X, y, weights, offsets)
    ctx.layout = (activation, loss)
    ctx.fused = [(gU, gV)] if with_grad else []


def _loss_backward(ctx, g_loss, _g_gU, _g_gV):
    U, V, X, y, weights, offsets = ctx.saved_tensors
    grads = loss_grads(g_loss, U, V, X, y, weights, offsets, *ctx.layout, ctx.needs_input_grad[:3], ctx.fused,
                       _REGISTERED, in_place=False)
    return grads + (None,) * 6


packed_loss_op.register_autograd(_loss_backward, setup_context=_loss_setup)


# --------------------------------------------------------------------------- vmap
def _loop_vmap(op):
    """A vmap rule that runs ``op`` once per batch entry and stacks the results (torch.func.vmap
    and jacrev through the operators; correct, not fast: for many entries, batch the inputs
    instead, e.g. X of shape (B, d) is already a batch)."""
    def rule(info, in_dims, *args):
        outs = [op(*(a.select(d, i) if d is not None else a for a, d in zip(args, in_dims)))
                for i in range(info.batch_size)]
        if isinstance(outs[0], tuple):
            return tuple(torch.stack(parts) for parts in zip(*outs)), (0,) * len(outs[0])
        return torch.stack(outs), 0
    return rule


def _refuse_vmap(name):
    def rule(info, in_dims, *args):
        raise RuntimeError(f"pyireg::{name}: torch.func.vmap is not supported (it updates the weights in place); "
                           "loop over the batch, or train with packed_loss/packed_forward and an optimizer")
    return rule


for _op in (packed_forward_op, packed_backward_op, packed_loss_op):
    torch.library.register_vmap(_op, _loop_vmap(_op))
torch.library.register_vmap(packed_step_op, _refuse_vmap("packed_step"))
torch.library.register_vmap(packed_apply_update_op, _refuse_vmap("packed_apply_update"))
torch.library.register_vmap(packed_ddp_scale_op, _refuse_vmap("packed_ddp_scale"))


# --------------------------------------------------------------------------- eager fast path
# A registered Python operator costs 50-200 us per call in the dispatcher (defaults filled in,
# autograd and in-place wrappers, alias checks, all in Python), which is several percent of a
# small model's training step. In plain eager mode the entry points below call the kernels
# directly (through an autograd.Function where a gradient is needed): the same kernels, the same
# results. Tracing (torch.compile, export, make_fx), dispatch and function modes, functorch
# transforms, tensor subclasses and tensors of a device without kernels (meta: the fake
# kernels) see the registered operators.
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
    return all(t is None or (type(t) in _PLAIN and has_kernels(t.device.type)) for t in tensors)


def all_finite(X: Tensor) -> bool:
    """Whether every entry of X is finite. On the CPU through a numpy view (3 us for a batch of
    100 x 100, against 24 us for torch.isfinite(X).all(), which also wakes torch's threads
    between two native steps: 0.1 ms of a 2.3 ms step on the powers-of-two sweep)."""
    if X.device.type == "cpu" and not X.is_neg() and not X.is_conj():
        return bool(np.isfinite(X.detach().numpy()).all())
    return bool(torch.isfinite(X).all())


_NARROW_LABELS = (torch.int32, torch.int16, torch.int8, torch.uint8)


def check_target_values(y0: Tensor, y: Tensor, weights: Optional[Tensor], loss: str, k: int) -> None:
    """Class labels wider than int32 in [0, k), checked as given (int64 2**32 + 1 would wrap to
    1 in the int32 form the kernels check); in eager mode (a traced graph cannot branch on data).
    Labels of int32 or narrower need nothing here: the kernel sets check their range (the CPU's
    natively, the CUDA ones in ``_kernels_cuda.check_labels``)."""
    if loss != "cross_entropy" or y0.dtype in _NARROW_LABELS or y0.numel() == 0 or not _eager(y0, y, weights):
        return
    if y0.device.type != "cpu":
        _kernels_cuda.check_labels(y0, k)
        return
    a = y0.detach().numpy()
    if a.min() >= 0 and a.max() < k:
        return
    i = int(np.flatnonzero((a < 0) | (a >= k))[0])
    raise ValueError(f"y: expected labels in [0, {k}), got {int(y0[i])} at index {i}")


def _bump(*tensors) -> None:
    """What the dispatcher does for a mutating operator: autograd then sees the change (a graph
    that saved one of these tensors refuses to backward through the old value)."""
    torch.autograd.graph.increment_version(list(tensors))


class _Forward(torch.autograd.Function):
    """The eager autograd path. It keeps the hidden activations (S x B, the memory a plain torch
    MLP's autograd keeps too), so that backward does not compute the first layer again. Only
    used outside torch.func transforms (``_eager``): those get the registered operator."""
    @staticmethod
    def forward(ctx, U, V, X, offsets, activation, loss):
        kernels = _kernels(U)
        out, act = kernels.forward(U, V, X, offsets, activation, loss, keep=True)
        ctx.save_for_backward(U, V, X, offsets)
        ctx.layout = (activation, loss)
        ctx.kernels = kernels
        ctx.act = act
        return out

    @staticmethod
    def backward(ctx, grad_out):
        U, V, X, offsets = ctx.saved_tensors
        act, ctx.act = ctx.act, None          # used once (retain_graph: recomputed after that)
        grads = forward_grads(grad_out, U, V, X, offsets, *ctx.layout, ctx.needs_input_grad[:3], ctx.kernels, act)
        return (*grads, None, None, None)


class _Loss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, U, V, X, y, weights, offsets, activation, loss, with_grad):
        targets_no_grad(y, weights)
        kernels = _kernels(U)
        losses, gU, gV = kernels.loss(U, V, X, y, weights, offsets, activation, loss, with_grad)
        ctx.save_for_backward(U, V, X, y, weights, offsets)
        ctx.layout = (activation, loss)
        ctx.kernels = kernels
        ctx.fused = [(gU, gV)] if with_grad else []
        return losses

    @staticmethod
    def backward(ctx, g_loss):
        U, V, X, y, weights, offsets = ctx.saved_tensors
        grads = loss_grads(g_loss, U, V, X, y, weights, offsets, *ctx.layout, ctx.needs_input_grad[:3], ctx.fused,
                           ctx.kernels, in_place=True)
        return grads + (None,) * 6


class _FuncForward(torch.autograd.Function):
    """The path under torch.func transforms (grad, jacrev, vjp, vmap): the registered
    operator's autograd (torch.library's) has no setup_context, which functorch requires, so the
    entry points take this new-style Function there. Its forward calls the registered operator
    (under vmap: the operator's vmap rule), its backward the shared formula."""
    generate_vmap_rule = True

    @staticmethod
    def forward(U, V, X, offsets, activation, loss):
        return packed_forward_op(U, V, X, offsets, activation, loss)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _forward_setup(ctx, inputs, output)

    @staticmethod
    def backward(ctx, grad_out):
        return _forward_backward(ctx, grad_out)

    @staticmethod
    def jvp(ctx, *tangents):
        _no_forward_mode("packed_forward")


class _FuncLoss(torch.autograd.Function):
    """packed_loss under torch.func transforms (see _FuncForward)."""
    generate_vmap_rule = True

    @staticmethod
    def forward(U, V, X, y, weights, offsets, activation, loss, with_grad):
        return packed_loss_op(U, V, X, y, weights, offsets, activation, loss, with_grad)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _loss_setup(ctx, inputs, output)

    @staticmethod
    def backward(ctx, g_loss, g_gU, g_gV):
        return _loss_backward(ctx, g_loss, g_gU, g_gV)

    @staticmethod
    def jvp(ctx, *tangents):
        _no_forward_mode("packed_loss")


def _no_forward_mode(name):
    raise RuntimeError(f"pyireg::{name}: forward-mode differentiation (torch.func.jvp, jacfwd, hessian) is not "
                       "supported; use reverse mode: torch.func.jacrev(torch.func.jacrev(f)) for a Hessian, "
                       "torch.func.vjp or torch.autograd.grad(..., create_graph=True) for Hessian-vector products")


def _functorch() -> bool:
    try:
        return bool(torch._C._are_functorch_transforms_active())
    except AttributeError:
        return False


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


# --------------------------------------------------------------------------- checked entry points
def packed_forward(U: Tensor, V: Tensor, X: Tensor, offsets: Tensor, activation: str = "relu",
                   loss: str = "cross_entropy") -> Tensor:
    """Outputs (N, B, k) of every network on the batch X (B, d); differentiable in U, V and X.
    X may have any strides (it is made contiguous, differentiably); dtypes must match U's."""
    check_layout(U, V, offsets, activation, loss)
    check_batch(X, U)
    X = X.contiguous()
    if _eager(U, V, X, offsets):
        if _needs_grad(U, V, X):
            return _Forward.apply(U, V, X, offsets, activation, loss)
        return _kernels(U).forward(U, V, X, offsets, activation, loss)
    if _functorch():
        return _FuncForward.apply(U, V, X, offsets, activation, loss)
    return packed_forward_op(U, V, X, offsets, activation, loss)


def packed_backward(grad_out: Tensor, U: Tensor, V: Tensor, X: Tensor, offsets: Tensor, activation: str = "relu",
                    loss: str = "cross_entropy", need_U: bool = True, need_V: bool = True, need_X: bool = True):
    """(gU, gV, gX): the gradients of sum_n <grad_out[n], out[n]>, None for those not asked for
    (gX summed over the networks). Differentiable (through the composite formulas) when grad
    mode is on and an input requires grad."""
    check_layout(U, V, offsets, activation, loss)
    check_batch(X, U)
    check_float(grad_out, "grad_out", U.dtype)
    check_shape(grad_out, "grad_out", (offsets.shape[0] - 1, X.shape[0], V.shape[1]))
    args = (grad_out.contiguous(), U, V, X.contiguous(), offsets, activation, loss, need_U, need_V, need_X)
    if _needs_grad(*args[:4]):
        return _composite.forward_vjp(args[0], *args[1:4], offsets, activation, need_U, need_V, need_X)
    if _eager(*args[:5]):
        gU, gV, gX = _kernels(U).backward(*args)
    else:
        gU, gV, gX = packed_backward_op(*args)
    return gU if need_U else None, gV if need_V else None, gX if need_X else None


def packed_loss(U: Tensor, V: Tensor, X: Tensor, y: Tensor, offsets: Tensor, *, weights: Optional[Tensor] = None,
                activation: str = "relu", loss: str = "cross_entropy") -> Tensor:
    """Per-network mean loss (N,) on (X, y), differentiable in U, V and X (not in the targets).

    When a gradient will be needed (grad mode on and U, V or X requiring it) the loss and the
    weights' gradients come from one fused native pass, and backward only scales them per
    network by the incoming gradient (nothing at all for ``losses.sum()``); otherwise only the
    loss is computed. The gradient with respect to X, when X requires it, is computed in
    backward (outputs recomputed, then the native backward)."""
    check_layout(U, V, offsets, activation, loss)
    check_batch(X, U)
    y0, (y, weights) = y, targets(y, weights, X.shape[0], loss, U.dtype)
    check_targets(y, weights, X.shape[0], U, V, loss)
    check_target_values(y0, y, weights, loss, V.shape[1])
    if torch.is_grad_enabled():
        targets_no_grad(y, weights)
    X = X.contiguous()
    with_grad = _needs_grad(U, V)
    if _eager(U, V, X, y, weights, offsets):
        if with_grad or _needs_grad(X):
            return _Loss.apply(U, V, X, y, weights, offsets, activation, loss, with_grad)
        return _kernels(U).loss(U, V, X, y, weights, offsets, activation, loss, False)[0]
    if _functorch():
        return _FuncLoss.apply(U, V, X, y, weights, offsets, activation, loss, with_grad)[0]
    return packed_loss_op(U, V, X, y, weights, offsets, activation, loss, with_grad)[0]


def _extra(alpha, state2_U, state2_V, beta1, beta2, eps, steps):
    """The rule's extra tensors in RULE_EXTRA's order, the read-only ones contiguous."""
    c = lambda t: None if t is None else t.contiguous()       # noqa: E731
    return (c(alpha), state2_U, state2_V, c(beta1), c(beta2), c(eps), steps)


def packed_step(U: Tensor, V: Tensor, X: Tensor, y: Tensor, offsets: Tensor, state_U: Tensor, state_V: Tensor,
                lr: Tensor, momentum: Tensor, weight_decay: Tensor, *, weights: Optional[Tensor] = None,
                activation: str = "relu", loss: str = "cross_entropy", rule: str = "momentum_sgd",
                alpha: Optional[Tensor] = None, state2_U: Optional[Tensor] = None, state2_V: Optional[Tensor] = None,
                beta1: Optional[Tensor] = None, beta2: Optional[Tensor] = None, eps: Optional[Tensor] = None,
                steps: Optional[Tensor] = None) -> Tensor:
    """One fused training step in place (U, V and the rule's state) of the native update
    ``rule`` on every network's mean loss; returns the losses before the step. Runs without
    autograd recording. Per-network hyper-parameters are (N,) tensors of U's dtype.

    - ``"momentum_sgd"`` (default): torch.optim.SGD(momentum, dampening=0, weight_decay);
      state_U, state_V are the momentum buffers (a zero buffer is torch's first step).
    - ``"nesterov_sgd"``: the same with nesterov=True; ``"path_sgd"``: Path-SGD (momentum on the
      path-scaled gradient). State: momentum buffers.
    - ``"ddp_sgd"``: DDP-SGD; ``alpha`` (N,) in [0, 1]; the step first writes the per-weight
      scaling of this batch into state_U, state_V (``packed_ddp_scale``). momentum is not read.
    - ``"adam"``, ``"adamw"``: torch.optim.Adam / AdamW; state_U, state_V are the first moments,
      ``state2_U``, ``state2_V`` the second, ``beta1``, ``beta2``, ``eps`` (N,) and ``steps``
      (int64 (N,), each network's steps so far: advanced by one here). momentum is not read.
    """
    check_layout(U, V, offsets, activation, loss)
    check_batch(X, U)
    y0, (y, weights) = y, targets(y, weights, X.shape[0], loss, U.dtype)
    check_targets(y, weights, X.shape[0], U, V, loss)
    check_target_values(y0, y, weights, loss, V.shape[1])
    check_state(state_U, state_V, U, V)
    check_hyper(lr, momentum, weight_decay, offsets.shape[0] - 1, U)
    extra = _extra(alpha, state2_U, state2_V, beta1, beta2, eps, steps)
    check_rule(rule, extra, offsets.shape[0] - 1, U, V, True)
    args = (U, V, X.contiguous(), y, weights, offsets, activation, loss, state_U, state_V, lr.contiguous(),
            momentum.contiguous(), weight_decay.contiguous())
    with torch.no_grad():
        if _eager(*(a for a in args if not isinstance(a, str)), *extra):
            out = _kernels(U).step(*args, rule, extra)
            _bump(U, V, state_U, state_V, *(t for t in extra[1:3] + extra[6:] if t is not None))
            return out
        return packed_step_op(*args, rule, *extra)


def packed_ddp_scale(U: Tensor, V: Tensor, X: Tensor, offsets: Tensor, alpha: Tensor, scale_U: Tensor,
                     scale_V: Tensor, *, activation: str = "relu", loss: str = "cross_entropy") -> None:
    """DDP-SGD's per-weight scaling 1 / kappa on the batch X, written into scale_U (S, d) and
    scale_V (S, k) (``alpha``: (N,) in [0, 1]): the state ``packed_apply_update(rule="ddp_sgd")``
    reads. ``packed_step(rule="ddp_sgd")`` runs it itself."""
    check_layout(U, V, offsets, activation, loss)
    check_batch(X, U)
    check_state(scale_U, scale_V, U, V)
    check_float(alpha, "alpha", U.dtype)
    check_shape(alpha, "alpha", (offsets.shape[0] - 1,))
    args = (U, V, X.contiguous(), offsets, alpha.contiguous(), scale_U, scale_V, activation, loss)
    with torch.no_grad():
        if _eager(*args[:7]):
            _kernels(U).ddp_scale(*args)
            _bump(scale_U, scale_V)
        else:
            packed_ddp_scale_op(*args)


def packed_apply_update(U: Tensor, V: Tensor, gU: Tensor, gV: Tensor, offsets: Tensor, state_U: Tensor,
                        state_V: Tensor, lr: Tensor, momentum: Tensor, weight_decay: Tensor, *,
                        activation: str = "relu", loss: str = "cross_entropy", rule: str = "momentum_sgd",
                        state2_U: Optional[Tensor] = None, state2_V: Optional[Tensor] = None,
                        beta1: Optional[Tensor] = None, beta2: Optional[Tensor] = None, eps: Optional[Tensor] = None,
                        steps: Optional[Tensor] = None) -> None:
    """The update of ``packed_step`` from given gradients gU, gV (in place, without autograd
    recording); equal bit for bit to the fused step given the fused loss's gradients (for
    ``"ddp_sgd"``: with the scaling of that batch in state_U, state_V, from ``packed_ddp_scale``)."""
    check_layout(U, V, offsets, activation, loss)
    for name, g, w in (("gU", gU, U), ("gV", gV, V)):
        check_float(g, name, U.dtype)
        if g.is_sparse:
            raise ValueError(f"{name}: sparse gradients are not supported")
        check_shape(g, name, tuple(w.shape))
    check_state(state_U, state_V, U, V)
    check_hyper(lr, momentum, weight_decay, offsets.shape[0] - 1, U)
    extra = _extra(None, state2_U, state2_V, beta1, beta2, eps, steps)
    check_rule(rule, extra, offsets.shape[0] - 1, U, V, False)
    args = (U, V, gU.contiguous(), gV.contiguous(), offsets, state_U, state_V, lr.contiguous(),
            momentum.contiguous(), weight_decay.contiguous(), activation, loss)
    with torch.no_grad():
        if _eager(*args[:10], *extra):
            _kernels(U).apply_update(*args, rule, extra)
            _bump(U, V, state_U, state_V, *(t for t in extra[1:3] + extra[6:] if t is not None))
        else:
            packed_apply_update_op(*args, rule, *extra[1:])
