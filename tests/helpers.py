"""Shared test helpers (the tests directory is on pythonpath, see pyproject.toml)."""
import numpy as np

from pyireg import _core


def make_data(B, d, k, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((B, d)).astype(dtype)
    y = rng.integers(0, k, B)
    return X, y


def simd_targets():
    return [s for s in ("generic", "avx2", "avx512") if _core.simd_available(s)]
