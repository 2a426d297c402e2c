"""The thesis experiments (pyireg.experiments.thesis) end to end on tiny configurations: each
writes its table and figure; Path-SGD's results do not depend on the unbalanced
initialization, SGD's do."""
import json

import numpy as np
import pandas as pd

from pyireg.experiments import thesis as T


def test_measures_experiment_writes_table_summary_and_figure(tmp_path):
    table, summary = T.reproduce_measures(tmp_path, widths=[2, 32], epochs=3, random_epochs=3, samples=2,
                                          seeds=(0,), progress=False)
    assert (tmp_path / "measures.png").stat().st_size > 10_000
    saved = pd.read_csv(tmp_path / "measures.csv")
    assert list(saved.labels) == ["true", "true", "random", "random"]
    for name, _ in T.SHOWN:
        assert name in saved.columns
    assert set(summary.measure) == {n for n, _ in T.SHOWN}
    # random labels are harder: the training error is higher at every width after the same epochs
    t, r = table[table.labels == "true"], table[table.labels == "random"]
    assert np.all(r.train_error.to_numpy() > t.train_error.to_numpy())
    assert json.loads((tmp_path / "run.json").read_text())["experiment"] == "measures"


def test_pathsgd_experiment_is_invariant_to_the_unbalanced_initialization(tmp_path):
    res, gap, _ = T.reproduce_pathsgd(tmp_path, widths=[4, 64], epochs=2, lrs=(0.1,), seeds=(0,), progress=False)
    assert (tmp_path / "pathsgd.png").stat().st_size > 10_000
    assert len(res) == 2 * 2 * 2
    # the same functions along the whole trajectory: at most a prediction or two flips by rounding
    assert gap["path_sgd"]["max"] <= 0.002
    assert gap["sgd"]["max"] > 0.02
    p = res[res.method == "path_sgd"].set_index(["init", "width"])
    np.testing.assert_allclose(p.loc["standard"].test_final, p.loc["unbalanced"].test_final, atol=0.002)


def test_measures_cost_benchmark_runs_its_table(capsys):
    """The timing moved to benchmarks/measures_cost.py; its quick run still produces the table."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "measures_cost.py"
    spec = importlib.util.spec_from_file_location("measures_cost", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--widths", "2,8", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "fraction_of_sweep_epoch" in out and "sharpness_worst" in out


def test_thesis_experiments_write_sweep_directories_that_load_results_reads(tmp_path):
    from pyireg.experiments import load_results
    T.reproduce_pathsgd(tmp_path, widths=[2, 8], epochs=2, lrs=(0.1,), seeds=(0,), progress=False)
    for d in ("sgd-standard", "sgd-unbalanced", "path_sgd-standard", "path_sgd-unbalanced"):
        res = load_results(tmp_path / d)
        assert res.complete and res.config["optimizer"] == ("path_sgd" if d.startswith("path") else "momentum_sgd")
    assert load_results(tmp_path / "path_sgd-unbalanced").config["init_transform"] == "unbalanced"


def test_a_bad_figure_suffix_is_refused_before_any_training(tmp_path):
    import pytest
    for run in (T.reproduce_pathsgd, T.reproduce_measures):
        with pytest.raises(ValueError, match="figure: x.txt has the suffix .txt, not one of the figure formats"):
            run(tmp_path / "o", widths=[2], epochs=1, seeds=(0,), figure=tmp_path / "x.txt", progress=False)
        assert not (tmp_path / "o").exists()


def test_measures_figure_with_undefined_panels_and_two_seeds(tmp_path):
    """After a few epochs no margin is positive: the margin-normalized measures are NaN at every
    width, and with two seeds (a band per panel) matplotlib failed on their log axes."""
    table, _ = T.reproduce_measures(tmp_path, widths=[8, 32], epochs=4, random_epochs=4, samples=1, seeds=(0, 1),
                                    progress=False)
    assert table["fro_margin"].isna().all()
    assert (tmp_path / "measures.png").stat().st_size > 10_000
