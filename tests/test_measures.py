"""The measures registry (pyireg.measures) against first-principles twins (explicit paths, a
plain torch forward, SVD, autograd), under the tolerance rule, and its invariances."""
import warnings

import numpy as np
import pytest
import torch

import pyireg
import pyireg.measures as M
from pyireg import reference as R
from pyireg.testing import assert_tolerance

from helpers import make_data

WIDTHS = [1, 2, 7, 37, 150]


def _model(dtype="float32", activation="relu", widths=WIDTHS, d=13, k=5, steps=30, seed=0, noise=True):
    """A model trained a little (so that the layers are not at their initial scale), its
    initial copy, and its training data."""
    model = pyireg.PackedMLP(widths, d, k, activation=activation, dtype=dtype, seed=seed)
    init = model.copy()
    X, y = make_data(200, d, k, seed=seed, dtype=dtype)
    y = (X[:, :k].argmax(1) + noise * (X[:, k] > 1.5)) % k    # a learnable rule with a little noise
    opt = pyireg.MomentumSGD(model, 0.05, 0.9)
    for s in range(steps):
        opt.step(X[(s % 4) * 50:(s % 4) * 50 + 50], y[(s % 4) * 50:(s % 4) * 50 + 50])
    return model, init, X, y


def _twins(model, f):
    """f applied to the float32 and the float64 torch copies of the weights (the float32 result
    as float32, so that the tolerance rule uses float32's epsilon)."""
    U32, V32 = model.U.astype(np.float32), model.V.astype(np.float32)
    r32 = f(U32, V32, torch.float32)
    r32 = {k: v.astype(np.float32) for k, v in r32.items()} if isinstance(r32, dict) else r32.astype(np.float32)
    return r32, f(model.U.astype(np.float64), model.V.astype(np.float64), torch.float64)


@pytest.mark.parametrize("p", [1, 2, 3, 1.5, float("inf")])
def test_path_norms_equal_sums_over_explicit_paths(p):
    model, _, _, _ = _model()
    name = "path_linf" if p == float("inf") else f"path_l{p:g}"
    got = model.measures([name])[name]
    r32, r64 = _twins(model, lambda U, V, dt: R.path_norm(U, V, model.offsets, p, dt))
    assert_tolerance(got, r32, r64, name)


def test_path_norm_of_a_large_p_stays_finite_where_it_is():
    """|w|^p of the native unit sums over- or underflows for large p: those networks are
    computed again with each layer scaled; a diverged network stays NaN."""
    U = np.array([[100.0], [10.0], [1e-3], [1.0]])
    V = np.array([[1e-3], [10.0], [1e-3], [1.0]])
    model = pyireg.PackedMLP.from_weights([1, 1, 1, 1], U, V, dtype="float64")
    model.U[3, 0] = np.nan                                                  # diverged
    got = model.measures(["path_l300"])["path_l300"]
    np.testing.assert_allclose(got[:3], [0.1, 100.0, 1e-6], rtol=1e-12)
    assert np.isnan(got[3])
    two = pyireg.PackedMLP.from_weights([2], np.full((2, 1), 10.0), np.full((2, 1), 10.0), dtype="float64")
    assert two.measures(["path_l200"])["path_l200"][0] == pytest.approx(100 * 2 ** (1 / 200), rel=1e-12)


def test_spectral_norms_and_trace_norm_equal_svd():
    model, _, _, _ = _model(widths=[1, 3, 13, 100, 300])      # both sides of H = d and of H = k
    names = ["spectral_U", "spectral_V", "spectral_end_to_end", "trace_norm"]
    got = model.measures(names + ["spectral_product"])
    r32, r64 = _twins(model, lambda U, V, dt: R.spectral(U, V, model.offsets, dt))
    for n in names:
        assert_tolerance(got[n], r32[n], r64[n], n)
    np.testing.assert_allclose(got["spectral_product"], r64["spectral_U"] * r64["spectral_V"], rtol=1e-12)
    # ||A||_2 <= ||A||_F and the end-to-end matrix is bounded by the product of its factors
    assert np.all(got["spectral_U"] <= model.measures()["norm_U"] * (1 + 1e-12))
    assert np.all(got["spectral_end_to_end"] <= got["spectral_product"] * (1 + 1e-12))


