"""Theorem 1 as the paper states it (k = 1, scalar v_h) for the squared and the logistic loss, on
random problems: the objectives are recomputed here from the returned weights with the formulas
written out, and every value is checked against the certified lower bound of the convex net; and
`pyireg theorem1 --out-features 1` on the command line, at sizes that run in seconds."""
import numpy as np
import pandas as pd
import pytest

from pyireg import infinite as I
from pyireg.cli import main
from pyireg.experiments import theory_demo as TD


def _mean_loss(f, y, loss):
    if loss == "squared":
        return np.mean((f - y) ** 2) / 2
    return np.mean(np.log1p(np.exp(-y * f)))


def _out(U, v, X):
    return np.maximum(X @ U.T, 0) @ v


@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("seed", [0, 1])
def test_theorem1_scalar_on_random_problems(loss, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((12, 2))
    y = np.sign(rng.standard_normal(12)) if loss == "logistic" else rng.standard_normal(12)
    lams = [0.02, 0.1]
    rows, sols = TD.theorem1_scalar(X, y, lams, loss, width=5, iters=600, seed=seed, return_solutions=True)
    for lam, row, sol in zip(lams, rows, sols):
        Ub, vb = sol["balanced4"]
        Un, vn = sol["normalized4"]
        # the balanced (4) solution: ||u_h|| = |v_h|, so lam/2 (||u_h||^2 + v_h^2) = lam ||u_h|| |v_h|
        nu = np.linalg.norm(Ub, axis=1)
        np.testing.assert_allclose(nu, np.abs(vb), rtol=1e-12, atol=1e-15)
        obj4 = _mean_loss(_out(Ub, vb, X), y, loss) + lam / 2 * (np.sum(Ub ** 2) + np.sum(vb ** 2))
        # normalized: unit-norm units (or dead ones), the same function, and (5)'s value = (4)'s
        assert np.all(np.isclose(np.linalg.norm(Un, axis=1), 1.0, rtol=1e-12) | (np.abs(vn) == 0))
        np.testing.assert_allclose(_out(Un, vn, X), _out(Ub, vb, X), rtol=1e-12, atol=1e-13)
        obj5 = _mean_loss(_out(Un, vn, X), y, loss) + lam * np.sum(np.abs(vn))
        assert obj5 == pytest.approx(obj4, rel=1e-12)
        assert row["objective5_of_normalized_4"] == pytest.approx(obj5, rel=1e-12)
        assert row["objective4_balanced"] == pytest.approx(obj4, rel=1e-12)
        assert row["identity_error"] < 1e-12 and row["group_norm_error"] < 1e-12
        # balancing never raises (4); each solver restarted at the other's rescaled local solution
        # only goes down, and barely: the local solutions correspond
        assert obj4 <= row["objective4"] * (1 + 1e-12)
        assert row["(5) restarted from (4)"] <= obj5 * (1 + 1e-12)
        assert row["(5) restarted from (4)"] >= obj5 * (1 - 1e-3)
        assert row["(4) restarted from (5)"] <= row["objective5"] * (1 + 1e-12)
        # and none is below the convex net over the whole unit ball (its certified lower bound)
        D = I.convex_ball(X, y, lam, loss).lower_bound
        assert min(row["objective4"], row["objective5"], row["(5) restarted from (4)"],
                   row["(4) restarted from (5)"]) >= D - 1e-12


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_theorem1_command_k1(tmp_path, capsys, loss):
    out = tmp_path / loss
    assert main(["theorem1", "--out-features", "1", "--loss", loss, "--quick", "--n", "40", "--width", "8",
                 "--iters", "100", "--lam", "0.01,0.1", "--out", str(out), "--threads", "1"]) == 0
    table = pd.read_csv(out / "theorem1.csv")
    assert list(table["loss"]) == [loss, loss] and list(table["k"]) == [1, 1] and list(table["n"]) == [40, 40]
    assert (table["identity_error"] < 1e-12).all()
    assert (out / "theorem1.png").is_file()
    assert "s; figure" in capsys.readouterr().out


@pytest.mark.parametrize("argv,match", [
    (["--loss", "squared"], "--loss: squared is for --out-features 1"),
    (["--out-features", "2", "--loss", "logistic"], "--loss: logistic is for --out-features 1"),
    (["--out-features", "1", "--loss", "cross_entropy"], "--loss: --out-features 1 has one output"),
])
def test_theorem1_command_refuses_mismatched_losses(tmp_path, capsys, argv, match):
    assert main(["theorem1", *argv, "--quick", "--out", str(tmp_path / "x")]) != 0
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
