"""The native forward, loss, gradients and evaluation against the PyTorch reference twin."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import pyireg
from pyireg import _core, reference as R
from pyireg.testing import assert_tolerance

from helpers import make_data, simd_targets

# (widths, batch, d, k): a single network, width 1, 1..37 mixed with 1000, batch 1, odd d and k
SHAPES = [
    ([1], 1, 3, 2),
    ([5], 7, 3, 2),
    ([1, 2, 3], 1, 784, 10),
    (list(range(1, 38)) + [1000], 100, 100, 10),
    ([64, 1, 64], 33, 100, 2),
    ([13, 1000], 100, 784, 10),
    ([200, 7, 385], 17, 11, 13),   # k > 12: several class groups
    ([30, 300], 64, 19, 4),        # batch rows of 256 bytes: the transposed batch is stored with a wider stride
    ([3, 7], 128, 5, 3),
]


def _refs(model, X):
    """(float32 modules, float64 modules) holding the model's weights."""
    m32 = R.modules_from_packed(model.U, model.V, model.offsets, model.activation)
    m64 = R.modules_from_packed(model.U, model.V, model.offsets, model.activation, dtype=torch.float64)
    return m32, m64


@pytest.mark.parametrize("simd", simd_targets())
@pytest.mark.parametrize("widths,B,d,k", SHAPES)
def test_forward_loss_grad_match_reference(widths, B, d, k, simd):
    _core.set_simd(simd)
    model = pyireg.PackedMLP(widths, d, k, seed=1)
    X, y = make_data(B, d, k, seed=2)
    m32, m64 = _refs(model, X)
    X64 = X.astype(np.float64)
    assert_tolerance(model.forward(X), R.forward(m32, X).numpy(), R.forward(m64, X64).numpy(), "logits")
    loss, gU, gV = model.loss_and_grad(X, y)
    l32, gU32, gV32 = R.loss_and_grad(m32, X, y)
    l64, gU64, gV64 = R.loss_and_grad(m64, X64, y)
    assert_tolerance(loss, l32, l64, "loss")
    assert_tolerance(gU, gU32, gU64, "grad U")
    assert_tolerance(gV, gV32, gV64, "grad V")


