"""ConjugateGradient: monotone per-network objective, speed on a convex problem, alone vs packed,
one iteration against the float64 twin, state round trip and bad input."""
import numpy as np
import pytest
from helpers import make_data

from pyireg import PackedMLP
from pyireg.optim import MomentumSGD
from pyireg.optim.cg import ConjugateGradient
from pyireg.reference import ConjugateGradientTwin

WIDTHS = [1, 3, 7, 2, 16]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
def test_objective_never_increases(seed, loss):
    rng = np.random.default_rng(seed)
    d, k, B = 5, 3, 40
    X = rng.standard_normal((B, d)).astype(np.float32)
    y = rng.integers(0, k, B) if loss == "cross_entropy" else rng.standard_normal((B, k))
    m = PackedMLP(WIDTHS, d, k, loss=loss, seed=seed, init_std=rng.uniform(0.3, 3.0, len(WIDTHS)))
    lr = rng.uniform(0.01, 50.0, len(WIDTHS))          # some far too large on purpose
    opt = ConjugateGradient(m, lr=lr, weight_decay=rng.uniform(0, 1e-2, len(WIDTHS)), max_ls=rng.integers(1, 6, 5))
    prev, prev_after, first = None, None, None
    for _ in range(40):
        f = opt.step(X, y)
        assert np.all(np.isfinite(f))
        first = f if first is None else first
        if prev is not None:
            assert np.all(f <= prev), (f, prev)
            np.testing.assert_array_equal(f, prev_after)      # step returns the value before it
        prev, prev_after = f, opt.objective.copy()
        assert np.all(opt.objective[opt.accepted] <= f[opt.accepted])
        assert np.all(opt.objective[~opt.accepted] == f[~opt.accepted])
    # and it made progress: every network lowered its objective
    assert np.all(opt.objective < first)


def test_linear_least_squares_much_faster_than_gd():
    # linear activation, squared loss, ill-conditioned inputs: a least-squares problem in the
    # product U^T V (benign: every local minimum is global). CG against plain gradient descent
    # given the same number of full-batch passes (CG's line-search trials counted), GD with the
    # best of a ladder of step sizes.
    rng = np.random.default_rng(0)
    d, k, B = 20, 1, 200
    X = rng.standard_normal((B, d)) * np.linspace(0.1, 3, d)
    y = X @ rng.standard_normal((d, k))
    f0 = 0.5 * (y ** 2).sum(1).mean()
    m = PackedMLP([30], d, k, activation="linear", loss="squared", seed=0, init_std=0.3, dtype="float64")
    L = np.linalg.eigvalsh(X.T @ X / B).max()
    lrs = np.array([0.01, 0.03, 0.1, 0.3, 1.0]) / L
    gd_model = PackedMLP.from_weights([30] * 5, np.tile(m.U, (5, 1)), np.tile(m.V, (5, 1)),
                                      activation="linear", loss="squared")
    cg, gd = ConjugateGradient(m, lr=0.1), MomentumSGD(gd_model, lr=lrs, momentum=0.0)
    passes = 0
    for _ in range(60):
        cg.step(X, y)
        passes += 1 + int(cg.line_search_trials[0])
    for _ in range(passes):
        f_gd = gd.step(X, y)
    f_gd = np.nanmin(np.where(np.isfinite(f_gd), f_gd, np.nan))
    assert cg.objective[0] < 1e-5 * f0
    assert cg.objective[0] < 1e-3 * f_gd, (cg.objective, f_gd, passes)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_alone_vs_packed_identical(dtype):
    X, y = make_data(33, 7, 4, seed=3)
    packed = PackedMLP(WIDTHS, 7, 4, seed=5, dtype=dtype)
    lr = np.array([0.5, 2.0, 1.0, 8.0, 0.1])
    wd = np.array([0.0, 1e-3, 0.0, 1e-2, 0.0])
    opt = ConjugateGradient(packed, lr=lr, weight_decay=wd, restart=5)
    alone = []
    for i in range(len(WIDTHS)):
        Ui, Vi = packed.network(i)
        mi = PackedMLP.from_weights([WIDTHS[i]], Ui, Vi, dtype=dtype)
        alone.append((mi, ConjugateGradient(mi, lr=lr[i], weight_decay=wd[i], restart=5)))
    for _ in range(12):
        f = opt.step(X, y)
        for i, (mi, oi) in enumerate(alone):
            assert oi.step(X, y)[0] == f[i]
    for i, (mi, _) in enumerate(alone):
        Ui, Vi = packed.network(i)
        np.testing.assert_array_equal(Ui, mi.U)
        np.testing.assert_array_equal(Vi, mi.V)