def test_margins_equal_a_plain_torch_forward_and_the_5th_percentile():
    model, _, X, y = _model()
    got = M.margins(model, X, y, batch_size=37)              # blocks that do not divide m
    r32 = R.margins(R.modules_from_packed(model.U, model.V, model.offsets), X, y).astype(np.float32)
    r64 = R.margins(R.modules_from_packed(model.U, model.V, model.offsets, dtype=torch.float64),
                    X.astype(np.float64), y)
    assert_tolerance(got, r32, r64, "per-sample margins")
    m = model.measures(["margin"], X=X, y=y)["margin"]
    np.testing.assert_allclose(m, np.percentile(r64, 5, axis=1), rtol=1e-5, atol=1e-6)
    m10 = model.measures(["margin"], X=X, y=y, percentile=10)["margin"]
    assert np.all(m10 >= m)


def test_a_one_output_model_has_an_infinite_margin():
    """No other class: every margin is +inf, and so is their percentile (not numpy's nan)."""
    model = pyireg.PackedMLP([7, 2], 20, 1, seed=1)
    X = np.random.default_rng(0).standard_normal((9, 20)).astype(np.float32)
    y = np.zeros(9, dtype=np.int64)
    assert np.all(np.isposinf(M.margins(model, X, y)))
    got = model.measures(["margin", "path_l2", "path_l2_margin"], X=X, y=y)
    np.testing.assert_array_equal(got["margin"], [np.inf, np.inf])
    np.testing.assert_array_equal(got["path_l2_margin"], [0.0, 0.0])


def test_all_infinite_margins_of_a_two_output_model_stay_nan():
    """Only a one-output model gets +inf: with two outputs, margins of +inf on every sample come
    from an overflowed (diverged) network, whose margin stays nan."""
    model = pyireg.PackedMLP([3], 4, 2, seed=1)
    U, V = model.U.copy(), model.V.copy()
    V[:, 0], V[:, 1] = 3e38, -3e38          # the label's output overflows to +inf, the other's to -inf
    U[:] = np.abs(U) + 1.0
    model.U, model.V = U, V
    X = np.abs(np.random.default_rng(0).standard_normal((5, 4))).astype(np.float32) + 1.0
    y = np.zeros(5, dtype=np.int64)
    assert np.all(np.isposinf(M.margins(model, X, y)))
    with np.errstate(invalid="ignore"):
        got = model.measures(["margin"], X=X, y=y)["margin"]
    assert np.all(np.isnan(got))


def test_distances_from_initialization():
    model, init, _, _ = _model()
    got = model.measures(["dist_U", "dist_V"], init=init)
    off = model.offsets
    for n in range(model.num_networks):
        s = slice(off[n], off[n + 1])
        np.testing.assert_allclose(got["dist_U"][n], np.linalg.norm(model.U[s].astype(np.float64) - init.U[s]),
                                   rtol=1e-12)
        np.testing.assert_allclose(got["dist_V"][n], np.linalg.norm(model.V[s].astype(np.float64) - init.V[s]),
                                   rtol=1e-12)
    same = model.measures(["dist_U"], init=(init.U, init.V))["dist_U"]
    np.testing.assert_array_equal(same, got["dist_U"])
    assert np.all(got["dist_U"] > 0)
    np.testing.assert_array_equal(model.measures(["dist_U"], init=model)["dist_U"], 0)


