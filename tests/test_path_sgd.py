"""Path-SGD and DDP-SGD: against hand-written twins on autograd's gradients, fused against
unfused bit for bit, the scaling against autograd's Hessian, rescaling invariance, zero rows."""
import numpy as np
import pytest
import torch

import pyireg
from pyireg import _core, reference as R
from pyireg.testing import assert_tolerance

from helpers import simd_targets

WIDTHS = [1, 2, 5, 37, 300]


def _data(rng, B, d, k, dtype=np.float32):
    return rng.standard_normal((B, d)).astype(dtype), rng.integers(0, k, B)


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_path_sgd_trajectory_equals_the_hand_written_twin(activation):
    d, k, B, steps = 13, 5, 32, 30
    rng = np.random.default_rng(0)
    n = len(WIDTHS)
    lr = rng.uniform(0.001, 0.01, n)
    mom = rng.uniform(0.0, 0.9, n)
    wd = rng.choice([0.0, 1e-3], n)
    model = pyireg.PackedMLP(WIDTHS, d, k, activation=activation, seed=1)
    t32 = R.PathSGDTwin(R.modules_from_packed(model.U, model.V, model.offsets, activation), lr, mom, wd)
    t64 = R.PathSGDTwin(R.modules_from_packed(model.U, model.V, model.offsets, activation, dtype=torch.float64),
                        lr, mom, wd)
    opt = pyireg.PathSGD(model, lr, mom, wd)
    pool_X, pool_y = _data(rng, 4 * B, d, k)                # a small training set, seen batch by batch
    losses = []
    for s in range(steps):
        X, y = pool_X[(s % 4) * B:(s % 4 + 1) * B], pool_y[(s % 4) * B:(s % 4 + 1) * B]
        losses.append((opt.step(X, y), t32.step(X, y), t64.step(X.astype(np.float64), y)))
    U32, V32 = R.packed_weights(t32.modules)
    U64, V64 = R.packed_weights(t64.modules)
    assert_tolerance(model.U, U32, U64, "U after 30 Path-SGD steps")
    assert_tolerance(model.V, V32, V64, "V after 30 Path-SGD steps")
    ours, l32, l64 = (np.stack(x) for x in zip(*losses))
    assert_tolerance(ours, l32, l64, "losses")
    assert ours[-5:].mean() < ours[:5].mean()


def test_first_path_sgd_step_divides_by_the_other_layers_squared_norm():
    model = pyireg.PackedMLP([4, 9], 5, 3, seed=0, dtype="float64")
    X = np.random.default_rng(0).standard_normal((8, 5))
    y = np.arange(8) % 3
    U0, V0 = model.U.copy(), model.V.copy()
    _, gU, gV = model.loss_and_grad(X, y)
    pyireg.PathSGD(model, lr=[0.1, 0.3], momentum=0.9).step(X, y)
    lr = np.repeat([0.1, 0.3], [4, 9])[:, None]
    np.testing.assert_allclose(model.U, U0 - lr * gU / (V0 ** 2).sum(1, keepdims=True), rtol=1e-13)
    np.testing.assert_allclose(model.V, V0 - lr * gV / (U0 ** 2).sum(1, keepdims=True), rtol=1e-13)


@pytest.mark.parametrize("rule", ["path_sgd", "ddp_sgd"])
@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("simd", simd_targets())
def test_fused_step_equals_loss_and_grad_then_apply_update_bit_for_bit(simd, dtype, loss, rule):
    _core.set_simd(simd)
    widths, d, k, B = list(range(1, 30)) + [700], 37, 3, 23
    fused = pyireg.PackedMLP(widths, d, k, loss=loss, dtype=dtype, seed=2)
    unfused = fused.copy()
    rng = np.random.default_rng(0)
    n = len(widths)
    if rule == "path_sgd":
        hyper = dict(lr=rng.uniform(0.001, 0.02, n), momentum=rng.uniform(0, 0.95, n),
                     weight_decay=rng.uniform(0, 1e-2, n))
        o1, o2 = pyireg.PathSGD(fused, **hyper), pyireg.PathSGD(unfused, **hyper)
    else:
        hyper = dict(lr=rng.uniform(0.001, 0.02, n), alpha=rng.uniform(0, 1, n), weight_decay=rng.uniform(0, 1e-2, n))
        o1, o2 = pyireg.DDPSGD(fused, **hyper), pyireg.DDPSGD(unfused, **hyper)
    for _ in range(5):
        X = rng.standard_normal((B, d)).astype(dtype)
        y = rng.integers(0, k, B) if loss == "cross_entropy" else rng.standard_normal((B, k)).astype(dtype)
        l1 = o1.step(X, y)
        if rule == "ddp_sgd":
            o2.prepare(X)
        l2, gU, gV = unfused.loss_and_grad(X, y)
        o2.apply_update(gU, gV)
        np.testing.assert_array_equal(l1, l2)
    assert np.all(np.isfinite(l1))
    for a, b in ((fused.U, unfused.U), (fused.V, unfused.V), (o1.bufU, o2.bufU), (o1.bufV, o2.bufV)):
        np.testing.assert_array_equal(a, b)