@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_against_float64_twin(loss, activation):
    rng = np.random.default_rng(7)
    d, k, B = 5, 3, 25
    X = rng.standard_normal((B, d))
    y = rng.integers(0, k, B) if loss == "cross_entropy" else rng.standard_normal((B, k))
    m = PackedMLP([4, 1, 9], d, k, activation=activation, loss=loss, seed=1, dtype="float64")
    opt = ConjugateGradient(m, lr=[3.0, 0.5, 1.0], weight_decay=[1e-3, 0.0, 1e-2], restart=4, refine=[3, 0, 20])
    twins = [ConjugateGradientTwin(*m.network(i), lr=opt.lr[i], weight_decay=opt.weight_decay[i], restart=4,
                                   refine=int(opt.refine[i]), activation=activation, loss=loss) for i in range(3)]
    for it in range(8):
        f = opt.step(X, y)
        for i, t in enumerate(twins):
            ft = t.step(X, y)
            np.testing.assert_allclose(f[i], ft, rtol=1e-10, atol=1e-12)
            U, V = m.network(i)
            np.testing.assert_allclose(U, t.w[0].numpy(), rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(V, t.w[1].numpy(), rtol=1e-8, atol=1e-10)


def test_state_dict_resume_identical():
    X, y = make_data(30, 6, 3, seed=1)
    a = PackedMLP([2, 5, 3], 6, 3, seed=2)
    oa = ConjugateGradient(a, lr=1.0)
    for _ in range(4):
        oa.step(X, y)
    state = oa.state_dict()
    b = a.copy()
    ob = ConjugateGradient(b, lr=1.0)
    ob.load_state_dict(state)
    for _ in range(5):
        np.testing.assert_array_equal(oa.step(X, y), ob.step(X, y))
    np.testing.assert_array_equal(a.U, b.U)


def test_gradient_reuse_does_not_change_results():
    X, y = make_data(30, 6, 3, seed=1)
    a = PackedMLP([2, 5, 3], 6, 3, seed=2)
    b = a.copy()
    oa, ob = ConjugateGradient(a), ConjugateGradient(b, reuse_gradient=False)
    for _ in range(6):
        np.testing.assert_array_equal(oa.step(X, y), ob.step(X, y))
    a.U[0] *= 2          # weights changed from outside: the cache must not be used
    b.U[0] *= 2
    np.testing.assert_array_equal(oa.step(X, y), ob.step(X, y))


def test_bad_input():
    m = PackedMLP([2, 3], 4, 2)
    with pytest.raises(TypeError, match="model"):
        ConjugateGradient("x")
    with pytest.raises(ValueError, match="lr"):
        ConjugateGradient(m, lr=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        ConjugateGradient(m).momentum = 0.5
    with pytest.raises(ValueError, match="lr"):
        ConjugateGradient(m, lr=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="max_ls"):
        ConjugateGradient(m, max_ls=0)
    with pytest.raises(ValueError, match="refine"):
        ConjugateGradient(m, refine=-1)
    with pytest.raises(ValueError, match="c1"):
        ConjugateGradient(m, c1=0.0)
    with pytest.raises(ValueError, match="c2"):
        ConjugateGradient(m, c1=0.5, c2=0.4)
    with pytest.raises(ValueError, match="weight_decay"):
        ConjugateGradient(m, weight_decay=-1.0)
    opt = ConjugateGradient(m)
    with pytest.raises(ValueError, match="dU"):
        opt.load_state_dict({**opt.state_dict(), "dU": np.zeros((1, 1))})


def test_stalled_networks_stop_searching():
    # network 1 cannot pass Armijo (one trial of an absurd step per search, max_failures 2): it
    # stalls and keeps its weights; network 2 has a zero gradient and never searches; network 0
    # is unaffected (equal to a run alone)
    X, y = make_data(20, 4, 2, seed=4)
    m = PackedMLP([3, 3, 3], 4, 2, seed=1, dtype="float64")
    m.U[6:9] = 0
    alone = PackedMLP.from_weights([3], *m.network(0), dtype="float64")
    opt = ConjugateGradient(m, lr=[1.0, 1e12, 1.0], max_ls=[20, 1, 20], max_failures=2)
    oa = ConjugateGradient(alone, lr=1.0)
    before = m.network(1)
    for _ in range(6):
        opt.step(X, y)
        oa.step(X, y)
    assert opt.failures[1] == 2 and opt.stalled[1] and not opt.stalled[0]
    np.testing.assert_array_equal(m.network(1)[0], before[0])
    assert opt.line_search_trials[1] == 0 and opt.line_search_trials[2] == 0
    np.testing.assert_array_equal(m.network(0)[0], alone.U)
    opt.reset_state()
    assert not opt.stalled.any()


def test_lr_zero_freezes_a_network_and_nonfinite_objectives_are_diverged():
    """lr 0 (a schedule's end, or a network's epoch budget spent): that network does not move, the
    others do; a non-finite objective marks the network diverged, like the other optimizers."""
    X, y = make_data(30, 4, 2, seed=6)
    m = PackedMLP([3, 4], 4, 2, seed=2, dtype="float64")
    U0, V0 = m.U.copy(), m.V.copy()
    opt = ConjugateGradient(m, lr=[0.0, 1.0])
    assert opt.diverged.shape == (2,) and not opt.diverged.any() and (opt.momentum == 0).all()
    for _ in range(3):
        opt.step(X, y)
    np.testing.assert_array_equal(m.U[:3], U0[:3])
    np.testing.assert_array_equal(m.V[:3], V0[:3])
    assert not np.array_equal(m.U[3:], U0[3:]) and opt.steps == 3 and not opt.diverged.any()
    m.U[0, 0] = np.nan
    opt.step(X, y)
    assert opt.diverged.tolist() == [True, False]


def test_a_step_holds_the_models_writer_lock():
    """Like every optimizer's step, CG's waits for a compound read in progress (a copy, a
    pickle, measures) and writes nothing under it."""
    import threading
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 5)).astype(np.float32), rng.integers(0, 3, 64)
    m = PackedMLP([2, 4], 5, 3, seed=0)
    cg = ConjugateGradient(m, lr=0.1)
    U0 = m.U.copy()
    with m._lock.read():
        t = threading.Thread(target=cg.step, args=(X, y))
        t.start()
        t.join(timeout=0.5)
        assert t.is_alive() and np.array_equal(m.U, U0)       # waiting for the reader
    t.join(timeout=30)
    assert not t.is_alive() and not np.array_equal(m.U, U0)


