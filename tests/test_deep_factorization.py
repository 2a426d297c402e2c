"""`pyireg demo deep-matrix-factorization` on its quick settings: the files it writes, the
effective rank of its table recomputed from the solutions it saves, the depth-1 baseline (GD
leaves the unobserved entries of a single matrix at their initial values), and what the quick
run shows about depth, as measured (docs/tutorial-extra.md has the full runs)."""
import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("cvxpy", reason="cvxpy is an optional dependency (pip install 'pyireg[convex]')")
torch = pytest.importorskip("torch")

from pyireg.deep import DeepLinear  # noqa: E402
from pyireg.experiments import tutorial  # noqa: E402
from pyireg.experiments.deep_factorization import effective_rank  # noqa: E402
from pyireg.experiments.matrix_completion import nuclear_norm  # noqa: E402

NAME = "deep-matrix-factorization"


def test_effective_rank_of_known_spectra():
    assert effective_rank(np.outer([1.0, 2, 3], [1.0, -1])) == pytest.approx(1.0)
    assert effective_rank(np.eye(5)) == pytest.approx(5.0)
    assert effective_rank(np.diag([3.0, 1.0])) == pytest.approx(np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25))))
    assert effective_rank(np.zeros((3, 3))) == 0.0


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("dmf")
    res = tutorial.run(NAME, out, quick=True, threads=1)
    return out, res


def test_quick_run_writes_figure_table_solutions_and_settings(quick):
    out, res = quick
    assert (out / f"{NAME}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(out / f"{NAME}.csv")
    settings = json.loads((out / f"{NAME}.json").read_text())["settings"]
    assert sorted(table["depth"]) == [1, 2, 3, 4] and table["seed"].tolist() == [0] * 4
    saved = np.load(out / f"{NAME}.npz")
    for row in table.to_dict("records"):
        P = saved[f"depth{row['depth']}_seed{row['seed']}"]
        assert P.shape == (settings["n"], settings["n"])
        # the table's numbers (read back from the CSV) are those of the saved solutions, recomputed
        assert row["effective rank"] == pytest.approx(effective_rank(P), rel=1e-12)
        assert row["nuclear norm"] == pytest.approx(nuclear_norm(P), rel=1e-12)
        M, mask = saved[f"M_seed{row['seed']}"], saved[f"mask_seed{row['seed']}"]
        loss = 0.5 * ((mask * (P - M)) ** 2).sum() / mask.sum()
        assert row["loss"] == pytest.approx(loss, rel=1e-9, abs=1e-30)
    Xc = saved["convex_seed0"]
    assert table["convex effective rank"].iloc[0] == pytest.approx(effective_rank(Xc), rel=1e-12)
    # the convex solution interpolates the observed entries (the solver's accuracy)
    np.testing.assert_allclose(mask * Xc, mask * M, atol=1e-6)


def test_depth_one_keeps_the_unobserved_entries_of_its_initialization(quick):
    """A single matrix under GD on the observed entries: the gradient is zero elsewhere, so the
    unobserved entries stay at their initial values exactly (the interpolant nearest the
    initialization), and its effective rank is the highest of all depths."""
    out, res = quick
    saved = np.load(out / f"{NAME}.npz")
    settings = json.loads((out / f"{NAME}.json").read_text())["settings"]
    n = settings["n"]
    W0 = DeepLinear([n, n], init_scale=settings["init_scale"], seed=0).product().detach().numpy()
    P, mask = saved["depth1_seed0"], saved["mask_seed0"]
    np.testing.assert_array_equal(P[mask == 0], W0[mask == 0])
    t = res.table.set_index("depth")
    assert t.loc[1, "loss"] < 1e-20                  # it interpolates
    assert t.loc[1, "effective rank"] > t.loc[1, "convex effective rank"]
    assert t.loc[1, "effective rank"] == t["effective rank"].max()


def test_what_the_quick_run_shows_about_depth(quick):
    """Measured on the quick run (n = 8, 40 observed entries, 800 steps): the effective rank
    falls with every added layer, and from depth 3 on it is below the convex minimum's. (The
    deeper runs have not reached a small loss in 800 steps; the full runs are in the docs.)"""
    _, res = quick
    t = res.table.sort_values("depth")
    er = t["effective rank"].to_numpy()
    assert np.all(np.diff(er) < 0), er
    assert np.all(er[2:] < t["convex effective rank"].iloc[0]), er
    assert any("non-increasing with depth on 1 of 1 seeds" in line for line in res.summary)
