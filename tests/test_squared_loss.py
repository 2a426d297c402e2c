"""The squared loss 1/2 sum_j w_bj (out_bj - y_bj)^2 (mean over the batch): loss_and_grad,
evaluate and training steps against the plain-torch twin, with and without entry weights."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pyireg
from pyireg import _core, reference as R
from pyireg.testing import assert_tolerance

from helpers import simd_targets

SHAPES = [([1], 1, 3, 1), ([5, 2], 7, 3, 4), (list(range(1, 20)) + [600], 50, 30, 10), ([200, 7, 385], 17, 11, 13)]


def _data(B, d, k, seed, mask=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((B, d)).astype(np.float32)
    Y = rng.standard_normal((B, k)).astype(np.float32)
    W = (rng.random((B, k)) < 0.4).astype(np.float32) if mask else None
    return X, Y, W


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("simd", simd_targets())
@pytest.mark.parametrize("widths,B,d,k", SHAPES)
def test_squared_loss_and_grad_match_reference(widths, B, d, k, simd, mask):
    _core.set_simd(simd)
    model = pyireg.PackedMLP(widths, d, k, loss="squared", seed=1)
    X, Y, W = _data(B, d, k, 2, mask)
    m32 = R.modules_from_packed(model.U, model.V, model.offsets)
    m64 = R.modules_from_packed(model.U, model.V, model.offsets, dtype=torch.float64)
    loss, gU, gV = model.loss_and_grad(X, Y, W)
    l32, gU32, gV32 = R.loss_and_grad(m32, X, Y, W, loss="squared")
    W64 = None if W is None else W.astype(np.float64)
    l64, gU64, gV64 = R.loss_and_grad(m64, X.astype(np.float64), Y.astype(np.float64), W64, loss="squared")
    assert_tolerance(loss, l32, l64, "loss")
    assert_tolerance(gU, gU32, gU64, "grad U")
    assert_tolerance(gV, gV32, gV64, "grad V")
    err, eloss = model.evaluate(X, Y, W, batch_size=16)
    err64, e64 = R.evaluate(m64, X.astype(np.float64), Y.astype(np.float64), W64, loss="squared")
    _, e32 = R.evaluate(m32, X, Y, W, loss="squared")
    assert_tolerance(eloss, e32, e64, "evaluate loss")
    # errors: largest output not at the largest target; may differ only where two outputs tie in float32
    if k == 1:
        np.testing.assert_array_equal(err, 0.0)      # one output: always at the (one) largest target
    else:
        out = R.forward(m64, X.astype(np.float64)).numpy()
        top2 = np.sort(out, axis=2)[:, :, -2:]
        near_tie = (top2[:, :, 1] - top2[:, :, 0]) < 1e-4 * max(1.0, np.abs(top2).max())
        assert np.all(np.abs(err - err64) * B <= near_tie.sum(1))


@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_the_twins_losses_keep_the_twins_precision(loss):
    """The tolerance rule reads its floor from the reference's dtype: a float32 twin's losses must
    come back float32 (as float64 numbers its floor would be float64's and rest on luck)."""
    model = pyireg.PackedMLP([3, 5], 4, 2, loss=loss, seed=1)
    X, Y, _ = _data(6, 4, 2, 3)
    y = Y if loss == "squared" else np.array([0, 1, 1, 0, 1, 0])
    for dtype, want in ((torch.float32, np.float32), (torch.float64, np.float64)):
        mods = R.modules_from_packed(model.U, model.V, model.offsets, dtype=dtype)
        assert R.loss_and_grad(mods, X, y, loss=loss)[0].dtype == want
        assert R.evaluate(mods, X, y, loss=loss)[1].dtype == want
        opt = R.make_sgd(mods, 0.1, 0.0, 0.0)
        assert R.step(mods, opt, X, y, loss=loss).dtype == want
        assert R.PathSGDTwin(mods, 0.1).step(X, y, loss=loss).dtype == want
        assert R.DDPSGDTwin(mods, 0.1, 0.5).step(X, y, loss=loss).dtype == want


def test_squared_loss_error_is_the_classification_error_of_one_hot_targets():
    model = pyireg.PackedMLP([4, 30], 6, 3, loss="squared", dtype="float64", seed=3)
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((50, 6)), rng.integers(0, 3, 50)
    err, _ = model.evaluate(X, np.eye(3)[y], batch_size=7)
    np.testing.assert_array_equal(err, (model.forward(X).argmax(2) != y).mean(1))


def test_squared_loss_relates_to_mse_loss_as_documented():
    """With unit weights the loss is k/2 times torch's mse_loss (which averages over outputs, no 1/2)."""
    model = pyireg.PackedMLP([4, 9], 6, 3, loss="squared", dtype="float64", seed=0)
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((11, 6)), rng.standard_normal((11, 3))
    loss, _, _ = model.loss_and_grad(X, Y)
    out = torch.as_tensor(model.forward(X))
    mse = np.array([F.mse_loss(out[n], torch.as_tensor(Y)).item() for n in range(2)])
    np.testing.assert_allclose(loss, 3 / 2 * mse, rtol=1e-12)


def test_zero_weights_ignore_entries():
    model = pyireg.PackedMLP([3, 8], 5, 4, loss="squared", dtype="float64", seed=2)
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((9, 5)), rng.standard_normal((9, 4))
    W = (rng.random((9, 4)) < 0.5).astype(np.float64)
    Y2 = np.where(W > 0, Y, 1e6)       # unobserved entries may hold anything
    a = model.loss_and_grad(X, Y, W)
    b = model.loss_and_grad(X, Y2, W)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("simd", simd_targets())
def test_squared_loss_sgd_trajectory_matches_torch(simd):
    _core.set_simd(simd)
    widths, d, k, B = [1, 3, 40, 200], 12, 5, 20
    model = pyireg.PackedMLP(widths, d, k, loss="squared", seed=0, init_std=0.3)
    m32 = R.modules_from_packed(model.U, model.V, model.offsets)
    m64 = R.modules_from_packed(model.U, model.V, model.offsets, dtype=torch.float64)
    lr, mom, wd = np.array([0.05, 0.02, 0.01, 0.005]), np.array([0.0, 0.5, 0.9, 0.9]), np.array([0, 1e-3, 0, 1e-2])
    opt = pyireg.MomentumSGD(model, lr, mom, wd)
    o32, o64 = R.make_sgd(m32, lr, mom, wd), R.make_sgd(m64, lr, mom, wd)
    rng = np.random.default_rng(5)
    for _ in range(30):
        X, Y, W = _data(B, d, k, int(rng.integers(1 << 30)), mask=True)
        got = opt.step(X, Y, W)
        R.step(m32, o32, X, Y, W, loss="squared")
        ref = R.step(m64, o64, X.astype(np.float64), Y.astype(np.float64), W.astype(np.float64), loss="squared")
        np.testing.assert_allclose(got, ref, rtol=2e-4, atol=1e-6)
    U32, V32 = R.packed_weights(m32)
    U64, V64 = R.packed_weights(m64)
    assert_tolerance(model.U, U32, U64, "U after 30 steps")
    assert_tolerance(model.V, V32, V64, "V after 30 steps")


def test_squared_loss_targets_are_checked():
    model = pyireg.PackedMLP([2, 3], 4, 3, loss="squared")
    X = np.zeros((5, 4), np.float32)
    with pytest.raises(ValueError, match=r"y: expected shape \(5, 3\)"):
        model.loss_and_grad(X, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="weights: expected non-negative values"):
        model.loss_and_grad(X, np.zeros((5, 3)), -np.ones((5, 3)))
    with pytest.raises(ValueError, match="y: contains NaN or inf"):
        model.evaluate(X, np.full((5, 3), np.inf))
    ce = pyireg.PackedMLP([2], 4, 3)
    with pytest.raises(ValueError, match="weights: entry weights apply to the squared loss only"):
        ce.loss_and_grad(X, np.zeros(5, int), np.ones((5, 3)))
    with pytest.raises(ValueError, match="loss: expected 'cross_entropy' or 'squared'"):
        pyireg.PackedMLP([2], 4, 3, loss="hinge")
    one = pyireg.PackedMLP([2], 4, 1, loss="squared")
    assert one.loss_and_grad(X, np.zeros(5))[0].shape == (1,)     # k = 1: targets may be 1-d
