"""PackedMLP: N two-layer networks y = sum_h v_h act(<u_h, x>) of different widths, stored
unit-major as one wide network with a block-diagonal second layer (see ARCHITECTURE.md)."""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np

from . import _core
from ._validate import as_float_array, as_labels, per_network, positive_int

_DTYPES = {"float32": np.float32, "float64": np.float64}
_ENGINES = {"float32": _core.PackedEngineF32, "float64": _core.PackedEngineF64}


class PackedMLP:
    """N bias-free two-layer networks trained and evaluated as one packed model.

    Network ``n`` has ``widths[n]`` hidden units; its first-layer weights are the rows
    ``U[offsets[n]:offsets[n+1]]`` (each row is one unit's ``u_h``, exactly the rows of
    ``nn.Linear(d, H).weight``) and its second-layer weights the same rows of ``V`` (each row one
    unit's ``v_h``, i.e. ``nn.Linear(H, k).weight.T``). ``U``, ``V`` and ``offsets`` are numpy
    arrays shared with the native core (no copies); write into them in place.

    Parameters
    ----------
    widths : sequence of int
        Hidden units of each network, each >= 1.
    in_features, out_features : int
        Input dimension d and number of classes k (shared by all networks).
    activation : {"relu", "linear"}
        "linear" gives the matrix-factorization model of Section 3 of the paper.
    init_std : None, float, array of shape (N,), or a pair (std_u, std_v) of those
        Standard deviation of the Gaussian initialization. ``None`` (default) uses
        1/sqrt(fan_in) per layer: std 1/sqrt(d) for U and 1/sqrt(H_n) for network n's V
        (the scale of torch's default uniform init, as a Gaussian). A single value or
        per-network array applies to both layers; a pair sets the layers separately.
    seed : int or array of shape (N,)
        An int seeds all networks through independent child streams
        (``np.random.SeedSequence(seed).spawn(N)``); an array gives network n the generator
        ``np.random.default_rng(seed[n])``, so a network can be rebuilt alone.
    dtype : {"float32", "float64"}
        float32 is the fast path; float64 exists for checking.
    """

    def __init__(self, widths: Sequence[int], in_features: int, out_features: int, *,
                 activation: str = "relu", init_std=None, seed=0, dtype: str = "float32"):
        self.widths = _check_widths(widths)
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        if activation not in ("relu", "linear"):
            raise ValueError(f"activation: expected 'relu' or 'linear', got {activation!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype: expected one of {sorted(_DTYPES)}, got {dtype!r}")
        self.activation = activation
        self.dtype = np.dtype(_DTYPES[dtype])
        N, d, k = len(self.widths), self.in_features, self.out_features
        self.offsets = np.zeros(N + 1, dtype=np.int64)
        np.cumsum(self.widths, out=self.offsets[1:])
        S = int(self.offsets[-1])
        self._engine = _ENGINES[dtype](self.offsets, d, k, activation)
        self.U = np.empty((S, d), dtype=self.dtype)
        self.V = np.empty((S, k), dtype=self.dtype)
        self._init(init_std, seed)

    # ------------------------------------------------------------------ structure
    @property
    def num_networks(self) -> int:
        return len(self.widths)

    @property
    def num_units(self) -> int:
        return int(self.offsets[-1])

    def network_of_unit(self) -> np.ndarray:
        """Index of the network owning each hidden unit (length S)."""
        return np.repeat(np.arange(self.num_networks), self.widths)

    def network(self, i: int):
        """Copies of network i's weights: (U_i of shape (H_i, d), V_i of shape (H_i, k))."""
        s = self._slice(i)
        return self.U[s].copy(), self.V[s].copy()

    def set_network(self, i: int, U_i, V_i) -> None:
        s = self._slice(i)
        h = s.stop - s.start
        self.U[s] = as_float_array(U_i, "U_i", self.dtype, 2, (h, self.in_features))
        self.V[s] = as_float_array(V_i, "V_i", self.dtype, 2, (h, self.out_features))

    def _slice(self, i: int) -> slice:
        if not isinstance(i, numbers.Integral) or not -self.num_networks <= i < self.num_networks:
            raise IndexError(f"i: expected a network index in [0, {self.num_networks}), got {i!r}")
        i = int(i) % self.num_networks
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    # ------------------------------------------------------------------ compute
    def forward(self, X) -> np.ndarray:
        """Logits of every network on the batch X (B, d): an array of shape (N, B, k)."""
        X = self._X(X)
        return self._engine.forward(self.U, self.V, X)

    __call__ = forward

    def loss_and_grad(self, X, y):
        """Per-network mean softmax cross-entropy on (X, y) and its gradients.

        Returns ``(loss, gU, gV)``: loss of shape (N,) (float64), gU shaped like U, gV like V.
        """
        X, y = self._Xy(X, y)
        gU = np.empty_like(self.U)
        gV = np.empty_like(self.V)
        loss = self._engine.loss_grad(self.U, self.V, X, y, gU, gV)
        return loss, gU, gV

    def evaluate(self, X, y, batch_size: int = 256):
        """Per-network error rate and mean loss over a whole data set.

        Streams X in blocks of ``batch_size`` samples, so memory stays bounded by the model
        size times the block, whatever the number of samples. A sample whose loss is not
        finite (a diverged network) counts as an error. Returns ``(error, loss)``, both of
        shape (N,) float64.
        """
        X, y = self._Xy(X, y)
        batch_size = positive_int(batch_size, "batch_size")
        errors, loss = self._engine.evaluate(self.U, self.V, X, y, batch_size)
        n = max(1, X.shape[0])
        return errors / n, loss / n

    def _X(self, X) -> np.ndarray:
        X = as_float_array(X, "X", self.dtype, 2, (None, self.in_features))
        if X.shape[0] == 0:
            raise ValueError("X: expected at least one sample, got an empty batch")
        return X

    def _Xy(self, X, y):
        X = self._X(X)
        return X, as_labels(y, "y", X.shape[0], self.out_features)

    # ------------------------------------------------------------------ Theorem 1: rescaling
    def balance(self) -> int:
        """Rescale every unit in place (u_h -> s u_h, v_h -> v_h / s, s > 0) so that
        ||u_h|| = ||v_h||: the function of every network is unchanged and
        1/2 sum_h (||u_h||^2 + ||v_h||^2) drops to sum_h ||u_h|| ||v_h||, its least value.
        Units with u_h = 0 or v_h = 0 compute zero and are set to zero in both layers.
        Returns the number of such units."""
        return int(_core.balance_units(self.U, self.V))

    def normalize_units(self) -> int:
        """Rescale every unit in place so that ||u_h|| = 1, moving the scale into v_h (the form
        of objective (5) and of convex neural nets). Units with u_h = 0 compute zero: their v_h
        is set to zero and u_h stays zero. Returns the number of such units."""
        return int(_core.normalize_units(self.U, self.V))

    def measures(self) -> dict:
        """Per-network norm measures, arrays of shape (N,) (float64):
        ``l2_penalty`` = 1/2 sum_h (||u_h||^2 + ||v_h||^2), ``group_l1`` = sum_h ||u_h|| ||v_h||,
        ``path_l1`` = sum over input-hidden-output paths of |U[h,i] V[h,j]|
        = sum_h ||u_h||_1 ||v_h||_1, ``path_l2`` = sqrt(sum_h ||u_h||^2 ||v_h||^2),
        ``norm_U`` = ||U_n||_F, ``norm_V`` = ||V_n||_F (no copy of the weights is made).
        Always l2_penalty >= group_l1, with equality after ``balance()``."""
        return _core.network_measures(self.U, self.V, self.offsets)

    def unit_balance(self) -> np.ndarray:
        """Per unit ||u_h||^2 - ||v_h||^2 (length S): exactly conserved by gradient flow on
        any loss, nearly by small-step SGD; weight decay pulls it to zero."""
        return _core.unit_balance(self.U, self.V)

    def copy(self) -> "PackedMLP":
        """An independent copy (weights copied, same structure)."""
        new = PackedMLP.__new__(PackedMLP)
        new.__dict__.update(self.__dict__)
        new._engine = _ENGINES[self.dtype.name](self.offsets, self.in_features, self.out_features, self.activation)
        new.U, new.V = self.U.copy(), self.V.copy()
        return new

    # ------------------------------------------------------------------ init / conversion
    def _init(self, init_std, seed) -> None:
        N, d = self.num_networks, self.in_features
        if isinstance(init_std, tuple):
            if len(init_std) != 2:
                raise ValueError("init_std: expected a pair (std_u, std_v)")
            std_u = per_network(init_std[0], "init_std[0]", N, np.float64)
            std_v = per_network(init_std[1], "init_std[1]", N, np.float64)
        elif init_std is None:
            std_u = np.full(N, 1.0 / np.sqrt(d))
            std_v = 1.0 / np.sqrt(np.asarray(self.widths, dtype=np.float64))
        else:
            std_u = std_v = per_network(init_std, "init_std", N, np.float64)
        rngs = _network_rngs(seed, N)
        for n, rng in enumerate(rngs):
            s = slice(int(self.offsets[n]), int(self.offsets[n + 1]))
            h = s.stop - s.start
            self.U[s] = rng.standard_normal((h, d)) * std_u[n]
            self.V[s] = rng.standard_normal((h, self.out_features)) * std_v[n]

    def to_torch(self):
        """A list of ``nn.Sequential(Linear(d, H, bias=False), ReLU(), Linear(H, k, bias=False))``
        (``Identity`` instead of ``ReLU`` for the linear activation), one per network."""
        from .reference import modules_from_packed
        return modules_from_packed(self.U, self.V, self.offsets, self.activation)

    @classmethod
    def from_torch(cls, modules, *, dtype: str = "float32") -> "PackedMLP":
        """Pack a list of two-layer ``nn.Sequential`` networks (the form ``to_torch`` returns)."""
        from .reference import packed_from_modules
        U, V, widths, activation = packed_from_modules(modules)
        model = cls(widths, U.shape[1], V.shape[1], activation=activation, dtype=dtype, init_std=1.0)
        model.U[...] = U
        model.V[...] = V
        return model

    def __repr__(self) -> str:
        w = self.widths
        shown = ", ".join(map(str, w[:6])) + (", ..." if len(w) > 6 else "")
        return (f"PackedMLP(N={self.num_networks}, widths=[{shown}], S={self.num_units}, "
                f"d={self.in_features}, k={self.out_features}, activation={self.activation!r}, "
                f"dtype={self.dtype.name})")


def _check_widths(widths) -> list[int]:
    if isinstance(widths, numbers.Integral):
        raise TypeError("widths: expected a sequence of positive integers, got a single int; use [H]")
    try:
        w = list(widths)
    except TypeError:
        raise TypeError(f"widths: expected a sequence of positive integers, got {type(widths).__name__}") from None
    if not w:
        raise ValueError("widths: expected at least one width, got an empty sequence")
    out = []
    for i, h in enumerate(w):
        if isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1:
            raise ValueError(f"widths: expected positive integers, got {h!r} at index {i}")
        out.append(int(h))
    return out


def _network_rngs(seed, n: int):
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(n)]
    seeds = np.asarray(seed)
    if seeds.shape != (n,) or not np.issubdtype(seeds.dtype, np.integer):
        raise ValueError(f"seed: expected an int or an integer array of shape ({n},), got {seed!r}")
    return [np.random.default_rng(int(s)) for s in seeds]
