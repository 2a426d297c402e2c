"""The rules adam, adamw and nesterov_sgd: network-by-network parity with torch.optim.Adam,
torch.optim.AdamW and torch.optim.SGD(nesterov=True) over 25-step trajectories with per-network
hyper-parameters at awkward shapes, the fused step against the unfused oracle bit for bit, every
SIMD target giving the same bits, and the checks of their hyper-parameters."""
import numpy as np
import pytest
import torch

import pyireg
from pyireg import _core, reference as R
from pyireg.optim.adam import Adam, AdamW
from pyireg.optim.nesterov_sgd import NesterovSGD
from pyireg.testing import assert_tolerance

from helpers import simd_targets

KINDS = {"adam": (Adam, torch.optim.Adam), "adamw": (AdamW, torch.optim.AdamW)}


def _hyper(n, rng):
    return dict(lr=rng.uniform(1e-3, 2e-2, n), beta1=rng.uniform(0.5, 0.95, n), beta2=rng.uniform(0.9, 0.999, n),
                eps=rng.choice([1e-8, 1e-6, 1e-3], n), weight_decay=rng.choice([0.0, 1e-3, 0.1, 1.0], n))


def _ours(kind, model, h):
    return KINDS[kind][0](model, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"],
                          weight_decay=h["weight_decay"])


def _torch(kind, modules, h):
    # one optimizer per network (its own step count); the single-tensor path, the one the rule follows
    return [KINDS[kind][1](m.parameters(), lr=float(h["lr"][i]), betas=(float(h["beta1"][i]), float(h["beta2"][i])),
                           eps=float(h["eps"][i]), weight_decay=float(h["weight_decay"][i]), foreach=False)
            for i, m in enumerate(modules)]


def _torch_step(modules, opts, X, y, loss):
    for o in opts:
        o.zero_grad(set_to_none=True)
    Xt, yt = torch.as_tensor(X), R._targets(y, loss)
    losses = [R._loss(m(Xt.to(m[0].weight.dtype)), yt, loss) for m in modules]
    torch.stack(losses).sum().backward()
    for o in opts:
        o.step()
    return np.array([float(v.detach()) for v in losses])


def _trajectory(kind, widths, d, k, B, steps, loss="cross_entropy", seed=0):
    rng = np.random.default_rng(seed)
    model = pyireg.PackedMLP(widths, d, k, seed=seed, loss=loss)
    m32 = R.modules_from_packed(model.U, model.V, model.offsets)
    m64 = R.modules_from_packed(model.U, model.V, model.offsets, dtype=torch.float64)
    h = _hyper(len(widths), rng)
    opt, o32, o64 = _ours(kind, model, h), _torch(kind, m32, h), _torch(kind, m64, h)
    losses = []
    for _ in range(steps):
        X = rng.standard_normal((B, d)).astype(np.float32)
        y = rng.integers(0, k, B) if loss == "cross_entropy" else rng.standard_normal((B, k)).astype(np.float32)
        losses.append((opt.step(X, y), _torch_step(m32, o32, X, y, loss),
                       _torch_step(m64, o64, X.astype(np.float64), y, loss)))
    return model, opt, m32, m64, losses


