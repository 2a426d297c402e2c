"""backward: gradients of <grad_out, outputs> with respect to U, V and the input X, against
torch autograd with random upstream gradients, awkward shapes, both SIMD targets."""
import numpy as np
import pytest
import torch

import pyireg
from pyireg import _core, reference as R
from pyireg.testing import assert_tolerance

from helpers import make_data, simd_targets

SHAPES = [
    ([1], 1, 3, 2),
    ([5], 7, 3, 1),
    ([1, 2, 3], 1, 37, 10),
    (list(range(1, 38)) + [1000], 100, 100, 10),
    ([200, 7, 385], 17, 11, 13),
    ([9000, 3], 9, 5, 2),          # more units than one group: the input gradient sums over groups
]


def _upstream(model, B, seed):
    return np.random.default_rng(seed).standard_normal((model.num_networks, B, model.out_features)).astype(model.dtype)


@pytest.mark.parametrize("activation", ["relu", "linear"])
@pytest.mark.parametrize("simd", simd_targets())
@pytest.mark.parametrize("widths,B,d,k", SHAPES)
def test_backward_matches_autograd(widths, B, d, k, simd, activation):
    _core.set_simd(simd)
    model = pyireg.PackedMLP(widths, d, k, activation=activation, seed=3)
    X, _ = make_data(B, d, k, seed=4)
    G = _upstream(model, B, 5)
    gU, gV, gX = model.backward(X, G)
    m32 = R.modules_from_packed(model.U, model.V, model.offsets, activation)
    m64 = R.modules_from_packed(model.U, model.V, model.offsets, activation, dtype=torch.float64)
    r32 = R.backward(m32, X, G)
    r64 = R.backward(m64, X.astype(np.float64), G.astype(np.float64))
    for got, a, b, what in zip((gU, gV, gX), r32, r64, ("grad U", "grad V", "grad X")):
        assert_tolerance(got, a, b, what)


def test_backward_float64_matches_autograd_tightly():
    model = pyireg.PackedMLP([1, 9, 40], 13, 3, dtype="float64", seed=4)
    X, _ = make_data(21, 13, 3, seed=5, dtype=np.float64)
    G = _upstream(model, 21, 6)
    m64 = R.modules_from_packed(model.U, model.V, model.offsets, dtype=torch.float64)
    for got, ref in zip(model.backward(X, G), R.backward(m64, X, G)):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-13)


def test_backward_of_the_loss_gradient_equals_loss_and_grad():
    """Fed the gradient of the mean cross-entropy, backward gives loss_and_grad's gradients."""
    model = pyireg.PackedMLP([3, 50, 300], 20, 4, dtype="float64", seed=1)
    X, y = make_data(33, 20, 4, seed=2, dtype=np.float64)
    out = model.forward(X)
    p = np.exp(out - out.max(2, keepdims=True))
    p /= p.sum(2, keepdims=True)
    G = (p - np.eye(4)[y]) / len(y)
    _, gU, gV = model.loss_and_grad(X, y)
    bU, bV, _ = model.backward(X, G, need_X=False)
    np.testing.assert_allclose(bU, gU, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(bV, gV, rtol=1e-11, atol=1e-15)


def test_backward_parts_are_optional_and_identical():
    model = pyireg.PackedMLP([4, 100, 7], 10, 3, seed=0)
    X, _ = make_data(17, 10, 3)
    G = _upstream(model, 17, 1)
    full = model.backward(X, G)
    assert model.backward(X, G, need_U=False, need_V=False)[:2] == (None, None)
    np.testing.assert_array_equal(model.backward(X, G, need_U=False, need_V=False)[2], full[2])
    np.testing.assert_array_equal(model.backward(X, G, need_X=False, need_V=False)[0], full[0])
    np.testing.assert_array_equal(model.backward(X, G, need_X=False, need_U=False)[1], full[1])


@pytest.mark.parametrize("simd", simd_targets())
def test_backward_bit_identical_across_thread_counts_and_packing(simd):
    _core.set_simd(simd)
    widths = [5, 700, 1, 9000, 31]
    model = pyireg.PackedMLP(widths, 23, 6, seed=8)
    X, _ = make_data(40, 23, 6, seed=9)
    G = _upstream(model, 40, 10)
    results = []
    for threads in (1, 2, 1):
        _core.set_num_threads(threads)
        results.append(model.backward(X, G))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
    # gU and gV of one network do not depend on its neighbours
    alone = pyireg.PackedMLP([700], 23, 6)
    alone.set_network(0, *model.network(1))
    aU, aV, _ = alone.backward(X, G[1:2])
    s = slice(model.offsets[1], model.offsets[2])
    np.testing.assert_array_equal(aU, results[0][0][s])
    np.testing.assert_array_equal(aV, results[0][1][s])


def test_backward_checks_its_arguments():
    model = pyireg.PackedMLP([2, 3], 4, 3)
    X, _ = make_data(5, 4, 3)
    with pytest.raises(ValueError, match=r"grad_out: expected shape \(2, 5, 3\)"):
        model.backward(X, np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="grad_out: contains NaN or inf"):
        model.backward(X, np.full((2, 5, 3), np.nan))


@pytest.mark.parametrize("simd", simd_targets())
def test_backward_from_kept_activations_equals_recomputing_them(simd):
    _core.set_simd(simd)
    model = pyireg.PackedMLP([5, 700, 1, 9000, 31], 23, 6, seed=8)
    X, _ = make_data(37, 23, 6, seed=9)
    G = _upstream(model, 37, 10)
    eng = model._engine
    act = np.empty((model.num_units, eng.activation_columns(37)), np.float32)
    np.testing.assert_array_equal(eng.forward(model.U, model.V, X, act), model.forward(X))
    kept = [np.empty_like(model.U), np.empty_like(model.V), np.empty_like(X)]
    eng.backward(model.U, model.V, X, G, *kept, act=act)
    for a, b in zip(kept, model.backward(X, G)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"act: expected a float32 array of shape \(9737, 40\)"):
        eng.backward(model.U, model.V, X, G, kept[0], act=act[:, :8])
