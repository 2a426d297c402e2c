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
    with pytest.raises(MemoryError, match=r"a model of 1099511627776 hidden units x \(1 \+ 1\) weights needs about 8\.0 TiB"):
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