def test_margin_normalized_measures_compose_and_are_nan_without_a_positive_margin():
    model, _, X, y = _model(steps=200)
    got = model.measures("all", X=X, y=y)
    g = got["margin"]
    assert np.any(g > 0) and np.any(g <= 0)                  # the width-1 net cannot fit the rule
    ok = g > 0
    for name, num in (("fro_margin", "fro_product"), ("path_l1_margin", "path_l1"),
                      ("path_l2_margin", "path_l2"), ("spectral_margin", "spectral_product")):
        np.testing.assert_allclose(got[name][ok], got[num][ok] / g[ok], rtol=1e-12)
        assert np.all(np.isnan(got[name][~ok]))


def test_path_norms_and_function_invariant_to_theorem1_rescaling_l2_is_not():
    model, _, X, y = _model(dtype="float64")
    names = ["path_l1", "path_l2", "path_l3", "path_linf", "group_l1", "l2_penalty", "margin", "path_l2_margin",
             "ddp_path"]
    before, out = model.measures(names, X=X, y=y), model.forward(X)
    # unbalance every unit by a random positive factor, then balance (Theorem 1)
    c = np.exp(np.random.default_rng(3).uniform(-1.5, 1.5, model.num_units))
    model.U *= c[:, None]
    model.V /= c[:, None]
    mid = model.measures(names, X=X, y=y)
    model.balance()
    after = model.measures(names, X=X, y=y)
    np.testing.assert_allclose(model.forward(X), out, rtol=1e-12, atol=1e-12)
    for state in (mid, after):
        for n in names:
            if n != "l2_penalty":
                np.testing.assert_allclose(state[n], before[n], rtol=1e-11, err_msg=n)
    # the l2 penalty moves with the rescaling and is least after balancing (= group_l1)
    assert np.all(np.abs(mid["l2_penalty"] / before["l2_penalty"] - 1) > 1e-3)
    assert np.all(after["l2_penalty"] < before["l2_penalty"])
    np.testing.assert_allclose(after["l2_penalty"], after["group_l1"], rtol=1e-12)


def test_margin_normalized_measures_invariant_to_scaling_the_output_layer():
    model, _, X, y = _model(dtype="float64", steps=200)
    names = ["fro_margin", "path_l1_margin", "path_l2_margin", "spectral_margin"]
    before = model.measures(names + ["margin", "fro_product"], X=X, y=y)
    model.V *= 3.7
    after = model.measures(names + ["margin", "fro_product"], X=X, y=y)
    np.testing.assert_allclose(after["margin"], 3.7 * before["margin"], rtol=1e-12)
    np.testing.assert_allclose(after["fro_product"], 3.7 * before["fro_product"], rtol=1e-12)
    for n in names:
        np.testing.assert_allclose(after[n], before[n], rtol=1e-12, equal_nan=True, err_msg=n)


@pytest.mark.parametrize("activation", ["relu", "linear"])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_ddp_path_equals_the_node_by_node_twin(alpha, activation):
    model, _, X, y = _model(activation=activation)
    got = model.measures(["ddp_path", "path_l2"], X=X, y=y, ddp_alpha=alpha)
    mods32 = R.modules_from_packed(model.U, model.V, model.offsets, activation)
    mods64 = R.modules_from_packed(model.U, model.V, model.offsets, activation, dtype=torch.float64)
    assert_tolerance(got["ddp_path"], R.ddp_path(mods32, X, alpha).astype(np.float32),
                     R.ddp_path(mods64, X.astype(np.float64), alpha), "ddp_path")
    if alpha == 1.0:
        np.testing.assert_allclose(got["ddp_path"], got["path_l2"], rtol=1e-12)


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_overparam_bound_equals_the_twin(activation):
    model, init, X, y = _model(activation=activation, steps=200, noise=activation == "relu")
    got = model.measures(["overparam_bound", "margin"], X=X, y=y, init=init)["overparam_bound"]
    ref = R.overparam_bound(model.U, model.V, init.U, model.offsets, X, y, activation=activation)
    assert np.isnan(ref).any() and np.isfinite(ref).any()
    np.testing.assert_allclose(got, ref, rtol=2e-5, equal_nan=True)


