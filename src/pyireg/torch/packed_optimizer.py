"""pyireg.torch.PackedOptimizer: any update rule of the native engine (momentum SGD, Nesterov,
Path-SGD, DDP-SGD, Adam, AdamW) on the networks of pyireg.torch.PackedMLP modules, with
per-network hyper-parameters, fused into ``PackedMLP.train_step`` or applied after backward."""
import threading
from typing import Optional

import torch
from torch import Tensor, nn

from . import _ops
from ._checks import ADAM_RULES, RULES
from .module import PackedMLP, owner
from .optim import FusedBatch, _check, check_loaded_groups, normalize_group

# The hyper-parameters of each rule beside lr and weight_decay, with their defaults (torch's).
_RULE_HYPER = {"momentum_sgd": {"momentum": 0.0}, "nesterov_sgd": {"momentum": 0.0}, "path_sgd": {"momentum": 0.0},
               "ddp_sgd": {"alpha": 0.5}, "adam": {"betas": (0.9, 0.999), "eps": 1e-8},
               "adamw": {"betas": (0.9, 0.999), "eps": 1e-8}}
_ALL_HYPER = ("momentum", "betas", "eps", "alpha")
_STATE = {"momentum_sgd": ("momentum_buffer",), "nesterov_sgd": ("momentum_buffer",),
          "path_sgd": ("momentum_buffer",), "ddp_sgd": ("ddp_scale",), "adam": ("exp_avg", "exp_avg_sq"),
          "adamw": ("exp_avg", "exp_avg_sq")}


