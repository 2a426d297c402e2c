"""The SIMD targets with FMA give the same bits: the AVX-512 kernels (64-byte vectors, 8-row
tiles, a 32-byte vector at a row's end, masked row ends) against the AVX2 kernels on every
operation, both dtypes, both losses, every update rule (momentum SGD with and without momentum,
Nesterov, Path-SGD, DDP-SGD, Adam, AdamW), at shapes that cut rows at every kind of place (the
dV sums' half 64-byte block at a row's end, the rules' partial vectors). A distributed sweep
may therefore mix machines of either kind."""
import numpy as np
import pytest

import pyireg
from pyireg import _core

pytestmark = pytest.mark.skipif(not (_core.simd_available("avx2") and _core.simd_available("avx512")),
                                reason="needs a CPU with both AVX2 and AVX-512")

SHAPES = [([1, 6, 37], 3, 2, 1), ([1, 6, 37], 784, 10, 7), ([5, 100, 333], 11, 13, 100),
          (list(range(1, 40)) + [1000], 100, 10, 100), ([17], 40, 3, 129), ([64] * 3, 200, 12, 33),
          ([9], 8, 25, 64), ([3, 5, 7], 20, 1, 9), ([4, 11], 9, 16, 40), ([7], 5, 33, 8)]


def _everything(simd, widths, d, k, B, dtype, loss, rule):
    _core.set_simd(simd)
    rng = np.random.default_rng(0)
    m = pyireg.PackedMLP(widths, d, k, seed=1, dtype=dtype, loss=loss)
    X = rng.standard_normal((B, d))
    y = rng.integers(0, k, B) if loss == "cross_entropy" else rng.standard_normal((B, k))
    out = [m.forward(X), *m.loss_and_grad(X, y), *m.backward(X, rng.standard_normal((m.num_networks, B, k)))]
    init = m.copy()
    opt = {"momentum_sgd": lambda: pyireg.MomentumSGD(m, 0.05, 0.9, 1e-3),
           "path_sgd": lambda: pyireg.PathSGD(m, 0.01, momentum=0.5, weight_decay=1e-3),
           "ddp_sgd": lambda: pyireg.DDPSGD(m, 0.01, alpha=0.3),
           "nesterov_sgd": lambda: pyireg.NesterovSGD(m, 0.05, 0.9, 1e-3),
           "adam": lambda: pyireg.Adam(m, 1e-3, weight_decay=1e-3),
           "adamw": lambda: pyireg.AdamW(m, 1e-3, weight_decay=1e-2),
           "sgd": lambda: pyireg.MomentumSGD(m, 0.05, 0.0)}[rule]()
    out += [opt.step(X, y) for _ in range(3)]
    out += [m.U, m.V, *m.evaluate(X, y)]
    names = ["path_l2", "ddp_path", "margin", "dist_U"] if loss == "cross_entropy" else ["path_l2", "dist_U"]
    table = m.measures(names, X=X, y=y, init=init) if loss == "cross_entropy" else m.measures(names, init=init)
    return out + [table[name] for name in sorted(table)]


@pytest.mark.parametrize("widths,d,k,B", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss,rule", [("cross_entropy", "momentum_sgd"), ("squared", "path_sgd"),
                                       ("cross_entropy", "ddp_sgd"), ("cross_entropy", "path_sgd"),
                                       ("cross_entropy", "nesterov_sgd"), ("squared", "adam"),
                                       ("cross_entropy", "adamw"), ("squared", "sgd")])
def test_avx512_gives_the_bits_of_avx2(widths, d, k, B, dtype, loss, rule):
    a = _everything("avx2", widths, d, k, B, dtype, loss, rule)
    b = _everything("avx512", widths, d, k, B, dtype, loss, rule)
    assert len(a) == len(b)
    for i, (x, z) in enumerate(zip(a, b)):
        np.testing.assert_array_equal(x, z, err_msg=f"result {i}")