def test_expected_sharpness_and_pac_bayes_evaluate_perturbed_copies_like_torch():
    model, _, X, y = _model(widths=[1, 5, 40])
    alphas, samples = [1e-2, 1e-1], 3
    nuU, nuV = M.relative_noise(model, alphas, samples, seed=7)
    e32, l32 = R.perturbed_losses(model.U, model.V, model.offsets, nuU, nuV, X, y, dtype=torch.float32)
    e64, l64 = R.perturbed_losses(model.U, model.V, model.offsets, nuU, nuV, X.astype(np.float64), y)
    base32 = R.evaluate(R.modules_from_packed(model.U, model.V, model.offsets), X, y)[1]
    base64 = R.evaluate(R.modules_from_packed(model.U, model.V, model.offsets, dtype=torch.float64),
                        X.astype(np.float64), y)[1]
    got = M.sharpness_expected(model, X, y, alpha=1e-1, samples=samples, seed=7)
    # the sharpness draws are the first alpha's copies when the grid starts with that alpha
    got2 = M.sharpness_expected(model, X, y, alpha=1e-2, samples=samples, seed=7)
    assert_tolerance(got2, (l32[:samples].mean(0) - base32).astype(np.float32), l64[:samples].mean(0) - base64,
                     "expected sharpness")
    assert got.shape == (3,) and np.all(np.isfinite(got))
    # PAC-Bayes from the perturbed errors and KL = sum w^2 / (2 sigma^2), written out
    m = X.shape[0]
    U, V = model.U.astype(np.float64), model.V.astype(np.float64)
    ref = []
    for n in range(model.num_networks):
        s = slice(model.offsets[n], model.offsets[n + 1])
        w = np.concatenate([U[s].ravel(), V[s].ravel()])
        vals = []
        for i, a in enumerate(alphas):
            kl = np.sum(w ** 2 / (2 * (a * (10 * np.abs(w) + 1)) ** 2))
            vals.append(e64[i * samples:(i + 1) * samples, n].mean() + 4 * np.sqrt((kl + np.log(2 * m * 2 / 0.01)) / m))
        ref.append(min(vals))
    got_pb = M.pac_bayes(model, X, y, alphas=alphas, samples=samples, seed=7)
    np.testing.assert_allclose(got_pb, ref, rtol=1e-6)


def test_worst_case_sharpness_equals_sign_ascent_by_autograd():
    model, _, X, y = _model(dtype="float64", widths=[2, 9, 30])
    alpha, steps = 1e-2, 4
    got = M.sharpness_worst(model, X, y, alpha=alpha, steps=steps)
    mods = R.modules_from_packed(model.U, model.V, model.offsets, dtype=torch.float64)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y, dtype=torch.long)
    ref = []
    for m in mods:
        w0 = [p.detach().clone() for p in (m[0].weight, m[2].weight)]
        r = [alpha * (w.abs() + 1) for w in w0]
        nu = [torch.zeros_like(w) for w in w0]
        base = torch.nn.functional.cross_entropy(m(Xt), yt).item()
        best = base
        for _ in range(steps + 1):
            with torch.no_grad():
                m[0].weight.copy_(w0[0] + nu[0])
                m[2].weight.copy_(w0[1] + nu[1])
            m.zero_grad()
            loss = torch.nn.functional.cross_entropy(m(Xt), yt)
            loss.backward()
            best = max(best, loss.item())
            grads = (m[0].weight.grad, m[2].weight.grad)
            nu = [torch.clamp(n + 0.25 * ri * g.sign(), -ri, ri) for n, ri, g in zip(nu, r, grads)]
        ref.append((best - base) / (1 + base))
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    assert np.all(got > 0)
    # a diverged network (inf weights) gets NaN, quietly; the others are unchanged
    model.U[model.offsets[1]] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = M.sharpness_worst(model, X, y, alpha=alpha, steps=steps)
    assert np.isnan(again[1]) and again[0] == got[0] and again[2] == got[2]