@pytest.mark.parametrize("simd", simd_targets())
@pytest.mark.parametrize("scale", [30.0, 300.0])
def test_softmax_over_far_apart_logits_matches_reference(simd, scale):
    """The vectorized exp of the cross-entropy where most exponentials are subnormal or zero:
    second layers scaled so the logits of a sample lie tens to thousands apart (batches of 37:
    full vectors and a 32-byte end on every target)."""
    _core.set_simd(simd)
    model = pyireg.PackedMLP([1, 5, 40], 17, 12, seed=3)
    model.V[...] *= scale
    X, y = make_data(37, 17, 12, seed=4)
    m32, m64 = _refs(model, X)
    X64 = X.astype(np.float64)
    loss, gU, gV = model.loss_and_grad(X, y)
    l32, gU32, gV32 = R.loss_and_grad(m32, X, y)
    l64, gU64, gV64 = R.loss_and_grad(m64, X64, y)
    assert np.all(np.isfinite(loss)) and loss.max() > 10 * scale / 30
    assert_tolerance(loss, l32, l64, "loss")
    assert_tolerance(gU, gU32, gU64, "grad U")
    assert_tolerance(gV, gV32, gV64, "grad V")
    err, eval_loss = model.evaluate(X, y)
    np.testing.assert_allclose(eval_loss, l64, rtol=1e-5)
    np.testing.assert_array_equal(err, (R.forward(m64, X64).numpy().argmax(-1) != y).mean(-1))


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_float64_model_matches_float64_reference(activation):
    model = pyireg.PackedMLP([1, 9, 40], 13, 3, activation=activation, dtype="float64", seed=4)
    X, y = make_data(21, 13, 3, seed=5, dtype=np.float64)
    m64 = R.modules_from_packed(model.U, model.V, model.offsets, activation, dtype=torch.float64)
    np.testing.assert_allclose(model.forward(X), R.forward(m64, X).numpy(), rtol=1e-12, atol=1e-13)
    loss, gU, gV = model.loss_and_grad(X, y)
    l64, gU64, gV64 = R.loss_and_grad(m64, X, y)
    np.testing.assert_allclose(loss, l64, rtol=1e-12)
    np.testing.assert_allclose(gU, gU64, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(gV, gV64, rtol=1e-10, atol=1e-14)


def test_linear_activation_is_matrix_product():
    model = pyireg.PackedMLP([3, 5], 6, 4, activation="linear", seed=0)
    X, _ = make_data(9, 6, 4)
    for n in range(2):
        U, V = model.network(n)
        np.testing.assert_allclose(model.forward(X)[n], X @ U.T @ V, rtol=1e-5, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(widths=st.lists(st.integers(1, 40), min_size=1, max_size=6), B=st.integers(1, 40),
       d=st.integers(1, 50), k=st.integers(2, 14), seed=st.integers(0, 2**31 - 1))
def test_random_shapes_match_reference(widths, B, d, k, seed):
    model = pyireg.PackedMLP(widths, d, k, seed=seed)
    X, y = make_data(B, d, k, seed=seed + 1)
    m32, m64 = _refs(model, X)
    X64 = X.astype(np.float64)
    loss, gU, gV = model.loss_and_grad(X, y)
    l32, gU32, gV32 = R.loss_and_grad(m32, X, y)
    l64, gU64, gV64 = R.loss_and_grad(m64, X64, y)
    assert_tolerance(model.forward(X), R.forward(m32, X).numpy(), R.forward(m64, X64).numpy(), "logits")
    assert_tolerance(loss, l32, l64, "loss")
    assert_tolerance(gU, gU32, gU64, "grad U")
    assert_tolerance(gV, gV32, gV64, "grad V")


@pytest.mark.parametrize("batch_size", [1, 7, 100, 1000])
def test_evaluate_streams_and_matches_reference(batch_size):
    model = pyireg.PackedMLP([1, 4, 30, 300], 20, 5, seed=3, init_std=(0.5, 1.0))
    X, y = make_data(250, 20, 5, seed=9)
    err, loss = model.evaluate(X, y, batch_size=batch_size)
    m64 = R.modules_from_packed(model.U, model.V, model.offsets, dtype=torch.float64)
    m32 = R.modules_from_packed(model.U, model.V, model.offsets)
    e64, l64 = R.evaluate(m64, X.astype(np.float64), y)
    e32, l32 = R.evaluate(m32, X, y)
    assert_tolerance(loss, l32, l64, "eval loss")
    # an error count can differ from float64 only on samples whose top two logits tie in float32
    logits = R.forward(m64, X.astype(np.float64)).numpy()
    top2 = np.sort(logits, axis=2)[:, :, -2:]
    near_tie = (top2[:, :, 1] - top2[:, :, 0]) < 1e-4 * np.abs(top2).max()
    assert np.all(np.abs(err - e64) * len(y) <= near_tie.sum(1))


def test_network_alone_equals_network_packed_with_1000():
    rng = np.random.default_rng(0)
    widths = list(rng.integers(1, 64, 1000))
    big = pyireg.PackedMLP(widths, 100, 10, seed=7)
    X, y = make_data(100, 100, 10, seed=8)
    for i in (0, 1, 517, 999):
        alone = pyireg.PackedMLP([widths[i]], 100, 10)
        alone.set_network(0, *big.network(i))
        np.testing.assert_array_equal(alone.forward(X)[0], big.forward(X)[i])
        la, gUa, gVa = alone.loss_and_grad(X, y)
        lb, gUb, gVb = big.loss_and_grad(X, y)
        s = slice(big.offsets[i], big.offsets[i + 1])
        assert la[0] == lb[i]
        np.testing.assert_array_equal(gUa, gUb[s])
        np.testing.assert_array_equal(gVa, gVb[s])


def test_wide_network_alone_equals_packed():
    # a network wider than one chunk, packed behind networks that leave a chunk half full
    big = pyireg.PackedMLP([5, 100, 1000, 3], 31, 10, seed=1)
    alone = pyireg.PackedMLP([1000], 31, 10)
    alone.set_network(0, *big.network(2))
    X, y = make_data(50, 31, 10)
    np.testing.assert_array_equal(alone.forward(X)[0], big.forward(X)[2])


@pytest.mark.parametrize("simd", simd_targets())
def test_bit_identical_across_runs_and_thread_counts(simd):
    _core.set_simd(simd)
    X, y = make_data(100, 100, 10, seed=1)
    results = []
    for threads in (1, 2, 2, 1):
        _core.set_num_threads(threads)
        model = pyireg.PackedMLP(list(range(1, 60)) + [700], 100, 10, seed=3)
        opt = pyireg.MomentumSGD(model, lr=0.1, momentum=0.9)
        for _ in range(3):
            loss = opt.step(X, y)
        err, eval_loss = model.evaluate(X, y, batch_size=64)
        results.append((loss, model.U.copy(), model.V.copy(), err, eval_loss, model.forward(X)))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_torch_round_trip():
    model = pyireg.PackedMLP([2, 7, 1], 5, 3, seed=0)
    mods = model.to_torch()
    assert [m[0].out_features for m in mods] == [2, 7, 1]
    back = pyireg.PackedMLP.from_torch(mods)
    np.testing.assert_array_equal(back.U, model.U)
    np.testing.assert_array_equal(back.V, model.V)
    assert back.widths == [2, 7, 1]
    lin = pyireg.PackedMLP.from_torch(pyireg.PackedMLP([3], 4, 2, activation="linear").to_torch())
    assert lin.activation == "linear"


def test_init_std_default_and_per_network():
    model = pyireg.PackedMLP([4000, 1000], 400, 10, seed=0)
    U0, V0 = model.network(0)
    assert abs(U0.std() - 1 / np.sqrt(400)) < 0.01 / np.sqrt(400) * 5
    assert abs(V0.std() - 1 / np.sqrt(4000)) < 0.05 / np.sqrt(4000)
    model = pyireg.PackedMLP([500, 500], 100, 10, init_std=[0.1, 2.0], seed=0)
    assert abs(model.network(0)[0].std() - 0.1) < 0.005
    assert abs(model.network(1)[1].std() - 2.0) < 0.1


def test_seed_array_rebuilds_a_network_alone():
    packed = pyireg.PackedMLP([3, 8, 5], 6, 2, seed=[11, 12, 13])
    alone = pyireg.PackedMLP([8], 6, 2, seed=[12])
    np.testing.assert_array_equal(packed.network(1)[0], alone.U)
    a = pyireg.PackedMLP([3, 3], 6, 2, seed=0)
    assert not np.array_equal(a.network(0)[0], a.network(1)[0])


def test_weights_are_shared_not_copied():
    model = pyireg.PackedMLP([2, 3], 4, 2)
    X, _ = make_data(3, 4, 2)
    before = model.forward(X)
    model.V[...] *= 2.0
    np.testing.assert_allclose(model.forward(X), 2 * before, rtol=1e-6)
