"""pytest-benchmark: one training step and one evaluation, native against the PyTorch ladder of
`pyireg bench` (the loop over widths, width buckets with a tuned bucket count, the packed
formulation by index_add and by embedding_bag, eager, and index_add under torch.compile), in
the same group. Every formulation starts from the same weights, and its first two steps' losses
must meet the tolerance rule of pyireg.testing against the float64 reference twin before it is
timed. Run: pytest benchmarks --benchmark-only (the full table with ratios to the matmul peak
comes from `pyireg bench`)."""
import numpy as np
import pytest
import torch

import pyireg
from pyireg import bench
from pyireg import reference as R

WIDTHS = {"dense256": list(range(1, 257)), "pow2": [2 ** i for i in range(13)]}


def _setup(widths):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 100)).astype(np.float32)
    y = rng.integers(0, 10, 100)
    return pyireg.PackedMLP(widths, 100, 10, seed=0), X, y


def _checked(name, step, model, X, y):
    """Three steps of ``step`` (the losses before each; the third sees the momentum) meet the
    rule; then it may be timed."""
    ref = bench.reference_losses(model, X, y, steps=3)
    bench.loss_check(name, [np.asarray(step(), dtype=np.float32) for _ in range(3)], ref)


@pytest.mark.parametrize("workload", sorted(WIDTHS))
def test_step_native(benchmark, workload):
    benchmark.group = f"train step {workload}"
    model, X, y = _setup(WIDTHS[workload])
    opt = pyireg.MomentumSGD(model.copy(), lr=bench.LR, momentum=bench.MOMENTUM)
    _checked("pyireg native", lambda: opt.step(X, y), model, X, y)
    benchmark(opt.step, X, y)


@pytest.mark.parametrize("workload", sorted(WIDTHS))
def test_step_torch_loop(benchmark, workload):
    benchmark.group = f"train step {workload}"
    model, X, y = _setup(WIDTHS[workload])
    mods = model.to_torch()
    opt = R.make_sgd(mods, bench.LR, bench.MOMENTUM, 0.0)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    _checked("torch loop", lambda: R.step(mods, opt, Xt, yt), model, X, y)
    benchmark(R.step, mods, opt, Xt, yt)


def _torch_row(benchmark, workload, make):
    benchmark.group = f"train step {workload}"
    model, X, y = _setup(WIDTHS[workload])
    trainer = make(model, X, y)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    _checked(type(trainer).__name__, lambda: trainer.step(Xt, yt).numpy(), model, X, y)
    benchmark(trainer.step, Xt, yt)


@pytest.mark.parametrize("workload", sorted(WIDTHS))
def test_step_torch_buckets(benchmark, workload):
    """Bucket count and layout tuned on one step each (more data would tune it better; the
    table of `pyireg bench` tunes on its workload's first steps)."""
    def make(model, X, y):
        cfg = bench.tune_buckets(model, np.tile(X, (2, 1)), np.tile(y, 2), steps=1)
        benchmark.extra_info.update(buckets=cfg["count"], layout=cfg["layout"], padding=cfg["padding"])
        return bench.TorchBuckets(model, bench.bucket_plan(model.widths, cfg["count"]), cfg["layout"])
    _torch_row(benchmark, workload, make)


@pytest.mark.parametrize("workload", sorted(WIDTHS))
@pytest.mark.parametrize("second", ["index_add", "embedding_bag"])
def test_step_torch_packed(benchmark, workload, second):
    _torch_row(benchmark, workload, lambda model, X, y: bench.TorchPacked(model, second))


@pytest.mark.parametrize("workload", sorted(WIDTHS))
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_step_torch_packed_compiled(benchmark, workload):
    """Skipped, with the reason, when torch.compile does not finish within the budget."""
    seconds, why = bench.compile_probe(WIDTHS[workload], bench.COMPILE_BUDGET)
    if why:
        pytest.skip(why)
    benchmark.extra_info.update(compile_seconds=seconds)
    _torch_row(benchmark, workload, lambda model, X, y: bench.TorchPacked(model, "index_add", compiled=True))


@pytest.fixture(scope="module")
def eval_case():
    model, _, _ = _setup(WIDTHS["dense256"])
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2000, 100)).astype(np.float32)
    y = rng.integers(0, 10, 2000)
    mods = model.to_torch()
    # the two implementations agree before either is timed
    np.testing.assert_allclose(model.evaluate(X, y)[0], R.evaluate(mods, X, y)[0], atol=2e-3)
    return model, mods, X, y


def test_evaluate_native(benchmark, eval_case):
    benchmark.group = "evaluate dense256 x 2000"
    model, _, X, y = eval_case
    benchmark(model.evaluate, X, y)


def test_evaluate_torch_loop(benchmark, eval_case):
    benchmark.group = "evaluate dense256 x 2000"
    _, mods, X, y = eval_case
    benchmark(R.evaluate, mods, X, y)
