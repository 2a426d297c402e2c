"""Sizes are checked before anything large is allocated: impossible models, batches and
evaluations raise MemoryError with the estimate; construction peaks near the final weights."""
import json
import resource
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pyireg
from pyireg import _core


@pytest.fixture
def limit():
    """Restores the default memory limit after a test that sets one."""
    yield pyireg.set_memory_limit
    pyireg.set_memory_limit(0)


def _maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_huge_model_fails_before_allocating():
    before = _maxrss_mb()
    with pytest.raises(MemoryError,
                       match=r"a model of 1099511627776 hidden units x \(1 \+ 1\) weights needs about 8\.0 TiB"):
        pyireg.PackedMLP([2 ** 40], 1, 1)
    with pytest.raises(MemoryError, match="does not fit in 64 bits"):
        pyireg.PackedMLP([2 ** 62, 2 ** 62], 4, 1)
    with pytest.raises(MemoryError, match="weights needs about"):
        pyireg.PackedMLP([1000] * 10 ** 6, 10 ** 4, 10)
    assert _maxrss_mb() - before < 64          # nothing large was touched


def test_memory_limit_applies_to_models_batches_and_evaluations(limit):
    model = pyireg.PackedMLP([100, 200], 50, 10)       # 300 x 60 x 4 bytes = 72 kB of weights
    X = np.zeros((4000, 50), np.float32)
    y = np.zeros(4000, int)
    limit(1 << 20)
    assert pyireg.memory_limit() == 1 << 20
    with pytest.raises(MemoryError, match="a model of 30000 hidden units"):
        pyireg.PackedMLP([30000], 50, 10)
    with pytest.raises(MemoryError, match="the forward scratch for a batch of 4000 needs about"):
        model.forward(X)
    with pytest.raises(MemoryError, match="the training scratch for a batch of 4000 needs about"):
        model.loss_and_grad(X, y)
    with pytest.raises(MemoryError, match="the training scratch for a batch of 4000"):
        pyireg.MomentumSGD(model, 0.1).step(X, y)
    with pytest.raises(MemoryError, match="the backward scratch for a batch of 4000"):
        model.backward(X, np.zeros((2, 4000, 10), np.float32), need_U=False, need_V=False)
    # evaluation streams in blocks: its scratch depends on the block, not on the data set
    err, loss = model.evaluate(X, y, batch_size=64)
    with pytest.raises(MemoryError, match="the evaluation scratch for blocks of 4000"):
        model.evaluate(X, y, batch_size=4000)
    limit(0)
    assert pyireg.memory_limit() > 1 << 20
    with pytest.raises(ValueError, match="bytes: expected a positive memory limit"):
        pyireg.set_memory_limit(-1)


def test_private_engine_validates_sizes():
    off = np.array([0, 3], np.int64)
    with pytest.raises(ValueError, match=r"chunk_units: expected an integer in \[1, 65536\]"):
        _core.EngineF32(off, 4, 2, "relu", "cross_entropy", 2 ** 62, 8192)
    with pytest.raises(ValueError, match="chunk_units"):
        _core.EngineF32(off, 4, 2, "relu", "cross_entropy", 0, 8192)
    with pytest.raises(ValueError, match="group_units"):
        _core.EngineF32(off, 4, 2, "relu", "cross_entropy", 192, -5)
    with pytest.raises(ValueError, match="d: expected a positive number"):
        _core.EngineF32(off, 0, 2)
    eng = _core.EngineF32(off, 4, 2)
    U, V = np.zeros((3, 4), np.float32), np.zeros((3, 2), np.float32)
    empty = np.zeros((0, 4), np.float32)
    with pytest.raises(ValueError, match="X: expected at least one sample"):
        eng.forward(U, V, empty)
    with pytest.raises(ValueError, match="X: expected at least one sample"):
        eng.loss_and_grad(U, V, empty, np.zeros(0, np.int32), None, np.empty_like(U), np.empty_like(V))
    with pytest.raises(ValueError, match="X: expected at least one sample"):
        eng.step(U, V, empty, np.zeros(0, np.int32), None, "momentum_sgd", np.zeros_like(U), np.zeros_like(V),
                 np.zeros(1, np.float32), np.zeros(1, np.float32), np.zeros(1, np.float32))


