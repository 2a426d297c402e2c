"""PackedMLP: N two-layer networks y = sum_h v_h act(<u_h, x>) of different widths, stored
unit-major as one wide network with a block-diagonal second layer (docs/ARCHITECTURE.md)."""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np

from . import _core, _profile
from ._rwlock import RWLock
from ._validate import as_dtype, as_float_array, as_labels, per_network, positive_int, to_numpy

ACTIVATIONS = ("relu", "linear")
# named initializations: (distribution, gain^2 numerator, fan) of the formula of PackedMLP's docstring
INITS = {"he_normal": ("normal", 2.0, "in"), "he_uniform": ("uniform", 6.0, "in"),
         "xavier_normal": ("normal", 2.0, "in+out"), "xavier_uniform": ("uniform", 6.0, "in+out"),
         "lecun_normal": ("normal", 1.0, "in")}
LOSSES = ("cross_entropy", "squared")
_ENGINES = {np.dtype(np.float32): _core.EngineF32, np.dtype(np.float64): _core.EngineF64}
_INIT_BLOCK = 1 << 20   # random numbers drawn at a time while initializing (bounds the temporaries)
_BULK_MAX_DRAWS = 256   # networks with at most this many weights are drawn together (pyireg._init_rng)
_BULK_MIN_NETWORKS = 256
_BULK_CHUNK = 1 << 22   # float64 draws held at once by the bulk path (32 MiB)


