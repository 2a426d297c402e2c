"""The CUDA engine's kernels run through the emulation of the CUDA execution model
(pyireg._cuda_emu): against the float64 twins under the tolerance rule on awkward shapes, bit
for bit across thread orders, runs, packings and fused vs unfused; and the planted bugs the net
must catch (a missing barrier, an early return before a barrier, a bad warp mask, a deadlock,
launch limits, a wrong GEMM leading dimension)."""
import numpy as np
import pytest
import torch
from pyireg._cuda_emu import gemm_status, live_allocations, selftest

import pyireg
import pyireg.cuda as pc
from pyireg import reference as ref
from pyireg.testing import assert_tolerance

SCHEDULES = [("forward", 0), ("reverse", 0), ("random", 1), ("random", 2)]

LAYOUTS = {
    "width1": ([1], 4, 3),
    "single": ([9], 6, 4),
    "mixed": (list(range(1, 38)) + [1000], 5, 13),  # k > 12, odd d
    "odd": ([3, 1, 7, 2], 7, 5),
}


def offsets_of(widths):
    return np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)


def make_model(widths, d, k, B, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    S = int(sum(widths))
    U = (rng.standard_normal((S, d)) / np.sqrt(d)).astype(dtype)
    V = (rng.standard_normal((S, k)) / np.sqrt(8)).astype(dtype)
    X = rng.standard_normal((B, d)).astype(dtype)
    y = rng.integers(0, k, B)
    return U, V, X, y


def twins(U, V, offsets):
    return (ref.modules_from_packed(U, V, offsets, dtype=torch.float32),
            ref.modules_from_packed(U, V, offsets, dtype=torch.float64))


# ---------------------------------------------------------------- the emulation itself
@pytest.mark.parametrize("schedule,seed", SCHEDULES)
def test_selftest_kernels_are_correct_in_every_order(schedule, seed):
    rng = np.random.default_rng(3)
    x = rng.integers(-50, 50, 1024).astype(np.float32)
    with pc.emulate(schedule, seed, threads=2) as em:
        rev = selftest("reverse", x, 256, 4)
        ws = selftest("warp_sum", x, 48, 1)
        bs = selftest("block_sum", x, 256, 4)
        ops = selftest("warp_ops", x, 64, 1).reshape(64, 5)
        cnt = selftest("count_positive", x, 128, 8)
    assert em.launches == 5
    np.testing.assert_array_equal(rev, x.reshape(4, 256)[:, ::-1].ravel())
    # integers in float: every order of the sums is exact
    np.testing.assert_array_equal(ws, [x[:32].sum(), x[32:48].sum()] + [np.nan] * 46)
    np.testing.assert_array_equal(bs[:4], x.reshape(4, 256).sum(1))
    for w in range(2):
        lanes = x[32 * w:32 * w + 32]
        np.testing.assert_array_equal(ops[32 * w:32 * w + 32, 0], np.full(32, lanes.sum()))
        np.testing.assert_array_equal(ops[32 * w:32 * w + 32, 1], np.full(32, (lanes > 0).sum()))
        np.testing.assert_array_equal(ops[32 * w:32 * w + 32, 2], np.full(32, 2 * (lanes > 100).any() + 1))
        np.testing.assert_array_equal(ops[32 * w:32 * w + 32, 3], np.full(32, lanes[0]))
        np.testing.assert_array_equal(ops[32 * w:32 * w + 32, 4], np.concatenate([[lanes[0]], lanes[:-1]]))
    assert cnt[0] == (x > 0).sum()


def test_planted_missing_barrier_changes_with_the_order():
    x = np.arange(256, dtype=np.float32)
    outs = {}
    for s, seed in SCHEDULES:
        with pc.emulate(s, seed):
            outs[(s, seed)] = selftest("reverse_no_barrier", x, 256, 1)
            good = selftest("reverse", x, 256, 1)
        np.testing.assert_array_equal(good, x[::-1])
    fwd, rev = outs[("forward", 0)], outs[("reverse", 0)]
    # a thread reads a slot another thread has not written yet: NaN, in a place that depends on the order
    assert np.isnan(fwd).any() and np.isnan(rev).any()
    assert not np.array_equal(np.isnan(fwd), np.isnan(rev))


def test_planted_early_return_before_a_barrier_raises():
    with pc.emulate(), pytest.raises(RuntimeError, match=r"thread \(3, 0, 0\).*barrier divergence"):
        selftest("early_return", np.zeros(64, np.float32), 64, 1)


@pytest.mark.parametrize("name,threads,match", [
    ("warp_sum_full_mask", 48, "names lane 16.*not the live lanes"),
    ("deadlock", 64, "deadlock"),
    ("big_shared", 32, "shared memory: 65536 static"),
    ("reverse", 2048, "2048 threads per block"),
])
def test_planted_collective_and_launch_errors_raise(name, threads, match):
    with pc.emulate(), pytest.raises(RuntimeError, match=match):
        selftest(name, np.zeros(threads, np.float32), threads, 1)


def test_cublas_stand_in_checks_leading_dimensions():
    assert gemm_status("T", "N", 7, 9, 5, 5, 5, 7) == "CUBLAS_STATUS_SUCCESS"
    assert gemm_status("T", "N", 7, 9, 5, 4, 5, 7) == "CUBLAS_STATUS_INVALID_VALUE"   # lda < k
    assert gemm_status("N", "N", 7, 9, 5, 7, 4, 7) == "CUBLAS_STATUS_INVALID_VALUE"   # ldb < k
    assert gemm_status("N", "N", 7, 9, 5, 7, 5, 6) == "CUBLAS_STATUS_INVALID_VALUE"   # ldc < m
    assert gemm_status("N", "N", -1, 9, 5, 7, 5, 7) == "CUBLAS_STATUS_INVALID_VALUE"


def test_planted_wrong_leading_dimension_in_the_engine_raises():
    U, V, X, _y = make_model([3, 2], 6, 4, 5)
    e = pc.Engine(offsets_of([3, 2]), 6, 4)
    e.plant_bug(1)
    with pc.emulate(), pytest.raises(RuntimeError, match=r"sgemm \(Z = X U\^T\): CUBLAS_STATUS_INVALID_VALUE"):
        e.forward(U, V, X)


# ---------------------------------------------------------------- the engine against the twins
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("B", [1, 7])
def test_forward_backward_match_the_twin(layout, B):
    widths, d, k = LAYOUTS[layout]
    off = offsets_of(widths)
    U, V, X, _y = make_model(widths, d, k, B, seed=B)
    m32, m64 = twins(U, V, off)
    e = pc.Engine(off, d, k)
    with pc.emulate() as em:
        out = e.forward(U, V, X)
        G = np.random.default_rng(5).standard_normal(out.shape).astype(np.float32)
        gU, gV, gX = e.backward(U, V, X, G)
    assert em.launches >= 2
    assert_tolerance(out, ref.forward(m32, X).numpy(), ref.forward(m64, X.astype(np.float64)).numpy(), "forward")
    r32 = ref.backward(m32, X, G)
    r64 = ref.backward(m64, X.astype(np.float64), G.astype(np.float64))
    for name, got, a, b in zip(("gU", "gV", "gX"), (gU, gV, gX), r32, r64):
        assert_tolerance(got, a, b, name)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
def test_loss_and_grad_match_the_twin(layout, loss):
    widths, d, k = LAYOUTS[layout]
    off = offsets_of(widths)
    B = 6
    U, V, X, y = make_model(widths, d, k, B, seed=11)
    weights = None
    if loss == "squared":
        rng = np.random.default_rng(2)
        y = rng.standard_normal((B, k)).astype(np.float32)
        weights = (rng.random((B, k)) > 0.3).astype(np.float32)
    m32, m64 = twins(U, V, off)
    e = pc.Engine(off, d, k, loss=loss)
    with pc.emulate():
        L, gU, gV = e.loss_and_grad(U, V, X, y, weights)
    w64 = None if weights is None else weights.astype(np.float64)
    y64 = y if loss == "cross_entropy" else y.astype(np.float64)
    l32, u32, v32 = ref.loss_and_grad(m32, X, y, weights, loss)
    l64, u64, v64 = ref.loss_and_grad(m64, X.astype(np.float64), y64, w64, loss)
    assert_tolerance(L, l32, l64, "loss")
    assert_tolerance(gU, u32, u64, "gU")
    assert_tolerance(gV, v32, v64, "gV")


def _nesterov(modules, lr, mom, wd):
    """torch.optim.SGD(nesterov=True) with a parameter group per network (momentum 0 in a group is
    plain SGD, as in the engine's rule)."""
    groups = [{"params": list(m.parameters()), "lr": float(lr[i]), "momentum": float(mom[i]),
               "weight_decay": float(wd[i])} for i, m in enumerate(modules)]
    return torch.optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True)


