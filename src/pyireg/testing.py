"""The tolerance rule every native kernel is held to (tests and benchmarks use it).

    err(native) <= 2 * err(torch, same dtype) + 8 * eps(dtype) * max|ref64|

where err(x) = max |x - ref64| over the array and ref64 is the same computation done by the
PyTorch reference twin in float64. The native result may be at most twice as far from the
float64 truth as PyTorch's own result in the same precision; the small absolute floor covers
outputs that PyTorch happens to get exactly right.
"""
from __future__ import annotations

import numpy as np

FACTOR = 2.0
FLOOR_EPS = 8.0


def tolerance_ratio(native, ref_same, ref64) -> float:
    """err(native) / allowed, under the rule above (<= 1 passes)."""
    native = np.asarray(native, dtype=np.float64)
    ref_same = np.asarray(ref_same)
    eps = np.finfo(ref_same.dtype if np.issubdtype(ref_same.dtype, np.floating) else np.float32).eps
    ref_same = ref_same.astype(np.float64)
    ref64 = np.asarray(ref64, dtype=np.float64)
    if native.shape != ref64.shape or ref_same.shape != ref64.shape:
        raise ValueError(f"shapes differ: native {native.shape}, ref {ref_same.shape}, ref64 {ref64.shape}")
    if native.size == 0:
        return 0.0
    err_n = np.max(np.abs(native - ref64))
    err_t = np.max(np.abs(ref_same - ref64))
    allowed = FACTOR * err_t + FLOOR_EPS * eps * max(1.0, float(np.max(np.abs(ref64))))
    if not np.isfinite(err_n):
        return float("inf")
    return float(err_n / allowed)


def assert_tolerance(native, ref_same, ref64, what: str = "result") -> float:
    r = tolerance_ratio(native, ref_same, ref64)
    if not r <= 1.0:
        native = np.asarray(native, dtype=np.float64)
        ref64 = np.asarray(ref64, dtype=np.float64)
        raise AssertionError(
            f"{what}: native error {np.max(np.abs(native - ref64)):.3e} exceeds the rule "
            f"(ratio {r:.2f}; torch error {np.max(np.abs(np.asarray(ref_same, np.float64) - ref64)):.3e})")
    return r
