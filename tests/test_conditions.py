"""The thesis's conditions C1-C3 as registry measures (pyireg.conditions) against computations
written out here per network with explicit matrices, against pyireg.thesis_measures, alone vs
packed, and recorded every epoch by a sweep."""
import numpy as np
import pytest

import pyireg
from pyireg import measures as M
from pyireg import thesis_measures as TM

WIDTHS = [1, 2, 5, 5, 37]


def _model(seed=0, d=7, k=3, widths=WIDTHS):
    m = pyireg.PackedMLP(widths, d, k, seed=seed, dtype="float64")
    rng = np.random.default_rng(seed + 100)
    m.U[...] += 0.3 * rng.standard_normal(m.U.shape)        # not a plain initialization
    X = rng.standard_normal((23, d))
    y = rng.integers(0, k, 23)
    return m, X, y


def _c1_by_hand(U, V, X):
    worst = 0.0
    for x in X:
        J = V.T @ np.diag((U @ x > 0).astype(float)) @ U
        top = np.linalg.norm(J, 2)
        num = np.linalg.norm(U, 2) * np.linalg.norm(V.T, 2)
        worst = max(worst, num / top if top > 0 else np.inf)
    return worst


def test_c1_against_explicit_jacobians_and_thesis_measures():
    m, X, y = _model()
    got = M.compute(m, ["c1"], X=X, y=y)["c1"]
    got3 = M.compute(m, ["c1"], X=X, y=y, condition_samples=3)["c1"]
    for n in range(m.num_networks):
        U, V = m.network(n)
        want = _c1_by_hand(U, V, X)
        if np.isinf(want):
            assert np.isinf(got[n])
        else:
            assert got[n] == pytest.approx(want, rel=1e-10)
            assert got[n] == pytest.approx(TM.c1(TM.packed_weights(m, n), X)["inv_mu"], rel=1e-10)
            assert got[n] >= 1 - 1e-12                    # ||V^T D U|| <= ||V|| ||U||
        assert got3[n] == pytest.approx(_c1_by_hand(U, V, X[:3]), rel=1e-10)
    assert np.isfinite(got[-1])                           # 37 units: never all off on these inputs
    # every unit off on x gives J = 0: mu = 0, 1/mu = inf
    m.U[0] = -np.abs(m.U[0])
    Xp = np.abs(X)
    assert np.isinf(M.compute(m, ["c1"], X=Xp, y=y)["c1"][0])


def _c2_by_hand(U, X, eps, draws, seed):
    H, d = U.shape
    base = X @ U.T > 0
    flips = 0
    for r in range(draws):
        G = np.random.default_rng([seed, H, r]).standard_normal((H, d))
        E = G * (eps * np.linalg.norm(U) / np.linalg.norm(G))
        flips += np.sum((X @ (U + E).T > 0) != base)
    return flips / (draws * len(X) * H)


@pytest.mark.parametrize("eps", [1e-3, 0.05, 0.3])
def test_c2_against_explicit_perturbations(eps):
    m, X, y = _model(1)
    name = f"c2_{eps:g}"
    got = M.compute(m, [name, "c2"], X=X, y=y, c2_draws=3, seed=5, c2_magnitude=eps)
    np.testing.assert_array_equal(got[name], got["c2"])
    for n in range(m.num_networks):
        U, _ = m.network(n)
        # one flip's worth of slack: the sums are rounded in a different order
        assert got[name][n] == pytest.approx(_c2_by_hand(U, X, eps, 3, 5), abs=1.01 / (3 * len(X) * U.shape[0]))


def test_c2_limits_and_names():
    m, X, y = _model(2, widths=[64])
    tiny, huge = M.compute(m, ["c2_1e-9", "c2_1e6"], X=X, y=y).values()
    assert tiny[0] == 0.0
    assert 0.4 < huge[0] < 0.6                            # the perturbation swamps U: a coin flip
    assert M.needs("c2_0.5") == {"data"} and M.needs("c2_.5") == {"data"}
    for bad in ("c2_", "c2_x", "c2_-1"):
        with pytest.raises(ValueError, match="unknown measure"):
            M.needs(bad)
    for bad in ("c2_0", "c2_1e400"):                       # named, checked before any work
        with pytest.raises(ValueError, match=f"'{bad}': expected a positive finite magnitude"):
            M.needs(bad)
        with pytest.raises(ValueError, match=f"'{bad}': expected a positive finite magnitude"):
            M.compute(m, [bad], X=X, y=y)
    with pytest.raises(ValueError, match="c2: expected a positive"):
        M.compute(m, ["c2"], X=X, y=y, c2_magnitude=0.0)


def test_c3_by_hand():
    U = np.array([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0],       # network 0: norms 5, 1, 1, mean 7/3
                  [0.0, 2.0]])                               # network 1: one unit, ratio 1
    V = np.ones((4, 2))
    m = pyireg.PackedMLP.from_weights([3, 1], U, V, dtype="float64")
    got = M.compute(m, ["c3", "c3_min"])
    np.testing.assert_allclose(got["c3"], [5 * 3 / 7, 1.0], rtol=1e-12)
    np.testing.assert_allclose(got["c3_min"], [3 / 7, 1.0], rtol=1e-12)
    np.testing.assert_allclose(TM.c3(TM.packed_weights(m, 0))[0].max(), got["c3"][0], rtol=1e-12)
    m.U[3] = 0
    assert np.isnan(M.compute(m, ["c3"])["c3"][1])


def test_alone_equals_packed_and_named_only():
    m, X, y = _model(3)
    names = ["c1", "c2_0.1", "c3", "c3_min"]
    packed = M.compute(m, names, X=X, y=y)
    for n in range(m.num_networks):
        U, V = m.network(n)
        alone = M.compute(pyireg.PackedMLP.from_weights([len(U)], U, V, dtype="float64"), names, X=X, y=y)
        for name in names:
            np.testing.assert_array_equal(alone[name], packed[name][n:n + 1])
    everything = M.compute(m, "all", X=X, y=y)
    assert not {"c1", "c2", "c3", "c3_min"} & set(everything)
    assert "| `c1` (named only) | data | both |" in M.markdown_table()
    assert "`c2_<eps>` (named only)" in M.markdown_table()


def test_sweep_records_c1_c3_every_epoch(tmp_path):
    from pyireg.experiments.training import models_of
    ds = pyireg.data.load("digits", n_train=300, n_val=100, n_test=100)
    names = ["c1", "c2_0.01", "c2_0.1", "c3", "c3_min"]
    res = pyireg.sweep(ds, [2, 5, 8], epochs=2, measures=names, out=tmp_path / "s", checkpoints="final",
                       progress=False)
    h = res.history
    assert len(h) == 3 * 2 and set(names) <= set(h.columns)
    _, final = models_of(ds, tmp_path / "s", 0)
    want = M.compute(final, names, X=ds.X_train, y=ds.y_train)
    last = h[h.epoch == h.epoch.max()].sort_values("network")
    for name in names:
        np.testing.assert_allclose(last[name].to_numpy(), want[name], rtol=1e-12)
    assert (last["c3"] >= 1).all() and (last["c3_min"] <= 1).all()
    assert (last["c2_0.1"] >= last["c2_0.01"]).all()
    # on the command line, with the same names
    from pyireg.cli import main
    assert main(["sweep", "--dataset", "digits", "--widths", "4", "--epochs", "1", "--quiet",
                 "--measures", "c1,c2_0.05,c3", "--out", str(tmp_path / "cli")]) == 0
    cols = pyireg.load_results(tmp_path / "cli").history.columns
    assert {"c1", "c2_0.05", "c3"} <= set(cols)
