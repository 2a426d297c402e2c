"""Argument checks of the ``pyireg.torch`` operators: dtypes, shapes, devices and names, each
error naming the argument and what was expected. Metadata only (never tensor data), so the
checks run unchanged while tracing; the layout's values (offsets increasing from 0 to S) are
checked by the kernels (``_kernels_cpu``), where the data is real."""
from typing import Optional

import torch
from torch import Tensor

from .. import _core
from ._devices import has_kernels

FLOAT_DTYPES = (torch.float32, torch.float64)
ACTIVATIONS = ("relu", "linear")
LOSSES = ("cross_entropy", "squared")


def check_device(t, name: str) -> None:
    """A tensor on a device with kernels (the CPU, or one registered in ``_devices``) or meta,
    or an error that says why not (for CUDA: the CUDA backend is not built). Dense tensors only:
    a sparse one failed deep inside (numpy's or a memory-format error)."""
    layout = getattr(t, "layout", torch.strided)
    if layout != torch.strided:
        raise TypeError(f"{name}: expected a dense (strided) tensor, got a {layout} one; convert it with "
                        ".to_dense()")
    dev = t.device
    if dev.type == "meta" or has_kernels(dev.type):
        return
    if dev.type == "cuda":
        built = _core.build_config().get("cuda", False)
        raise RuntimeError(f"{name}: got a CUDA tensor ({dev}), but the CUDA backend of pyireg is "
                           + ("not available in this process" if built else
                              "not built (pyireg._core.build_config()['cuda'] is False)")
                           + "; move the tensors to the CPU with .cpu()")
    raise RuntimeError(f"{name}: expected a CPU tensor, got one on {dev} (pyireg runs on the CPU)")


def one_device(op: str, named) -> None:
    """Every tensor of a call on one device. The dispatcher sends a call with a meta tensor among
    real ones to the fake kernel, whose outputs are uninitialized memory: refused instead."""
    devs = {}
    for name, t in named:
        if isinstance(t, Tensor):
            devs.setdefault(t.device, name)
    if len(devs) > 1:
        what = ", ".join(f"{name} on {dev}" for dev, name in devs.items())
        raise RuntimeError(f"pyireg::{op}: expected every tensor on one device, got {what}; move them to one "
                           "device (meta tensors only for tracing)")


def check_float(t: Tensor, name: str, dtype: Optional[torch.dtype] = None) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    check_device(t, name)
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a float32 or float64 tensor, got {t.dtype}")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name}: expected {dtype} like U, got {t.dtype}")


