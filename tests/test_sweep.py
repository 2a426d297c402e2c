"""Sweeps: bookkeeping, summaries, Parquet output, resume after interruption, your own data, the
dtype rule, checks before any output, memory, label noise and splits per repetition, progress."""
import importlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import pyireg
from pyireg import _core
from pyireg import data as D
from pyireg.experiments import load_results, summarize, sweep


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models: one native thread avoids waiting at parallel barriers on a busy machine (the
    conftest fixture restores the setting); results do not depend on the thread count."""
    _core.set_num_threads(1)


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


from pyireg.experiments import resources as R  # noqa: E402
from pyireg.experiments import sweep as _sweep_fn  # noqa: E402,F401
from pyireg.experiments import training as T  # noqa: E402

S = importlib.import_module("pyireg.experiments.sweep")   # the module (its name is shadowed by the function)


def _xy(n=120, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)


def test_sweep_takes_a_pair_of_arrays_of_any_kind():
    import torch
    X, y = _xy()
    kw = dict(widths=[2, 8], epochs=2, batch_size=20, progress=False)
    ref = sweep((X, y), **kw)
    assert ref.config["dtype"] == "float32" and ref.config["dataset"]["name"] == "arrays"
    cols = [c for c in ref.history.columns if c != "train_seconds"]
    for data in ((X.tolist(), y.tolist()), (pd.DataFrame(X), pd.Series(y)), (torch.tensor(X), torch.tensor(y)),
                 D.from_arrays(X, y)):
        pd.testing.assert_frame_equal(sweep(data, **kw).history[cols], ref.history[cols])
    for dt in (np.float32, "float32", np.dtype("float32")):
        pd.testing.assert_frame_equal(sweep((X, y), dtype=dt, **kw).history[cols], ref.history[cols])
    f64 = sweep((X, y), dtype="float64", **kw)
    assert f64.config["dtype"] == "float64"
    np.testing.assert_allclose(f64.history.train_loss, ref.history.train_loss, rtol=1e-3)
    with pytest.raises(TypeError,
                       match=r"dataset: expected a pyireg.data.Dataset or a pair \(X, y\), got tuple of length 3"):
        sweep((X, y, y), **kw)


@pytest.mark.parametrize("kw,exc,match", [
    (dict(widths=[0, 4]), ValueError, "widths: expected integers >= 1, got 0 at index 0"),
    (dict(widths=[2.5]), ValueError, "widths"),
    (dict(seeds=[1, 1]), ValueError, "seeds: expected distinct seeds"),
    (dict(seeds=[-1]), ValueError, "seeds: expected integers >= 0"),
    (dict(epochs=0), ValueError, "epochs: expected a positive integer"),
    (dict(batch_size=10 ** 6), ValueError, "batch_size: expected 1..72"),
    (dict(weight_decays=[-1.0]), ValueError, "weight_decays: expected non-negative finite numbers"),
    (dict(lr_scales=[0.0]), ValueError, "lr_scales: expected positive finite numbers"),
    (dict(label_noise=1.0), ValueError, r"label_noise: expected a fraction in \[0, 1\)"),
    (dict(checkpoints="some"), ValueError, "checkpoints: expected one of resume, final, all"),
    (dict(init_std=-1.0), ValueError, "init_std: expected a positive number"),
    (dict(init_std=[1.0, 2.0, 3.0]), ValueError, "init_std: expected a positive number or 2 positive numbers"),
    (dict(dtype="int8"), ValueError, "dtype: expected float32 or float64"),
    (dict(schedule="paper"), TypeError, r"schedule: expected a schedule \(an object with lr\(epoch\)"),
    (dict(optimizer="adagrad"), ValueError,
     "optimizer: expected one of momentum_sgd, path_sgd, ddp_sgd, nesterov_sgd, adam, adamw, cg, got .adagrad"),
    (dict(optimizer="ddp_sgd", optimizer_args={"beta": 1}), ValueError, "optimizer_args: ddp_sgd takes alpha"),
    (dict(device="cuda"), ValueError, "device: .cuda."),
    (dict(measures=["margin"], loss="squared"), ValueError, "measures: .margin. needs class labels"),
    (dict(max_memory=1000), MemoryError, r"widths: this sweep needs about .* hidden units"),
    *[(dict(max_memory=m, executor=e), ValueError, r"max_memory: expected None \(the memory available\), 0")
      for m in ("abc", [1], -1, float("nan"), True) for e in (None, "local")],
    (dict(checkpoint_every=0), ValueError, "checkpoint_every: expected a positive integer"),
])
def test_every_argument_is_checked_before_any_output(tmp_path, kw, exc, match):
    X, y = _xy()
    out = tmp_path / "never"
    with pytest.raises(exc, match=match):
        sweep((X, y), **{**dict(widths=[2, 8], epochs=1, batch_size=20, progress=False, out=out), **kw})
    assert not out.exists()


def test_memory_estimate_before_anything_is_allocated():
    est = R.estimate_memory(range(1, 100001), 100, 10)           # the issue's --widths 1:100000
    assert est["hidden_units"] == 100000 * 100001 // 2
    assert est["weights and momentum"] == 2 * est["hidden_units"] * 110 * 4
    assert est["total"] > 2 ** 40                                  # TiB: refused on any machine this runs on
    with pytest.raises(MemoryError, match=r"needs about [\d.]+ TiB"):
        R.check_memory(est)
    small = R.estimate_memory([1, 2, 4], 100, 10)
    R.check_memory(small)
    R.check_memory(est, max_memory=0)                              # 0: no check
    assert R.estimate_memory([64], 100, 10, dtype="float64")["weights and momentum"] == \
        2 * R.estimate_memory([64], 100, 10)["weights and momentum"]


def test_epoch_bookkeeping_makes_no_copy_of_the_weights():
    import tracemalloc
    model = pyireg.PackedMLP([20000, 20000], 100, 10, seed=0)
    opt = pyireg.MomentumSGD(model, 0.1, 0.5)
    ev = {s: (np.zeros(2), np.ones(2)) for s in ("train", "val", "test")}
    b0, s0 = model.unit_balance(), 2 * model.measures()["l2_penalty"]
    args = (model, opt, ev, b0, s0, 0, 1, np.array(model.widths), np.zeros(2), np.ones(2), 10, 0.1)
    T.epoch_frame(*args)                                          # warm up (imports, caches)
    tracemalloc.start()
    frame = T.epoch_frame(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < model.U.nbytes / 4, (peak, model.U.nbytes)
    np.testing.assert_allclose(frame.norm_U, [np.linalg.norm(model.U[:20000]), np.linalg.norm(model.U[20000:])],
                               rtol=1e-5)


def test_every_sample_is_used_each_epoch_unless_drop_last():
    X, y = _xy(n=250 + 80)
    ds = D.from_arrays(X, y, n_val=40, n_test=40)                  # 250 training samples, batches of 100
    for drop_last in (False, True):
        res = sweep(ds, [8], epochs=2, drop_last=drop_last, progress=False)
        model = pyireg.PackedMLP([8], 6, ds.num_classes, seed=0)
        opt = pyireg.MomentumSGD(model, 0.1, 0.5)
        for epoch in range(2):
            opt.lr, opt.momentum = 0.1 * 0.99 ** epoch, 0.5 + 0.02 * epoch
            perm = np.random.default_rng([0, epoch]).permutation(250)
            for i in range(0, 250 - 100 + 1 if drop_last else 250, 100):
                opt.step(ds.X_train[perm[i:i + 100]], ds.y_train[perm[i:i + 100]])
        assert opt.steps == (4 if drop_last else 6)
        assert res.history.train_loss.iloc[-1] == model.evaluate(ds.X_train, ds.y_train, batch_size=512)[1][0]


def test_networks_stuck_at_chance_are_reported_with_the_likely_cause():
    imgs, labels = D.core._mnist5k()
    pick = np.random.default_rng(0).permutation(len(labels))[:600]
    raw, labels = D.downsample(imgs[pick], 10), labels[pick]         # pixels 0..255, not standardized
    ds = D.from_arrays(raw, labels, n_val=100, n_test=100, standardize=False)
    with pytest.warns(S.ChanceWarning, match=r"ended at chance.*ln 10.*not standardized.*standardize=True"):
        res = sweep(ds, [1, 4, 16], epochs=2, progress=False)
    h = res.history
    expect = np.abs(h.train_loss - np.log(10)) <= T.CHANCE_RTOL * np.log(10)
    np.testing.assert_array_equal(h.at_chance.to_numpy(), expect.to_numpy())
    assert h.at_chance.any() and not h.diverged.any()
    good = sweep(D.from_arrays(raw, labels, n_val=100, n_test=100), [1, 4, 16], epochs=2, progress=False)
    assert not good.history.at_chance.any()                        # standardized: no warning (warnings are errors)


def test_label_noise_and_split_are_drawn_per_repetition():
    ds = D.load("mnist5k", n_train=300, n_val=200, n_test=200)
    r0 = T.rep_dataset(ds, 0, label_noise=0.1)
    r1 = T.rep_dataset(ds, 1, label_noise=0.1)
    assert not np.array_equal(r0.y_train, r1.y_train)
    np.testing.assert_array_equal(r0.y_train, D.label_noise(ds, 0.1, seed=T.NOISE_SEED_OFFSET).y_train)
    res = sweep(ds, [4, 16], seeds=[0, 1], epochs=2, label_noise=0.1, progress=False)
    alone = sweep(D.label_noise(ds, 0.1, seed=T.NOISE_SEED_OFFSET + 1), [4, 16], seeds=[1], epochs=2, progress=False)
    cols = [c for c in res.history.columns if c != "train_seconds"]
    pd.testing.assert_frame_equal(res.history[res.history.repetition == 1][cols].reset_index(drop=True),
                                  alone.history[cols])
    s0, s1 = T.rep_dataset(ds, 0, resample_split=True), T.rep_dataset(ds, 1, resample_split=True)
    assert not np.array_equal(s0.y_train, s1.y_train)
    np.testing.assert_array_equal(s0.y_test, s1.y_test)
    split = sweep(ds, [4], seeds=[0, 1], epochs=1, resample_split=True, progress=False)
    assert split.config["resample_split"] and split.complete


def test_progress_is_a_plain_rate_limited_line_off_a_terminal(capsys, monkeypatch):
    X, y = _xy()
    sweep((X, y), [2, 8], seeds=[0, 1], epochs=3, batch_size=20)       # stderr is captured: not a terminal
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "\r" not in err and len(lines) == 2                          # first and last epoch only
    assert all("best val error" in line and "test" not in line for line in lines)
    assert "rep 1/2 (seed 0) epoch 1/3" in lines[0] and "rep 2/2 (seed 1) epoch 3/3" in lines[1]
    monkeypatch.setattr(R, "PROGRESS_INTERVAL", 0.0)
    sweep((X, y), [2, 8], seeds=[0, 1], epochs=3, batch_size=20)
    assert len(capsys.readouterr().err.strip().splitlines()) == 6       # one line per epoch
    sweep((X, y), [2, 8], epochs=3, batch_size=20, progress=False)
    assert capsys.readouterr().err == ""


def test_import_pyireg_needs_only_numpy_and_exposes_the_subpackages():
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                blocked = ('pandas', 'pyarrow', 'matplotlib', 'torch', 'sklearn', 'tqdm', 'mlxtend', 'ray')
                if name.split('.')[0] in blocked:
                    raise ImportError('blocked ' + name)
        sys.meta_path.insert(0, Block())
        import pyireg
        m = pyireg.PackedMLP([2, 3], 4, 2)
        assert callable(pyireg.data.load) and callable(pyireg.data.from_arrays)
        assert callable(pyireg.theory.train_objective4) and callable(pyireg.convex.fit)
        assert callable(pyireg.experiments.sweep)
        assert {'data', 'plots', 'theory', 'convex', 'experiments'} <= set(dir(pyireg))
        try:
            pyireg.data.load('digits')
        except ImportError as e:
            print('digits needs', e)
        try:
            pyireg.nothing
        except AttributeError as e:
            print(e)
        ex = pyireg.distributed.RayExecutor(workers=2)        # made without Ray; needed when it starts
        try:
            ex.start()
        except ImportError as e:
            print('ray:', e)
        assert 'ray' not in sys.modules
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert r.returncode == 0, r.stderr
    assert "digits needs blocked sklearn" in r.stdout and "has no attribute 'nothing'" in r.stdout
    assert 'ray: executor: running packs on Ray needs the Python package \'ray\': pip install "pyireg[ray]"' in r.stdout


def test_incomplete_sweep_is_known_as_such(tmp_path):
    X, y = _xy()

    class Stop(Exception):
        pass

    def stop(rep, epoch):
        if rep == 1:
            raise Stop
    with pytest.raises(Stop):
        sweep((X, y), [2], seeds=[0, 1], epochs=2, batch_size=20, progress=False, out=tmp_path, on_epoch=stop)
    res = load_results(tmp_path)
    assert not res.complete and res.epochs_done() == {0: 2, 1: 1}
    assert sweep((X, y), [2], seeds=[0, 1], epochs=2, batch_size=20, progress=False, out=tmp_path,
                 resume=True).complete


def test_sweep_records_measures_every_epoch_in_process_and_in_packs(tmp_path):
    """Measures chosen by the user become history columns, equal to pyireg.measures.compute on
    the same model, and bit-identical when the grid is trained in packs."""
    from pyireg import measures as M
    from pyireg.distributed import LocalExecutor
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((300, 12)), rng.integers(0, 3, 300)
    names = ["path_l2", "spectral_product", "margin", "path_l2_margin", "dist_U", "overparam_bound"]
    kw = dict(widths=[2, 16, 64], seeds=[0], epochs=2, batch_size=50, progress=False, measures=names)
    local = sweep((X, y), out=tmp_path / "local", **kw)
    packs = sweep((X, y), out=tmp_path / "packs", executor=LocalExecutor(pack_units=20), **kw)
    cols = ["repetition", "network", "epoch"] + names
    a = local.history.sort_values(["repetition", "epoch", "network"])[cols].reset_index(drop=True)
    b = packs.history.sort_values(["repetition", "epoch", "network"])[cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert np.isfinite(a[["path_l2", "spectral_product", "margin", "dist_U"]].to_numpy()).all()
    # normalized by the margin: defined where the margin is positive (NaN elsewhere)
    for name in ("path_l2_margin", "overparam_bound"):
        np.testing.assert_array_equal(np.isfinite(a[name]), a["margin"] > 0)
    assert (a.loc[a.epoch == 1, "dist_U"] > 0).all()
    # the last epoch's values are those of the final weights (retrained here outside the sweep)
    from pyireg.experiments.training import TrainSpec, train_networks
    from pyireg.schedule import PaperSchedule
    ds = pyireg.data.from_arrays(X, y)
    spec = TrainSpec(grid_widths=(2, 16, 64), grid_weight_decays=(0.0,) * 3, grid_lr_scales=(1.0,) * 3, epochs=2,
                     batch_size=50, drop_last=False, schedule=PaperSchedule(), init_std=None, label_noise=0.0,
                     resample_split=False, eval_batch=512, measures=tuple(names))
    seen = {}
    train_networks(ds, spec, 0, range(3), after_epoch=lambda e, frame, model, opt, ev: seen.update(
        frame=frame, vals=M.compute(model, ["path_l2", "spectral_product"])))
    np.testing.assert_array_equal(seen["frame"]["path_l2"], seen["vals"]["path_l2"])
    np.testing.assert_array_equal(a.loc[a.epoch == 2, "path_l2"], seen["vals"]["path_l2"])
    with pytest.raises(ValueError, match="measures: 'pac_bayes' perturbs every network"):
        sweep((X, y), widths=[2], epochs=1, measures=["pac_bayes"], progress=False)
    with pytest.raises(ValueError, match="unknown measure 'bogus'.*named-only .*c1.*c2_<eps>"):
        sweep((X, y), widths=[2], epochs=1, measures=["bogus"], progress=False)
    # a known pattern with a parameter it cannot take: refused before the sweep writes anything
    # (it failed at the first epoch's measures, leaving config.json and a lock behind)
    for bad, match in (("c2_0", r"'c2_0': expected a positive finite magnitude"),
                       ("c2_1e400", r"'c2_1e400': expected a positive finite magnitude"),
                       ("path_l0", r"'path_l0': expected p > 0")):
        out = tmp_path / f"refused-{bad}"
        with pytest.raises(ValueError, match="measures: " + match):
            sweep((X, y), widths=[2], epochs=1, measures=[bad], progress=False, out=out)
        assert not out.exists()


def test_linear_networks_with_the_squared_loss_in_a_sweep(tmp_path):
    """sweep(activation="linear", loss="squared"): each network is the factorization W = U^T V
    trained onto the labels' one-hot codes; its errors are those of the largest output, and its
    trace norm can be recorded every epoch (it never exceeds the l2 penalty)."""
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((240, 10)), rng.integers(0, 4, 240)
    res = sweep((X, y), widths=[1, 3, 8], epochs=3, batch_size=40, activation="linear", loss="squared",
                weight_decays=[0.0, 1e-2], measures=["trace_norm", "l2_penalty", "group_l1"], progress=False,
                out=tmp_path / "lin")
    h = res.history
    assert res.config["activation"] == "linear" and res.config["loss"] == "squared"
    assert (h.trace_norm <= h.group_l1 * (1 + 1e-6)).all() and (h.group_l1 <= h.l2_penalty * (1 + 1e-6)).all()
    assert not h.at_chance.any()                      # the chance level is a cross-entropy notion
    # the recorded training error is the argmax error of the final linear maps on the training set
    from pyireg.experiments.training import TrainSpec, train_networks
    from pyireg.schedule import PaperSchedule
    ds = pyireg.data.from_arrays(X, y)
    spec = TrainSpec(grid_widths=(1, 3, 8) * 2, grid_weight_decays=(0.0,) * 3 + (1e-2,) * 3, grid_lr_scales=(1.0,) * 6,
                     epochs=3, batch_size=40, drop_last=False, schedule=PaperSchedule(), init_std=None,
                     label_noise=0.0, resample_split=False, eval_batch=512, activation="linear", loss="squared")
    seen = {}
    train_networks(ds, spec, 0, range(6), after_epoch=lambda e, frame, model, opt, ev: seen.update(model=model))
    m = seen["model"]
    maps = [m.network(n)[0].T.astype(np.float64) @ m.network(n)[1] for n in range(6)]      # d x k each
    want = [(ds.X_train @ W).argmax(1) != ds.y_train for W in maps]
    final = h[h.epoch == 3].sort_values("network")
    np.testing.assert_allclose(final.train_error.to_numpy(), [w.mean() for w in want], atol=1.5 / len(ds.y_train))
    with pytest.raises(ValueError, match="loss: expected one of cross_entropy, squared"):
        sweep((X, y), widths=[2], loss="hinge", progress=False)


def test_a_sweep_with_diverged_networks_warns_and_still_records_its_measures():
    from pyireg.experiments.sweep import ChanceWarning
    from pyireg.schedule import PaperSchedule
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((200, 8)), rng.integers(0, 3, 200)
    with pytest.warns(ChanceWarning, match=r"networks \(widths .*\) diverged: a loss became NaN or inf"):
        res = sweep((X, y), widths=[1, 4], epochs=2, batch_size=50, lr_scales=[1.0, 1e9], progress=False,
                    schedule=PaperSchedule(lr0=1.0), measures=["spectral_product", "trace_norm"])
    last = res.history[res.history.epoch == 2]
    assert last.diverged.any() and not last.diverged.all()
    assert np.isnan(last.loc[last.diverged, "spectral_product"]).all()
    assert np.isfinite(last.loc[~last.diverged, "spectral_product"]).all()
