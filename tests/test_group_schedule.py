"""The two schedules of a training pass give the same bits: whole groups of networks on one
thread each (no barrier inside a step, Plan::by_groups) and every group on all threads. Compared
on models whose engine is rebuilt with small groups, so that the by-group schedule is taken on
two threads, against one thread and against one group holding every unit; every rule, both
dtypes, both losses, the fused step and loss_and_grad, over several steps."""
import numpy as np
import pytest

import pyireg
from pyireg import _core

from helpers import make_data, simd_targets

_ENGINES = {np.dtype(np.float32): _core.EngineF32, np.dtype(np.float64): _core.EngineF64}
RULES = {
    "momentum_sgd": lambda m: pyireg.MomentumSGD(m, 0.05, 0.9, 1e-3),
    "sgd": lambda m: pyireg.MomentumSGD(m, 0.05, 0.0),
    "nesterov_sgd": lambda m: pyireg.NesterovSGD(m, 0.05, 0.9, 1e-3),
    "path_sgd": lambda m: pyireg.PathSGD(m, 0.01, momentum=0.5, weight_decay=1e-3),
    "ddp_sgd": lambda m: pyireg.DDPSGD(m, 0.01, alpha=0.3),
    "adam": lambda m: pyireg.Adam(m, 1e-3, weight_decay=1e-3),
    "adamw": lambda m: pyireg.AdamW(m, 1e-3),
}
# many networks of mixed widths (the by-group schedule), and awkward batch sizes
WIDTHS = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 7, 1, 64, 33, 100, 17, 250, 9, 40]


def _model(widths, d, k, dtype, loss, group_units, seed=4):
    m = pyireg.PackedMLP(widths, d, k, seed=seed, dtype=dtype, loss=loss)
    m._engine = _ENGINES[m.dtype](m.offsets, d, k, "relu", loss, 16, group_units)
    return m


def _train(widths, d, k, B, dtype, loss, rule, group_units, threads, steps=3):
    before = _core.get_num_threads()
    _core.set_num_threads(threads)
    try:
        m = _model(widths, d, k, dtype, loss, group_units)
        rng = np.random.default_rng(5)
        X = rng.standard_normal((B, d))
        y = rng.integers(0, k, B) if loss == "cross_entropy" else rng.standard_normal((B, k))
        opt = RULES[rule](m)
        out = [opt.step(X, y) for _ in range(steps)]
        out += [*m.loss_and_grad(X, y), m.U, m.V]
        return out, m._engine.runs_by_groups(threads)
    finally:
        _core.set_num_threads(before)


SERIAL_WORK = 1 << 22    # the engine runs a call below S x B x (d + k) = 2^22 on one thread


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("dtype,loss,d,k,B", [("float32", "cross_entropy", 11, 10, 100),
                                              ("float64", "squared", 16, 3, 65),
                                              ("float32", "squared", 300, 1, 3),
                                              ("float64", "cross_entropy", 5, 13, 129)])
def test_by_group_schedule_gives_the_bits_of_the_phase_schedule(rule, dtype, loss, d, k, B):
    widths = WIDTHS * 8
    assert sum(widths) * B * (d + k) >= SERIAL_WORK        # so the pass really runs on two threads
    small, by_groups = _train(widths, d, k, B, dtype, loss, rule, 16, 2)
    assert by_groups, "the test model should take the by-group schedule on two threads"
    one_thread, by1 = _train(widths, d, k, B, dtype, loss, rule, 16, 1)
    one_group, by_one = _train(widths, d, k, B, dtype, loss, rule, 1 << 20, 2)
    assert not by1 and not by_one
    for name, other in (("one thread", one_thread), ("one group", one_group)):
        assert len(small) == len(other)
        for i, (a, b) in enumerate(zip(small, other)):
            np.testing.assert_array_equal(a, b, err_msg=f"{name}: result {i}")


@pytest.mark.parametrize("simd", simd_targets())
def test_by_group_schedule_on_every_simd_target(simd):
    _core.set_simd(simd)
    assert sum(WIDTHS * 3) * 100 * 40 >= SERIAL_WORK
    a, by = _train(WIDTHS * 3, 30, 10, 100, "float32", "cross_entropy", "momentum_sgd", 64, 2, steps=5)
    b, _ = _train(WIDTHS * 3, 30, 10, 100, "float32", "cross_entropy", "momentum_sgd", 1 << 20, 1, steps=5)
    assert by
    for x, z in zip(a, b):
        np.testing.assert_array_equal(x, z)