@pytest.mark.parametrize("rule", ["momentum_sgd", "nesterov_sgd", "path_sgd"])
def test_three_steps_match_the_twin(rule):
    widths, d, k = LAYOUTS["mixed"]
    widths = widths[:20] + [200]  # keep the twin's per-network loop short
    off = offsets_of(widths)
    N, B = len(widths), 5
    U, V, X, y = make_model(widths, d, k, B, seed=4)
    lr = np.linspace(0.05, 0.2, N)
    mom = np.where(np.arange(N) % 3 == 0, 0.0, 0.9)
    wd = np.where(np.arange(N) % 2 == 0, 0.0, 1e-2)
    m32, m64 = twins(U, V, off)
    if rule != "path_sgd":
        make = ref.make_sgd if rule == "momentum_sgd" else _nesterov
        o32, o64 = make(m32, lr, mom, wd), make(m64, lr, mom, wd)
        run32, run64 = (lambda: ref.step(m32, o32, X, y)), (lambda: ref.step(m64, o64, X.astype(np.float64), y))
    else:
        t32, t64 = ref.PathSGDTwin(m32, lr, mom, wd), ref.PathSGDTwin(m64, lr, mom, wd)
        run32, run64 = (lambda: t32.step(X, y)), (lambda: t64.step(X.astype(np.float64), y))
    e = pc.Engine(off, d, k)
    sU, sV = np.zeros_like(U), np.zeros_like(V)
    for _ in range(3):
        with pc.emulate():
            L = e.step(U, V, X, y, rule, sU, sV, lr, mom, wd)
        l32, l64 = run32(), run64()
        assert_tolerance(L, l32, l64, "loss")
    for got, a, b in zip((U, V), ref.packed_weights(m32), ref.packed_weights(m64)):
        assert_tolerance(got, a, b, rule)


