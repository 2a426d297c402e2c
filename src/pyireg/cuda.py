"""pyireg on CUDA: whether the GPU engine can run here, and an emulation that runs the same
kernels on the CPU.

- ``is_available()``: True when ``pyireg._cuda`` was built (``pip install .
  -Ccmake.define.PYIREG_CUDA=ON``) and a CUDA device is usable.
- ``status()``: one sentence saying so, or why not (not built, no driver, no device, no cuBLAS).
- ``emulate(schedule="forward", seed=0)``: a context manager inside which the CUDA engine's
  kernels run on the CPU through an emulation of the CUDA execution model
  (``pyireg._cuda_emu``, always built); its value counts the kernel launches in ``.launches``.
  The thread order inside a block is ``"forward"``, ``"reverse"`` or ``"random"`` (seeded).
- ``Engine``: the CUDA engine on numpy arrays, run on the emulated device (what the tests use
  to compare it with the float64 twins; the torch operators use it on CPU tensors inside
  ``emulate()``, and the real engine on CUDA tensors).

See docs/cuda.md for what the emulation checks and what only a GPU can show.
"""
from __future__ import annotations

import glob
import os
import sys
import threading

import numpy as np

__all__ = ["Engine", "build_config", "cublas_candidates", "emulate", "emulating", "is_available", "status"]

_SCHEDULES = ("forward", "reverse", "random")
_state = threading.local()
_lock = threading.Lock()


def _native():
    """pyireg._cuda, or None when it was not built."""
    try:
        from . import _cuda
    except ImportError:
        return None
    return _cuda


def _emu():
    from . import _cuda_emu
    return _cuda_emu


def cublas_candidates() -> list:
    """Paths of libcublas.so.13 beside the installed nvidia wheels (torch's CUDA build has them)."""
    found = []
    for base in sys.path:
        if base and os.path.isdir(os.path.join(base, "nvidia")):
            found += sorted(glob.glob(os.path.join(base, "nvidia", "cu*", "lib", "libcublas.so.13")))
            found += sorted(glob.glob(os.path.join(base, "nvidia", "cublas", "lib", "libcublas.so.13")))
    return found


_cublas_set = False


def _prepare_cublas(mod) -> str:
    """Point the real module at cuBLAS (once); '' when it loads, else the reason."""
    global _cublas_set
    with _lock:
        if not _cublas_set:
            cands = cublas_candidates()
            if cands:
                mod.set_cublas_path(cands[0])
            _cublas_set = True
    return mod.cublas_loaded()


def _device_status():
    mod = _native()
    if mod is None:
        return None, ("pyireg._cuda was not built: reinstall with "
                      "`pip install . -Ccmake.define.PYIREG_CUDA=ON` (needs nvcc)")
    code, message, count = mod.device_status()
    if code == 35:
        return mod, f"no CUDA driver: cudaGetDeviceCount returned {code} ({message})"
    if code == 100 or (code == 0 and count == 0):
        return mod, "no CUDA device: the driver sees none"
    if code != 0:
        return mod, f"CUDA is not usable: cudaGetDeviceCount returned {code} ({message})"
    why = _prepare_cublas(mod)
    if why:
        return mod, why
    return mod, ""


def is_available() -> bool:
    """True when pyireg._cuda was built and a CUDA device and cuBLAS are usable."""
    return _device_status()[1] == ""


def status() -> str:
    """A sentence: the CUDA engine is available, or why not (not built, no driver, no device)."""
    mod, why = _device_status()
    if why:
        return why
    _, _, count = mod.device_status()
    return f"available: {count} CUDA device(s), pyireg._cuda built for {', '.join(mod.archs)}"


def build_config() -> dict:
    """pyireg._core.build_config() plus the CUDA keys: cuda (pyireg._cuda was built), cuda_archs
    (its architectures) and cuda_emulated (pyireg._cuda_emu, the emulated engine, is present)."""
    from . import _core
    cfg = dict(_core.build_config())
    mod = _native()
    cfg["cuda"] = mod is not None
    cfg["cuda_archs"] = list(mod.archs) if mod is not None else []
    try:
        _emu()
        cfg["cuda_emulated"] = True
    except ImportError:
        cfg["cuda_emulated"] = False
    return cfg