def test_trace_norm_is_the_least_group_l1_of_linear_factorizations():
    model, _, _, _ = _model(activation="linear")
    got = model.measures(["trace_norm", "group_l1", "l2_penalty"])
    assert np.all(got["trace_norm"] <= got["group_l1"] * (1 + 1e-9))
    assert np.all(got["group_l1"] <= got["l2_penalty"] * (1 + 1e-9))
    # the SVD factorization of the end-to-end matrix attains it: V^T U = P diag(s) Q^T with
    # u_h = sqrt(s_h) q_h, v_h = sqrt(s_h) p_h
    n = 3
    U_n, V_n = model.network(n)
    P, s, Qt = np.linalg.svd(V_n.astype(np.float64).T @ U_n.astype(np.float64), full_matrices=False)
    H = len(s)
    Uf, Vf = np.sqrt(s)[:, None] * Qt, (P * np.sqrt(s)).T
    f = pyireg.PackedMLP.from_weights([H], Uf, Vf, activation="linear", dtype="float64")
    np.testing.assert_allclose(f.measures(["group_l1"])["group_l1"], got["trace_norm"][n], rtol=1e-6)


def test_names_inputs_and_errors():
    model, init, X, y = _model(widths=[2, 3])
    assert list(model.measures()) == list(M.NATIVE)
    assert list(model.measures("all")) == list(M.WEIGHT)
    assert list(model.measures("all", init=init)) == list(M.WEIGHT + M.INIT)
    assert list(model.measures("all", X=X, y=y)) == list(M.WEIGHT + M.DATA)
    assert set(model.measures("all", X=X, y=y, init=init)) == set(M.ALL)
    with pytest.raises(ValueError, match="X: the measure 'margin' needs data"):
        model.measures(["margin"])
    with pytest.raises(ValueError, match="init: the measure 'dist_U' needs the initial weights"):
        model.measures(["dist_U"])
    with pytest.raises(ValueError, match="names: unknown measure 'frobenius'"):
        model.measures(["frobenius"])
    with pytest.raises(ValueError, match="X, y: expected both"):
        model.measures(["margin"], X=X)
    with pytest.raises(TypeError, match="options: unknown option"):
        model.measures(["margin"], X=X, y=y, percentil=5)
    with pytest.raises(ValueError, match="init: expected a model with the same widths"):
        model.measures(["dist_U"], init=pyireg.PackedMLP([3, 2], 13, 5))
    with pytest.raises(ValueError, match="p: expected a finite p > 0"):
        model._engine.unit_stats(model.U, model.V, None, None, -1.0)
    with pytest.raises(ValueError, match="ddp_alpha: expected a value in"):
        model.measures(["ddp_path"], X=X, y=y, ddp_alpha=2)
    # the per-network table
    import pandas as pd
    df = pd.DataFrame(model.measures("all", X=X, y=y, init=init))
    assert df.shape == (2, len(M.ALL))


def test_unit_moments_equal_numpy_and_do_not_depend_on_blocks_or_threads():
    model, init, X, _ = _model(widths=[1, 200, 3])
    z2, a2 = model._engine.unit_moments(init.U, X, 64)
    Z = X.astype(np.float64) @ init.U.astype(np.float64).T
    np.testing.assert_allclose(z2, (Z ** 2).sum(0), rtol=1e-5)
    np.testing.assert_allclose(a2, (np.maximum(Z, 0) ** 2).sum(0), rtol=1e-5)
    pyireg.set_num_threads(1)
    z2b, a2b = model._engine.unit_moments(init.U, X, 64)
    np.testing.assert_array_equal(z2, z2b)
    np.testing.assert_array_equal(a2, a2b)