def test_ddp_step_applies_its_scaling():
    widths, d, k = [4, 1, 6], 5, 3
    off = offsets_of(widths)
    U, V, X, y = make_model(widths, d, k, 6, seed=8)
    rng = np.random.default_rng(1)
    qU, qV = rng.random(U.shape).astype(np.float32), rng.random(V.shape).astype(np.float32)
    lr, wd = np.array([0.1, 0.2, 0.3]), np.array([0.0, 1e-2, 0.0])
    e = pc.Engine(off, d, k)
    U64, V64 = U.astype(np.float64), V.astype(np.float64)
    _, u64, v64 = ref.loss_and_grad(ref.modules_from_packed(U64, V64, off), X.astype(np.float64), y)
    _, u32, v32 = ref.loss_and_grad(ref.modules_from_packed(U, V, off, dtype=torch.float32), X, y)
    unit_lr = np.repeat(lr, widths)[:, None]
    unit_wd = np.repeat(wd, widths)[:, None]
    want64 = (U64 - unit_lr * (u64 + unit_wd * U64) * qU, V64 - unit_lr * (v64 + unit_wd * V64) * qV)
    lr32, wd32 = unit_lr.astype(np.float32), unit_wd.astype(np.float32)  # the same formula in float32
    want32 = (U - lr32 * ((u32 + wd32 * U) * qU), V - lr32 * ((v32 + wd32 * V) * qV))
    with pc.emulate():
        e.step(U, V, X, y, "ddp_sgd", qU, qV, lr, 0.0, wd)
    assert_tolerance(U, want32[0], want64[0], "U")
    assert_tolerance(V, want32[1], want64[1], "V")


def test_evaluate_matches_the_twin_in_blocks():
    widths, d, k = [1, 5, 12], 7, 4
    off = offsets_of(widths)
    U, V, X, y = make_model(widths, d, k, 23, seed=6)
    e = pc.Engine(off, d, k)
    with pc.emulate():
        L1, E1 = e.evaluate(U, V, X, y, block=1000)
        L5, E5 = e.evaluate(U, V, X, y, block=5)
    err64, loss64 = ref.evaluate(ref.modules_from_packed(U.astype(np.float64), V.astype(np.float64), off),
                                 X.astype(np.float64), y)
    _, loss32 = ref.evaluate(ref.modules_from_packed(U, V, off, dtype=torch.float32), X, y)
    np.testing.assert_array_equal(E1, np.round(err64 * 23).astype(np.int64))
    np.testing.assert_array_equal(E5, E1)
    assert_tolerance(L1 / 23, loss32, loss64, "evaluate loss")
    assert_tolerance(L5 / 23, loss32, loss64, "evaluate loss in blocks")