@pytest.mark.parametrize("kind", ["adam", "adamw"])
@pytest.mark.parametrize("widths,d,k,B,loss", [
    ([1, 6, 37], 3, 2, 1, "cross_entropy"),
    ([1, 6, 37], 11, 13, 100, "squared"),
    (list(range(1, 38)) + [1000], 100, 10, 33, "cross_entropy"),
    ([17], 40, 3, 7, "squared"),
])
def test_trajectory_matches_torch_network_by_network(kind, widths, d, k, B, loss):
    model, opt, m32, m64, losses = _trajectory(kind, widths, d, k, B, 25, loss)
    U32, V32 = R.packed_weights(m32)
    U64, V64 = R.packed_weights(m64)
    for n in range(model.num_networks):
        s = model._slice(n)
        assert_tolerance(model.U[s], U32[s], U64[s], f"{kind}: U of network {n} after 25 steps")
        assert_tolerance(model.V[s], V32[s], V64[s], f"{kind}: V of network {n} after 25 steps")
    ours, t32, t64 = (np.stack(x) for x in zip(*losses))
    assert_tolerance(ours, t32.astype(np.float32), t64, "losses along the trajectory")
    np.testing.assert_array_equal(opt.t, 25)
    assert np.max(np.abs(model.U - pyireg.PackedMLP(widths, d, k, seed=0, loss=loss).U)) > 1e-3  # it moved


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_float64_trajectory_matches_torch_float64(kind):
    rng = np.random.default_rng(5)
    widths, d, k, B = [1, 2, 9, 30], 7, 3, 19
    model = pyireg.PackedMLP(widths, d, k, seed=4, dtype="float64")
    m64 = R.modules_from_packed(model.U, model.V, model.offsets, dtype=torch.float64)
    h = _hyper(len(widths), rng)
    opt, o64 = _ours(kind, model, h), _torch(kind, m64, h)
    for _ in range(25):
        X = rng.standard_normal((B, d))
        y = rng.integers(0, k, B)
        np.testing.assert_allclose(opt.step(X, y), _torch_step(m64, o64, X, y, "cross_entropy"), rtol=1e-11)
    U64, V64 = R.packed_weights(m64)
    np.testing.assert_allclose(model.U, U64, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.V, V64, rtol=1e-9, atol=1e-12)


def test_l2_and_decoupled_decay_differ_for_adam_and_agree_without_decay():
    widths, d, k = [3, 8], 5, 2
    X, y = np.random.default_rng(0).standard_normal((16, d)).astype(np.float32), np.arange(16) % k
    runs = {}
    for kind, wd in (("adam", 0.5), ("adamw", 0.5), ("adam0", 0.0), ("adamw0", 0.0)):
        m = pyireg.PackedMLP(widths, d, k, seed=1)
        o = (Adam if kind.startswith("adam") and not kind.startswith("adamw") else AdamW)(m, lr=0.01, weight_decay=wd)
        for _ in range(10):
            o.step(X, y)
        runs[kind] = m.U.copy()
    np.testing.assert_array_equal(runs["adam0"], runs["adamw0"])
    assert np.max(np.abs(runs["adam"] - runs["adamw"])) > 1e-3


@pytest.mark.parametrize("widths,d,k,B", [([1, 6, 37], 3, 2, 1), ([1, 6, 37], 784, 10, 7),
                                          (list(range(1, 38)) + [1000], 100, 10, 50)])
def test_nesterov_matches_torch_sgd_nesterov(widths, d, k, B):
    rng = np.random.default_rng(2)
    model = pyireg.PackedMLP(widths, d, k, seed=2)
    n = len(widths)
    lr, mom, wd = rng.uniform(0.005, 0.03, n), rng.uniform(0.0, 0.9, n), rng.choice([0.0, 1e-3], n)
    opt = NesterovSGD(model, lr, mom, wd)
    mods = {dt: R.modules_from_packed(model.U, model.V, model.offsets, dtype=dt)
            for dt in (torch.float32, torch.float64)}
    topt = {dt: [torch.optim.SGD(m.parameters(), lr=float(lr[i]), momentum=float(mom[i]), weight_decay=float(wd[i]),
                                 nesterov=True, foreach=False) for i, m in enumerate(ms)] for dt, ms in mods.items()}
    for _ in range(25):
        X = rng.standard_normal((B, d)).astype(np.float32)
        y = rng.integers(0, k, B)
        opt.step(X, y)
        _torch_step(mods[torch.float32], topt[torch.float32], X, y, "cross_entropy")
        _torch_step(mods[torch.float64], topt[torch.float64], X.astype(np.float64), y, "cross_entropy")
    U32, V32 = R.packed_weights(mods[torch.float32])
    U64, V64 = R.packed_weights(mods[torch.float64])
    for i in range(n):
        s = model._slice(i)
        assert_tolerance(model.U[s], U32[s], U64[s], f"nesterov: U of network {i}")
        assert_tolerance(model.V[s], V32[s], V64[s], f"nesterov: V of network {i}")