def test_perturbed_copies_in_rounds_equal_one_packed_model(monkeypatch):
    model, _, X, y = _model(widths=[3, 20, 64])
    one = (M.pac_bayes(model, X, y, samples=3), M.sharpness_expected(model, X, y, samples=3))
    # at most two copies of the model per packed evaluation
    monkeypatch.setattr(pyireg.perturbations, "COPIES_BYTES", 2 * model.num_units * (13 + 5) * 4)
    rounds = (M.pac_bayes(model, X, y, samples=3), M.sharpness_expected(model, X, y, samples=3))
    for a, b in zip(one, rounds):
        np.testing.assert_array_equal(a, b)


def test_a_diverged_network_gets_nan_measures_and_the_others_are_unchanged():
    m = pyireg.PackedMLP([3, 5, 8], 4, 2, seed=0)
    X = np.random.default_rng(0).standard_normal((20, 4))
    y = np.arange(20) % 2
    init = (m.U.copy(), m.V.copy())
    before = M.compute(m, "all", X=X, y=y, init=init)
    m.U[3:8] = np.nan                                    # network 1 diverged
    after = M.compute(m, "all", X=X, y=y, init=init)
    for name in before:
        if name not in ("norm_V", "spectral_V", "dist_V"):   # V of network 1 is still finite
            assert np.isnan(after[name][1]), name
        np.testing.assert_array_equal(after[name][[0, 2]], before[name][[0, 2]])


def test_the_registry_is_one_table_of_decorated_functions():
    """needs, the losses, the "all" list and the documentation's table come from the registry:
    a measure registered with the decorator is computed, listed and documented at once."""
    import pyireg.measures as M
    table = M.markdown_table()
    for name in M.ALL + M.PERTURBED:
        assert f"| `{name}`" in table, name
    assert "| `margin` | data | cross_entropy |" in table and "| `dist_U` | init | both |" in table
    assert M.losses("margin") == ("cross_entropy",) and M.losses("path_l3") == ("cross_entropy", "squared")

    @M.measure("test_units", doc="hidden units per network")
    def _units(ctx):
        return np.asarray(ctx.m.widths, dtype=np.float64)
    try:
        model = pyireg.PackedMLP([2, 5], 3, 2, seed=0)
        assert M.needs("test_units") == set() and "test_units" in M.names_available()
        np.testing.assert_array_equal(M.compute(model, "all")["test_units"], [2.0, 5.0])
        assert "| `test_units` | weights | both | hidden units per network |" in M.markdown_table()
    finally:
        del M.REGISTRY["test_units"]


def test_measures_do_not_import_the_model():
    """model -> measures only (model.measures calls compute); measures take anything shaped like a
    model, so there is no import circle."""
    import ast
    import inspect

    import pyireg.measures as M
    tree = ast.parse(inspect.getsource(M))
    mods = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert "model" not in mods and not any(m.endswith(".model") for m in mods), mods


def test_the_documentation_table_is_the_registry():
    from pathlib import Path

    import pyireg.measures as M
    doc = Path(__file__).resolve().parents[1] / "docs" / "measures.md"
    assert M.markdown_table() in doc.read_text(), "docs/measures.md is stale: regenerate it from markdown_table()"


@pytest.mark.parametrize("option,value,match", [
    ("percentile", 150, r"percentile: expected a finite number in \[0, 100\], got 150"),
    ("alpha", float("inf"), r"alpha: expected a finite number in \(0, inf\), got inf"),
    ("alpha", "x", r"alpha: expected a finite number in \(0, inf\), got 'x'"),
    ("delta", 1.0, r"delta: expected a finite number in \(0, 1\), got 1.0"),
    ("seed", -1, r"seed: expected an integer >= 0, got -1"),
    ("samples", 0, "samples: expected a positive integer, got 0"),
    ("c2_draws", 2.5, "c2_draws: expected a positive integer, got 2.5"),
])
def test_options_are_checked_before_anything_is_computed(option, value, match):
    model, _, X, y = _model()
    with pytest.raises(ValueError, match=match):
        M.compute(model, ["sharpness_expected", "margin"], X=X, y=y, **{option: value})
