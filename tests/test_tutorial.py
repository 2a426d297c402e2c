"""Every demonstration command runs (at a tiny size) and writes its figure and table; the
ReLU training loop records what the demonstrations read."""
import numpy as np
import pandas as pd
import pytest

import pyireg
from pyireg.experiments import knobs, tutorial


@pytest.mark.parametrize("name", list(tutorial.DEMOS))
def test_demo_command_writes_a_figure_and_a_table(name, tmp_path, capsys):
    if name in ("matrix-completion", "deep-matrix-factorization"):
        pytest.importorskip("cvxpy", reason="cvxpy is an optional dependency (pip install 'pyireg[convex]')")
    from pyireg.cli import main
    assert main(["demo", name, "--quick", "--out", str(tmp_path), "--threads", "1"]) == 0
    png, csv = tmp_path / f"{name}.png", tmp_path / f"{name}.csv"
    import json
    record = json.loads((tmp_path / f"{name}.json").read_text())       # the demo's settings and run record
    assert record["demo"] == name and record["quick"] and record["run"]["command"].startswith("pyireg demo")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(csv)
    assert len(table) > 0
    printed = capsys.readouterr().out
    assert printed.startswith("| ") and f"wrote {png}" in printed


def test_quick_min_norm_demo_still_finds_the_pseudo_inverse(tmp_path):
    res = tutorial.run("min-norm", tmp_path, quick=True, threads=1)
    gd = res.table[res.table["run"].str.startswith("GD")]
    dist = gd["||θ - X⁺y|| / ||X⁺y||"].to_numpy()
    own = gd["||θ - (θ0 + X⁺(y - Xθ0))|| / ||·||"].to_numpy()
    assert np.all(dist[:2] < 1e-6) and np.all(dist[2:] > 0.1) and np.all(own < 1e-6)


def test_unknown_demo_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="name: expected one of min-norm"):
        tutorial.run("lazy", tmp_path)
    from pyireg.cli import main
    with pytest.raises(SystemExit):
        main(["demo", "lazy"])


