"""Sweeps: bookkeeping, summaries, Parquet output, resume after interruption, the CLI."""
import numpy as np
import pandas as pd
import pytest

import pyireg
from pyireg import data as D
from pyireg.cli import main
from pyireg.experiments import load_results, summarize, sweep


@pytest.fixture(scope="module")
def small():
    return D.load("mnist5k", n_train=300, n_val=200, n_test=200)


def test_sweep_records_every_network_and_epoch(small, tmp_path):
    res = sweep(small, [2, 16], seeds=[0, 1], weight_decays=[0.0, 1e-3], epochs=3, out=tmp_path, progress=False)
    h = res.history
    assert len(h) == 2 * 2 * 2 * 3
    assert set(h.columns) >= {"repetition", "width", "weight_decay", "epoch", "train_error", "val_error",
                              "test_error", "train_loss", "norm_U", "norm_V", "lr", "momentum"}
    e1 = h[h.epoch == 1]
    assert np.allclose(e1.lr, 0.1) and np.allclose(e1.momentum, 0.5)
    assert np.allclose(h[h.epoch == 3].lr, 0.1 * 0.99 ** 2) and np.allclose(h[h.epoch == 3].momentum, 0.54)
    # repetitions differ (initialization and data order)
    r0 = h[(h.repetition == 0)].sort_values(["network", "epoch"]).train_loss.to_numpy()
    r1 = h[(h.repetition == 1)].sort_values(["network", "epoch"]).train_loss.to_numpy()
    assert not np.allclose(r0, r1)
    # the recorded errors are those of the model: retrain one network alone and compare
    disk = pd.read_parquet(tmp_path / "history.parquet")
    pd.testing.assert_frame_equal(disk, h)
    assert load_results(tmp_path).config["widths"] == [2, 16]


def test_one_network_of_the_sweep_matches_a_plain_training_loop(small):
    res = sweep(small, [8, 32], epochs=2, progress=False)
    model = pyireg.PackedMLP([8, 32], 100, 10, seed=0)
    opt = pyireg.MomentumSGD(model, 0.1, 0.5)
    for epoch in range(2):
        opt.lr, opt.momentum = 0.1 * 0.99 ** epoch, min(0.9, 0.5 + 0.02 * epoch)
        perm = np.random.default_rng([0, epoch]).permutation(300)
        for i in range(0, 300, 100):
            opt.step(small.X_train[perm[i:i + 100]], small.y_train[perm[i:i + 100]])
    err, _ = model.evaluate(small.X_test, small.y_test)
    last = res.history[res.history.epoch == 2].sort_values("network")
    np.testing.assert_array_equal(last.test_error.to_numpy(), err)


def test_summary_early_stopping_and_weight_decay_choice():
    rows = []
    # two repetitions, one width, two weight decays; val error per epoch chosen by hand
    val = {(0, 0.0): [0.5, 0.3, 0.4], (0, 0.1): [0.6, 0.5, 0.2], (1, 0.0): [0.2, 0.3, 0.3], (1, 0.1): [0.4, 0.4, 0.4]}
    for (rep, wd), vs in val.items():
        for e, v in enumerate(vs, 1):
            rows.append(dict(repetition=rep, network=int(wd > 0), width=8, weight_decay=wd, lr_scale=1.0, epoch=e,
                             train_error=0.1 / e, val_error=v, test_error=v + 0.01 * e, train_loss=0, val_loss=0,
                             test_loss=0))
    s = summarize(pd.DataFrame(rows))
    nowd = s.loc[(0.0, 1.0, 8)]
    # rep 0: least val at epoch 2 -> test 0.32; rep 1: epoch 1 -> 0.21
    assert nowd.test_error_es_mean == pytest.approx((0.32 + 0.21) / 2)
    assert nowd.test_error_final_mean == pytest.approx((0.43 + 0.33) / 2)
    assert nowd.epoch_es_mean == pytest.approx(1.5)
    ch = s.loc[("chosen", 1.0, 8)]
    # rep 0 chooses wd 0.1 (val 0.2 < 0.3), rep 1 chooses wd 0 (0.2 < 0.4)
    assert ch.chosen_weight_decay_mean == pytest.approx(0.05)
    assert ch.test_error_es_mean == pytest.approx((0.23 + 0.21) / 2)
    assert ch.repetitions == 2


def test_interrupted_sweep_resumes_to_the_same_numbers(small, tmp_path):
    kw = dict(seeds=[0, 1], weight_decays=[0.0, 1e-3], epochs=4, progress=False)
    full = sweep(small, [3, 40], out=tmp_path / "full", **kw).history

    class Stop(Exception):
        pass

    def interrupt(rep, epoch):
        if rep == 1 and epoch == 2:
            raise Stop
    with pytest.raises(Stop):
        sweep(small, [3, 40], out=tmp_path / "cut", on_epoch=interrupt, **kw)
    saved = pd.read_parquet(tmp_path / "cut" / "history.parquet")
    assert saved.groupby("repetition").epoch.max().to_dict() == {0: 4, 1: 2}   # nothing finished was lost
    with pytest.raises(FileExistsError, match="resume"):
        sweep(small, [3, 40], out=tmp_path / "cut", **kw)
    with pytest.raises(ValueError, match="another configuration"):
        sweep(small, [3, 41], out=tmp_path / "cut", resume=True, **kw)
    resumed = sweep(small, [3, 40], out=tmp_path / "cut", resume=True, **kw).history
    cols = [c for c in full.columns if c != "train_seconds"]
    key = ["repetition", "network", "epoch"]
    pd.testing.assert_frame_equal(full[cols].sort_values(key).reset_index(drop=True),
                                  resumed[cols].sort_values(key).reset_index(drop=True))


def test_sweep_bad_arguments(small):
    with pytest.raises(ValueError, match="widths"):
        sweep(small, [0, 4], progress=False)
    with pytest.raises(ValueError, match="epochs"):
        sweep(small, [4], epochs=0, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        sweep(small, [4], batch_size=10**6, progress=False)
    with pytest.raises(ValueError, match="weight_decays"):
        sweep(small, [4], weight_decays=[-1.0], progress=False)


def test_cli_sweep_reproduce_and_plot(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sweep", "--widths", "2,8", "--epochs", "2", "--n-train", "200", "--n-val", "100",
                 "--n-test", "100", "--weight-decay", "0,1e-3", "--out", str(out), "--quiet"]) == 0
    assert (out / "history.parquet").exists()
    assert "| 8 |" in capsys.readouterr().out
    fig = tmp_path / "f2"
    assert main(["reproduce", "figure2", "--widths", "2,8", "--epochs", "2", "--seeds", "0,1",
                 "--weight-decay", "0,1e-3", "--out", str(fig), "--quiet"]) == 0
    assert (fig / "figure2.png").stat().st_size > 10000
    for row in ("original", "censored", "censored_noise"):
        assert (fig / row / "history.parquet").exists()
    assert main(["plot", str(fig), "--output", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").exists()
    assert main(["sweep", "--dataset", "mnist", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "x"),
                 "--quiet"]) == 2
    assert "not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sweep", "--widths", "a,b", "--out", "x"])


def test_cli_reproduce_figure1(tmp_path):
    out = tmp_path / "f1"
    assert main(["reproduce", "figure1", "--widths", "2,16", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    h = pd.read_parquet(out / "original" / "history.parquet")
    assert sorted(h.width.unique()) == [2, 16] and h.epoch.max() == 2
    assert (out / "figure1.png").stat().st_size > 10000