def _make(rule, model, rng):
    n = model.num_networks
    if rule == "nesterov_sgd":
        return NesterovSGD(model, rng.uniform(0.01, 0.1, n), rng.uniform(0, 0.95, n), rng.uniform(0, 1e-2, n))
    h = _hyper(n, rng)
    return _ours(rule, model, h)


@pytest.mark.parametrize("rule", ["adam", "adamw", "nesterov_sgd"])
@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("simd", simd_targets())
def test_fused_step_equals_loss_and_grad_then_apply_update_bit_for_bit(simd, dtype, loss, rule):
    _core.set_simd(simd)
    widths, d, k, B = list(range(1, 30)) + [700], 37, 3, 23
    fused = pyireg.PackedMLP(widths, d, k, loss=loss, dtype=dtype, seed=2)
    unfused = fused.copy()
    o1, o2 = _make(rule, fused, np.random.default_rng(7)), _make(rule, unfused, np.random.default_rng(7))
    rng = np.random.default_rng(0)
    for _ in range(5):
        X = rng.standard_normal((B, d)).astype(dtype)
        y = rng.integers(0, k, B) if loss == "cross_entropy" else rng.standard_normal((B, k)).astype(dtype)
        l1 = o1.step(X, y)
        l2, gU, gV = unfused.loss_and_grad(X, y)
        o2.apply_update(gU, gV)
        np.testing.assert_array_equal(l1, l2)
    state = [(o1.bufU, o2.bufU), (o1.bufV, o2.bufV)]
    if rule != "nesterov_sgd":
        state += [(o1.sqU, o2.sqU), (o1.sqV, o2.sqV)]
    for a, b in [(fused.U, unfused.U), (fused.V, unfused.V)] + state:
        np.testing.assert_array_equal(a, b)


def _run(simd, rule, widths, d, k, B, dtype, loss):
    _core.set_simd(simd)
    rng = np.random.default_rng(0)
    m = pyireg.PackedMLP(widths, d, k, seed=1, dtype=dtype, loss=loss)
    opt = _make(rule, m, np.random.default_rng(3))
    out = []
    for _ in range(4):
        X = rng.standard_normal((B, d))
        y = rng.integers(0, k, B) if loss == "cross_entropy" else rng.standard_normal((B, k))
        out.append(opt.step(X, y))
    return out + [m.U.copy(), m.V.copy(), opt.bufU.copy(), opt.bufV.copy()]


@pytest.mark.skipif(not (_core.simd_available("avx2") and _core.simd_available("avx512")),
                    reason="needs a CPU with both AVX2 and AVX-512")
@pytest.mark.parametrize("widths,d,k,B", [([1, 6, 37], 3, 2, 1), ([5, 100, 333], 11, 13, 100), ([17], 40, 3, 129),
                                          (list(range(1, 40)) + [1000], 100, 10, 100)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule,loss", [("adam", "cross_entropy"), ("adamw", "squared"),
                                       ("nesterov_sgd", "cross_entropy")])
def test_avx512_gives_the_bits_of_avx2(widths, d, k, B, dtype, rule, loss):
    a = _run("avx2", rule, widths, d, k, B, dtype, loss)
    b = _run("avx512", rule, widths, d, k, B, dtype, loss)
    for i, (x, z) in enumerate(zip(a, b)):
        np.testing.assert_array_equal(x, z, err_msg=f"result {i}")


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(betas=(1.0, 0.999)), ValueError, "beta1: expected values < 1.0"),
    (dict(betas=(0.9, -0.1)), ValueError, "beta2: expected non-negative values"),
    (dict(betas=0.9), ValueError, "betas: expected a pair"),
    (dict(eps=0.0), ValueError, "eps: expected values > 0"),
    (dict(eps=np.nan), ValueError, "eps: expected finite values"),
    (dict(lr=-1.0), ValueError, "lr: expected non-negative values"),
    (dict(weight_decay=[0.1, 0.2, 0.3]), ValueError, "weight_decay"),
])
def test_bad_hyperparameters_are_refused_with_their_name(kwargs, exc, match):
    m = pyireg.PackedMLP([1, 2], 3, 2, seed=0)
    with pytest.raises(exc, match=match):
        Adam(m, **kwargs)