# ---------------------------------------------------------------- the engine against itself
def _step_all(e, U, V, X, y, sU, sV):
    N = e.N
    L = e.step(U, V, X, y, "path_sgd", sU, sV, np.full(N, 0.1), np.full(N, 0.9), np.full(N, 1e-3))
    out = e.forward(U, V, X)
    return L, out


def test_bits_are_the_same_in_every_order_and_run():
    widths, d, k = [1, 3, 40, 2], 5, 13
    off = offsets_of(widths)
    U0, V0, X, y = make_model(widths, d, k, 9, seed=12)
    results = []
    for s, seed in SCHEDULES + [("forward", 0)]:
        U, V = U0.copy(), V0.copy()
        sU, sV = np.zeros_like(U), np.zeros_like(V)
        with pc.emulate(s, seed, threads=2):
            e = pc.Engine(off, d, k)
            for _ in range(2):
                L, out = _step_all(e, U, V, X, y, sU, sV)
            gU, gV, gX = e.backward(U, V, X, out)
        results.append([L, out, U, V, sU, sV, gU, gV, gX])
    for r in results[1:]:
        for a, b in zip(results[0], r):
            np.testing.assert_array_equal(a, b)


def test_alone_and_packed_give_the_same_bits():
    widths, d, k = [2, 7, 1, 33], 6, 5
    off = offsets_of(widths)
    U, V, X, y = make_model(widths, d, k, 8, seed=13)
    G = np.random.default_rng(0).standard_normal((len(widths), 8, k)).astype(np.float32)
    with pc.emulate():
        e = pc.Engine(off, d, k)
        out = e.forward(U, V, X)
        L, gU, gV = e.loss_and_grad(U, V, X, y)
        bU, bV, _ = e.backward(U, V, X, G, input_grad=False)
        for n, (a, b) in enumerate(zip(off[:-1], off[1:])):
            one = pc.Engine([0, b - a], d, k)
            u, v = U[a:b].copy(), V[a:b].copy()
            np.testing.assert_array_equal(one.forward(u, v, X)[0], out[n])
            l1, u1, v1 = one.loss_and_grad(u, v, X, y)
            np.testing.assert_array_equal(l1[0], L[n])
            np.testing.assert_array_equal(u1, gU[a:b])
            np.testing.assert_array_equal(v1, gV[a:b])
            c1, c2, _ = one.backward(u, v, X, G[n:n + 1].copy(), input_grad=False)
            np.testing.assert_array_equal(c1, bU[a:b])
            np.testing.assert_array_equal(c2, bV[a:b])


@pytest.mark.parametrize("rule", ["momentum_sgd", "nesterov_sgd", "path_sgd", "ddp_sgd"])
@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
def test_fused_step_equals_loss_and_grad_then_apply_update(rule, loss):
    widths, d, k = [3, 1, 9], 5, 13
    off = offsets_of(widths)
    N, B = len(widths), 4
    U, V, X, y = make_model(widths, d, k, B, seed=21)
    weights = None
    if loss == "squared":
        y = np.random.default_rng(9).standard_normal((B, k)).astype(np.float32)
        weights = np.random.default_rng(10).random((B, k)).astype(np.float32)
    rng = np.random.default_rng(3)
    s0U, s0V = rng.random(U.shape).astype(np.float32), rng.random(V.shape).astype(np.float32)
    lr, wd = np.array([0.1, 0.2, 0.05]), np.array([0.0, 1e-2, 1e-3])
    mom = np.zeros(N) if rule == "ddp_sgd" else np.array([0.0, 0.9, 0.5])
    e = pc.Engine(off, d, k, loss=loss)
    with pc.emulate():
        U1, V1, sU1, sV1 = U.copy(), V.copy(), s0U.copy(), s0V.copy()
        L1 = e.step(U1, V1, X, y, rule, sU1, sV1, lr, mom, wd, weights=weights)
        U2, V2, sU2, sV2 = U.copy(), V.copy(), s0U.copy(), s0V.copy()
        L2, gU, gV = e.loss_and_grad(U2, V2, X, y, weights)
        e.apply_update(U2, V2, gU, gV, rule, sU2, sV2, lr, mom, wd)
    for a, b in zip((L1, U1, V1, sU1, sV1), (L2, U2, V2, sU2, sV2)):
        np.testing.assert_array_equal(a, b)