class PackedMLP:
    """N bias-free two-layer networks trained and evaluated as one packed model.

    Network ``n`` has ``widths[n]`` hidden units; its first-layer weights are the rows
    ``U[offsets[n]:offsets[n+1]]`` (each row is one unit's ``u_h``, exactly the rows of
    ``nn.Linear(d, H).weight``) and its second-layer weights the same rows of ``V`` (each row one
    unit's ``v_h``, i.e. ``nn.Linear(H, k).weight.T``). ``U`` and ``V`` are numpy arrays shared
    with the native core (no copies); assigning to them copies into the same memory.

    Parameters
    ----------
    widths : sequence of int
        Hidden units of each network, each >= 1.
    in_features, out_features : int
        Input dimension d and number of outputs k (classes for cross-entropy), shared by all networks.
    activation : {"relu", "linear"}
        "linear" gives the matrix-factorization model of Section 3 of the paper.
    loss : {"cross_entropy", "squared"}
        "cross_entropy": mean over the batch of the softmax cross-entropy with integer labels.
        "squared": mean over the batch of 1/2 sum_j w_bj (out_bj - y_bj)^2 with real targets
        y (B, k) and optional entry weights w (B, k) (all ones by default; a 0/1 mask gives a
        loss over observed entries). With unit weights this is ``k / 2`` times
        ``torch.nn.functional.mse_loss(out, y)``, which also averages over the k outputs and
        has no 1/2.
    init_std : None, float, array of shape (N,), or a pair (std_u, std_v) of those
        Standard deviation of the Gaussian initialization. ``None`` (default) uses
        1/sqrt(fan_in) per layer: std 1/sqrt(d) for U and 1/sqrt(H_n) for network n's V
        (the scale of torch's default uniform init, as a Gaussian). A single value or
        per-network array applies to both layers; a pair sets the layers separately.
    init : None or one of "he_normal", "he_uniform", "xavier_normal", "xavier_uniform",
        "lecun_normal"
        A named initialization instead of ``init_std`` (give one of the two). Fans are per layer
        and per network: U_n (H_n x d) has fan_in = d, fan_out = H_n; V_n (its second layer,
        nn.Linear(H_n, k)) has fan_in = H_n, fan_out = k. Then
        he_normal: N(0, 2 / fan_in); he_uniform: U(-b, b), b = sqrt(6 / fan_in);
        xavier_normal: N(0, 2 / (fan_in + fan_out)); xavier_uniform: U(-b, b),
        b = sqrt(6 / (fan_in + fan_out)); lecun_normal: N(0, 1 / fan_in), which is the default
        (``init=None, init_std=None``), bit for bit. A uniform weight is ``b * (2 u - 1)`` with
        ``u = rng.random()`` in float64 (in [-b, b)), rounded once to the model's dtype; draws
        follow the same order as the Gaussian ones (network n's U rows, then its V rows, from
        its own generator), so a network's weights do not depend on its neighbours.
    seed : int, array of shape (N,), or sequence of N ``np.random.SeedSequence``
        An int seeds all networks through independent child streams
        (``np.random.SeedSequence(seed).spawn(N)``); an integer array gives network n the
        generator ``np.random.default_rng(seed[n])``, so a network can be rebuilt alone; a
        sequence of seed sequences gives network n ``default_rng(seed[n])`` (so networks n..m of
        a sweep seeded with s are rebuilt exactly by ``seed=SeedSequence(s).spawn(N)[n:m]``).
    dtype : "float32" or "float64" (a string, numpy dtype or torch dtype)
        float32 is the fast path; float64 exists for checking.

    Inputs (X, targets) may be numpy arrays of any real dtype, lists, pandas objects or CPU
    torch tensors: they are converted once to the model's dtype (see ``pyireg._validate``).

    Thread safety: operations that only read the weights (forward, backward, loss_and_grad,
    evaluate, measures, unit_balance, copy, pickling, network) may run from several threads at
    once; operations that write them (an optimizer's step, balance, normalize_units,
    set_network, assigning U or V) wait for the readers and run alone. A read made of several
    passes (``copy``, pickling, ``network(i)``, ``measures``) holds the model's reader lock
    across all of them, so it sees one state: the result equals some serial order of the calls.
    Writing into the arrays ``U``/``V`` in place from Python is not synchronized.

    Memory: sizes are checked before anything large is allocated; a model (or a batch) that
    would not fit the memory limit (``pyireg.set_memory_limit``, default the machine's memory)
    raises MemoryError naming the estimate.
    """

    def __init__(self, widths: Sequence[int], in_features: int, out_features: int, *,
                 activation: str = "relu", loss: str = "cross_entropy", init_std=None, seed=0,
                 dtype="float32", init=None):
        kind = check_init(init)
        if init is not None and init_std is not None:
            raise ValueError(f"init: give a named init or init_std, not both (got init={init!r} and init_std)")
        self._setup(widths, in_features, out_features, activation, loss, dtype, init=True)
        std_u, std_v = self._init_std(init_std) if init is None else self._named_scales(init)
        rng_of = _network_rngs(seed, self.num_networks)
        self._U = np.empty((self.num_units, self.in_features), dtype=self.dtype)
        self._V = np.empty((self.num_units, self.out_features), dtype=self.dtype)
        bulk = self._draw_bulk(seed, std_u, std_v, kind)
        self._draw_init(rng_of, std_u, std_v, skip=bulk, kind=kind)

    def _named_scales(self, init):
        """Per-network (scale of U, scale of V) of a named init: the std of a normal one, the
        bound b of a uniform one, from each layer's fans (see the class docstring)."""
        _, num, fan = INITS[init]
        d, k = float(self.in_features), float(self.out_features)
        H = np.asarray(self.widths, dtype=np.float64)
        fans_u = np.full(len(H), d) if fan == "in" else d + H
        fans_v = H if fan == "in" else H + k
        if num == 1.0:      # lecun_normal: computed as the default is, so the two agree bit for bit
            return 1.0 / np.sqrt(fans_u), 1.0 / np.sqrt(fans_v)
        return np.sqrt(num / fans_u), np.sqrt(num / fans_v)

    def _draw_bulk(self, seed, std_u, std_v, kind="normal"):
        """The small networks of an int seed, drawn together by ``pyireg._init_rng`` (the same
        numbers as their own generators, without a Generator per network: a million width-1
        networks in about 2 s instead of 33 s). Returns the mask of the networks drawn, or None."""
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
            return None
        per = (self.in_features + self.out_features) * np.asarray(self.widths, dtype=np.int64)
        small = per <= _BULK_MAX_DRAWS
        if int(small.sum()) < _BULK_MIN_NETWORKS:
            return None
        from . import _init_rng
        if not (_init_rng.check_ziggurat() if kind == "normal" else _init_rng.check_uniform()):
            return None
        nets = np.flatnonzero(small)
        d, k = self.in_features, self.out_features
        chunk = max(1, _BULK_CHUNK // _BULK_MAX_DRAWS)
        for c0 in range(0, len(nets), chunk):
            part = nets[c0:c0 + chunk]
            # children of SeedSequence(seed) are numbered by network: a contiguous run of states,
            # then the part's networks picked out of it
            lo, hi = int(part[0]), int(part[-1]) + 1
            states = tuple(a[part - lo] for a in _init_rng.child_pcg_states(int(seed), lo, hi - lo))
            Z, order, counts = (_init_rng.normals if kind == "normal" else _init_rng.uniforms)(states, per[part])
            # columns of equal count are networks of one width: scattered together
            starts = np.flatnonzero(np.r_[True, counts[1:] != counts[:-1]])
            for a, b in zip(starts, [*starts[1:], len(counts)]):
                H = int(counts[a]) // (d + k)
                net = part[order[a:b]]
                T = Z[:H * (d + k), a:b].T                        # (networks, H (d + k)): each one's draws in order
                if kind == "uniform":       # u -> 2 u - 1, as _draw_uniform does (exact in float64)
                    T = T * 2.0 - 1.0
                rows = (self.offsets[net][:, None] + np.arange(H)).ravel()
                self._U[rows] = (T[:, :H * d] * std_u[net][:, None]).reshape(-1, d)
                self._V[rows] = (T[:, H * d:] * std_v[net][:, None]).reshape(-1, k)
        return small

    def _draw_init(self, rng_of, std_u, std_v, skip=None, kind="normal") -> None:
        """Network n's U rows, then its V rows, from its own generator ``rng_of(n)`` (networks
        in ``skip`` were drawn already). The networks are split into runs of about equal units,
        one per native thread (numpy's generators release the GIL while they fill an array):
        each network is drawn by one thread in its own order, so the weights do not depend on
        the thread count. (One thread drew the 2,129,920 units of 65,536 networks in 4.8 s, as
        long as a training epoch of them.)"""
        S, N = self.num_units, self.num_networks
        todo = np.arange(N) if skip is None else np.flatnonzero(~skip)
        if len(todo) == 0:
            return
        draw_one = _draw_normal if kind == "normal" else _draw_uniform
        threads = max(1, min(_core.get_num_threads(), len(todo),
                             S * (self.in_features + self.out_features) // _INIT_BLOCK))
        cuts = np.searchsorted(self.offsets, np.linspace(0, S, threads + 1)[1:-1], side="right") - 1
        bounds = [0, *sorted({int(c) for c in cuts if 0 < c < N}), N]

        def draw(lo: int, hi: int) -> None:
            nets = todo[(todo >= lo) & (todo < hi)]
            if len(nets) == 0:
                return
            most = int(np.asarray(self.widths, dtype=np.int64)[nets].max())
            buf = np.empty(min(_INIT_BLOCK, most * max(self.in_features, self.out_features)))
            for n in nets.tolist():
                s = slice(int(self.offsets[n]), int(self.offsets[n + 1]))
                rng = rng_of(n)
                draw_one(rng, self._U[s], std_u[n], buf)
                draw_one(rng, self._V[s], std_v[n], buf)

        if len(bounds) == 2:
            draw(0, N)
            return
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(len(bounds) - 1, thread_name_prefix="pyireg-init") as pool:
            for f in [pool.submit(draw, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]:
                f.result()

    def _setup(self, widths, in_features, out_features, activation, loss, dtype, init: bool = False) -> None:
        self.widths = _check_widths(widths)
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected 'relu' or 'linear', got {activation!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss: expected 'cross_entropy' or 'squared', got {loss!r}")
        self.activation = activation
        self.loss = loss
        self.dtype = as_dtype(dtype)
        self._lock = RWLock()           # compound reads shared, optimizers' writes exclusive
        if sum(self.widths) >= 2 ** 63:
            raise MemoryError(f"widths: {sum(self.widths)} hidden units in all; the size does not fit in 64 bits")
        self.offsets = np.zeros(len(self.widths) + 1, dtype=np.int64)
        np.cumsum(self.widths, out=self.offsets[1:])
        # checks that the weights fit the memory limit before they are allocated
        self._engine = _ENGINES[self.dtype](self.offsets, self.in_features, self.out_features, activation, loss)
        if init:        # and the weights with everything else building the model allocates
            _check_build_fits(self.widths, self.in_features, self.out_features, self.dtype)

    @classmethod
    def from_weights(cls, widths: Sequence[int], U, V, *, activation: str = "relu", loss: str = "cross_entropy",
                     dtype=None, copy: bool = True) -> "PackedMLP":
        """A model holding the given weights (U of shape (S, d), V of shape (S, k), S = sum of
        widths). With ``copy=False`` the arrays themselves are used (no copy; they must already
        be C-contiguous, writeable and of the model's dtype), so the model and the caller
        share memory, e.g. with a torch tensor's ``.numpy()`` view."""
        model = cls.__new__(cls)
        U0, V0 = np.asarray(U), np.asarray(V)
        if dtype is None and U0.dtype.kind == "f" and U0.dtype not in (np.float32, np.float64):
            raise ValueError(f"U: {U0.dtype.name} weights; pass dtype='float32' or 'float64' to convert them")
        dt = as_dtype(dtype if dtype is not None else (U0.dtype if U0.dtype.kind == "f" else "float32"))
        if U0.ndim != 2 or V0.ndim != 2:
            raise ValueError(f"U, V: expected 2-d arrays, got shapes {U0.shape} and {V0.shape}")
        model._setup(widths, U0.shape[1], V0.shape[1], activation, loss, dt)
        S = model.num_units
        shape_u, shape_v = (S, model.in_features), (S, model.out_features)
        if copy:
            model._U = as_float_array(U, "U", dt, 2, shape_u).copy()
            model._V = as_float_array(V, "V", dt, 2, shape_v).copy()
            return model
        for name, a, shape in (("U", U0, shape_u), ("V", V0, shape_v)):
            if a.shape != shape or a.dtype != dt or not a.flags.c_contiguous or not a.flags.writeable \
                    or not a.flags.aligned:
                raise ValueError(f"{name}: with copy=False, expected a writeable, aligned, C-contiguous {dt.name} "
                                 f"array of shape {shape}, got {a.dtype.name} {a.shape} (contiguous="
                                 f"{a.flags.c_contiguous}, writeable={a.flags.writeable}, aligned={a.flags.aligned})")
        if np.shares_memory(U0, V0):
            raise ValueError("U, V: with copy=False, expected two arrays of their own memory, got views of the same "
                             "memory (a step would read and write one through the other): pass copies")
        model._U, model._V = U0, V0
        return model

    # ------------------------------------------------------------------ structure
    @property
    def U(self) -> np.ndarray:
        """First-layer weights (S, d), unit-major. Assigning an array copies it into U (U keeps
        its memory, which the engine, optimizers and torch views share)."""
        return self._U

    @U.setter
    def U(self, value) -> None:
        if value is not self._U:
            value = as_float_array(value, "U", self.dtype, 2, self._U.shape)
            with self._lock.write():
                self._U[...] = value

    @property
    def V(self) -> np.ndarray:
        """Second-layer weights (S, k), unit-major; assigning copies into V (see U)."""
        return self._V

    @V.setter
    def V(self, value) -> None:
        if value is not self._V:
            value = as_float_array(value, "V", self.dtype, 2, self._V.shape)
            with self._lock.write():
                self._V[...] = value

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
        with self._lock.read():
            return self._U[s].copy(), self._V[s].copy()

    def set_network(self, i: int, U_i, V_i) -> None:
        s = self._slice(i)
        h = s.stop - s.start
        U_i = as_float_array(U_i, "U_i", self.dtype, 2, (h, self.in_features))
        V_i = as_float_array(V_i, "V_i", self.dtype, 2, (h, self.out_features))
        with self._lock.write():
            self._U[s] = U_i
            self._V[s] = V_i

    def _slice(self, i: int) -> slice:
        if not isinstance(i, numbers.Integral) or not -self.num_networks <= i < self.num_networks:
            raise IndexError(f"i: expected a network index in [0, {self.num_networks}), got {i!r}")
        i = int(i) % self.num_networks
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    # ------------------------------------------------------------------ compute
    def forward(self, X) -> np.ndarray:
        """Outputs of every network on the batch X (B, d): an array of shape (N, B, k)."""
        X = self._X(X)
        with self._lock.read():     # against an assignment to U or V (a Python write)
            return self._engine.forward(self._U, self._V, X)

    __call__ = forward

    def backward(self, X, grad_out, *, need_U: bool = True, need_V: bool = True, need_X: bool = True):
        """Gradients of sum_n <grad_out[n], forward(X)[n]> with respect to U, V and X.

        ``grad_out`` (N, B, k) is the upstream gradient of every network's outputs (what
        autograd passes back). Returns ``(gU, gV, gX)`` shaped like U, V and X, with None for
        those not asked for; gX is summed over the networks (the gradient of the input when
        the packed model sits inside a larger one)."""
        X = self._X(X)
        B = X.shape[0]
        G = as_float_array(grad_out, "grad_out", self.dtype, 3, (self.num_networks, B, self.out_features))
        gU = np.empty_like(self._U) if need_U else None
        gV = np.empty_like(self._V) if need_V else None
        gX = np.empty_like(X) if need_X else None
        with self._lock.read():
            self._engine.backward(self._U, self._V, X, G, gU, gV, gX)
        return gU, gV, gX

    def loss_and_grad(self, X, y, weights=None):
        """Per-network mean loss on (X, y) and its gradients.

        ``y``: integer labels (B,) for cross-entropy, real targets (B, k) for the squared loss
        (with optional entry ``weights`` (B, k)). Returns ``(loss, gU, gV)``: loss of shape
        (N,) (float64), gU shaped like U, gV like V."""
        X, y, w = self._batch(X, y, weights)
        gU = np.empty_like(self._U)
        gV = np.empty_like(self._V)
        with self._lock.read():
            loss = self._engine.loss_and_grad(self._U, self._V, X, y, w, gU, gV)
        return loss, gU, gV

    def evaluate(self, X, y, weights=None, batch_size: int = 256):
        """Per-network error rate and mean loss over a whole data set.

        Streams X in blocks of ``batch_size`` samples, so the activations stay bounded by the
        model size times the block, whatever the number of samples (an X not already a C-ordered
        array of the model's dtype is first converted whole, once: pass it converted to avoid
        the copy). A sample whose loss is not
        finite (a diverged network) counts as an error. Returns ``(error, loss)``, both of
        shape (N,) float64. With the squared loss, a sample is an error when its largest output
        is not at its largest target: the classification error for one-hot targets (for other
        targets, read the loss)."""
        X, y, w = self._batch(X, y, weights)
        batch_size = positive_int(batch_size, "batch_size")
        with _profile.section("native evaluation"), self._lock.read():
            errors, loss = self._engine.evaluate(self._U, self._V, X, y, w, batch_size)
        n = X.shape[0]
        return errors / n, loss / n

    def _X(self, X) -> np.ndarray:
        X = as_float_array(X, "X", self.dtype, 2, (None, self.in_features))
        if X.shape[0] == 0:
            raise ValueError("X: expected at least one sample, got an empty batch")
        return X

    def _batch(self, X, y, weights):
        """X, the targets and the entry weights, checked and converted for the model's loss."""
        X = self._X(X)
        B, k = X.shape[0], self.out_features
        if self.loss == "cross_entropy":
            if weights is not None:
                raise ValueError("weights: entry weights apply to the squared loss only")
            return X, as_labels(y, "y", B, k), None
        y = to_numpy(y, "y")
        if y.ndim == 1 and k == 1:
            y = y[:, None]
        y = as_float_array(y, "y", self.dtype, 2, (B, k))
        if weights is not None:
            weights = as_float_array(weights, "weights", self.dtype, 2, (B, k), nonnegative=True)
        return X, y, weights

    # ------------------------------------------------------------------ Theorem 1: rescaling
    def balance(self) -> int:
        """Rescale every unit in place (u_h -> s u_h, v_h -> v_h / s, s > 0) so that
        ||u_h|| = ||v_h||: the function of every network is unchanged and
        1/2 sum_h (||u_h||^2 + ||v_h||^2) drops to sum_h ||u_h|| ||v_h||, its least value.
        Units with u_h = 0 or v_h = 0 compute zero and are set to zero in both layers.
        Returns the number of such units."""
        with self._lock.write():
            return int(self._engine.balance(self._U, self._V))

    def normalize_units(self) -> int:
        """Rescale every unit in place so that ||u_h|| = 1, moving the scale into v_h (the form
        of objective (5) and of convex neural nets). Units with u_h = 0 compute zero: their v_h
        is set to zero and u_h stays zero. Returns the number of such units."""
        with self._lock.write():
            return int(self._engine.normalize_units(self._U, self._V))

    def measures(self, names=None, X=None, y=None, init=None, **options) -> dict:
        """Per-network complexity measures, ``{name: array of shape (N,)}`` (float64), a table
        ready for ``pandas.DataFrame``; the registry and every formula with its source are in
        ``pyireg.measures`` (this is ``pyireg.measures.compute(self, names, X, y, init)``).

        Without arguments, the native weight measures (no copy of the weights is made):
        ``l2_penalty`` = 1/2 sum_h (||u_h||^2 + ||v_h||^2), ``group_l1`` = sum_h ||u_h|| ||v_h||,
        ``path_l1`` = sum over input-hidden-output paths of |U[h,i] V[h,j]|
        = sum_h ||u_h||_1 ||v_h||_1, ``path_l2`` = sqrt(sum_h ||u_h||^2 ||v_h||^2),
        ``norm_U`` = ||U_n||_F, ``norm_V`` = ||V_n||_F. Always l2_penalty >= group_l1, with
        equality after ``balance()``. ``names="all"`` gives every measure the inputs allow:
        ``X``, ``y`` (the training set) add the margin-based ones, ``init`` (the initial model
        or (U0, V0)) the distances from initialization; sharpness and PAC-Bayes are computed
        only when named."""
        from .measures import compute
        with self._lock.read():         # every measure of the call sees the same weights
            return compute(self, names, X=X, y=y, init=init, **options)

    def unit_balance(self) -> np.ndarray:
        """Per unit ||u_h||^2 - ||v_h||^2 (length S): exactly conserved by gradient flow on
        any loss, nearly by small-step SGD; weight decay pulls it to zero."""
        with self._lock.read():
            return self._engine.unit_balance(self._U, self._V)

    # ------------------------------------------------------------------ copies, pickling
    def copy(self) -> "PackedMLP":
        """An independent copy (weights copied, same structure), taken under the reader lock:
        one state, even while another thread trains."""
        with self._lock.read():      # copied as they are: a diverged network's NaN weights included
            return PackedMLP.from_weights(self.widths, self._U.copy(), self._V.copy(), activation=self.activation,
                                          loss=self.loss, dtype=self.dtype, copy=False)

    def __getstate__(self) -> dict:
        # copies taken under the reader lock: pickle serializes the returned arrays after this
        # returns, when another thread's step could be writing the model's own arrays (the
        # price is one transient copy of the weights while pickling)
        with self._lock.read():
            U, V = self._U.copy(), self._V.copy()
        return {"widths": self.widths, "activation": self.activation, "loss": self.loss, "dtype": self.dtype.name,
                "U": U, "V": V}

    def __setstate__(self, state: dict) -> None:
        U, V = state["U"], state["V"]
        self._setup(state["widths"], U.shape[1], V.shape[1], state["activation"], state["loss"], state["dtype"])
        # the model's own weights, as pickled: NaN of a diverged network included
        self._U = as_float_array(U, "U", self.dtype, 2, (self.num_units, self.in_features), finite=False)
        self._V = as_float_array(V, "V", self.dtype, 2, (self.num_units, self.out_features), finite=False)

    def _init_std(self, init_std):
        """Per-network standard deviations of U and V, in float64 (the draws are scaled in
        float64, then rounded once to the model's dtype), checked finite in the model's dtype."""
        N, d = self.num_networks, self.in_features
        if init_std is None:
            return np.full(N, 1.0 / np.sqrt(d)), 1.0 / np.sqrt(np.asarray(self.widths, dtype=np.float64))
        if isinstance(init_std, tuple):
            if len(init_std) != 2:
                raise ValueError("init_std: expected a pair (std_u, std_v)")
            pairs = [(init_std[0], "init_std[0]"), (init_std[1], "init_std[1]")]
        else:
            pairs = [(init_std, "init_std")] * 2
        for value, name in pairs:
            per_network(value, name, N, self.dtype)
        return tuple(per_network(value, name, N, np.float64) for value, name in pairs)

    # ------------------------------------------------------------------ conversion
    def to_torch(self):
        """A list of ``nn.Sequential(Linear(d, H, bias=False), ReLU(), Linear(H, k, bias=False))``
        (``Identity`` instead of ``ReLU`` for the linear activation), one per network, holding
        copies of the weights."""
        from .interop import modules_from_packed
        return modules_from_packed(self._U, self._V, self.offsets, self.activation)

    @classmethod
    def from_torch(cls, modules, *, loss: str = "cross_entropy", dtype=None) -> "PackedMLP":
        """Pack a list of two-layer ``nn.Sequential`` networks (the form ``to_torch`` returns).
        The activation comes from the modules, the dtype too unless given (float32 or float64);
        the loss is not part of a module: pass the one the model was trained with."""
        from .interop import packed_from_modules
        U, V, widths, activation = packed_from_modules(modules)
        return cls.from_weights(widths, U, V, activation=activation, loss=loss,
                                dtype=dtype if dtype is not None else (U.dtype if U.dtype.kind == "f" else "float32"))

    def __repr__(self) -> str:
        w = self.widths
        shown = ", ".join(map(str, w[:6])) + (", ..." if len(w) > 6 else "")
        return (f"PackedMLP(N={self.num_networks}, widths=[{shown}], S={self.num_units}, "
                f"d={self.in_features}, k={self.out_features}, activation={self.activation!r}, "
                f"loss={self.loss!r}, dtype={self.dtype.name})")


def _draw_blocks(out: np.ndarray, buf: np.ndarray, fill) -> None:
    """out = the values fill(block) writes, in float64 blocks of rows of ``buf`` (the same
    numbers as one draw of the whole array, without a float64 temporary of its size)."""
    cols = max(1, out.shape[1])
    rows = max(1, len(buf) // cols)
    for i in range(0, out.shape[0], rows):
        n = min(rows, out.shape[0] - i)
        block = buf[:n * cols].reshape(n, cols)
        fill(block)
        out[i:i + n] = block


def _draw_normal(rng: np.random.Generator, out: np.ndarray, std: float, buf: np.ndarray) -> None:
    """out = std * N(0, 1), in blocks (_draw_blocks)."""
    def fill(block):
        rng.standard_normal(out=block)
        block *= std
    _draw_blocks(out, buf, fill)


def _draw_uniform(rng: np.random.Generator, out: np.ndarray, bound: float, buf: np.ndarray) -> None:
    """out = bound * (2 u - 1), u = rng.random() in float64 (2 u - 1 is exact), in blocks
    (_draw_blocks)."""
    def fill(block):
        rng.random(out=block)
        block *= 2.0
        block -= 1.0
        block *= bound
    _draw_blocks(out, buf, fill)


def check_init(init):
    """The distribution ("normal" or "uniform") of a named init (None: the default, normal);
    ValueError naming ``init`` otherwise."""
    if init is None:
        return "normal"
    if not isinstance(init, str) or init not in INITS:
        raise ValueError(f"init: expected one of {', '.join(INITS)} (or None), got {init!r}")
    return INITS[init][0]


def _check_widths(widths) -> list[int]:
    if isinstance(widths, numbers.Integral):
        raise TypeError("widths: expected a sequence of positive integers, got a single int; use [H]")
    try:
        w = list(widths)
    except TypeError:
        raise TypeError(f"widths: expected a sequence of positive integers, got {type(widths).__name__}") from None
    if not w:
        raise ValueError("widths: expected at least one width, got an empty sequence")
    if isinstance(widths, np.ndarray) or all(type(h) is int for h in w):   # no bools or floats
        a = widths if isinstance(widths, np.ndarray) else np.asarray(w)
        if a.ndim == 1 and a.dtype.kind in "iu" and a.min() >= 1:    # the common case, vectorized
            return a.tolist()
    out = []
    for i, h in enumerate(w):
        if isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1:
            raise ValueError(f"widths: expected positive integers, got {h!r} at index {i}")
        out.append(int(h))
    return out


def _network_rngs(seed, n: int):
    """A function giving network i's generator (made when asked: no object per network is
    kept). An int seed s: child i of SeedSequence(s), i.e. SeedSequence(s, spawn_key=(i,))."""
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        s = int(seed)
        if s < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {s}")
        return lambda i: np.random.default_rng(np.random.SeedSequence(s, spawn_key=(i,)))
    if isinstance(seed, (list, tuple)) and seed and all(isinstance(s, np.random.SeedSequence) for s in seed):
        if len(seed) != n:
            raise ValueError(f"seed: expected {n} seed sequences (one per network), got {len(seed)}")
        return lambda i: np.random.default_rng(seed[i])
    seeds = np.asarray(seed)
    if seeds.shape != (n,) or not np.issubdtype(seeds.dtype, np.integer):
        raise ValueError(f"seed: expected an int, an integer array of shape ({n},) or {n} seed sequences, got {seed!r}")
    if (seeds < 0).any():
        i = int(np.flatnonzero(seeds < 0)[0])
        raise ValueError(f"seed: expected non-negative integers, got {int(seeds[i])} at index {i}")
    return lambda i: np.random.default_rng(int(seeds[i]))


def _check_build_fits(widths, d: int, k: int, dtype) -> None:
    """MemoryError before anything is allocated when the model, with everything building it
    allocates, would not fit the memory limit: the weights, the per-network arrays (offsets,
    two standard deviations, the widths list, the bulk path's generator states) and the
    drawing buffers."""
    N, S, H = len(widths), sum(widths), max(widths)
    item = np.dtype(dtype).itemsize
    weights = S * (d + k) * item
    # offsets, two standard deviations, the widths list, the bulk path's states, and the
    # engine's plan (about 96 bytes a network: its own check put 10^7 networks at 919 MiB)
    per_network = N * (8 + 16 + 8 + 8 + 4 * 8 * 3 + 96)
    buffers = 8 * min(_INIT_BLOCK, H * max(d, k)) * max(1, _core.get_num_threads())
    if N >= _BULK_MIN_NETWORKS:     # the bulk path's draws and generator states of one chunk
        lanes = min(N, _BULK_CHUNK // _BULK_MAX_DRAWS)
        buffers += 8 * lanes * (min(_BULK_MAX_DRAWS, H * (d + k)) + 12)
    total = weights + per_network + buffers
    limit = _core.memory_limit()
    if total > limit:
        raise MemoryError(f"widths: a model of {N} networks and {S} hidden units (d={d}, k={k}, "
                          f"{np.dtype(dtype).name}) needs about {total / 2**30:.3g} GiB to build "
                          f"({weights / 2**30:.3g} "
                          f"GiB of weights, {per_network / 2**30:.3g} GiB per-network arrays), more than the memory "
                          f"limit ({limit / 2**30:.3g} GiB; pyireg.set_memory_limit)")
