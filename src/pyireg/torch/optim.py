"""pyireg.torch.PackedSGD: torch.optim.SGD per network, run by the native update rule."""
import dataclasses
import numbers
import threading
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary

from . import _ops
from .module import PackedMLP, owner

# (low, high, low included, high included) of each hyper-parameter (PackedSGD's and PackedOptimizer's)
_RANGES = {"lr": (0.0, None, True, False), "momentum": (0.0, 1.0, True, False),
           "weight_decay": (0.0, None, True, False), "beta1": (0.0, 1.0, True, False),
           "beta2": (0.0, 1.0, True, False), "eps": (0.0, None, False, False), "alpha": (0.0, 1.0, True, True)}
_RANGE_TEXT = {"lr": "finite values >= 0", "momentum": "values in [0, 1)", "weight_decay": "finite values >= 0",
               "beta1": "values in [0, 1)", "beta2": "values in [0, 1)", "eps": "finite values > 0",
               "alpha": "values in [0, 1]"}


@dataclasses.dataclass
class FusedBatch:
    """The batch of a fused step (made by ``PackedMLP.train_step``, passed to ``PackedSGD.step``)."""
    module: PackedMLP
    X: Tensor
    y: Tensor
    weights: Optional[Tensor] = None


def _in_range(name: str, a: np.ndarray) -> np.ndarray:
    """Where a's values are in the range of hyper-parameter ``name``."""
    low, high, low_in, high_in = _RANGES[name]
    ok = np.isfinite(a) & ((a >= low) if low_in else (a > low))
    if high is not None:
        ok &= (a <= high) if high_in else (a < high)
    return ok


def _check(name: str, value, where: str):
    """A hyper-parameter as a Python float (scalar) or a float64 CPU tensor (one value per
    network), checked finite and in range."""
    if isinstance(value, (bool, str, bytes)):        # np.asarray("0.1", float64) would read a string
        raise TypeError(f"{name}: expected a real number or a 1-d tensor of one value per network{where}, got "
                        f"{type(value).__name__} {value!r:.40}")
    if isinstance(value, numbers.Real):
        a = np.asarray(float(value))
    else:
        if isinstance(value, Tensor):
            _ops.check_device(value, name)
            if value.dtype.is_complex or value.dtype == torch.bool:
                raise TypeError(f"{name}: expected real values{where}, got {value.dtype}")
            value = value.detach().to(torch.float64).numpy()
        try:
            a = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected a real number or a 1-d tensor of one value per network{where}, got "
                            f"{type(value).__name__}") from None
        if a.ndim > 1:
            raise ValueError(f"{name}: expected a scalar or a 1-d tensor of one value per network{where}, got shape "
                             f"{a.shape}")
    ok = _in_range(name, a)
    if not ok.all():
        i = int(np.flatnonzero(~ok.ravel())[0])
        raise ValueError(f"{name}: expected {_RANGE_TEXT[name]}{where}, got {float(a.ravel()[i])!r}"
                         + ("" if a.ndim == 0 else f" at index {i}"))
    return float(a) if a.ndim == 0 else torch.from_numpy(a.copy())


def check_loaded_groups(state_dict, optimizer: str, needs, nesterov: bool = False, rule=None) -> None:
    """Refuse, before anything is loaded, a state_dict whose parameter groups this optimizer
    would not run as they say: another optimizer's state (a hyper-parameter in ``needs`` missing,
    or another ``rule``), or torch.optim options it does not have (nesterov other than
    ``nesterov``, maximize, a nonzero dampening). They used to load and then train differently,
    or fail at the next step with a bare KeyError."""
    groups = state_dict.get("param_groups", ()) if isinstance(state_dict, dict) else ()
    for i, g in enumerate(groups):
        where = f"state_dict: param_groups[{i}]"
        if "rule" in g and g["rule"] != rule:
            raise ValueError(f"{where} is the state of a PackedOptimizer of rule {g['rule']!r}; this is a "
                             f"{optimizer}" + (f" of rule {rule!r}" if rule else "") + ": load it into a matching one")
        missing = [n for n in needs if n not in g]
        if missing:
            raise ValueError(f"{where} has no {', '.join(repr(n) for n in missing)}: the state of another optimizer, "
                             f"not of a {optimizer}" + (f" of rule {rule!r}" if rule else ""))
        if bool(g.get("nesterov", False)) != nesterov and "nesterov" in g:
            raise ValueError(f"{where} has nesterov={g['nesterov']!r}, which this {optimizer} does not run"
                             + ("" if nesterov else " (PackedOptimizer(rule='nesterov_sgd') does)"))
        if g.get("maximize", False):
            raise ValueError(f"{where} has maximize=True, which the {optimizer} does not run")
        if g.get("dampening", 0) not in (0, 0.0, None):
            raise ValueError(f"{where} has dampening={g['dampening']!r}; the {optimizer} runs dampening 0 only")