def test_demo_settings_are_options_checked_before_anything_is_written(tmp_path, capsys, monkeypatch):
    """One override syntax: each setting of a demonstration is an option, like sweep's; a bad value
    is refused by the parser and nothing is created."""
    from pyireg.cli import main
    out = tmp_path / "never"
    for argv in (["demo", "init-scale", "--epochs", "0"], ["demo", "init-scale", "--widths", "8,x"],
                 ["demo", "learning-rate", "--lrs", "-1"], ["demo", "min-norm", "--bogus", "1"]):
        with pytest.raises(SystemExit) as e:
            main([*argv, "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 2 and err[0].startswith(f"usage: pyireg demo {argv[1]} ")
        assert not out.exists()
    with pytest.raises(ValueError, match="epochs: expected positive integers, got 0"):
        tutorial.run("init-scale", out, epochs=0)
    assert not out.exists()
    # data that cannot be loaded (mnist needs its files): one line, and still nothing created
    (tmp_path / "empty-cache").mkdir()                  # a user's cached MNIST must not count
    monkeypatch.setenv("PYIREG_DATA", str(tmp_path / "empty-cache"))
    assert main(["demo", "early-stopping", "--dataset", "mnist", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mnist" in err[0] and not out.exists()
    assert main(["demo", "init-scale", "--quick", "--epochs", "1", "--widths", "4", "--scales", "0.5,1", "--out",
                 str(tmp_path / "d"), "--quiet"]) == 0
    t = pd.read_csv(tmp_path / "d" / "init-scale.csv")
    assert set(t["H"]) == {4} and set(t["init_scale"]) == {0.5, 1.0}       # the options reached the demo


def test_training_loop_records_every_network_and_epoch():
    ds = knobs.load_digits("mnist5k", n_train=120, n_val=60, n_test=60)
    run = knobs.train(ds, [3, 10], lr=np.array([0.05, 0.0]), batch_size=40, epochs=3, seed=np.array([1, 2]))
    h = run.history
    assert len(h) == 2 * 4 and set(h["epoch"]) == {0, 1, 2, 3}
    # lr 0 leaves the second network where it started: no movement, same errors every epoch
    still = h[h["net"] == 1]
    assert np.all(still["movement"] == 0) and still["test_error"].nunique() == 1
    moved = h[h["net"] == 0]
    assert moved["movement"].iloc[0] == 0 and np.all(np.diff(moved["movement"]) > 0)
    # the recorded test error is the model's own evaluation
    err, _ = run.model.evaluate(ds.X_test, ds.y_test)
    np.testing.assert_array_equal(h[h["epoch"] == 3].sort_values("net")["test_error"].to_numpy(), err)
    # early stopping reads the epoch of least validation error after the initialization
    fe = knobs.final_and_early(h, ["H"])
    for j in range(2):
        hj = h[(h["net"] == j) & (h["epoch"] > 0)]
        assert fe.loc[j, "epoch_es"] == hj.loc[hj["val_error"].idxmin(), "epoch"]


def test_final_measures_are_the_registry_on_the_trained_model_and_reach_the_demo_tables(tmp_path):
    ds = knobs.load_digits("mnist5k", n_train=120, n_val=60, n_test=60)
    run = knobs.train(ds, [3, 10], lr=np.array([0.05, 0.5]), batch_size=40, epochs=2, seed=np.array([1, 2]),
                      final_measures=("sharpness_worst", "path_l2"))
    want = pyireg.measures.compute(run.model, ["sharpness_worst", "path_l2"], X=ds.X_train, y=ds.y_train)
    for name in want:
        np.testing.assert_array_equal(run.final[name], want[name])
    fe = knobs.final_and_early(run.history, ["H"], run.final)
    np.testing.assert_array_equal(fe["sharpness_worst"].to_numpy(), want["sharpness_worst"])
    for name in ("learning-rate", "batch-size"):
        table = tutorial.run(name, tmp_path, quick=True, threads=1).table
        s = table["sharpness_worst"].to_numpy()
        assert np.all(np.isfinite(s)) and np.all(s >= 0) and s.max() > 0


def test_training_loop_refuses_a_batch_larger_than_the_data():
    ds = knobs.load_digits("mnist5k", n_train=50, n_val=20, n_test=20)
    with pytest.raises(ValueError, match="batch_size: expected 1..50"):
        knobs.train(ds, [2], lr=0.1, batch_size=51, epochs=1)


def test_stop_epoch_freezes_a_network_and_a_blown_up_run_is_marked_failed():
    ds = knobs.load_digits("mnist5k", n_train=120, n_val=60, n_test=60)
    run = knobs.train(ds, [6, 6, 6], lr=np.array([0.05, 0.05, 50.0]), batch_size=40, epochs=3,
                      stop_epoch=np.array([3, 1, 3]), seed=np.array([1, 1, 2]))
    h = run.history
    first, second = h[h["net"] == 0], h[h["net"] == 1]
    # same seed, same data: identical until network 1 stops, then it keeps its epoch-1 weights
    first, second = first[first["epoch"] > 0], second[second["epoch"] > 0]
    assert first["movement"].iloc[0] == second["movement"].iloc[0]
    assert second["movement"].nunique() == 1 and first["movement"].nunique() == 3
    fe = knobs.final_and_early(h, ["H"])
    assert list(fe["failed"]) == [False, False, True]
    with pytest.raises(ValueError, match="stop_epoch: expected 3 non-negative epoch counts"):
        knobs.train(ds, [6, 6, 6], lr=0.1, epochs=1, stop_epoch=[1, 2])


def test_settings_compared_at_one_width_start_from_the_same_draws():
    grid = [(s, lr, w) for s in (0, 1) for lr in (0.1, 0.3) for w in (8, 32)]
    seeds = knobs._paired_seeds(grid, 0, 2)
    key = {}
    for g, sd in zip(grid, seeds):
        key.setdefault((g[0], g[2]), set()).add(int(sd))
    assert all(len(v) == 1 for v in key.values())               # lr does not change the draws
    assert len({next(iter(v)) for v in key.values()}) == 4      # repetition and width do
    # an init scale multiplies the same directions
    m = pyireg.PackedMLP([8, 8], 100, 10, init_std=np.array([0.1, 0.3]), seed=np.array([seeds[0], seeds[0]]))
    np.testing.assert_allclose(m.network(1)[0], 3 * m.network(0)[0], rtol=1e-6)


@pytest.mark.parametrize("name,run_dir", [("init-scale", "init-scale-run"), ("learning-rate", "learning-rate-run"),
                                          ("batch-size", "batch-size-run-b20"),
                                          ("early-stopping", "early-stopping-run-q0.2")])
def test_relu_demos_train_with_the_one_loop_and_write_sweep_directories(name, run_dir, tmp_path, capsys):
    """The ReLU demonstrations train through pyireg.experiments.training.train_networks; each run
    is also a directory that load_results reads (the sweep's history schema, epoch 0 included)
    and that pyireg plot draws."""
    from pyireg.cli import main
    from pyireg.experiments import load_results
    assert main(["demo", name, "--quick", "--out", str(tmp_path), "--threads", "1", "--quiet"]) == 0
    res = load_results(tmp_path / run_dir)
    h = res.history
    assert h.epoch.min() == 0 and res.complete and res.config["run"]["command"].startswith(f"pyireg demo {name}")
    assert {"train_error", "val_error", "test_error", "norm_U", "diverged"} <= set(h.columns)
    assert main(["plot", str(tmp_path / run_dir), "--output", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
