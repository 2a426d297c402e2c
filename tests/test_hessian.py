"""hessian_top against the exact Hessian of each network (torch.autograd.functional.hessian in
float64, one network at a time), several widths packed together, both losses and activations,
float32 and float64 models; the edge-of-stability experiment on its quick setting; bad input."""
import numpy as np
import pytest
import torch

import pyireg
from pyireg.hessian import edge_of_stability, hessian_top


def _exact_top(model, X, y, n, weights=None):
    s = model._slice(n)
    U0 = torch.tensor(model.U[s], dtype=torch.float64)
    V0 = torch.tensor(model.V[s], dtype=torch.float64)
    Xt = torch.tensor(np.asarray(X, dtype=model.dtype), dtype=torch.float64)
    H, d = U0.shape
    k = V0.shape[1]

    def f(theta):
        U, V = theta[:H * d].view(H, d), theta[H * d:].view(H, k)
        Z = Xt @ U.T
        out = (torch.relu(Z) if model.activation == "relu" else Z) @ V
        if model.loss == "cross_entropy":
            return torch.nn.functional.cross_entropy(out, torch.as_tensor(y, dtype=torch.long))
        r = (out - torch.as_tensor(np.asarray(y, dtype=model.dtype), dtype=torch.float64)) ** 2
        if weights is not None:
            r = r * torch.as_tensor(np.asarray(weights, dtype=model.dtype), dtype=torch.float64)
        return 0.5 * r.sum(1).mean()

    hess = torch.autograd.functional.hessian(f, torch.cat([U0.flatten(), V0.flatten()]))
    return torch.linalg.eigvalsh(hess)[-1].item()


