"""The engines behind the operators and the memory they keep.

``CACHE``: the native engines, one per (device, dtype, d, k, activation, loss, offsets), in a
bounded LRU cache, so one module's operations share one engine (its plan, its scratch pool and
its reader/writer lock). ``POOL``: reused host memory for the large gradients and activations
the CPU kernels return. ``engine_cache_info``, ``set_engine_cache_size`` and
``clear_engine_cache`` are public (``pyireg.torch``).
"""
from collections import OrderedDict
import sys
import threading
import weakref

import numpy as np
import torch
from torch import Tensor


class _EngineCache:
    """Engines keyed by (device, dtype, d, k, activation, loss, offsets), least recently used
    first out.

    An engine holds the plan of its layout (a few int64 per chunk and network) and a pool of
    scratch workspaces grown to the largest batch it has seen (``Engine.workspace_bytes``), so
    the number kept is bounded; an evicted engine is rebuilt on its next use (a plan and the
    scratch regrown), with the same results. Lookups hash the offsets' bytes (8 (N + 1) bytes).

    One engine per layout at a time: an evicted (or cleared) engine that a call still holds is
    handed out again instead of a second one being built, because the engine's reader/writer
    lock is what keeps two threads from writing the same weights at once."""

    def __init__(self, maxsize: int = 16):
        self._lock = threading.Lock()
        self._engines: "OrderedDict[tuple, object]" = OrderedDict()
        self._alive: "weakref.WeakValueDictionary[tuple, object]" = weakref.WeakValueDictionary()
        self.maxsize = maxsize
        self.hits = self.misses = self.evictions = 0

    def _known(self, key):
        """The engine of ``key`` still in the cache or still in use (under the lock), kept."""
        engine = self._engines.get(key)
        if engine is None:
            engine = self._alive.get(key)
            if engine is None:
                return None
            self._engines[key] = engine      # back in, as the most recent
            self._trim()
            return engine
        self._engines.move_to_end(key)
        return engine

    def get(self, device: str, off: np.ndarray, dtype: torch.dtype, d: int, k: int, activation: str, loss: str,
            build):
        """The engine of this layout on ``device`` (a device string such as "cpu" or "cuda:0");
        ``off`` is the int64 offsets on the host, ``build(off)`` makes a new engine."""
        key = (device, dtype, d, k, activation, loss, off.tobytes())
        with self._lock:
            engine = self._known(key)
            if engine is not None:
                self.hits += 1
                return engine
        # built outside the lock: a large layout takes a while, and other layouts need not wait
        built = build(np.ascontiguousarray(off))
        with self._lock:
            engine = self._known(key)        # another thread's, built meanwhile, wins
            if engine is None:
                engine = self._engines[key] = self._alive[key] = built
                self._trim()
            self.misses += 1
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
                        workspace_bytes=sum(_held_scratch(e) for e in self._engines.values()))


CACHE = _EngineCache()

_STEP_LOCKS: "weakref.WeakKeyDictionary[object, threading.Lock]" = weakref.WeakKeyDictionary()
_STEP_LOCKS_GUARD = threading.Lock()


def step_lock(engine) -> threading.Lock:
    """The lock a write of this engine's weights holds around its Python side too: a rule whose
    state Python reads before the native step and writes back after it (Adam's step counts) is
    then one atomic step, whichever threads share the optimizer."""
    with _STEP_LOCKS_GUARD:
        lock = _STEP_LOCKS.get(engine)
        if lock is None:
            lock = _STEP_LOCKS[engine] = threading.Lock()
        return lock


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


POOL = _GradientPool()


def _held_scratch(engine) -> int:
    """Host scratch an engine holds: the CPU engine's workspace_bytes; the CUDA engines (real or
    emulated) hold none (their workspace_bytes(op, B) is a size the caller provides)."""
    held = getattr(engine, "workspace_bytes", 0)
    return held if isinstance(held, int) else 0


def engine_cache_info() -> dict:
    """The engine cache: ``size`` (engines kept), ``maxsize``, ``hits``, ``misses``, ``evictions``,
    ``workspace_bytes`` (native scratch held by the kept engines) and ``gradient_pool_bytes``
    (gradient memory kept for reuse, see ``_GradientPool``)."""
    return dict(CACHE.info(), gradient_pool_bytes=POOL.nbytes())


def set_engine_cache_size(maxsize: int) -> None:
    """Keep at most ``maxsize`` engines (default 16; one per distinct layout, dtype and loss in
    use). Raise it when a program alternates between more layouts than that."""
    if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
        raise ValueError(f"maxsize: expected a positive integer, got {maxsize!r}")
    CACHE.resize(maxsize)


def clear_engine_cache() -> None:
    """Drop every cached engine (and its scratch) and the gradient pool; reset the counters."""
    CACHE.clear()
    POOL.clear()