def test_model_construction_peaks_within_1_25x_its_weights():
    """Peak resident memory of building a ~400 MB model, in a fresh process."""
    code = textwrap.dedent("""
        import json, resource
        import numpy as np
        import pyireg
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * resource.getpagesize()
        before = rss()
        resource_peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        m = pyireg.PackedMLP([250000, 250000, 500000], 90, 10, seed=0)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"before": max(before, resource_peak_before), "peak": peak,
                          "weights": m.U.nbytes + m.V.nbytes}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    assert (r["peak"] - r["before"]) <= 1.25 * r["weights"], r


def _reference_init(widths, d, k, seed, dtype, init_std=None):
    """The initial weights as they were drawn before the bulk path: one Generator per network,
    child n of SeedSequence(seed), U's rows then V's rows, scaled in float64."""
    N = len(widths)
    U = np.empty((sum(widths), d), dtype)
    V = np.empty((sum(widths), k), dtype)
    std_u = np.full(N, 1 / np.sqrt(d)) if init_std is None else np.broadcast_to(init_std, (N,))
    std_v = 1 / np.sqrt(np.asarray(widths, np.float64)) if init_std is None else np.broadcast_to(init_std, (N,))
    at = 0
    for n, (child, H) in enumerate(zip(np.random.SeedSequence(seed).spawn(N), widths)):
        rng = np.random.default_rng(child)
        U[at:at + H] = rng.standard_normal((H, d)) * std_u[n]
        V[at:at + H] = rng.standard_normal((H, k)) * std_v[n]
        at += H
    return U, V


@pytest.mark.parametrize("widths,d,k,seed,dtype,init_std", [
    ([1] * 3000, 10, 2, 0, np.float32, None),
    ([1, 2, 3, 40, 1, 5] * 60 + [1000], 7, 3, 123, np.float32, None),
    ([2] * 500 + [1] * 500, 1, 1, 2 ** 70 + 5, np.float64, None),
    ([3, 1] * 400, 5, 10, 9, np.float32, 0.3),
])
def test_bulk_initialization_draws_the_numbers_of_one_generator_per_network(widths, d, k, seed, dtype, init_std):
    model = pyireg.PackedMLP(widths, d, k, seed=seed, dtype=dtype, init_std=init_std)
    U, V = _reference_init(widths, d, k, seed, dtype, init_std)
    np.testing.assert_array_equal(model.U, U)
    np.testing.assert_array_equal(model.V, V)


def test_a_million_width_one_networks_build_quickly_and_the_estimate_counts_per_network_arrays():
    import time
    t = time.perf_counter()
    model = pyireg.PackedMLP([1] * 10 ** 6, 10, 2, seed=4)
    took = time.perf_counter() - t
    U, V = _reference_init([1] * 2000, 10, 2, 4, np.float32)       # the first networks, as drawn alone
    np.testing.assert_array_equal(model.U[:2000], U[:2000])
    assert took < 60, took          # 33.5 s before on an idle machine; about 2 s now (not a timing test)
    old = pyireg.memory_limit()
    try:
        # 10^6 width-1 networks (d=10, k=2): 46 MiB of weights and a 92 MiB plan each fit 150 MiB,
        # but not with the per-network arrays and the drawing buffers
        pyireg.set_memory_limit(150 * 2 ** 20)
        with pytest.raises(MemoryError, match="per-network arrays"):
            pyireg.PackedMLP([1] * 10 ** 6, 10, 2)
    finally:
        pyireg.set_memory_limit(old)


def test_an_input_conversion_is_checked_against_the_limit_before_it_allocates(limit):
    """A broadcast view of a few bytes standing for 3.1 GiB of float32 (and a 0.8 GiB
    finiteness mask) is refused before the copy and the mask are made."""
    model = pyireg.PackedMLP([2, 3], 100, 2)
    X = np.broadcast_to(np.zeros(100, np.float64), (2 ** 23, 100))
    limit(256 << 20)
    before = _maxrss_mb()
    with pytest.raises(MemoryError, match=r"X: converting \(8388608, 100\) float64 values to a C-contiguous float32 "
                                          r"array and checking them needs 3\.91 GiB, more than the memory limit"):
        model.forward(X)
    assert _maxrss_mb() - before < 64
    small = np.broadcast_to(np.ones(100), (4, 100))                 # within it: converted as before
    assert model.forward(small).shape == (2, 4, 2)