def test_the_schedule_choice():
    """By groups only where the groups spread evenly over the threads."""
    mk = lambda widths, g: _core.EngineF32(np.concatenate([[0], np.cumsum(widths)]).astype(np.int64),  # noqa: E731
                                           4, 2, "relu", "cross_entropy", 16, g)
    many = mk([10] * 400, 32)
    assert many.runs_by_groups(2) and many.runs_by_groups(8)
    assert not many.runs_by_groups(1)                       # one thread: nothing to schedule
    assert not mk([5000], 32).runs_by_groups(2)              # one network is one group
    assert not mk([5000, 10, 10, 10], 32).runs_by_groups(2)  # one group holds most units
    assert mk([1000, 1000], 32).runs_by_groups(2)            # two equal groups, two threads
    assert not mk([1000, 1000, 1000], 32).runs_by_groups(2)  # 2 to 1: a third idle
    assert not mk([10] * 100, 1 << 20).runs_by_groups(2)     # one group of everything


def test_by_group_step_from_python_threads_while_another_model_trains():
    """Two models stepping at once from two Python threads (each step opens its own team)."""
    import threading
    X, y = make_data(64, 12, 4, seed=1)
    results = {}

    def run(name):
        m = _model(WIDTHS, 12, 4, "float32", "cross_entropy", 16)
        opt = pyireg.MomentumSGD(m, 0.05, 0.9)
        results[name] = [opt.step(X, y) for _ in range(5)] + [m.U.copy()]

    before = _core.get_num_threads()
    _core.set_num_threads(2)
    try:
        ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=120)
        run("serial")
    finally:
        _core.set_num_threads(before)
    for i in range(2):
        for a, b in zip(results[i], results["serial"]):
            np.testing.assert_array_equal(a, b)


def test_the_memory_check_counts_every_thread_activation_buffer():
    """The scratch a by-group step grows stays within pass_bytes, which the engine checks against
    the memory limit before a pass allocates anything."""
    before = _core.get_num_threads()
    _core.set_num_threads(2)
    try:
        assert sum(WIDTHS * 4) * 100 * 40 >= SERIAL_WORK
        m = _model(WIDTHS * 4, 30, 10, "float32", "cross_entropy", 16)
        assert m._engine.runs_by_groups(2)
        X, y = make_data(100, 30, 10, seed=2)
        opt = pyireg.MomentumSGD(m, 0.05, 0.9)
        for _ in range(2):
            opt.step(X, y)
        assert 0 < m._engine.workspace_bytes <= m._engine.pass_bytes(100)
    finally:
        _core.set_num_threads(before)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backward_by_groups_gives_the_bits_of_one_thread(dtype):
    """backward without the input gradient runs by groups too: gU and gV, with the activations
    recomputed or kept by forward, equal one thread's and one group's; with the input gradient
    (a sum over every network) the phase schedule."""
    rng = np.random.default_rng(3)
    widths, d, k, B = WIDTHS * 4, 30, 10, 101
    assert sum(widths) * B * (d + k) >= SERIAL_WORK
    X = rng.standard_normal((B, d))
    G = rng.standard_normal((len(widths), B, k))

    def run(threads, group_units):
        before = _core.get_num_threads()
        _core.set_num_threads(threads)
        try:
            m = _model(widths, d, k, dtype, "cross_entropy", group_units)
            out = list(m.backward(X, G, need_X=False))
            act = np.empty((m.offsets[-1], m._engine.activation_columns(B)), dtype=m.dtype)
            m._engine.forward(m.U, m.V, np.asarray(X, m.dtype), act)
            gU, gV = np.empty_like(m.U), np.empty_like(m.V)
            m._engine.backward(m.U, m.V, np.asarray(X, m.dtype), np.asarray(G, m.dtype), gU, gV, None, act)
            out += [gU, gV, *m.backward(X, G)]
            return out, m._engine.runs_by_groups(threads)
        finally:
            _core.set_num_threads(before)
    two, by = run(2, 16)
    assert by
    for other in (run(1, 16)[0], run(2, 1 << 20)[0]):
        for i, (a, b) in enumerate(zip(two, other)):
            np.testing.assert_array_equal(a, b, err_msg=f"result {i}")