class emulate:
    """Run the CUDA engine's kernels on the CPU, through the emulation, inside this context.

    ``schedule`` orders the threads of a block ("forward", "reverse", or "random" with ``seed``);
    ``threads`` is the number of CPU threads that run blocks (default: as set before, 1 at start).
    The value of the ``with`` statement counts the emulated kernel launches in ``.launches``
    (live inside the context, final after it). Contexts nest; the outer settings come back on exit.

    Threads: whether the operators run emulated is per thread (``emulating()``), but the schedule
    and the block threads are one setting of the process: contexts entered on several threads at
    once with different settings overwrite each other's (and the launch counts include every
    thread's launches). Use one setting, or one thread, when that matters.
    """

    def __init__(self, schedule: str = "forward", seed: int = 0, threads: int | None = None):
        if schedule not in _SCHEDULES:
            raise ValueError(f"schedule: expected one of {', '.join(_SCHEDULES)}, got {schedule!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
        if threads is not None and not (isinstance(threads, (int, np.integer)) and 1 <= threads <= 64):
            raise ValueError(f"threads: expected an integer in [1, 64], got {threads!r}")
        self.schedule, self.seed, self.threads = schedule, int(seed), threads
        self._start = None
        self._end = None

    @property
    def launches(self) -> int:
        if self._start is None:
            return 0
        end = self._end if self._end is not None else _emu().launches()
        return int(end - self._start)

    def __enter__(self):
        emu = _emu()
        self._saved = (emu.get_schedule(), emu.get_threads())
        emu.set_schedule(self.schedule, self.seed)
        if self.threads is not None:
            emu.set_threads(int(self.threads))
        depth = getattr(_state, "depth", 0)
        _state.depth = depth + 1
        self._start = emu.launches()
        self._end = None
        return self

    def __exit__(self, *exc):
        emu = _emu()
        self._end = emu.launches()
        (sched, seed), threads = self._saved
        emu.set_schedule(sched, seed)
        emu.set_threads(threads)
        _state.depth -= 1
        return False


def emulating() -> bool:
    """True inside ``emulate()`` on this thread."""
    return getattr(_state, "depth", 0) > 0


# ---------------------------------------------------------------- the engine on numpy arrays
def _arr(a, name, dtype, shape, writable=False):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype).name}, got {a.dtype.name}")
    if a.ndim != len(shape) or any(s is not None and s != g for s, g in zip(shape, a.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{name}: expected shape {want}, got {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array")
    if writable and not a.flags.writeable:
        raise ValueError(f"{name}: expected a writeable array")
    return a


def _addr(a) -> int:
    return 0 if a is None else int(a.ctypes.data)


class Engine:
    """The CUDA engine of one packed model, run on the emulated device (numpy arrays).

    The same operations and argument conventions as ``pyireg.PackedMLP``'s engine: U (S, d),
    V (S, k), X (B, d), labels (B,) or targets (B, k) with optional weights (B, k); outputs
    (N, B, k). Every output is filled with NaN before the call, so an element the kernels never
    write shows. Rules: "momentum_sgd", "path_sgd", "ddp_sgd" (state arrays shaped like U and V,
    per-network lr, momentum, weight_decay of length N).
    """

    def __init__(self, offsets, d: int, k: int, activation: str = "relu", loss: str = "cross_entropy",
                 dtype=np.float32, tf32: bool = False):
        offsets = np.ascontiguousarray(np.asarray(offsets, dtype=np.int64))
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype: expected float32 or float64, got {self.dtype.name}")
        if offsets.ndim == 1 and offsets.size >= 2 and offsets[-1] > 0:
            # the layout the engine builds: the unit -> network map (int32 per unit) and the
            # offsets, on the host and on the device, checked before it allocates them
            from . import _core
            need = 2 * (4 * int(offsets[-1]) + 8 * offsets.size)
            if need > _core.memory_limit():
                raise MemoryError(f"offsets: the layout of {int(offsets[-1])} units needs about {need / 2**30:.3g} "
                                  f"GiB, more than the memory limit ({_core.memory_limit() / 2**30:.3g} GiB; "
                                  "pyireg.set_memory_limit)")
        cls = _emu().Engine32 if self.dtype == np.float32 else _emu().Engine64
        self._e = cls(offsets, int(d), int(k), activation, loss, bool(tf32))
        self.offsets, self.d, self.k, self.loss, self.activation = offsets, int(d), int(k), loss, activation
        self.N, self.S = len(offsets) - 1, int(offsets[-1])

    def plant_bug(self, which: int) -> None:
        """Testing only: 1 = the first GEMM gets a leading dimension one short."""
        self._e.plant_bug(int(which))

    def _weights(self, U, V, writable=False):
        _arr(U, "U", self.dtype, (self.S, self.d), writable)
        _arr(V, "V", self.dtype, (self.S, self.k), writable)

    def _batch(self, X):
        _arr(X, "X", self.dtype, (None, self.d))
        if X.shape[0] < 1:
            raise ValueError("X: expected at least one sample")
        return X.shape[0]

    def _targets(self, y, weights, B):
        if self.loss == "cross_entropy":
            y = np.asarray(y)
            if y.shape != (B,) or not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"y: expected integer labels of shape ({B},), got {y.dtype.name} {y.shape}")
            if y.size and (y.min() < 0 or y.max() >= self.k):
                raise ValueError(f"y: expected labels in [0, {self.k}), got [{y.min()}, {y.max()}]")
            if weights is not None:
                raise ValueError("weights: entry weights are for the squared loss")
            return np.ascontiguousarray(y, dtype=np.int32), None, None
        vals = _arr(np.ascontiguousarray(y), "y", self.dtype, (B, self.k))
        w = None if weights is None else _arr(np.ascontiguousarray(weights), "weights", self.dtype, (B, self.k))
        return None, vals, w

    def _hyper(self, v, name):
        a = np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=self.dtype), (self.N,)))
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: expected finite values")
        return a

    def _nan(self, shape, dtype=None):
        return np.full(shape, np.nan, dtype=dtype or self.dtype)

    def forward(self, U, V, X):
        self._weights(U, V)
        B = self._batch(X)
        out = self._nan((self.N, B, self.k))
        self._e.forward(_addr(U), _addr(V), _addr(X), B, _addr(out))
        return out

    def backward(self, U, V, X, grad_out, input_grad: bool = True):
        self._weights(U, V)
        B = self._batch(X)
        _arr(grad_out, "grad_out", self.dtype, (self.N, B, self.k))
        gU, gV = self._nan(U.shape), self._nan(V.shape)
        gX = self._nan(X.shape) if input_grad else None
        self._e.backward(_addr(U), _addr(V), _addr(X), B, _addr(grad_out), _addr(gU), _addr(gV), _addr(gX))
        return gU, gV, gX

    def loss_and_grad(self, U, V, X, y, weights=None):
        self._weights(U, V)
        B = self._batch(X)
        lab, vals, w = self._targets(y, weights, B)
        loss = self._nan(self.N, np.float64)
        gU, gV = self._nan(U.shape), self._nan(V.shape)
        self._e.loss_and_grad(_addr(U), _addr(V), _addr(X), B, self.loss, _addr(lab), _addr(vals), _addr(w),
                              _addr(loss), _addr(gU), _addr(gV))
        return loss, gU, gV

    def _rule(self, rule, state_U, state_V, lr, momentum, weight_decay):
        if rule not in ("momentum_sgd", "nesterov_sgd", "path_sgd", "ddp_sgd"):
            raise ValueError(f"rule: expected 'momentum_sgd', 'nesterov_sgd', 'path_sgd' or 'ddp_sgd' (adam and adamw "
                             f"run on the CPU engine only), got {rule!r}")
        _arr(state_U, "state_U", self.dtype, (self.S, self.d), True)
        _arr(state_V, "state_V", self.dtype, (self.S, self.k), True)
        lr, mom, wd = (self._hyper(lr, "lr"), self._hyper(momentum, "momentum"),
                       self._hyper(weight_decay, "weight_decay"))
        if rule == "ddp_sgd" and np.any(mom != 0):
            raise ValueError("momentum: DDP-SGD has no momentum (expected 0)")
        return lr, mom, wd

    def step(self, U, V, X, y, rule, state_U, state_V, lr, momentum=0.0, weight_decay=0.0, weights=None):
        """One fused step of the rule on every network (U, V and the state updated in place);
        returns the per-network mean loss before the step."""
        self._weights(U, V, True)
        B = self._batch(X)
        lab, vals, w = self._targets(y, weights, B)
        lr, mom, wd = self._rule(rule, state_U, state_V, lr, momentum, weight_decay)
        loss = self._nan(self.N, np.float64)
        self._e.step(_addr(U), _addr(V), _addr(X), B, self.loss, _addr(lab), _addr(vals), _addr(w), rule,
                     _addr(state_U), _addr(state_V), _addr(lr), _addr(mom), _addr(wd), _addr(loss))
        return loss

    def apply_update(self, U, V, gU, gV, rule, state_U, state_V, lr, momentum=0.0, weight_decay=0.0):
        self._weights(U, V, True)
        _arr(gU, "gU", self.dtype, (self.S, self.d))
        _arr(gV, "gV", self.dtype, (self.S, self.k))
        lr, mom, wd = self._rule(rule, state_U, state_V, lr, momentum, weight_decay)
        self._e.apply_update(_addr(U), _addr(V), _addr(gU), _addr(gV), rule, _addr(state_U), _addr(state_V),
                             _addr(lr), _addr(mom), _addr(wd))

    def evaluate(self, U, V, X, y, weights=None, block: int = 1024):
        """Summed loss (N,) and wrong predictions (N,) over the samples, in blocks of `block`."""
        self._weights(U, V)
        B = self._batch(X)
        if not (isinstance(block, (int, np.integer)) and block >= 1):
            raise ValueError(f"block: expected a positive integer, got {block!r}")
        lab, vals, w = self._targets(y, weights, B)
        loss = self._nan(self.N, np.float64)
        errors = np.full(self.N, -1, dtype=np.int64)
        self._e.evaluate(_addr(U), _addr(V), _addr(X), B, self.loss, _addr(lab), _addr(vals), _addr(w), int(block),
                         _addr(loss), _addr(errors))
        return loss, errors


    def _rescale(self, how, U, V):
        self._weights(U, V, True)
        zero = np.full(1, -1, dtype=np.int64)
        self._e.rescale(how, _addr(U), _addr(V), _addr(zero))
        return int(zero[0])

    def balance(self, U, V) -> int:
        """Theorem 1's rescaling in place: ||u_h|| = ||v_h|| for every unit (zero units zeroed);
        returns the number of zero units."""
        return self._rescale("balance", U, V)

    def normalize_units(self, U, V) -> int:
        """||u_h|| = 1 in place, the scale moved into v_h; returns the number of units with u_h = 0."""
        return self._rescale("normalize_units", U, V)

    def measures(self, U, V) -> dict:
        """Per-network l2_penalty, group_l1, path_l1, path_l2, norm_U, norm_V (N each)."""
        self._weights(U, V)
        out = self._nan((6, self.N), np.float64)
        self._e.measures(_addr(U), _addr(V), _addr(out))
        return dict(zip(("l2_penalty", "group_l1", "path_l1", "path_l2", "norm_U", "norm_V"), out))

    def unit_moments(self, U, X, block: int = 1024):
        """Per unit (S,): sum over the samples of z^2 and of act(z)^2, z = U X^T, in double."""
        _arr(U, "U", self.dtype, (self.S, self.d))
        B = self._batch(X)
        if not (isinstance(block, (int, np.integer)) and block >= 1):
            raise ValueError(f"block: expected a positive integer, got {block!r}")
        z2, a2 = self._nan(self.S, np.float64), self._nan(self.S, np.float64)
        self._e.unit_moments(_addr(U), _addr(X), B, int(block), _addr(z2), _addr(a2))
        return z2, a2

    def ddp_scale(self, U, V, X, alpha):
        """DDP-SGD's per-weight scaling 1 / kappa (kU like U, kV like V) from the batch X and the
        per-network alpha in [0, 1]: the state of the "ddp_sgd" rule."""
        self._weights(U, V)
        B = self._batch(X)
        a = self._hyper(alpha, "alpha")
        if np.any((a < 0) | (a > 1)):
            raise ValueError("alpha: expected values in [0, 1]")
        kU, kV = self._nan(U.shape), self._nan(V.shape)
        self._e.ddp_scale(_addr(U), _addr(V), _addr(X), B, _addr(a), _addr(kU), _addr(kV))
        return kU, kV
