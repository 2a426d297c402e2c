"""pytest-benchmark: one training step and one evaluation, native vs PyTorch in the same group,
each asserting that the two agree. Run: pytest benchmarks --benchmark-only
(the full table with ratios to the matmul peak comes from `pyireg bench`)."""
import numpy as np
import pytest
import torch

import pyireg
from pyireg import reference as R

WIDTHS = {"dense256": list(range(1, 257)), "pow2": [2 ** i for i in range(13)]}


def _setup(widths):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 100)).astype(np.float32)
    y = rng.integers(0, 10, 100)
    return pyireg.PackedMLP(widths, 100, 10, seed=0), X, y


@pytest.mark.parametrize("workload", sorted(WIDTHS))
def test_step_native(benchmark, workload):
    benchmark.group = f"train step {workload}"
    model, X, y = _setup(WIDTHS[workload])
    mods = model.to_torch()
    opt = pyireg.MomentumSGD(model, lr=0.1, momentum=0.5)
    loss = opt.step(X, y)
    ref = R.loss_and_grad(mods, X, y)[0]
    np.testing.assert_allclose(loss, ref, rtol=1e-4)
    benchmark(opt.step, X, y)


@pytest.mark.parametrize("workload", sorted(WIDTHS))
def test_step_torch_loop(benchmark, workload):
    benchmark.group = f"train step {workload}"
    model, X, y = _setup(WIDTHS[workload])
    mods = model.to_torch()
    opt = R.make_sgd(mods, 0.1, 0.5, 0.0)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    loss = R.step(mods, opt, Xt, yt)
    np.testing.assert_allclose(loss, pyireg.MomentumSGD(model, 0.1, 0.5).step(X, y), rtol=1e-4)
    benchmark(R.step, mods, opt, Xt, yt)


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
