"""pyireg.torch.PackedMLP: the packed width ensemble as an ``nn.Module`` (docs/ARCHITECTURE.md)."""
import numbers
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary

from .. import model as _model
from . import _ops

# every U and V parameter of a live module -> (weak reference to the module, "U" or "V"): how
# PackedSGD recognizes packed parameters in a plain list of parameters or parameter groups
_OWNERS: WeakIdKeyDictionary = WeakIdKeyDictionary()


def owner(param: Tensor):
    """(module, "U" or "V") when ``param`` is the current U or V of a live PackedMLP, else None."""
    entry = _OWNERS.get(param)
    if entry is None:
        return None
    module = entry[0]()
    if module is None or getattr(module, entry[1], None) is not param:
        return None
    return module, entry[1]


def _torch_dtype(dtype) -> torch.dtype:
    """float32 or float64 from a torch dtype, a numpy dtype or a string."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _ops.FLOAT_DTYPES:
            raise ValueError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
        return dtype
    from .._validate import as_dtype
    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[as_dtype(dtype)]


class PackedMLP(nn.Module):
    """N bias-free two-layer networks y = sum_h v_h act(<u_h, x>) of different widths, packed into
    one module and run by pyireg's native core (CPU).

    Parameters: ``U`` (S x d) and ``V`` (S x k), one ``nn.Parameter`` per layer, unit-major: network
    n owns rows ``offsets[n]:offsets[n+1]`` of both (``U[rows]`` is that network's
    ``nn.Linear(d, H).weight``, ``V[rows]`` its ``nn.Linear(H, k).weight.T``). ``offsets`` (N + 1,
    int64) is a buffer, not saved in the state dict: the layout (widths, activation, loss) is saved
    as extra state and checked when a state dict is loaded.

    ``forward(X)``: X of shape (*, d) gives outputs (N, *, k), differentiable in U, V and X, so the
    module trains inside any model with any optimizer and under ``torch.compile(fullgraph=True)``.
    ``losses(X, y)``: per-network mean losses (N,) from one fused native pass (loss and
    gradients together). ``train_step(X, y, optimizer)``: the whole training step in one native
    call, with a ``pyireg.torch.PackedSGD`` or ``PackedOptimizer``.

    The arguments and the initialization (same seed, same weights; ``init`` names He, Xavier or
    LeCun, normal or uniform, with the fans of the numpy docstring) are those of the numpy
    ``pyireg.PackedMLP``; ``dtype`` is float32 (default) or float64, as a torch dtype, numpy dtype
    or string. Inputs: CPU tensors of any strides, float32 or float64 (converted to the module's
    dtype, differentiably); integer class labels of any integer dtype for cross-entropy.
    """

    def __init__(self, widths: Sequence[int], in_features: int, out_features: int, *, activation: str = "relu",
                 loss: str = "cross_entropy", init_std=None, seed=0, dtype=torch.float32, init=None):
        super().__init__()
        dt = _torch_dtype(dtype)
        numpy_model = _model.PackedMLP(widths, in_features, out_features, activation=activation, loss=loss,
                                       init_std=init_std, seed=seed, dtype=str(dt).replace("torch.", ""), init=init)
        self._adopt(numpy_model, requires_grad=True)

    def _adopt(self, m: "_model.PackedMLP", requires_grad: bool) -> None:
        """Take the numpy model's structure and wrap its arrays as the parameters (no copy)."""
        self.widths = list(m.widths)
        self.in_features, self.out_features = m.in_features, m.out_features
        self.activation, self.loss = m.activation, m.loss
        self.U = nn.Parameter(torch.from_numpy(m.U), requires_grad=requires_grad)
        self.V = nn.Parameter(torch.from_numpy(m.V), requires_grad=requires_grad)
        self.register_buffer("offsets", torch.from_numpy(m.offsets.copy()), persistent=False)
        self._register()

    def _register(self) -> None:
        import weakref
        ref = weakref.ref(self)
        for role in ("U", "V"):
            p = self._parameters.get(role)
            if p is not None:
                _OWNERS[p] = (ref, role)

    # ------------------------------------------------------------------ numpy, without copies
    @classmethod
    def from_numpy(cls, model: "_model.PackedMLP", *, requires_grad: bool = True) -> "PackedMLP":
        """A module whose parameters share memory with the numpy model's U and V (no copy): a
        step of either one is seen by the other."""
        if not isinstance(model, _model.PackedMLP):
            raise TypeError(f"model: expected a pyireg.PackedMLP, got {type(model).__name__}")
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self._adopt(model, requires_grad)
        return self

    def to_numpy(self) -> "_model.PackedMLP":
        """A numpy ``pyireg.PackedMLP`` sharing this module's memory (no copy): its optimizers,
        ``evaluate``, ``measures``, ``balance`` and the rest act on these parameters."""
        for name, p in (("U", self.U), ("V", self.V)):
            _ops.check_device(p, name)
            if p.dtype not in _ops.FLOAT_DTYPES or not p.is_contiguous():
                raise ValueError(f"{name}: expected a contiguous float32 or float64 parameter, got {p.dtype} "
                                 f"(contiguous={p.is_contiguous()})")
        return _model.PackedMLP.from_weights(self.widths, self.U.detach().numpy(), self.V.detach().numpy(),
                                             activation=self.activation, loss=self.loss, copy=False)

    # ------------------------------------------------------------------ structure
    @property
    def num_networks(self) -> int:
        return len(self.widths)

    @property
    def num_units(self) -> int:
        return self.U.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.U.dtype

    def network(self, i: int):
        """Views (U_i of shape (H_i, d), V_i of shape (H_i, k)) of network i's rows of U and V."""
        N = self.num_networks
        if not isinstance(i, numbers.Integral) or not -N <= i < N:
            raise IndexError(f"i: expected a network index in [0, {N}), got {i!r}")
        i = int(i) % N
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.U[a:b], self.V[a:b]

    def extra_repr(self) -> str:
        w = self.widths
        shown = ", ".join(map(str, w[:6])) + (", ..." if len(w) > 6 else "")
        return (f"N={self.num_networks}, widths=[{shown}], S={self.num_units}, in_features={self.in_features}, "
                f"out_features={self.out_features}, activation={self.activation!r}, loss={self.loss!r}")

    # ------------------------------------------------------------------ compute
    def _input(self, X) -> Tensor:
        if not isinstance(X, Tensor):
            raise TypeError(f"X: expected a torch.Tensor, got {type(X).__name__}")
        _ops.check_device(X, "X")
        # float16 / bfloat16 (from layers under torch.autocast) are converted up to the weights'
        # dtype, as float64 is converted down: the native core computes in float32 or float64
        if X.dtype not in (*_ops.FLOAT_DTYPES, torch.float16, torch.bfloat16):
            raise TypeError(f"X: expected a floating tensor (float32, float64, or float16 / bfloat16, converted to "
                            f"the weights' dtype), got {X.dtype}")
        if X.dim() < 1 or X.shape[-1] != self.in_features:
            raise ValueError(f"X: expected shape (*, {self.in_features}), got {tuple(X.shape)}")
        if self.U.dtype not in _ops.FLOAT_DTYPES:
            raise TypeError(f"U: expected float32 or float64 parameters, got {self.U.dtype} (the native core has "
                            "no other precision)")
        _ops.same_device(X, "X", self.U)
        X = X.to(self.U.dtype)
        # like the numpy API: NaN or inf (also after a float64 -> float32 conversion) would
        # silently spoil every network's weights; checked in eager mode (a traced graph cannot
        # branch on the data)
        if _ops._eager(X) and not _ops.all_finite(X):
            raise ValueError("X: contains NaN or inf (after conversion to "
                             f"{str(self.U.dtype).replace('torch.', '')})")
        return X

    def forward(self, X: Tensor) -> Tensor:
        """Outputs of every network: X (*, d) -> (N, *, k)."""
        X = self._input(X)
        lead = X.shape[:-1]
        out = _ops.packed_forward(self.U, self.V, X.reshape(-1, self.in_features), self.offsets, self.activation,
                                  self.loss)
        return out.view((self.num_networks,) + tuple(lead) + (self.out_features,))

    def losses(self, X: Tensor, y: Tensor, weights: Optional[Tensor] = None) -> Tensor:
        """Per-network mean loss (N,) on the batch: softmax cross-entropy with integer labels y (B,),
        or the squared loss 1/2 sum_j w_bj (out_bj - y_bj)^2 with targets y (B, k) and optional
        entry weights (B, k). Differentiable in U, V and X; ``losses(X, y).sum().backward()``
        gives each network the gradient of its own mean loss, as one backward over the summed
        losses of N separate networks would."""
        X = self._input(X)
        if X.dim() != 2:
            raise ValueError(f"X: expected a 2-d batch (B, {self.in_features}) for the losses, got {tuple(X.shape)}")
        self._finite_targets(y, weights)
        return _ops.packed_loss(self.U, self.V, X, y, self.offsets, weights=weights, activation=self.activation,
                                loss=self.loss)

    def train_step(self, X: Tensor, y: Tensor, optimizer, weights: Optional[Tensor] = None) -> Tensor:
        """One fused training step of every network on the batch: forward, loss, backward and the
        optimizer's update in one native call (nothing is allocated once warmed up; ``.grad`` is
        neither read nor written). ``optimizer`` is a ``pyireg.torch.PackedSGD`` holding U and V
        in one parameter group: its hyper-parameters, state and hooks apply, and LR schedulers
        see the step. Returns the per-network losses before the step (N,), detached.

        Gradients do not reach X: for a model with trainable layers before this module, train
        with ``losses`` (or ``forward``) and ``backward``."""
        from .optim import PackedSGD, FusedBatch
        from .packed_optimizer import PackedOptimizer
        if not isinstance(optimizer, (PackedSGD, PackedOptimizer)):
            raise TypeError(f"optimizer: expected a pyireg.torch.PackedSGD or PackedOptimizer, got "
                            f"{type(optimizer).__name__}")
        X = self._input(X)
        if X.dim() != 2:
            raise ValueError(f"X: expected a 2-d batch (B, {self.in_features}), got {tuple(X.shape)}")
        if X.requires_grad and torch.is_grad_enabled():
            raise ValueError("X: requires grad, but train_step does not propagate gradients to its input; train a "
                             "model with layers before this module through losses()/forward() and backward(), "
                             "or pass X.detach()")
        frozen = [name for name, p in (("U", self.U), ("V", self.V)) if not p.requires_grad]
        if len(frozen) == 2:
            raise ValueError("U and V: frozen (requires_grad=False), but train_step updates both layers; call "
                             "requires_grad_(True) on the module to train it")
        if frozen:
            raise ValueError(f"{frozen[0]}: frozen (requires_grad=False), but train_step updates both layers; train "
                             "with losses() or forward(), backward() and optimizer.step(), which leave it alone")
        self._finite_targets(y, weights)
        return optimizer.step(fused=FusedBatch(self, X.detach(), y, weights))

    def _finite_targets(self, y, weights) -> None:
        """The squared loss's targets and entry weights finite in the module's dtype, like X: a
        NaN would spoil every network's weights (eager mode only)."""
        if self.loss != "squared":
            return
        for name, t in (("y", y), ("weights", weights)):
            if isinstance(t, Tensor) and t.dtype.is_floating_point and _ops._eager(t) and \
                    not _ops.all_finite(t.to(self.U.dtype)):
                raise ValueError(f"{name}: contains NaN or inf (after conversion to "
                                 f"{str(self.U.dtype).replace('torch.', '')})")

    # ------------------------------------------------------------------ state
    def get_extra_state(self) -> dict:
        return {"widths": list(self.widths), "activation": self.activation, "loss": self.loss}

    def set_extra_state(self, state) -> None:
        mine = self.get_extra_state()
        if not isinstance(state, dict) or set(state) != set(mine):
            raise ValueError(f"state_dict: expected the layout {{widths, activation, loss}} of a pyireg PackedMLP "
                             f"as extra state, got {state!r:.200}")
        for key in ("activation", "loss"):
            if state[key] != mine[key]:
                raise ValueError(f"state_dict: saved from a module with {key}={state[key]!r}, this one has "
                                 f"{key}={mine[key]!r}")
        if list(state["widths"]) != mine["widths"]:
            saved = list(state["widths"])
            first = next((i for i, (a, b) in enumerate(zip(saved, mine["widths"])) if a != b),
                         min(len(saved), len(mine["widths"])))
            at = lambda w: w[first] if first < len(w) else "none"        # noqa: E731
            raise ValueError(f"state_dict: saved from a module of other widths ({len(saved)} networks, "
                             f"{sum(saved)} units) than this one ({len(mine['widths'])} networks, "
                             f"{sum(mine['widths'])} units); they first differ at network {first} (width "
                             f"{at(saved)} there, {at(mine['widths'])} here)")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # the layout first: nn.Module copies the parameters before it hands over the extra
        # state, so a refused layout would otherwise leave the other module's weights in place
        key = prefix + "_extra_state"
        if key in state_dict:
            self.set_extra_state(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __setattr__(self, name, value) -> None:
        super().__setattr__(name, value)
        if name in ("U", "V") and "_parameters" in self.__dict__:
            self._register()      # a new parameter object (load_state_dict(assign=True), or by hand)

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        self._register()

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self._register()      # conversions may replace the parameter objects
        return out