def test_device_memory_is_freed_and_workspaces_poisoned():
    before = live_allocations()
    widths, d, k = [2, 3], 4, 3
    U, V, X, _y = make_model(widths, d, k, 3)
    with pc.emulate():
        e = pc.Engine(offsets_of(widths), d, k)
        e.forward(U, V, X)
        assert live_allocations() == before + 2  # the layout on the device
        del e
    assert live_allocations() == before


def test_bad_input_names_the_argument():
    widths, d, k = [2, 3], 4, 3
    U, V, X, y = make_model(widths, d, k, 3)
    e = pc.Engine(offsets_of(widths), d, k)
    with pytest.raises(ValueError, match="U: expected shape"):
        e.forward(U[:4], V, X)
    with pytest.raises(TypeError, match="X: expected dtype float32"):
        e.forward(U, V, X.astype(np.float64))
    with pytest.raises(ValueError, match=r"y: expected labels in \[0, 3\)"):
        e.loss_and_grad(U, V, X, np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="offsets: expected strictly increasing"):
        pc.Engine([0, 2, 2], d, k)
    with pytest.raises(ValueError, match="schedule: expected one of"):
        pc.emulate("sideways")
    with pytest.raises(ValueError, match="momentum: DDP-SGD has no momentum"):
        e.step(U, V, X, y, "ddp_sgd", np.zeros_like(U), np.zeros_like(V), 0.1, 0.9)


def test_status_and_build_config_say_what_was_built():
    cfg = pc.build_config()
    assert cfg["cuda_emulated"] is True
    assert cfg["cuda"] == (pc._native() is not None)
    if pc._native() is None:
        assert not pc.is_available()
        assert "not built" in pc.status()


# ---------------------------------------------------------------- Theorem 1 and measures
def test_rescalings_and_measures_match_the_cpu_and_the_twin():
    widths, d, k = [1, 4, 9, 2], 6, 5
    off = offsets_of(widths)
    U, V, _, _ = make_model(widths, d, k, 1, seed=30)
    U[2] = 0.0   # a zero unit: balance zeroes it, normalize_units zeroes its v
    V[5] = 0.0
    e = pc.Engine(off, d, k)
    cpu = pyireg.PackedMLP(widths, d, k, seed=0)
    eps = np.finfo(np.float32).eps
    for how, twin, zeros in (("balance", ref.balance, 2), ("normalize_units", ref.normalize_units, 1)):
        u, v = U.copy(), V.copy()
        with pc.emulate():
            assert getattr(e, how)(u, v) == zeros
        r64 = twin(U, V)
        for got, want in zip((u, v), r64):   # one rounding of the float64 rescaling
            assert np.all(np.abs(got - want) <= eps * np.abs(want))
        cpu.U[:], cpu.V[:] = U, V
        assert getattr(cpu, how)() == zeros
        np.testing.assert_array_equal(u, cpu.U)   # the CPU's formulas, summed in the same order
        np.testing.assert_array_equal(v, cpu.V)
    with pc.emulate():
        got = e.measures(U, V)
    want = ref.measures(U, V, off)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, err_msg=name)