def normalize_group(group: dict, where: str, names: tuple) -> dict:
    """A parameter group's values as the optimizers keep them: lr -> (float lr, lr_scale tensor or
    None: a per-network lr becomes lr 1 scaled per network, so schedulers that multiply lr keep
    working); each of ``names`` -> a checked float or per-network tensor."""
    out = dict(group)
    if "lr" in group:
        lr = _check("lr", group["lr"], where)
        scale = group.get("lr_scale")
        if isinstance(lr, Tensor):
            if scale is not None:
                raise ValueError(f"lr_scale: expected None when lr itself is per network{where}")
            out["lr"], out["lr_scale"] = 1.0, lr
        else:
            out["lr"] = lr
            out["lr_scale"] = None if scale is None else _check("lr", scale, where + " (lr_scale)")
    for name in names:
        if name in group:
            out[name] = _check(name, group[name], where)
    return out


class PackedSGD(torch.optim.Optimizer):
    """``torch.optim.SGD(momentum, dampening=0, weight_decay, nesterov=False)`` applied to every
    network of pyireg PackedMLP modules with its own hyper-parameters, by the native update.

    ``params_or_module``: a module (all its parameters), an iterable of parameters, or parameter
    groups (dicts), as for any torch optimizer. The U and V of a ``pyireg.torch.PackedMLP`` are
    recognized and updated per network by the native rule (both in one group: one native call;
    either alone: the same arithmetic in torch); any other parameter (a feature extractor in
    front, say) gets torch.optim.SGD's update with the group's scalar values.

    ``lr``, ``momentum``, ``weight_decay``: each a real number or a 1-d tensor (or array) of one
    value per network (a group with per-network values may hold only packed parameters, of
    modules with that many networks). Ranges: lr >= 0, momentum in [0, 1), weight decay >= 0.

    **Learning-rate schedulers.** A group's ``"lr"`` is always a Python float, the value torch's
    schedulers read and write; per-network rates are ``group["lr_scale"]``, and network n steps
    with ``group["lr"] * group["lr_scale"][n]``. Given a per-network ``lr``, the group starts
    with ``"lr" = 1.0`` and ``"lr_scale" = lr``, so a scheduler's factor (StepLR, ExponentialLR,
    LambdaLR, CosineAnnealingLR ...) multiplies every network's rate alike and the per-network
    ratios stay. Given a scalar, ``"lr_scale"`` is None and everything is as in torch.optim.SGD.
    ``"momentum"`` and ``"weight_decay"`` are a float or a per-network tensor; a scheduler that
    cycles momentum (OneCycleLR, CyclicLR) sets one value for every network.

    Per network, the semantics are torch.optim.SGD's to the letter: g = grad + wd w; with
    momentum, buf = g on the first such step and buf = momentum buf + g after, w = w - lr buf;
    without (momentum 0), w = w - lr g and the buffer, if any, is kept unchanged for later.
    Parameters without a gradient are skipped. The state of a parameter is torch.optim.SGD's:
    ``{"momentum_buffer": tensor}`` once it has stepped with momentum.

    ``PackedMLP.train_step(X, y, optimizer)`` runs the fused native step with this optimizer's
    hyper-parameters and state (through ``step``, so hooks and schedulers see it).
    """

    def __init__(self, params_or_module, lr, momentum=0.0, weight_decay=0.0):
        params = params_or_module.parameters() if isinstance(params_or_module, nn.Module) else params_or_module
        defaults = self._normalize(dict(lr=lr, momentum=momentum, weight_decay=weight_decay), "")
        self._hyper_cache = {}
        self._scratch = WeakIdKeyDictionary()     # stand-in buffers of steps with momentum 0 everywhere
        # guards the making of state (buffers, scratch, cached hyper-parameters): two threads making
        # the first step must find one buffer, not make one each and lose a step's momentum
        self._state_lock = threading.RLock()
        super().__init__(params, defaults)

    def __setstate__(self, state: dict) -> None:
        # torch.optim.Optimizer pickles its defaults, state and groups only
        super().__setstate__(state)
        self._hyper_cache = {}
        self._scratch = WeakIdKeyDictionary()
        self._state_lock = threading.RLock()

    @staticmethod
    def _normalize(group: dict, where: str) -> dict:
        """lr -> (float lr, lr_scale tensor or None); momentum and weight_decay -> float or tensor."""
        return normalize_group(group, where, ("momentum", "weight_decay"))

    def load_state_dict(self, state_dict: dict) -> None:
        """PackedSGD's or torch.optim.SGD's state (dampening 0, no nesterov or maximize); another
        optimizer's state is refused in one line before anything changes."""
        check_loaded_groups(state_dict, "PackedSGD", ("lr", "momentum", "weight_decay"))
        super().load_state_dict(state_dict)

    def add_param_group(self, param_group: dict) -> None:
        where = f" (parameter group {len(self.param_groups)})"
        extra = set(param_group) - {"params", "param_names", "lr", "lr_scale", "momentum", "weight_decay"}
        if extra:
            raise ValueError(f"param_group: unknown options {sorted(extra)}{where}; PackedSGD takes lr, momentum "
                             "and weight_decay")
        group = self._normalize(param_group, where)
        super().add_param_group(group)
        self._classify(self.param_groups[-1], len(self.param_groups) - 1)

    # ------------------------------------------------------------------ groups
    def _classify(self, group: dict, index: int):
        """(packed, plain): packed is a list of (module, U or None, V or None) for the PackedMLPs
        whose parameters are in the group, plain the other parameters. Checks that per-network
        values fit every packed module of the group."""
        packed, plain, seen = [], [], {}
        for p in group["params"]:
            o = owner(p)
            if o is None:
                plain.append(p)
                continue
            module, role = o
            if id(module) not in seen:
                seen[id(module)] = len(packed)
                packed.append([module, None, None])
            packed[seen[id(module)]][1 if role == "U" else 2] = p
        vectors = [(k, group[k]) for k in ("lr_scale", "momentum", "weight_decay") if isinstance(group[k], Tensor)]
        if vectors and plain:
            raise ValueError(f"{vectors[0][0]}: per-network values apply to the U and V of pyireg PackedMLP modules "
                             f"only, but parameter group {index} also holds {len(plain)} other parameter(s); put "
                             "them in a group of their own with scalar values")
        for name, t in vectors:
            for module, _, _ in packed:
                if t.shape != (module.num_networks,):
                    raise ValueError(f"{'lr' if name == 'lr_scale' else name}: expected one value per network, "
                                     f"{module.num_networks}, got shape {tuple(t.shape)} (parameter group {index})")
        return [tuple(x) for x in packed], plain

    def _per_network(self, group: dict, index: int, module: PackedMLP):
        """The group's (lr, momentum, weight_decay) as (N,) tensors of the module's dtype, and the
        networks with momentum 0 (a bool tensor, or None if there are none). Checked again
        whenever a value changed since the last step (a scheduler or the user may change them);
        otherwise reused."""
        values = (group["lr"], group.get("lr_scale"), group["momentum"], group["weight_decay"])
        # tensors are compared by identity and version (an in-place change is seen), the rest by value
        stamp = tuple((v, v._version) if isinstance(v, Tensor) else (type(v), v) for v in values)
        N, where = module.num_networks, f" (parameter group {index})"
        key = (index, N, module.dtype)
        with self._state_lock:
            return self._per_network_locked(values, stamp, key, N, where, module)

    def _per_network_locked(self, values, stamp, key, N, where, module):
        cached = self._hyper_cache.get(key)
        if cached is not None and len(cached[0]) == len(stamp) and all(
                (a[0] is b[0] and a[1] == b[1]) if isinstance(b[0], Tensor) else a == b
                for a, b in zip(cached[0], stamp)):
            return cached[1]
        lr = _check("lr", values[0], where)
        if isinstance(lr, Tensor):
            raise ValueError(f"lr: expected a float in the parameter group (per-network rates go in "
                             f"'lr_scale'){where}")
        out = [torch.full((N,), lr, dtype=torch.float64) if values[1] is None
               else lr * _check("lr", values[1], where + " (lr_scale)")]
        for name, v in (("momentum", values[2]), ("weight_decay", values[3])):
            v = _check(name, v, where)
            out.append(v if isinstance(v, Tensor) else torch.full((N,), v, dtype=torch.float64))
        for name, t in zip(("lr", "momentum", "weight_decay"), out):
            if t.shape != (N,):
                raise ValueError(f"{name}: expected one value per network, {N}, got shape {tuple(t.shape)}{where}")
        if not bool(torch.isfinite(out[0]).all()):
            raise ValueError(f"lr: the group's lr times lr_scale is not finite{where}")
        zero = out[1] == 0
        result = (*(t.to(module.dtype) for t in out), zero if bool(zero.any()) else None)
        self._hyper_cache[key] = (stamp, result)
        return result

    def _buffer(self, p: Tensor) -> Tensor:
        """The momentum buffer of a packed parameter, zeros when new: the native rule's
        momentum * 0 + g is torch's first step (buf = g)."""
        with self._state_lock:
            return self._buffer_locked(p)

    def _buffer_locked(self, p: Tensor) -> Tensor:
        st = self.state[p]
        buf = st.get("momentum_buffer")
        if buf is None:
            buf = st["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
        elif not buf.is_contiguous() or buf.dtype != p.dtype:       # e.g. loaded from another dtype
            buf = st["momentum_buffer"] = buf.to(p.dtype).contiguous()
        return buf

    def _native_buffers(self, params, zero: Optional[Tensor]):
        """The buffers to hand to the native rule. Like torch.optim.SGD, the rule neither reads
        nor writes the buffer of a network whose momentum is 0 (a buffer made earlier waits,
        unchanged, for momentum to return); with momentum 0 everywhere torch makes no buffer, so
        a scratch stands in and none is made."""
        if zero is None or not bool(zero.all()):
            return [self._buffer(p) for p in params]
        bufs = []
        with self._state_lock:
            for p in params:
                scratch = self._scratch.get(p)
                if scratch is None or scratch.shape != p.shape or scratch.dtype != p.dtype:
                    scratch = self._scratch[p] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                bufs.append(scratch)
        return bufs

    # ------------------------------------------------------------------ steps
    @torch.no_grad()
    def step(self, closure=None, *, fused: Optional[FusedBatch] = None):
        """One update of every parameter with a gradient (the closure, if given, re-evaluates the
        loss first and its value is returned). With ``fused`` (from ``PackedMLP.train_step``):
        the fused native step of that module on that batch instead; returns its losses."""
        if fused is not None:
            if closure is not None:
                raise ValueError("closure: not used by a fused step (it computes the loss itself)")
            return self._fused_step(fused)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            packed, plain = self._classify(group, index)
            for module, U, V in packed:
                self._packed_update(group, index, module, U, V)
            self._plain_update(group, plain)
        return loss

    def _packed_update(self, group, index, module, U, V) -> None:
        present = [(n, p) for n, p in (("U", U), ("V", V)) if p is not None and p.grad is not None]
        if not present:
            return
        for name, p in present:
            if p.grad.is_sparse:
                raise ValueError(f"{name}.grad: sparse gradients are not supported")
        lr, momentum, wd, zero = self._per_network(group, index, module)
        params = [p for _, p in present]
        if len(present) == 2:
            bufs = self._native_buffers(params, zero)
            _ops.packed_apply_update(U, V, U.grad, V.grad, module.offsets, bufs[0], bufs[1], lr, momentum, wd,
                                     activation=module.activation, loss=module.loss)
            return
        # one layer only (the other frozen, or in another group): torch.optim.SGD's arithmetic
        # in torch, each unit's coefficients taken from its network
        p = params[0]
        rows = module.offsets.diff()
        lr_u, m_u, wd_u = (torch.repeat_interleave(t, rows, output_size=p.shape[0]).unsqueeze(1)
                           for t in (lr, momentum, wd))
        g = p.grad.to(p.dtype) + wd_u * p
        if zero is not None and bool(zero.all()):
            p.sub_(lr_u * g)
            return
        buf = self._buffer(p)
        new = m_u * buf + g
        if zero is not None:
            z = torch.repeat_interleave(zero, rows, output_size=p.shape[0]).unsqueeze(1)
            buf.copy_(torch.where(z, buf, new))
            p.sub_(lr_u * torch.where(z, g, new))
        else:
            buf.copy_(new)
            p.sub_(lr_u * new)

    def _plain_update(self, group, plain) -> None:
        """torch.optim.SGD's single-tensor update (dampening 0, no Nesterov)."""
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        scale = group.get("lr_scale")
        if scale is not None or isinstance(momentum, Tensor) or isinstance(wd, Tensor):
            return      # _classify refused per-network values next to plain parameters
        for p in plain:
            if p.grad is None:
                continue
            g = p.grad
            if wd != 0:
                g = g.add(p, alpha=wd)
            if momentum != 0:
                with self._state_lock:          # one buffer per parameter, whichever thread makes it
                    st = self.state[p]
                    buf = st.get("momentum_buffer")
                    fresh = buf is None
                    if fresh:
                        buf = st["momentum_buffer"] = torch.clone(g).detach()
                if not fresh:
                    buf.mul_(momentum).add_(g)
                g = buf
            p.add_(g, alpha=-lr)

    def _fused_step(self, batch: FusedBatch) -> Tensor:
        module = batch.module
        U, V = module.U, module.V
        for index, group in enumerate(self.param_groups):
            params = group["params"]
            if any(p is U for p in params) and any(p is V for p in params):
                break
        else:
            raise ValueError("optimizer: expected a PackedSGD holding the module's U and V in one parameter group")
        lr, momentum, wd, zero = self._per_network(group, index, module)
        bufs = self._native_buffers((U, V), zero)
        return _ops.packed_step(U, V, batch.X, batch.y, module.offsets, bufs[0], bufs[1], lr, momentum, wd,
                                weights=batch.weights, activation=module.activation, loss=module.loss)