class PackedOptimizer(torch.optim.Optimizer):
    """The native update ``rule`` on every network of pyireg PackedMLP modules, each network with
    its own hyper-parameters.

    ``rule`` and what each network n does per step, with g its gradient (of its mean loss):

    - ``"momentum_sgd"``: torch.optim.SGD(lr, momentum, weight_decay) (PackedSGD's rule);
    - ``"nesterov_sgd"``: torch.optim.SGD(..., nesterov=True) (momentum 0 is plain SGD here,
      where torch refuses it);
    - ``"path_sgd"``: Path-SGD, momentum on the path-scaled gradient (``pyireg.optim.PathSGD``);
    - ``"ddp_sgd"``: data-dependent path-normalized SGD (``pyireg.optim.DDPSGD``) with ``alpha``
      in [0, 1]; its scaling comes from the batch: ``train_step`` computes it, an unfused
      ``step()`` after backward uses the one of the last ``prepare(X)`` or ``train_step``;
    - ``"adam"``, ``"adamw"``: torch.optim.Adam / AdamW (amsgrad off) with ``betas`` and ``eps``;
      AdamW's default weight_decay is torch's 0.01, every other default is 0.

    Every hyper-parameter (lr, momentum, weight_decay, alpha, eps, and each of betas' two) is a
    real number or a 1-d tensor of one value per network; ``lr`` follows PackedSGD's scheme for
    schedulers (a float ``"lr"`` times a per-network ``"lr_scale"``). A hyper-parameter the rule
    does not have is refused. Results equal the numpy API's optimizer of the same rule
    (``pyireg.optim``) bit for bit.

    Parameters: the U and V of PackedMLP modules, both of a module in one group (the rules
    update the two layers together: Path-SGD's scaling of one layer reads the other, Adam's
    step count is per network); other parameters are refused (give them a torch optimizer).
    State per parameter, in ``state_dict``: ``momentum_buffer`` (the SGD rules), ``ddp_scale``
    (DDP-SGD: 1 / kappa of the last batch), ``exp_avg``, ``exp_avg_sq`` and ``step`` (Adam:
    int64, one count per network, shared by a module's U and V).
    """

    def __init__(self, params_or_module, rule: str, lr, *, momentum=None, weight_decay=None, betas=None, eps=None,
                 alpha=None):
        if not isinstance(rule, str) or rule not in RULES:
            raise ValueError(f"rule: expected one of {', '.join(repr(r) for r in RULES)}, got {rule!r}")
        given = dict(momentum=momentum, betas=betas, eps=eps, alpha=alpha)
        allowed = _RULE_HYPER[rule]
        for name in _ALL_HYPER:
            if given[name] is not None and name not in allowed:
                raise ValueError(f"{name}: not a hyper-parameter of rule {rule!r} (it takes lr, weight_decay"
                                 + "".join(f", {k}" for k in allowed) + ")")
        defaults = dict(rule=rule, lr=lr, weight_decay=(0.01 if rule == "adamw" else 0.0)
                        if weight_decay is None else weight_decay)
        defaults.update({k: v if given[k] is None else given[k] for k, v in allowed.items()})
        self.rule = rule
        self._state_lock = threading.RLock()
        params = params_or_module.parameters() if isinstance(params_or_module, nn.Module) else params_or_module
        super().__init__(params, self._normalize(defaults, ""))

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.rule = self.defaults["rule"]
        self._state_lock = threading.RLock()

    # ------------------------------------------------------------------ hyper-parameters
    @staticmethod
    def _normalize(group: dict, where: str) -> dict:
        out = normalize_group(group, where, ("momentum", "weight_decay", "eps", "alpha"))
        if "betas" in group:
            b = group["betas"]
            if not (isinstance(b, (tuple, list)) and len(b) == 2):
                raise ValueError(f"betas: expected a pair (beta1, beta2){where}, got {b!r}")
            out["betas"] = (_check("beta1", b[0], where), _check("beta2", b[1], where))
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        """The state of a PackedOptimizer of the same rule (its per-network step counts and
        buffers); another rule's, or a torch optimizer's, is refused in one line before anything
        changes (they loaded, then failed at the next step with a KeyError or a step-count error)."""
        rule = self.defaults["rule"]
        groups = state_dict.get("param_groups", ()) if isinstance(state_dict, dict) else ()
        for i, g in enumerate(groups):
            if "rule" not in g:
                raise ValueError(f"state_dict: param_groups[{i}] is not a PackedOptimizer's (no 'rule'); a torch "
                                 "optimizer's state keeps other step counts: start this one fresh, or load a "
                                 "PackedOptimizer's")
        check_loaded_groups(state_dict, "PackedOptimizer", ("lr", "weight_decay", *_RULE_HYPER[rule]),
                            nesterov=rule == "nesterov_sgd", rule=rule)
        super().load_state_dict(state_dict)

    def add_param_group(self, param_group: dict) -> None:
        where = f" (parameter group {len(self.param_groups)})"
        rule = self.defaults["rule"]
        known = {"params", "param_names", "rule", "lr", "lr_scale", "weight_decay", *_RULE_HYPER[rule]}
        extra = set(param_group) - known
        if extra:
            raise ValueError(f"param_group: unknown options {sorted(extra)}{where}; rule {rule!r} takes "
                             + ", ".join(sorted(known - {"params", "param_names", "rule", "lr_scale"})))
        if param_group.get("rule", rule) != rule:
            raise ValueError(f"rule: every parameter group of a PackedOptimizer has its rule, {rule!r}{where}; "
                             f"got {param_group['rule']!r} (use one optimizer per rule)")
        group = self._normalize(param_group, where)
        super().add_param_group(group)
        self._modules_of(self.param_groups[-1], len(self.param_groups) - 1)

    def _modules_of(self, group: dict, index: int):
        """The PackedMLPs whose U and V are in the group (both, or an error)."""
        found = {}
        for p in group["params"]:
            o = owner(p)
            if o is None:
                raise ValueError(f"params: PackedOptimizer updates the U and V of pyireg.torch.PackedMLP modules "
                                 f"only; parameter group {index} holds another parameter of shape "
                                 f"{tuple(p.shape)} (give it a torch optimizer of its own)")
            module, role = o
            found.setdefault(id(module), [module, set()])[1].add(role)
        for module, roles in found.values():
            if roles != {"U", "V"}:
                raise ValueError(f"params: a PackedMLP's U and V must be in one parameter group (the rule updates "
                                 f"them together); parameter group {index} holds only its {''.join(roles)}")
        return [module for module, _ in found.values()]

    def _per_network(self, group: dict, index: int, module: PackedMLP) -> dict:
        """The group's values as (N,) tensors of the module's dtype, checked (a scheduler or the
        user may have changed them since the last step)."""
        N, dt, where = module.num_networks, module.dtype, f" (parameter group {index})"

        def full(name, v):
            v = _check(name, v, where)
            t = v if isinstance(v, Tensor) else torch.full((N,), v, dtype=torch.float64)
            if t.shape != (N,):
                raise ValueError(f"{name}: expected one value per network, {N}, got shape {tuple(t.shape)}{where}")
            return t

        lr = _check("lr", group["lr"], where)
        if isinstance(lr, Tensor):
            raise ValueError(f"lr: expected a float in the parameter group (per-network rates go in "
                             f"'lr_scale'){where}")
        out = dict(lr=lr * full("lr", group["lr_scale"]) if group.get("lr_scale") is not None
                   else torch.full((N,), lr, dtype=torch.float64),
                   weight_decay=full("weight_decay", group["weight_decay"]))
        if not bool(torch.isfinite(out["lr"]).all()):
            raise ValueError(f"lr: the group's lr times lr_scale is not finite{where}")
        rule = self.defaults["rule"]
        out["momentum"] = full("momentum", group["momentum"]) if "momentum" in _RULE_HYPER[rule] else \
            torch.zeros(N, dtype=torch.float64)
        if rule == "ddp_sgd":
            out["alpha"] = full("alpha", group["alpha"])
        if rule in ADAM_RULES:
            out["beta1"], out["beta2"] = full("beta1", group["betas"][0]), full("beta2", group["betas"][1])
            out["eps"] = full("eps", group["eps"])
        return {k: v.to(dt) for k, v in out.items()}

    # ------------------------------------------------------------------ state
    def _tensor_state(self, p: Tensor, name: str) -> Tensor:
        st = self.state[p]
        t = st.get(name)
        if t is None:
            t = st[name] = torch.zeros_like(p, memory_format=torch.contiguous_format)
        elif not t.is_contiguous() or t.dtype != p.dtype or t.device != p.device:     # e.g. loaded
            t = st[name] = t.to(device=p.device, dtype=p.dtype).contiguous()
        return t

    def _rule_state(self, module: PackedMLP, fused: bool):
        """(state_U, state_V, the rule's extra state as keywords) of a module, made on first use.
        Adam's step count is one int64 tensor per network, in U's and V's state alike."""
        U, V = module.U, module.V
        with self._state_lock:
            first = _STATE[self.rule][0]
            if self.rule == "ddp_sgd" and not fused and "ddp_scale" not in self.state[U]:
                raise RuntimeError("optimizer: rule 'ddp_sgd' scales the gradient by statistics of the batch; call "
                                   "prepare(X) with the batch before step(), or train with module.train_step")
            sU, sV = self._tensor_state(U, first), self._tensor_state(V, first)
            extra = {}
            if self.rule in ADAM_RULES:
                extra["state2_U"] = self._tensor_state(U, "exp_avg_sq")
                extra["state2_V"] = self._tensor_state(V, "exp_avg_sq")
                steps = self.state[U].get("step")
                N = module.num_networks
                if steps is None:
                    steps = torch.zeros(N, dtype=torch.int64, device=U.device)
                elif not (isinstance(steps, Tensor) and steps.dtype == torch.int64 and steps.shape == (N,)):
                    raise ValueError(f"state: expected 'step' as an int64 tensor of {N} step counts (one per "
                                     f"network), got {steps!r}")
                other = self.state[V].get("step")
                if other is not None and other is not steps and not torch.equal(other, steps):
                    raise ValueError("state: the step counts of a module's U and V differ (they are one count per "
                                     "network)")
                steps = steps.contiguous()
                self.state[U]["step"] = self.state[V]["step"] = steps
                extra["steps"] = steps
            return sU, sV, extra

    def _call_kwargs(self, group, index, module, fused):
        h = self._per_network(group, index, module)
        sU, sV, extra = self._rule_state(module, fused)
        if self.rule in ADAM_RULES:
            extra.update(beta1=h["beta1"], beta2=h["beta2"], eps=h["eps"])
        if self.rule == "ddp_sgd" and fused:
            extra["alpha"] = h["alpha"]
        return (sU, sV, h["lr"], h["momentum"], h["weight_decay"]), extra

    # ------------------------------------------------------------------ steps
    @torch.no_grad()
    def prepare(self, X: Tensor) -> None:
        """DDP-SGD: compute the scaling of every module's networks from the batch X (what the
        next ``step()`` after backward on that batch uses; ``train_step`` does this itself)."""
        if self.rule != "ddp_sgd":
            raise RuntimeError(f"prepare: only rule 'ddp_sgd' has a data-dependent scaling, not {self.rule!r}")
        for index, group in enumerate(self.param_groups):
            for module in self._modules_of(group, index):
                Xm = module._input(X)
                h = self._per_network(group, index, module)
                with self._state_lock:
                    sU = self._tensor_state(module.U, "ddp_scale")
                    sV = self._tensor_state(module.V, "ddp_scale")
                _ops.packed_ddp_scale(module.U, module.V, Xm.detach(), module.offsets, h["alpha"], sU, sV,
                                      activation=module.activation, loss=module.loss)

    @torch.no_grad()
    def step(self, closure=None, *, fused: Optional[FusedBatch] = None):
        """One update of every module whose U and V have gradients (the closure, if given,
        re-evaluates the loss first and its value is returned). With ``fused`` (from
        ``PackedMLP.train_step``): the fused native step of that module on that batch; returns
        its losses."""
        if fused is not None:
            if closure is not None:
                raise ValueError("closure: not used by a fused step (it computes the loss itself)")
            return self._fused_step(fused)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            for module in self._modules_of(group, index):
                U, V = module.U, module.V
                if U.grad is None and V.grad is None:
                    continue
                for name, p in (("U", U), ("V", V)):
                    if p.grad is None:
                        raise ValueError(f"{name}.grad: None while the module's other layer has a gradient (rule "
                                         f"{self.rule!r} updates U and V together)")
                    if p.grad.is_sparse:
                        raise ValueError(f"{name}.grad: sparse gradients are not supported")
                args, extra = self._call_kwargs(group, index, module, False)
                _ops.packed_apply_update(U, V, U.grad.to(U.dtype), V.grad.to(V.dtype), module.offsets, *args,
                                         activation=module.activation, loss=module.loss, rule=self.rule, **extra)
        return loss

    def _fused_step(self, batch: FusedBatch) -> Tensor:
        module = batch.module
        for index, group in enumerate(self.param_groups):
            if any(p is module.U for p in group["params"]):
                break
        else:
            raise ValueError("optimizer: expected a PackedOptimizer holding the module's U and V")
        args, extra = self._call_kwargs(group, index, module, True)
        return _ops.packed_step(module.U, module.V, batch.X, batch.y, module.offsets, *args, weights=batch.weights,
                                activation=module.activation, loss=module.loss, rule=self.rule, **extra)