def test_float64_rescalings_and_measures_match_the_cpu_bit_for_bit_at_extreme_scales():
    """float64 rows with full mantissas (the products of the row norms are not exact: fused and
    unfused sums differ, so both engines use the same fused sum) and units at 1e+-160: squared
    norms over- and underflow there (balance zeroed u = 1e-170, v = 1e170 and gave NaN for
    u = 1e160, v = 1e-160; group_l1 NaN); the row norms fall back to scaled sums."""
    widths, d, k = [3, 2, 4], 5, 2
    off = offsets_of(widths)
    rng = np.random.default_rng(7)
    U, V = rng.standard_normal((9, d)), rng.standard_normal((9, k))
    U[1], V[1] = U[1] * 1e-170, V[1] * 1e170
    U[4], V[4] = U[4] * 1e160, V[4] * 1e-160
    U[6] *= 1e150
    x = rng.standard_normal((3, d))
    e = pc.Engine(off, d, k, dtype=np.float64)
    for how in ("balance", "normalize_units"):
        cpu = pyireg.PackedMLP.from_weights(widths, U.copy(), V.copy(), dtype="float64")
        before = cpu.forward(x)
        assert getattr(cpu, how)() == 0
        np.testing.assert_allclose(cpu.forward(x), before, rtol=1e-12)      # the function is unchanged
        u, v = U.copy(), V.copy()
        with pc.emulate():
            assert getattr(e, how)(u, v) == 0
        np.testing.assert_array_equal(u, cpu.U)
        np.testing.assert_array_equal(v, cpu.V)
    cpu = pyireg.PackedMLP.from_weights(widths, U.copy(), V.copy(), dtype="float64")
    native = cpu._engine.measures(cpu.U, cpu.V)
    with pc.emulate():
        got = e.measures(U, V)
    for name in ("group_l1", "path_l2", "path_l1", "norm_U", "norm_V"):
        np.testing.assert_array_equal(got[name], native[name], err_msg=name)
        assert np.isfinite(native[name]).all(), name

    def scaled_norm(a):                     # ||a||_2 without overflow: numpy's would overflow too
        m = np.abs(a).max()
        return m * np.sqrt(((a / m) ** 2).sum())
    for n, (h0, h1) in enumerate(zip(off[:-1], off[1:])):
        np.testing.assert_allclose(native["norm_U"][n], scaled_norm(U[h0:h1]), rtol=1e-12)
        uv = np.array([scaled_norm(U[h]) * scaled_norm(V[h]) for h in range(h0, h1)])
        np.testing.assert_allclose(native["path_l2"][n], scaled_norm(uv), rtol=1e-12)
    n1 = np.linalg.norm(U[1] * 1e170) * np.linalg.norm(V[1] * 1e-170)     # unit 1 at a normal scale
    rest = sum(np.linalg.norm(U[h]) * np.linalg.norm(V[h]) for h in (0, 2))
    np.testing.assert_allclose(native["group_l1"][0], n1 + rest, rtol=1e-12)


def test_ddp_scale_and_unit_moments_match_the_twin():
    widths, d, k, B = [1, 5, 12, 3], 7, 4, 9
    off = offsets_of(widths)
    U, V, X, _ = make_model(widths, d, k, B, seed=31)
    alpha = np.array([0.0, 0.3, 1.0, 0.7])
    e = pc.Engine(off, d, k)
    with pc.emulate():
        kU, kV = e.ddp_scale(U, V, X, alpha)
        z2, a2 = e.unit_moments(U, X, block=4)
    unit_alpha = np.repeat(alpha, widths)
    inv = [[ref._inverse(torch.as_tensor(kappa)).numpy() for kappa in ref.ddp_kappa(U, V, X, unit_alpha, dtype=dt)]
           for dt in (torch.float32, torch.float64)]
    assert_tolerance(kU, inv[0][0], inv[1][0], "kU")
    assert_tolerance(kV, inv[0][1], inv[1][1], "kV")
    Z64, Z32 = X.astype(np.float64) @ U.T.astype(np.float64), (torch.as_tensor(X) @ torch.as_tensor(U).T).double()
    assert_tolerance(z2, (Z32 ** 2).sum(0).numpy(), (Z64 ** 2).sum(0), "z2")
    assert_tolerance(a2, (torch.relu(Z32) ** 2).sum(0).numpy(), (np.maximum(Z64, 0) ** 2).sum(0), "a2")
    # the DDP rule's state from this scaling: a step at alpha = 1 is Path-SGD's with momentum 0
    one = np.ones(len(widths))
    with pc.emulate():
        qU, qV = e.ddp_scale(U, V, X, one)
        u1, v1 = U.copy(), V.copy()
        e.step(u1, v1, X, np.zeros(B, np.int64), "ddp_sgd", qU, qV, 0.1, 0.0, 0.0)
        u2, v2 = U.copy(), V.copy()
        e.step(u2, v2, X, np.zeros(B, np.int64), "path_sgd", np.zeros_like(U), np.zeros_like(V), 0.1, 0.0, 0.0)
    np.testing.assert_array_equal(u1, u2)
    np.testing.assert_array_equal(v1, v2)


def test_the_engines_layout_is_checked_against_the_memory_limit_first():
    """pyireg.cuda.Engine built a layout of 2**22 units under a 1 MiB limit (PackedMLP refuses
    the same layout); the check now comes before the engine allocates."""
    old = pyireg.memory_limit()
    pyireg.set_memory_limit(1 << 20)
    try:
        with pytest.raises(MemoryError, match="offsets: the layout of 4194304 units needs about"):
            pc.Engine(np.array([0, 2**22]), 1, 1)
        with pytest.raises(MemoryError):
            pyireg.PackedMLP([2**22], 1, 1)
    finally:
        pyireg.set_memory_limit(old)
    pc.Engine(np.array([0, 2**22]), 1, 1)       # fits the default limit
