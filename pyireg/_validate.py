"""Input checks for the public API. Every message names the argument and what was expected."""
from __future__ import annotations

import numbers

import numpy as np


def as_float_array(x, name: str, dtype: np.dtype, ndim: int, shape=None) -> np.ndarray:
    """Return ``x`` as a C-contiguous array of ``dtype``.

    Non-contiguous arrays (slices, transposes) are copied: that is deliberate and costs one pass.
    A different floating dtype is rejected rather than silently cast, so that a float64 array
    never runs through a float32 model unnoticed.
    """
    a = np.asarray(x)
    if a.dtype != dtype:
        kind = "floating" if np.issubdtype(a.dtype, np.floating) else "non-floating"
        raise TypeError(
            f"{name}: expected a {np.dtype(dtype).name} array (the model's dtype), got {kind} "
            f"{a.dtype.name}; convert it with {name}.astype(np.{np.dtype(dtype).name})")
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array, got shape {a.shape}")
    if shape is not None:
        for i, (want, got) in enumerate(zip(shape, a.shape)):
            if want is not None and want != got:
                raise ValueError(f"{name}: expected shape {_fmt(shape)}, got {a.shape} (axis {i})")
    if not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"{name}: contains NaN or inf (first at index {tuple(int(i) for i in bad)})")
    return np.ascontiguousarray(a)


def as_labels(y, name: str, n: int, k: int) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{name}: expected a 1-d array of {n} labels, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
        raise TypeError(f"{name}: expected integer class labels, got dtype {a.dtype.name}")
    if n and (a.min() < 0 or a.max() >= k):
        bad = int(np.flatnonzero((a < 0) | (a >= k))[0])
        raise ValueError(f"{name}: expected labels in [0, {k}), got {int(a[bad])} at index {bad}")
    return np.ascontiguousarray(a, dtype=np.int32)


def per_network(value, name: str, n: int, dtype, *, nonnegative: bool = True, positive=False) -> np.ndarray:
    """A scalar or a length-``n`` array, returned as a length-``n`` array of ``dtype``."""
    if isinstance(value, numbers.Number):
        a = np.full(n, value, dtype=np.float64)
    else:
        a = np.asarray(value, dtype=np.float64)
        if a.shape != (n,):
            raise ValueError(f"{name}: expected a scalar or an array of shape ({n},) (one value per network), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: expected finite values, got {a[~np.isfinite(a)][0]}")
    if positive and (a <= 0).any():
        raise ValueError(f"{name}: expected positive values, got {a[a <= 0][0]}")
    if nonnegative and (a < 0).any():
        raise ValueError(f"{name}: expected non-negative values, got {a[a < 0][0]}")
    return np.ascontiguousarray(a, dtype=dtype)


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _fmt(shape) -> str:
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
