"""Input checks and conversions of the public API. Every message names the argument and what was
expected.

The dtype rule: real-valued inputs (numpy arrays of any integer or floating dtype, Python lists,
pandas objects, CPU torch tensors) are converted once to the model's dtype; complex, boolean,
object and string data are refused. Values that are not finite *after* the conversion are refused
too, so a float64 value beyond float32's range never reaches a float32 model as inf.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_dtype(dtype, name: str = "dtype") -> np.dtype:
    """float32 or float64, given as a string, a numpy dtype or type, or a torch dtype; None
    means float32 (numpy would read it as float64; pyireg's default is float32 everywhere)."""
    if dtype is None:
        return np.dtype(np.float32)
    text = str(dtype).replace("torch.", "") if "torch" in type(dtype).__module__ else dtype
    try:
        dt = np.dtype(text)
    except (TypeError, ValueError):
        dt = None
    # `None in FLOAT_DTYPES` would be True: numpy compares None equal to float64
    if dt is None or not any(dt == f for f in FLOAT_DTYPES):
        raise ValueError(f"{name}: expected 'float32' or 'float64' (a string, numpy or torch dtype), got {dtype!r}")
    return dt


def to_numpy(x, name: str) -> np.ndarray:
    """``x`` as a numpy array without copying where possible (torch tensors: detached CPU views)."""
    mod = type(x).__module__
    if mod.startswith("torch"):
        if getattr(x, "device", None) is not None and x.device.type != "cpu":
            raise ValueError(f"{name}: expected a CPU tensor, got a tensor on {x.device} (move it with .cpu())")
        layout = getattr(x, "layout", None)
        if layout is not None and str(layout) != "torch.strided":
            raise TypeError(f"{name}: expected a dense (strided) tensor, got a {layout} one; convert it with "
                            ".to_dense()")
        if getattr(x, "is_neg", None) is not None and x.is_neg():      # a lazy negation (e.g. from .conj())
            x = x.resolve_neg()
        if getattr(x, "is_conj", None) is not None and x.is_conj():
            x = x.resolve_conj()
        try:
            x = x.detach().numpy()
        except TypeError:                     # bfloat16 and other dtypes numpy has not
            raise TypeError(f"{name}: expected real numbers numpy can hold, got a torch {x.dtype} tensor; "
                            f"convert it with .float()") from None
    elif hasattr(x, "to_numpy") and not isinstance(x, np.ndarray):   # pandas
        x = x.to_numpy()
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as e:
        raise TypeError(f"{name}: expected an array of real numbers, got {type(x).__name__} ({e})") from None


def _real_kind(a: np.ndarray, name: str) -> None:
    if a.dtype.kind not in "iuf":
        what = {"c": "complex", "b": "boolean", "O": "object", "U": "string",
                "S": "bytes"}.get(a.dtype.kind, a.dtype.name)
        raise TypeError(f"{name}: expected real numbers (integer or floating), got {what} data ({a.dtype})")


def as_float_array(x, name: str, dtype: np.dtype, ndim: int, shape=None, *, nonnegative: bool = False,
                   finite: bool = True) -> np.ndarray:
    """``x`` as a C-contiguous array of ``dtype`` (converted once, copied only when needed), with
    the given number of dimensions and shape (None entries: any), finite after the conversion
    (unless ``finite`` is False: a model's own weights, which a diverged network makes NaN)."""
    a = to_numpy(x, name)
    _real_kind(a, name)
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array, got shape {a.shape}")
    if shape is not None:
        for i, (want, got) in enumerate(zip(shape, a.shape)):
            if want is not None and want != got:
                raise ValueError(f"{name}: expected shape {_fmt(shape)}, got {a.shape} (axis {i})")
    _fits(a, name, dtype, finite)
    with np.errstate(over="ignore", invalid="ignore"):
        out = aligned(np.ascontiguousarray(a, dtype=dtype))
    ok = np.isfinite(out) if finite else None
    if ok is not None and not ok.all():
        bad = tuple(int(i) for i in np.argwhere(~ok)[0])
        after = "" if a.dtype == out.dtype else f" after conversion to {np.dtype(dtype).name}"
        raise ValueError(f"{name}: contains NaN or inf{after} (first at index {bad})")
    if nonnegative and (out < 0).any():
        bad = tuple(int(i) for i in np.argwhere(out < 0)[0])
        raise ValueError(f"{name}: expected non-negative values, got {out[bad]} at index {bad}")
    return out


def as_labels(y, name: str, n: int, k: int) -> np.ndarray:
    """Class labels in [0, k) as int32 (from any integer dtype; floating labels are refused).
    Checked and converted from a private copy: another thread changing the caller's array
    between the range check and the conversion cannot slip a label past the check."""
    a = to_numpy(y, name)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{name}: expected a 1-d array of {n} labels, got shape {a.shape}")
    if a.dtype.kind not in "iub":
        raise TypeError(f"{name}: expected integer class labels, got dtype {a.dtype.name}")
    a = np.array(a, copy=True)
    if n and (a.min() < 0 or a.max() >= k):
        bad = int(np.flatnonzero((a < 0) | (a >= k))[0])
        raise ValueError(f"{name}: expected labels in [0, {k}), got {int(a[bad])} at index {bad}")
    return aligned(np.ascontiguousarray(a, dtype=np.int32))


def _fits(a: np.ndarray, name: str, dtype, finite: bool) -> None:
    """The conversion's new arrays (a C-contiguous copy in ``dtype`` unless ``a`` is one; the
    finiteness mask) within the memory limit, checked before they are allocated: a broadcast
    view of a few bytes can stand for gigabytes."""
    from . import _core
    copy = 0 if (a.flags.c_contiguous and a.dtype == np.dtype(dtype)) else a.size * np.dtype(dtype).itemsize
    need = copy + (a.size if finite else 0)
    limit = _core.memory_limit()
    if need > limit:
        raise MemoryError(f"{name}: converting {a.shape} {a.dtype} values to a C-contiguous {np.dtype(dtype).name} "
                          f"array and checking them needs {need / 2**30:.3g} GiB, more than the memory limit "
                          f"({limit / 2**30:.3g} GiB; pyireg.set_memory_limit)")


def aligned(a: np.ndarray) -> np.ndarray:
    """``a`` itself when its data are aligned to its element size, else an aligned copy: a view
    at an odd offset of a byte buffer (np.frombuffer(buf, offset=1), a packed record) is
    C-contiguous but misaligned, and the kernels' loads assume natural alignment."""
    return a if a.flags.aligned else a.copy()


def per_network(value, name: str, n: int, dtype, *, low=0.0, high=None, high_open: bool = False) -> np.ndarray:
    """A real scalar or a length-``n`` array, returned as a length-``n`` array of ``dtype``,
    finite after the conversion and in [low, high] (or [low, high) with ``high_open``)."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected a real number or an array of shape ({n},), got a bool")
    a = to_numpy(value, name)
    _real_kind(a, name)
    if a.shape == ():
        a = np.full(n, a, dtype=np.float64)
    elif a.shape != (n,):
        raise ValueError(f"{name}: expected a scalar or an array of shape ({n},) (one value per network), "
                         f"got shape {a.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = aligned(np.ascontiguousarray(a, dtype=dtype))
    if not np.isfinite(out).all():
        bad = a[~np.isfinite(out)][0]
        raise ValueError(f"{name}: expected finite values in {np.dtype(dtype).name}, got {bad!r}")
    if low is not None and (out < low).any():
        what = "non-negative values" if low == 0 else f"values >= {low}"
        raise ValueError(f"{name}: expected {what}, got {out[out < low][0]!r}")
    if high is not None:
        over = out >= high if high_open else out > high
        if over.any():
            raise ValueError(f"{name}: expected values {'<' if high_open else '<='} {high}, got {out[over][0]!r}")
    return out


def nonnegative_number(value, name: str) -> float:
    """A finite real number >= 0 (a 0-d array too), or one ValueError naming ``name``."""
    if not (np.ndim(value) == 0 and np.asarray(value).dtype.kind in "iuf" and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


def positive_number(value, name: str) -> float:
    """A finite real number > 0, or one ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


def positive_int(value, name: str) -> int:
    """An integer in [1, 2**63 - 1] (the native core's int64), or one ValueError naming ``name``
    (a larger one became pybind11's multi-line "incompatible function arguments" error)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if value > 2**63 - 1:
        raise ValueError(f"{name}: expected a positive integer below 2**63, got {value!r}")
    return int(value)


def _fmt(shape) -> str:
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


# a backtracking line search halves its step at most this often (2^-1100 is below the smallest
# float64): a finite objective always ends it much sooner, so only a broken one reaches it
MAX_HALVINGS = 1100


def finite_objective(value: float, where: str) -> float:
    """A solver's objective at its current point, refused when not finite: a line search would
    halve its step forever, since no comparison with NaN or inf succeeds."""
    if not np.isfinite(value):
        raise ValueError(f"{where}: the objective is {value} at the current point: the data's scale overflows "
                         "float64 (rescale X and y)")
    return value


def line_search_failed(where: str) -> ValueError:
    """The error of a line search that halved its step MAX_HALVINGS times without a finite
    decrease (the gradient itself overflowed)."""
    return ValueError(f"{where}: no step of the line search gave a finite objective: the data's scale overflows "
                      "float64 (rescale X and y)")