@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
@pytest.mark.parametrize("activation", ["relu", "linear"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("widths,d,k,B", [([1, 2, 5, 9], 4, 3, 13), ([7], 3, 1, 1), ([1, 12, 3], 5, 2, 6)])
def test_matches_the_exact_hessian_network_by_network(loss, activation, dtype, widths, d, k, B):
    rng = np.random.default_rng(B)
    m = pyireg.PackedMLP(widths, d, k, seed=3, loss=loss, activation=activation, dtype=dtype)
    X = rng.standard_normal((B, d))
    y = rng.integers(0, k, B) if loss == "cross_entropy" else rng.standard_normal((B, k))
    w = rng.uniform(0, 2, (B, k)) if loss == "squared" else None
    top, its, conv = hessian_top(m, X, y, weights=w, tol=1e-10, return_info=True)
    exact = np.array([_exact_top(m, X, y, n, w) for n in range(len(widths))])
    np.testing.assert_allclose(top, exact, rtol=1e-8, atol=1e-12)
    assert conv.all()
    # a network has H (d + k) weights: Lanczos needs no more iterations than that
    assert np.all(its <= np.array(widths) * (d + k))


def test_packed_equals_alone_and_reports_iterations():
    rng = np.random.default_rng(0)
    widths, d, k, B = [3, 20, 50], 6, 4, 30
    m = pyireg.PackedMLP(widths, d, k, seed=1, dtype="float64")
    X, y = rng.standard_normal((B, d)), rng.integers(0, k, B)
    top, its, conv = hessian_top(m, X, y, tol=1e-9, return_info=True)
    for n, w in enumerate(widths):
        alone = pyireg.PackedMLP.from_weights([w], *m.network(n), dtype="float64")
        np.testing.assert_allclose(hessian_top(alone, X, y, tol=1e-9), top[n], rtol=1e-7)
    assert conv.all() and np.all(its >= 2)
    # too few iterations: not converged, and said so
    _, its2, conv2 = hessian_top(m, X, y, iters=2, tol=1e-12, return_info=True)
    assert np.all(its2 == 2) and not conv2[-1]


def test_a_diverged_network_gets_nan_and_leaves_the_others_alone():
    rng = np.random.default_rng(1)
    m = pyireg.PackedMLP([2, 3], 4, 2, seed=0, dtype="float64")
    X, y = rng.standard_normal((9, 4)), rng.integers(0, 2, 9)
    before = hessian_top(m, X, y)
    m.U[0, 0] = np.nan  # as a diverged training leaves it (the setter refuses NaN)
    after = hessian_top(m, X, y)
    assert np.isnan(after[0]) and after[1] == pytest.approx(before[1], rel=1e-9)


def test_the_measure_takes_one_output_targets_as_evaluate_does():
    """measures' hessian_top with the squared loss and one output: a 1-d y are the targets (it
    took them for class labels and refused real numbers)."""
    rng = np.random.default_rng(2)
    m = pyireg.PackedMLP([2, 3], 4, 1, loss="squared", seed=0, dtype="float64")
    X, y = rng.standard_normal((9, 4)), rng.standard_normal(9)
    got = pyireg.measures.compute(m, ["hessian_top"], X=X, y=y)["hessian_top"]
    np.testing.assert_allclose(got, hessian_top(m, X, y[:, None]), rtol=1e-9)


@pytest.mark.parametrize("kwargs,match", [({"iters": 0}, "iters"), ({"tol": 0.0}, "tol"), ({"tol": np.nan}, "tol")])
def test_bad_arguments_are_refused(kwargs, match):
    m = pyireg.PackedMLP([2], 3, 2, seed=0)
    with pytest.raises(ValueError, match=match):
        hessian_top(m, np.zeros((2, 3)), np.array([0, 1]), **kwargs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_edge_of_stability_quick(seed, tmp_path):
    """At lr 1.2 (2 / lr = 1.67, above the initial sharpness) the sharpness rises and then stays
    within 15% below / 25% above 2 / lr from step 150 (it hovers just above it); at lr 0.1
    (2 / lr = 20) it stays far below its edge."""
    t = edge_of_stability(widths=(16, 64), lrs=(0.1, 1.2), steps=400, every=50, seed=seed)
    assert set(t.columns) >= {"step", "width", "lr", "two_over_lr", "loss", "hessian_top", "lanczos_iters"}
    assert np.isfinite(t["hessian_top"]).all()
    for w in (16, 64):
        big = t[(t["lr"] == 1.2) & (t["width"] == w)].sort_values("step")
        edge = 2 / 1.2
        assert big["hessian_top"].iloc[0] < 0.8 * big["hessian_top"].iloc[-1]  # it rose
        late = big[big["step"] >= 150]["hessian_top"] / edge
        assert late.between(0.85, 1.25).all(), late.to_numpy()
        small = t[(t["lr"] == 0.1) & (t["width"] == w)]
        assert (small["hessian_top"] < 0.2 * 20).all()
        assert small["loss"].iloc[-1] < small["loss"].iloc[0]
    from pyireg.tutorial_plots import plot_edge_of_stability
    assert plot_edge_of_stability(t, tmp_path / "eos.png").stat().st_size > 1000


def test_a_request_above_the_memory_limit_is_refused_before_allocating():
    m = pyireg.PackedMLP([100, 200], 50, 10, seed=0)
    before = pyireg.memory_limit()
    pyireg.set_memory_limit(1 << 20)
    try:
        with pytest.raises(MemoryError, match="hessian_top: about .* GiB needed"):
            hessian_top(m, np.zeros((1000, 50)), np.zeros(1000, np.int64))
    finally:
        pyireg.set_memory_limit(before)


@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
def test_hessian_top_is_a_measure_recorded_by_the_loop_each_epoch(loss):
    """--measures hessian_top: each epoch's value is hessian_top of the model after that epoch on
    the training set (the squared loss onto the one-hot code of the label); 'all' leaves it out."""
    from pyireg import data as D
    from pyireg import measures as M
    from pyireg.experiments import training as T
    from pyireg.experiments.sweep import measure_names_for
    from pyireg.schedule import PaperSchedule
    rng = np.random.default_rng(11)
    X = rng.normal(size=(70, 4))
    ds = D.from_arrays(X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.7), n_val=10, n_test=10, dtype="float64")
    spec = T.TrainSpec(grid_widths=(1, 5), grid_weight_decays=(0.0, 0.0), grid_lr_scales=(1.0, 1.0), epochs=2,
                       batch_size=10, drop_last=False, schedule=PaperSchedule(lr0=0.05), init_std=None,
                       label_noise=0.0, resample_split=False, eval_batch=512, measures=("hessian_top",), loss=loss)
    seen = []

    def check(epoch, frame, model, opt, ev):
        y = ds.y_train if loss == "cross_entropy" else np.eye(ds.num_classes)[ds.y_train]
        want = hessian_top(model, ds.X_train, y, iters=100, tol=1e-6, seed=0)
        np.testing.assert_allclose(frame["hessian_top"].to_numpy(), want, rtol=1e-12)
        seen.append(epoch)
    T.train_networks(ds, spec, 0, [0, 1], after_epoch=check)
    assert seen == [1, 2]
    assert "hessian_top" in M.CURVATURE and "hessian_top" not in measure_names_for("all", loss)
    assert measure_names_for(["hessian_top"], loss) == ("hessian_top",)