def test_the_reused_gradient_sees_an_in_place_change_of_the_batch():
    """The objective and gradient of the last accepted point are reused only while X and y hold
    the same values: refilled in place, the step evaluates the new batch."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 5)).astype(np.float32), rng.integers(0, 3, 64)
    m = PackedMLP([2, 4], 5, 3, seed=0)
    cg = ConjugateGradient(m, lr=0.1)
    cg.step(X, y)
    X[:] = 10 * rng.standard_normal((64, 5))
    expected = m.copy().loss_and_grad(X, y)[0]
    np.testing.assert_array_equal(cg.step(X, y), expected)       # weight decay 0: the objective is the loss
    y[:5] = (y[:5] + 1) % 3
    expected = m.copy().loss_and_grad(X, y)[0]
    np.testing.assert_array_equal(cg.step(X, y), expected)


@pytest.mark.parametrize("in_place", [False, True])
def test_a_new_weight_decay_is_a_new_objective(in_place):
    """The reused objective and gradient belong to the weight decay they were computed with: a
    weight decay changed between steps (set, or changed in place) is the new objective's, as
    without reuse (before, every line search compared against the old objective and failed)."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((50, 4)), rng.integers(0, 3, 50)
    runs = []
    for reuse in (True, False):
        m = PackedMLP([4, 8], 4, 3, dtype="float64", seed=1)
        cg = ConjugateGradient(m, lr=1.0, reuse_gradient=reuse)
        cg.step(X, y)
        if in_place:
            cg.weight_decay[:] = 1.0
        else:
            cg.weight_decay = 1.0
        F = [cg.step(X, y) for _ in range(15)]
        want = m.copy().loss_and_grad(X, y)[0] + 0.5 * (np.add.reduceat((m.U ** 2).sum(1) + (m.V ** 2).sum(1),
                                                                        m.offsets[:-1]))
        runs.append((np.array(F), cg.stalled.copy(), cg.step(X, y), want))
    (F1, st1, last1, want1), (F0, st0, _, _) = runs
    np.testing.assert_array_equal(F1, F0)
    assert not st1.any() and not st0.any()
    np.testing.assert_allclose(last1, want1, rtol=1e-12)