def test_engine_refuses_adam_without_its_state_and_bad_step_numbers():
    m = pyireg.PackedMLP([1, 2], 3, 2, seed=0)
    o = Adam(m)
    X, y = np.ones((2, 3), np.float32), np.array([0, 1], np.int32)
    hyper = o._hyper(np.ones(2, np.int64))
    with pytest.raises(ValueError, match="adam: expected"):
        m._engine.step(m.U, m.V, X, y, None, *hyper[:6])
    with pytest.raises(ValueError, match="t: expected step numbers >= 1"):
        m._engine.step(m.U, m.V, X, y, None, *o._hyper(np.array([1, 0], np.int64)))
    with pytest.raises(ValueError, match="adam: expected"):
        m._engine.step(m.U, m.V, X, y, None, "momentum_sgd", *hyper[1:])
    with pytest.raises(ValueError, match="rule: expected"):
        m._engine.step(m.U, m.V, X, y, None, "adamax", *hyper[1:6])


def test_reset_state_zeroes_moments_and_step_counts():
    m = pyireg.PackedMLP([2, 3], 4, 2, seed=0)
    o = AdamW(m, lr=0.01)
    X, y = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), np.arange(8) % 2
    o.step(X, y)
    assert np.any(o.sqU != 0) and np.all(o.t == 1)
    o.reset_state()
    assert not np.any(o.sqU) and not np.any(o.bufU) and np.all(o.t == 0)


@pytest.mark.parametrize("rule", ["adam", "adamw", "nesterov_sgd"])
def test_thread_count_and_neighbours_do_not_change_the_bits(rule):
    """1 vs 2 threads, and each network alone vs packed: the same bits (a network's update
    depends only on its own weights, gradients and hyper-parameters)."""
    widths, d, k, B = [1, 5, 300, 2], 13, 4, 21
    rng = np.random.default_rng(4)
    batches = [(rng.standard_normal((B, d)).astype(np.float32), rng.integers(0, k, B)) for _ in range(4)]

    results = []
    for threads in (1, 2):
        before = pyireg.get_num_threads()
        pyireg.set_num_threads(threads)
        try:
            m = pyireg.PackedMLP(widths, d, k, seed=9)
            o = _make(rule, m, np.random.default_rng(1))
            for X, y in batches:
                o.step(X, y)
        finally:
            pyireg.set_num_threads(before)
        results.append(m)
    np.testing.assert_array_equal(results[0].U, results[1].U)
    np.testing.assert_array_equal(results[0].V, results[1].V)
    packed = results[0]
    hyper_all = _make(rule, pyireg.PackedMLP(widths, d, k, seed=9), np.random.default_rng(1))
    for n, w in enumerate(widths):
        alone = pyireg.PackedMLP.from_weights([w], *pyireg.PackedMLP(widths, d, k, seed=9).network(n))
        if rule == "nesterov_sgd":
            o = NesterovSGD(alone, hyper_all.lr[n], hyper_all.momentum[n], hyper_all.weight_decay[n])
        else:
            o = KINDS[rule][0](alone, lr=hyper_all.lr[n], betas=(hyper_all.beta1[n], hyper_all.beta2[n]),
                               eps=hyper_all.eps[n], weight_decay=hyper_all.weight_decay[n])
        for X, y in batches:
            o.step(X, y)
        U, V = packed.network(n)
        np.testing.assert_array_equal(alone.U, U)
        np.testing.assert_array_equal(alone.V, V)


def test_a_diverged_network_leaves_the_others_alone():
    m = pyireg.PackedMLP([3, 4], 5, 2, seed=0)
    ref = m.copy()
    o, o_ref = Adam(m, lr=[1e30, 0.01]), Adam(ref, lr=[0.0, 0.01])
    rng = np.random.default_rng(0)
    for _ in range(6):
        X, y = rng.standard_normal((8, 5)).astype(np.float32) * 1e20, rng.integers(0, 2, 8)
        o.step(X, y)
        o_ref.step(X, y)
    assert o.diverged[0] and not o.diverged[1]
    np.testing.assert_array_equal(m.network(1)[0], ref.network(1)[0])