def _rescaled_trajectories(make_opt, steps=25, dtype="float64"):
    """The same training from an initialization and from its Theorem-1 rescaling by random
    per-unit factors in [1/8, 8]: outputs of both along the way, and the factors."""
    d, k, B = 10, 4, 40
    widths = [3, 16, 64]
    a = pyireg.PackedMLP(widths, d, k, dtype=dtype, seed=5)
    b = a.copy()
    c = np.exp(np.random.default_rng(1).uniform(-np.log(8), np.log(8), a.num_units))
    b.U *= c[:, None]
    b.V /= c[:, None]
    oa, ob = make_opt(a), make_opt(b)
    rng = np.random.default_rng(2)
    Xt, _ = _data(rng, 200, d, k, dtype)
    outs = []
    for _ in range(steps):
        X, y = _data(rng, B, d, k, dtype)
        oa.step(X, y)
        ob.step(X, y)
        outs.append((a.forward(Xt), b.forward(Xt)))
    return a, b, c, outs


def test_path_sgd_trajectory_is_invariant_to_rescaling_the_initialization_sgd_is_not():
    a, b, c, outs = _rescaled_trajectories(lambda m: pyireg.PathSGD(m, 0.002, momentum=0.5))
    for fa, fb in outs:
        np.testing.assert_allclose(fb, fa, rtol=1e-9, atol=1e-9)
    # the trained weights are the rescaling of each other
    np.testing.assert_allclose(b.U, a.U * c[:, None], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(b.V, a.V / c[:, None], rtol=1e-8, atol=1e-12)
    assert np.max(np.abs(outs[-1][0] - outs[0][0])) > 0.1      # it did train
    _, _, _, outs = _rescaled_trajectories(lambda m: pyireg.MomentumSGD(m, 0.05, momentum=0.5))
    assert np.max(np.abs(outs[-1][0] - outs[-1][1])) > 0.1


def test_ddp_sgd_trajectory_is_invariant_to_rescaling_the_initialization():
    _, _, _, outs = _rescaled_trajectories(lambda m: pyireg.DDPSGD(m, 0.01, alpha=0.4))
    for fa, fb in outs:
        np.testing.assert_allclose(fb, fa, rtol=1e-9, atol=1e-9)
    assert np.max(np.abs(outs[-1][0] - outs[0][0])) > 0.1


@pytest.mark.parametrize("make", [lambda m: pyireg.PathSGD(m, 0.01, momentum=0.9),
                                  lambda m: pyireg.DDPSGD(m, 0.01, alpha=0.5)], ids=["path_sgd", "ddp_sgd"])
def test_zero_rows_take_no_step_and_stay_finite(make):
    model = pyireg.PackedMLP([4, 6], 5, 3, seed=0)
    model.V[1] = 0            # unit 1: kappa(u_1) = 0, and u_1's gradient is 0
    model.U[7] = 0            # unit 7: kappa(v_7) = 0, and v_7's gradient is 0 (relu(0) = 0)
    before = model.copy()
    opt = make(model)
    X, y = _data(np.random.default_rng(0), 16, 5, 3)
    assert np.all(np.isfinite(opt.step(X, y)))
    assert np.all(np.isfinite(model.U)) and np.all(np.isfinite(model.V))
    np.testing.assert_array_equal(model.U[1], before.U[1])
    np.testing.assert_array_equal(model.U[7], 0)
    np.testing.assert_array_equal(model.V[7], before.V[7])
    assert np.all(model.V[1] != 0)                          # the other layer of unit 1 does move
    assert np.all(model.U[0] != before.U[0])
    if isinstance(opt, pyireg.DDPSGD):                      # the zero policy: 1 / kappa := 0
        np.testing.assert_array_equal(opt.kU[1], 0)
        np.testing.assert_array_equal(opt.kV[7], 0)


@pytest.mark.parametrize("activation", ["relu", "linear"])
@pytest.mark.parametrize("alpha", [0.0, 0.35, 1.0])
def test_ddp_kappa_closed_form_is_half_the_hessian_diagonal_of_gamma_net(alpha, activation):
    rng = np.random.default_rng(4)
    H, d, k = 4, 5, 3
    u, v = rng.standard_normal((H, d)), rng.standard_normal((H, k))
    X = rng.standard_normal((30, d))
    kU, kV = R.ddp_kappa_autograd(u, v, X, alpha, activation)
    cU, cV = R.ddp_kappa(u, v, X, np.full(H, alpha), activation)
    np.testing.assert_allclose(cU, kU, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cV, kV, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_native_ddp_scaling_equals_the_twin(activation):
    rng = np.random.default_rng(0)
    model = pyireg.PackedMLP(WIDTHS, 13, 5, activation=activation, seed=3)
    alpha = rng.uniform(0, 1, len(WIDTHS)).astype(np.float32)
    opt = pyireg.DDPSGD(model, 0.01, alpha=alpha)
    X, _ = _data(rng, 41, 13, 5)
    opt.prepare(X)
    a_unit = np.repeat(alpha, model.widths)
    r32 = R.ddp_kappa(model.U, model.V, X, a_unit, activation, torch.float32)
    r64 = R.ddp_kappa(model.U, model.V, X.astype(np.float64), a_unit.astype(np.float64), activation)
    assert_tolerance(1 / opt.kU.astype(np.float64), r32[0], r64[0], "kappa_U")
    assert_tolerance(1 / opt.kV.astype(np.float64), r32[1], r64[1], "kappa_V")


def test_ddp_sgd_at_alpha_one_is_path_sgd_without_momentum_bit_for_bit():
    rng = np.random.default_rng(0)
    a = pyireg.PackedMLP(WIDTHS, 13, 5, seed=3)
    b = a.copy()
    oa, ob = pyireg.PathSGD(a, 0.01, momentum=0.0, weight_decay=1e-3), pyireg.DDPSGD(b, 0.01, alpha=1.0,
                                                                                     weight_decay=1e-3)
    for _ in range(5):
        X, y = _data(rng, 20, 13, 5)
        np.testing.assert_array_equal(oa.step(X, y), ob.step(X, y))
    np.testing.assert_array_equal(a.U, b.U)
    np.testing.assert_array_equal(a.V, b.V)


def test_ddp_sgd_trajectory_equals_the_hand_written_twin():
    d, k, B = 13, 5, 32
    rng = np.random.default_rng(0)
    n = len(WIDTHS)
    lr, alpha, wd = rng.uniform(0.002, 0.01, n), rng.uniform(0, 1, n), rng.choice([0.0, 1e-3], n)
    model = pyireg.PackedMLP(WIDTHS, d, k, seed=1)
    t32 = R.DDPSGDTwin(R.modules_from_packed(model.U, model.V, model.offsets), lr, alpha.astype(np.float32), wd)
    t64 = R.DDPSGDTwin(R.modules_from_packed(model.U, model.V, model.offsets, dtype=torch.float64),
                       lr, alpha.astype(np.float32).astype(np.float64), wd)
    opt = pyireg.DDPSGD(model, lr, alpha, wd)
    for _ in range(20):
        X, y = _data(rng, B, d, k)
        opt.step(X, y)
        t32.step(X, y)
        t64.step(X.astype(np.float64), y)
    U32, V32 = R.packed_weights(t32.modules)
    U64, V64 = R.packed_weights(t64.modules)
    assert_tolerance(model.U, U32, U64, "U after 20 DDP-SGD steps")
    assert_tolerance(model.V, V32, V64, "V after 20 DDP-SGD steps")


def test_rule_arguments_are_checked():
    model = pyireg.PackedMLP([2, 3], 4, 3)
    with pytest.raises(ValueError, match="momentum: DDPSGD has no momentum"):
        pyireg.DDPSGD(model, 0.1).momentum = 0.5
    with pytest.raises(ValueError, match=r"alpha: expected values <= 1.0"):
        pyireg.DDPSGD(model, 0.1, alpha=1.5)
    opt = pyireg.DDPSGD(model, 0.1)
    X, y = np.zeros((5, 4), np.float32), np.zeros(5, np.int32)
    rule, bU, bV, lr, mom, wd = opt._hyper()
    with pytest.raises(ValueError, match="momentum: the ddp_sgd rule has no momentum"):
        model._engine.step(model.U, model.V, X, y, None, rule, bU, bV, lr, np.full(2, 0.5, np.float32), wd)
    with pytest.raises(ValueError, match=r"alpha: expected values in \[0, 1\]"):
        model._engine.ddp_scale(model.U, model.V, X, np.array([0.5, -1], np.float32), bU, bV)
    with pytest.raises(ValueError, match="lr: expected finite values"):
        model._engine.step(model.U, model.V, X, y, None, "path_sgd", bU, bV, np.array([np.inf, 0], np.float32), mom,
                           wd)
    with pytest.raises(ValueError, match="rule: expected 'momentum_sgd', 'path_sgd', 'ddp_sgd'"):
        model._engine.step(model.U, model.V, X, y, None, "path", bU, bV, lr, mom, wd)


def test_ddp_apply_update_before_any_scaling_is_refused():
    """DDP-SGD's unfused update multiplies the gradient by the batch's 1 / kappa; before any
    prepare(X) or step the buffers are zero and the update silently did nothing."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 3)).astype(np.float32), rng.integers(0, 2, 20)
    m = pyireg.PackedMLP([2, 3], 3, 2, seed=0)
    opt = pyireg.DDPSGD(m, 0.1)
    U0 = m.U.copy()
    _, gU, gV = m.loss_and_grad(X, y)
    with pytest.raises(ValueError, match=r"apply_update: .*call prepare\(X\) first"):
        opt.apply_update(gU, gV)
    assert np.array_equal(m.U, U0) and opt.steps == 0
    opt.prepare(X)
    opt.apply_update(gU, gV)
    assert not np.array_equal(m.U, U0)