def check_shape(t: Tensor, name: str, shape) -> None:
    if t.dim() != len(shape) or any(w is not None and w != g for w, g in zip(shape, t.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(t.shape)}")


def check_offsets(offsets) -> None:
    if not isinstance(offsets, Tensor):
        raise TypeError(f"offsets: expected an int64 tensor of N + 1 offsets, got {type(offsets).__name__}")
    check_device(offsets, "offsets")
    if offsets.dtype != torch.int64 or offsets.dim() != 1 or offsets.shape[0] < 2:
        raise ValueError(f"offsets: expected a 1-d int64 tensor of N + 1 >= 2 offsets, got {offsets.dtype} "
                         f"of shape {tuple(offsets.shape)}")


def check_layout(U: Tensor, V: Tensor, offsets: Tensor, activation: str, loss: str) -> None:
    """Weights, layout and names (not the offsets' values: those are checked by the kernels, so
    that tracing never reads tensor data)."""
    check_float(U, "U")
    check_float(V, "V", U.dtype)
    if U.dim() != 2 or V.dim() != 2 or U.shape[0] != V.shape[0]:
        raise ValueError(f"U, V: expected 2-d tensors (S, d) and (S, k) with the same rows, got "
                         f"{tuple(U.shape)} and {tuple(V.shape)}")
    check_offsets(offsets)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected 'relu' or 'linear', got {activation!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss: expected 'cross_entropy' or 'squared', got {loss!r}")


def same_device(t: Tensor, name: str, U: Tensor) -> None:
    """t on the weights' device (a meta input to CPU weights would run no kernel at all)."""
    if t.device != U.device:
        raise ValueError(f"{name}: expected a tensor on the weights' device ({U.device}), got one on {t.device}")


def check_batch(X: Tensor, U: Tensor) -> None:
    check_float(X, "X", U.dtype)
    same_device(X, "X", U)
    check_shape(X, "X", (None, U.shape[1]))


def check_targets(y: Tensor, weights: Optional[Tensor], B: int, U: Tensor, V: Tensor, loss: str) -> None:
    if not isinstance(y, Tensor):
        raise TypeError(f"y: expected a torch.Tensor, got {type(y).__name__}")
    check_device(y, "y")
    same_device(y, "y", U)
    if loss == "cross_entropy":
        if y.dtype != torch.int32:
            raise TypeError(f"y: expected int32 class labels for the operator (the module converts), got {y.dtype}")
        check_shape(y, "y", (B,))
        if weights is not None:
            raise ValueError("weights: entry weights apply to the squared loss only")
        return
    check_float(y, "y", U.dtype)
    check_shape(y, "y", (B, V.shape[1]))
    if weights is not None:
        check_float(weights, "weights", U.dtype)
        check_shape(weights, "weights", (B, V.shape[1]))


def check_hyper(lr: Tensor, momentum: Tensor, weight_decay: Tensor, N: int, U: Tensor) -> None:
    for name, t in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        check_float(t, name, U.dtype)
        check_shape(t, name, (N,))


def check_state(state_U: Tensor, state_V: Tensor, U: Tensor, V: Tensor) -> None:
    for name, s, w in (("state_U", state_U, U), ("state_V", state_V, V)):
        check_float(s, name, U.dtype)
        check_shape(s, name, tuple(w.shape))


def targets_no_grad(y, weights) -> None:
    if y.requires_grad or (weights is not None and weights.requires_grad):
        raise ValueError("y, weights: gradients with respect to the targets or the entry weights are not "
                         "supported; detach them")


def targets(y: Tensor, weights: Optional[Tensor], B: int, loss: str, dtype: torch.dtype):
    """Targets and entry weights in the operators' form: int32 labels for cross-entropy (from any
    integer dtype); for the squared loss, values and weights of the weights' dtype (from any
    floating dtype). Not differentiable."""
    if not isinstance(y, Tensor):
        raise TypeError(f"y: expected a torch.Tensor, got {type(y).__name__}")
    check_device(y, "y")
    if loss == "cross_entropy":
        if y.dtype.is_floating_point or y.dtype.is_complex:
            raise TypeError(f"y: expected integer class labels, got {y.dtype}")
        # bool labels are classes 0 and 1, as the numpy API takes them
        check_shape(y, "y", (B,))
        if y.dtype in (torch.int64, torch.uint64, torch.uint32):
            # a label beyond int32 would wrap into range (2**32 + 1 -> 1) where no eager check ran
            # (compiled, traced, torch.func): -1 instead, which every kernel set refuses (unsigned
            # labels through int64, where torch compares them; above 2**63 they turn negative)
            y = y.to(torch.int64)
            y = torch.where((y < 0) | (y > 2**31 - 1), -1, y)
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


# The update rules of the fused step and apply_update, and the tensors each needs beside
# (state_U, state_V, lr, momentum, weight_decay). ``extra`` is always in RULE_EXTRA's order.
RULES = ("momentum_sgd", "nesterov_sgd", "path_sgd", "ddp_sgd", "adam", "adamw")
ADAM_RULES = ("adam", "adamw")
RULE_EXTRA = ("alpha", "state2_U", "state2_V", "beta1", "beta2", "eps", "steps")
_ADAM_EXTRA = frozenset(RULE_EXTRA[1:])


def check_rule(rule, extra, N: int, U: Tensor, V: Tensor, fused: bool) -> None:
    """The rule's name and its extra tensors (``extra``: RULE_EXTRA's values, None where not
    given): those the rule needs given and well formed, the others None. ``fused``: the fused
    step (DDP-SGD computes its scaling from the batch there, so it needs alpha; apply_update
    reads the scaling from the state)."""
    if not isinstance(rule, str) or rule not in RULES:
        raise ValueError(f"rule: expected one of {', '.join(repr(r) for r in RULES)}, got {rule!r}")
    need = _ADAM_EXTRA if rule in ADAM_RULES else {"alpha"} if (rule == "ddp_sgd" and fused) else frozenset()
    for name, t in zip(RULE_EXTRA, extra):
        if t is None:
            if name in need:
                raise ValueError(f"{name}: expected a tensor for rule {rule!r}, got None")
            continue
        if name not in need:
            why = (" (apply_update reads DDP-SGD's scaling from state_U, state_V)" if name == "alpha" and
                   rule == "ddp_sgd" else "")
            raise ValueError(f"{name}: not used by rule {rule!r}{why}; expected None")
        if name == "steps":
            if not isinstance(t, Tensor):
                raise TypeError(f"steps: expected an int64 tensor, got {type(t).__name__}")
            check_device(t, "steps")
            if t.dtype != torch.int64:
                raise TypeError(f"steps: expected an int64 tensor of step counts, got {t.dtype}")
            check_shape(t, "steps", (N,))
        elif name.startswith("state2"):
            check_float(t, name, U.dtype)
            check_shape(t, name, tuple((U if name == "state2_U" else V).shape))
        else:
            check_float(t, name, U.dtype)
            check_shape(t, name, (N,))


def distinct_memory(read=None, **written) -> None:
    """The tensors a call writes in place (``written``) share no memory with each other nor with
    the tensors it reads (``read``, a dict of name -> tensor): a momentum buffer that is the
    weights themselves would make the update read what it writes. Tensors that are only read
    may overlap (the C++ binding's rule too)."""
    spans = []
    for names, is_written in ((read or {}, False), (written, True)):     # an error names the written one
        for name, t in names.items():
            if t is None or t.numel() == 0:
                continue
            lo = t.data_ptr()
            spans.append((name, lo, lo + t.numel() * t.element_size(), is_written))
    for j, (name, lo, hi, w) in enumerate(spans):
        for other, a, b, w2 in spans[:j]:
            if (w or w2) and lo < b and a < hi:
                raise ValueError(f"{name}: shares memory with {other}; every tensor a call writes in place must have "
                                 "its own memory")
