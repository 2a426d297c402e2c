"""Every optimizer of the training loop's registry gets the safe path: `pyireg sweep --optimizer
NAME` trains, and resumes after SIGKILLs (at fixed file operations of the sweep) to exactly the
history of the uninterrupted run; in packs (executor "local") the rows are the same bit for bit;
the unbalanced initialization preserves every network's function; schedules are duck-typed and
their presets come back from config.json."""
import importlib
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import kill_after_ops

from pyireg import _core
from pyireg import data as D
from pyireg.experiments import load_results, sweep
from pyireg.experiments import training as T
from pyireg.schedule import (
    CosineSchedule,
    PaperSchedule,
    StepSchedule,
    WarmupSchedule,
    schedule_from_json,
    schedule_to_json,
)

VOLATILE = ["train_seconds"]
OPTIMIZERS = ["momentum_sgd", "path_sgd", "ddp_sgd", "nesterov_sgd", "adam", "adamw", "cg"]
# each optimizer's own command-line arguments (not their defaults, so that they must travel)
OWN_ARGS = {"ddp_sgd": {"alpha": 0.3}, "adam": {"beta1": 0.8, "beta2": 0.99, "eps": 1e-6},
            "adamw": {"beta2": 0.95}, "cg": {"max_ls": 6}}
ARGS = ["--n-val", "20", "--n-test", "20", "--widths", "1,3,8", "--reps", "2", "--epochs", "3", "--batch-size", "20",
        "--quiet", "--threads", "1", "--lr", "0.05"]

_CHILD = r"""
import importlib
import sys
import pyarrow.parquet                    # imported before the sweep starts
S = importlib.import_module("pyireg.experiments.store")


def report(op, path):                     # tell the parent about each file operation, as it starts
    sys.stdout.write(f"op {op}\n")
    sys.stdout.flush()


S.set_fault_hook(report)
from pyireg.cli import main
sys.exit(main(["sweep", "--data", sys.argv[1], "--out", sys.argv[2], "--resume", *sys.argv[3:]]))
"""


@pytest.fixture(autouse=True)
def _one_thread():
    _core.set_num_threads(1)


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(80, 6))
    path = tmp_path_factory.mktemp("data") / "data.npz"
    np.savez(path, X=X, y=(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5))
    return path


def _optimizer_args(name):
    # cg takes the whole training set at each step: the command line sets its batch size
    return ["--optimizer", name] + [a for k, v in OWN_ARGS.get(name, {}).items()
                                    for a in (f"--{k.replace('_', '-')}", str(v))]


def _args(name):
    return [a for i, a in enumerate(ARGS) if name != "cg" or "--batch-size" not in ARGS[max(i - 1, 0):i + 1]]


@pytest.mark.slow
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_resumes_after_sigkill_to_the_uninterrupted_history(npz, tmp_path, name):
    from pyireg.cli import main
    ref_dir = tmp_path / "ref"
    assert main(["sweep", "--data", str(npz), "--out", str(ref_dir), *_args(name), *_optimizer_args(name)]) == 0
    ref = load_results(ref_dir).history.drop(columns=VOLATILE)
    assert ref.epoch.max() == 3 and np.isfinite(ref.train_loss).all()
    cfg = json.loads((ref_dir / "config.json").read_text())
    assert cfg["optimizer"] == name and cfg["optimizer_args"] == OWN_ARGS.get(name, {})
    if name in ("ddp_sgd", "adam", "adamw", "cg"):
        assert (ref.momentum == 0).all()                 # no momentum: the history says so
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    out = tmp_path / "cut"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_WAIT_POLICY="passive")
    kills, committed = 0, []
    for target in (4, 9, 15, 22, None):                   # kill at the target-th file operation of each run
        p = subprocess.Popen([sys.executable, str(script), str(npz), str(out), *_args(name), *_optimizer_args(name)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        killed, rc, err = kill_after_ops(p, target, signal.SIGKILL)
        kills += killed
        assert "Traceback" not in err, err
        if (out / "history.parquet").exists():
            h = load_results(out).history.drop(columns=VOLATILE)
            pd.testing.assert_frame_equal(h, ref.iloc[:len(h)].reset_index(drop=True))   # a prefix, always
            committed.append(len(h))
        if target is None:
            assert rc == 0, err
    assert kills >= 3, kills
    assert len(set(committed)) > 2, committed             # the kills landed at different points
    pd.testing.assert_frame_equal(load_results(out).history.drop(columns=VOLATILE), ref)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_in_packs_equals_one_model(tmp_path, name):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(90, 5))
    ds = D.from_arrays(X, (X[:, 0] > 0).astype(int), n_val=20, n_test=20)
    kw = dict(widths=[1, 4, 9], seeds=[0, 1], epochs=2, batch_size=50 if name == "cg" else 20, progress=False,
              optimizer=name, schedule=PaperSchedule(lr0=0.05))
    one = sweep(ds, **kw).history.drop(columns=VOLATILE)
    from pyireg.distributed import LocalExecutor
    packs = sweep(ds, executor=LocalExecutor(pack_units=5), out=tmp_path / "p", **kw).history.drop(columns=VOLATILE)
    pd.testing.assert_frame_equal(one, packs)
    other = sweep(ds, **{**kw, "optimizer": "momentum_sgd" if name != "momentum_sgd" else "path_sgd",
                         "batch_size": 20})
    assert not np.array_equal(other.history.train_loss.to_numpy(), one.train_loss.to_numpy())


def test_the_loop_follows_each_optimizer_step_by_step():
    """The loop's history equals a hand-written loop with the optimizer class (the batch policy
    of pyireg.experiments.training), for each optimizer."""
    import pyireg
    rng = np.random.default_rng(5)
    X = rng.normal(size=(130, 5))
    ds = D.from_arrays(X, (X[:, 0] + X[:, 2] > 0).astype(int), n_val=20, n_test=20)
    n = len(ds.y_train)
    from pyireg.optim import Adam, AdamW, NesterovSGD
    classes = {"momentum_sgd": pyireg.MomentumSGD, "path_sgd": pyireg.PathSGD, "ddp_sgd": pyireg.DDPSGD,
               "nesterov_sgd": NesterovSGD, "adam": Adam, "adamw": AdamW}
    no_momentum = ("ddp_sgd", "adam", "adamw")
    for name, cls in classes.items():
        args = {"adamw": {"beta1": 0.7, "eps": 1e-5}}.get(name, {})
        res = sweep(ds, [3], epochs=2, batch_size=25, optimizer=name, schedule=PaperSchedule(lr0=0.05),
                    progress=False, weight_decays=[0.01], optimizer_args=args)
        model = pyireg.PackedMLP([3], 5, ds.num_classes, seed=[np.random.SeedSequence(0).spawn(1)[0]])
        if name in ("adam", "adamw"):
            opt = cls(model, 0.05, betas=(args.get("beta1", 0.9), 0.999), eps=args.get("eps", 1e-8),
                      weight_decay=0.01)
        else:
            opt = cls(model, 0.05, weight_decay=0.01) if name == "ddp_sgd" else cls(model, 0.05, 0.5, 0.01)
        for epoch in range(2):
            opt.lr = 0.05 * 0.99 ** epoch
            if name not in no_momentum:
                opt.momentum = min(0.9, 0.5 + 0.02 * epoch)
            perm = np.random.default_rng([0, epoch]).permutation(n)
            for i in range(0, n, 25):
                opt.step(ds.X_train[perm[i:i + 25]], ds.y_train[perm[i:i + 25]])
        assert res.history.train_loss.iloc[-1] == model.evaluate(ds.X_train, ds.y_train, batch_size=512)[1][0], name


def test_unbalanced_initialization_keeps_each_function_and_changes_sgd():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(100, 4))
    ds = D.from_arrays(X, (X[:, 0] > 0).astype(int), n_val=20, n_test=20)
    spec = T.TrainSpec(grid_widths=(2, 8), grid_weight_decays=(0.0, 0.0), grid_lr_scales=(1.0, 1.0), epochs=1,
                       batch_size=20, drop_last=False, schedule=PaperSchedule(), init_std=None, label_noise=0.0,
                       resample_split=False, eval_batch=512)
    plain, _ = T.build(ds, spec, 0, np.arange(2))
    spec_u = T.TrainSpec(**{**spec.__dict__, "init_transform": "unbalanced",
                            "init_transform_args": (("factor", 10.0),)})
    unb, _ = T.build(ds, spec_u, 0, np.arange(2))
    assert not np.allclose(plain.U, unb.U)
    np.testing.assert_allclose(unb.forward(ds.X_val)[0], plain.forward(ds.X_val)[0], rtol=1e-4, atol=1e-5)
    a = sweep(ds, [2, 8], epochs=2, batch_size=20, progress=False)
    b = sweep(ds, [2, 8], epochs=2, batch_size=20, progress=False, init_transform="unbalanced")
    c = sweep(ds, [2, 8], epochs=2, batch_size=20, progress=False, init_transform="unbalanced", optimizer="path_sgd")
    d = sweep(ds, [2, 8], epochs=2, batch_size=20, progress=False, optimizer="path_sgd")
    assert not np.allclose(a.history.train_loss, b.history.train_loss)          # SGD is not invariant
    np.testing.assert_allclose(c.history.train_loss, d.history.train_loss, rtol=1e-4)   # Path-SGD is
    with pytest.raises(ValueError, match="init_transform: expected None or one of unbalanced"):
        sweep(ds, [2], epochs=1, init_transform="tilted", progress=False)


def test_schedules_are_duck_typed_and_presets_come_back_from_config(tmp_path):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(100, 4))
    ds = D.from_arrays(X, (X[:, 0] > 0).astype(int), n_val=20, n_test=20)

    class Halving:                                         # any object with lr(epoch), momentum(epoch)
        def lr(self, epoch):
            return 0.1 / 2 ** epoch

        def momentum(self, epoch):
            return 0.5

    res = sweep(ds, [2], epochs=3, batch_size=20, schedule=Halving(), out=tmp_path / "h", progress=False)
    np.testing.assert_array_equal(res.history.lr, np.float32([0.1, 0.05, 0.025]))     # the model dtype
    saved = json.loads((tmp_path / "h" / "config.json").read_text())["schedule"]
    assert saved == {"kind": "tabulated", "lrs": [0.1, 0.05, 0.025], "momenta": [0.5, 0.5, 0.5]}
    for s in (PaperSchedule(), StepSchedule(0.2, 2, 0.5), CosineSchedule(0.1, 10, 0.01),
              WarmupSchedule(StepSchedule(0.1, 3), 4)):
        back = schedule_from_json(json.loads(json.dumps(schedule_to_json(s, 5))))
        assert back == s and [back.lr(e) for e in range(12)] == [s.lr(e) for e in range(12)]
    assert CosineSchedule(0.1, 10).lr(10) == 0.0 and WarmupSchedule(PaperSchedule(), 4).lr(0) == 0.1 / 4
    for make, match in ((lambda: StepSchedule(step=0), "step: expected a positive integer, got 0"),
                        (lambda: CosineSchedule(epochs=True), "epochs: expected a positive integer, got True"),
                        (lambda: WarmupSchedule(warmup=0), "warmup: expected a positive integer"),
                        (lambda: StepSchedule(momentum0=1.0), r"momentum0: expected a number in \[0, 1\)"),
                        (lambda: CosineSchedule(0.1, 5, 0.2), r"lr_min: expected a number in \[0, 0.1\]"),
                        (lambda: WarmupSchedule(base="paper"), "base: expected a schedule")):
        with pytest.raises((ValueError, TypeError), match=match):
            make()
    # resume compares the recorded schedule: another one is refused with the difference named
    with pytest.raises(ValueError, match="resume: .*schedule"):
        sweep(ds, [2], epochs=3, batch_size=20, schedule=PaperSchedule(), out=tmp_path / "h", resume=True,
              progress=False)


def test_registries_take_new_optimizers():
    """A later optimizer plugs in by registering (here a renamed momentum SGD)."""
    import pyireg
    T.register_optimizer("test_sgd_copy", lambda m, lr, mom, wd: pyireg.MomentumSGD(m, lr, mom, wd))
    try:
        rng = np.random.default_rng(6)
        X = rng.normal(size=(60, 3))
        ds = D.from_arrays(X, (X[:, 0] > 0).astype(int), n_val=10, n_test=10)
        a = sweep(ds, [2], epochs=2, batch_size=20, progress=False, optimizer="test_sgd_copy")
        b = sweep(ds, [2], epochs=2, batch_size=20, progress=False)
        pd.testing.assert_frame_equal(a.history.drop(columns=VOLATILE), b.history.drop(columns=VOLATILE))
    finally:
        del T.OPTIMIZERS["test_sgd_copy"]
    # a full-batch optimizer: one step on the whole training set per epoch, refused otherwise
    T.register_optimizer("test_full_batch", lambda m, lr, mom, wd: pyireg.MomentumSGD(m, lr, mom, wd),
                         full_batch=True)
    try:
        with pytest.raises(ValueError, match="batch_size: the optimizer test_full_batch takes the whole training"):
            sweep(ds, [2], epochs=1, batch_size=20, progress=False, optimizer="test_full_batch")
        n = len(ds.y_train)
        a = sweep(ds, [2], epochs=2, batch_size=n, progress=False, optimizer="test_full_batch")
        # the loop hands a full-batch optimizer the training set in its stored order (not permuted)
        model = pyireg.PackedMLP([2], 3, ds.num_classes, seed=[np.random.SeedSequence(0).spawn(1)[0]])
        opt = pyireg.MomentumSGD(model, 0.1, 0.5, 0.0)
        for epoch in range(2):
            opt.lr, opt.momentum = 0.1 * 0.99 ** epoch, min(0.9, 0.5 + 0.02 * epoch)
            opt.step(ds.X_train, ds.y_train)
            assert a.history.train_loss.iloc[epoch] == model.evaluate(ds.X_train, ds.y_train, batch_size=512)[1][0]
        b = sweep(ds, [2], epochs=2, batch_size=n, progress=False)      # permuted: the same up to rounding
        np.testing.assert_allclose(a.history.train_loss, b.history.train_loss, rtol=1e-5)
    finally:
        del T.OPTIMIZERS["test_full_batch"]


def test_distributed_is_below_the_experiments():
    """pyireg.distributed runs jobs and never imports the experiments (which make the jobs and
    import the executors): no package circle; the packed runner uses the store's public names."""
    import ast
    import inspect
    import pkgutil

    import pyireg.distributed as dist
    for info in pkgutil.iter_modules(dist.__path__):
        src = inspect.getsource(importlib.import_module(f"pyireg.distributed.{info.name}"))
        mods = [n.module or "" for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom)]
        assert not any("experiments" in m for m in mods), (info.name, mods)
    src = inspect.getsource(importlib.import_module("pyireg.experiments.packed"))
    assert "import_module(" not in src and "experiments.sweep" not in src
    assert not [w for w in src.split() if w.startswith("store._")]


def test_a_resume_without_a_schedule_restores_the_recorded_one(tmp_path):
    from helpers import Killed
    rng = np.random.default_rng(8)
    X = rng.normal(size=(100, 4))
    ds = D.from_arrays(X, (X[:, 0] > 0).astype(int), n_val=20, n_test=20)
    sched = WarmupSchedule(CosineSchedule(0.2, 3, 0.0, 0.5), 2)
    kw = dict(widths=[2, 6], epochs=3, batch_size=20, progress=False)
    ref = sweep(ds, schedule=sched, **kw).history.drop(columns=VOLATILE)

    def stop(rep, epoch):
        raise Killed
    with pytest.raises(Killed):
        sweep(ds, schedule=sched, out=tmp_path / "s", on_epoch=stop, **kw)
    res = sweep(ds, out=tmp_path / "s", resume=True, **kw)            # no schedule named: the saved one
    pd.testing.assert_frame_equal(res.history.drop(columns=VOLATILE), ref)


def test_command_line_schedules(tmp_path, npz):
    from pyireg.cli import main
    base = ["sweep", "--data", str(npz), "--n-val", "20", "--n-test", "20", "--widths", "2", "--epochs", "4",
            "--batch-size", "20", "--quiet"]
    assert main([*base, "--schedule", "step", "--step-every", "2", "--step-gamma", "0.5", "--warmup", "2",
                 "--lr", "0.2", "--momentum", "0.3", "--out", str(tmp_path / "a")]) == 0
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())["schedule"]
    assert cfg == {"kind": "warmup", "warmup": 2,
                   "base": {"kind": "step", "lr0": 0.2, "step": 2, "gamma": 0.5, "momentum0": 0.3}}
    lrs = load_results(tmp_path / "a").history.groupby("epoch").lr.first().to_numpy()
    np.testing.assert_allclose(lrs, [0.1, 0.2, 0.1, 0.1], rtol=1e-6)       # warmup 1/2, then 0.2, x0.5 at 2
    assert main([*base, "--schedule", "cosine", "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "config.json").read_text())["schedule"]["kind"] == "cosine"


def test_epoch_0_is_recorded_on_request_and_resumes(tmp_path):
    """record_epoch0: every network at its initialization is epoch 0 of the history (committed with
    epoch 1); a cut sweep resumes to the uninterrupted history; packs give the same rows."""
    from helpers import Killed

    from pyireg.distributed import LocalExecutor
    rng = np.random.default_rng(9)
    X = rng.normal(size=(100, 4))
    ds = D.from_arrays(X, (X[:, 0] > 0).astype(int), n_val=20, n_test=20)
    kw = dict(widths=[2, 6], seeds=[0, 1], epochs=2, batch_size=20, progress=False, record_epoch0=True,
              measures=["path_l2"])
    ref = sweep(ds, **kw).history.drop(columns=VOLATILE)
    assert sorted(ref.epoch.unique()) == [0, 1, 2] and len(ref) == 2 * 2 * 3
    import pyireg
    m = pyireg.PackedMLP([2, 6], 4, 2, seed=np.random.SeedSequence(1).spawn(2))
    first = ref[(ref.repetition == 1) & (ref.epoch == 0)]
    np.testing.assert_array_equal(first.train_loss, m.evaluate(ds.X_train, ds.y_train, batch_size=512)[1])
    calls = []

    def stop(rep, epoch):
        calls.append((rep, epoch))
        if len(calls) == 3:
            raise Killed
    with pytest.raises(Killed):
        sweep(ds, out=tmp_path / "s", on_epoch=stop, **kw)
    res = sweep(ds, out=tmp_path / "s", resume=True, **kw)
    pd.testing.assert_frame_equal(res.history.drop(columns=VOLATILE), ref)
    pd.testing.assert_frame_equal(load_results(tmp_path / "s").history.drop(columns=VOLATILE), ref)
    packs = sweep(ds, executor=LocalExecutor(pack_units=3), out=tmp_path / "p", **kw).history.drop(columns=VOLATILE)
    pd.testing.assert_frame_equal(packs, ref)


def test_one_class_data_are_refused_before_anything_is_written(tmp_path, capsys):
    """One class cannot be learned: one-class data (a cross-entropy model of one output) are
    refused by the data layer, in one line from the command line, before anything is created."""
    from pyireg.cli import main
    rng = np.random.default_rng(10)
    X = rng.normal(size=(60, 3))
    np.savez(tmp_path / "one.npz", X=X, y=np.zeros(60, dtype=int))
    assert main(["sweep", "--data", str(tmp_path / "one.npz"), "--widths", "2", "--epochs", "1", "--out",
                 str(tmp_path / "b"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected at least 2 classes" in err[0]
    assert not (tmp_path / "b").exists()


def test_progress_uses_a_notebook_bar_under_jupyter(monkeypatch):
    """In Jupyter (stderr is not a terminal there) the progress is tqdm.auto's notebook bar."""
    import sys
    import types

    from pyireg.experiments import resources
    fake = types.SimpleNamespace(get_ipython=lambda: types.SimpleNamespace(config={"IPKernelApp": {}}))
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert resources.in_notebook()
    made = []
    monkeypatch.setattr("tqdm.auto.tqdm", lambda **kw: made.append(kw) or types.SimpleNamespace(
        update=lambda n: None, set_postfix_str=lambda s: None, close=lambda: None))
    bar = resources.Progress(3, True, "x")
    bar.close()
    assert made and made[0]["total"] == 3
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    assert not resources.in_notebook()


def test_command_line_unbalanced_initialization(tmp_path, npz):
    from pyireg.cli import main
    base = ["sweep", "--data", str(npz), "--n-val", "20", "--n-test", "20", "--widths", "2,8", "--epochs", "2",
            "--batch-size", "20", "--quiet", "--optimizer", "path_sgd", "--lr", "0.05"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--unbalanced", "10", "--out", str(tmp_path / "b")]) == 0
    a, b = load_results(tmp_path / "a"), load_results(tmp_path / "b")
    assert b.config["init_transform"] == "unbalanced" and b.config["init_transform_args"] == {"factor": 10.0}
    assert not np.allclose(a.history.norm_U, b.history.norm_U)                    # other weights,
    np.testing.assert_allclose(a.history.train_loss, b.history.train_loss, rtol=1e-4)   # the same functions


def test_command_line_optimizer_arguments_are_checked_before_anything_is_written(tmp_path, npz, capsys):
    """Adam's arguments only with an optimizer that takes them, in range; one line, nothing created."""
    from pyireg.cli import main

    def run(argv):
        try:
            return main(argv)
        except SystemExit as e:               # argparse's range checks exit with 2
            return e.code
    base = ["sweep", "--data", str(npz), "--widths", "2", "--epochs", "1", "--quiet"]
    for bad, msg in ((["--optimizer", "momentum_sgd", "--beta1", "0.5"],
                      "--beta1: only with --optimizer adam or adamw"),
                     (["--optimizer", "adam", "--alpha", "0.5"], "--alpha: only with --optimizer ddp_sgd"),
                     (["--optimizer", "adamw", "--eps", "0"], "--eps"),
                     (["--optimizer", "adam", "--beta2", "1"], "--beta2")):
        assert run([*base, *bad, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err and msg in err[-1], (bad, err)
        assert not (tmp_path / "o").exists()
    # the library refuses out-of-range arguments too, before training
    with pytest.raises(ValueError, match=r"optimizer_args: beta1 expected a number in \[0, 1\), got 1.5"):
        T.check_optimizer("adam", {"beta1": 1.5})


def test_cg_in_the_loop_is_the_optimizer_on_the_whole_training_set(tmp_path):
    """optimizer="cg": one conjugate-gradient iteration per epoch on the whole training set, the
    same as the class driven by hand (with weight decay, per-network lr scales); each network's
    training loss never increases; other batch sizes are refused in one line."""
    from pyireg import PackedMLP
    from pyireg.optim.cg import ConjugateGradient
    rng = np.random.default_rng(11)
    X = rng.normal(size=(110, 5))
    ds = D.from_arrays(X, (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 1), n_val=20, n_test=20)
    n = len(ds.y_train)
    widths, lss = [1, 3, 8, 20], [1.0, 4.0]
    res = sweep(ds, widths, epochs=6, batch_size=n, optimizer="cg", optimizer_args={"max_ls": 8},
                weight_decays=[0.0, 1e-3], lr_scales=lss, schedule=PaperSchedule(lr0=0.5), progress=False)
    h = res.history
    assert (h.momentum == 0).all() and not h.diverged.any() and len(h) == 6 * len(widths) * 4
    grid = [(w, wd, ls) for wd in (0.0, 1e-3) for ls in lss for w in widths]
    model = PackedMLP([g[0] for g in grid], 5, ds.num_classes, seed=np.random.SeedSequence(0).spawn(len(grid)))
    opt = ConjugateGradient(model, 0.5, weight_decay=[g[1] for g in grid], max_ls=8)
    for epoch in range(6):
        opt.lr = 0.5 * 0.99 ** epoch * np.array([g[2] for g in grid])
        opt.step(ds.X_train, ds.y_train)
        got = h[h.epoch == epoch + 1].sort_values("network").train_loss.to_numpy()
        np.testing.assert_array_equal(got, model.evaluate(ds.X_train, ds.y_train, batch_size=512)[1])
    for _, g in h[h.weight_decay == 0].groupby("network"):
        loss = g.sort_values("epoch").train_loss.to_numpy()
        # the line search never lets the objective rise; the recorded loss is evaluated in another
        # summation order, hence the rounding allowance
        assert (np.diff(loss) <= 1e-6 * loss[:-1]).all(), loss
    assert h[h.epoch == 6].train_loss.mean() < h[h.epoch == 1].train_loss.mean()
    with pytest.raises(ValueError, match=f"batch_size: the optimizer cg takes the whole training set.*{n}"):
        sweep(ds, [2], epochs=1, batch_size=20, optimizer="cg", progress=False, out=tmp_path / "no")
    assert not (tmp_path / "no").exists()
    with pytest.raises(ValueError, match="max_ls expected an integer >= 1"):
        sweep(ds, [2], epochs=1, batch_size=n, optimizer="cg", optimizer_args={"max_ls": 0.5}, progress=False)


def test_cg_from_the_command_line_sets_the_batch_size(tmp_path, npz, capsys):
    from pyireg.cli import main
    base = ["sweep", "--data", str(npz), "--n-val", "20", "--n-test", "20", "--widths", "2,6", "--epochs", "2",
            "--quiet", "--optimizer", "cg", "--lr", "0.5"]
    assert main([*base, "--max-ls", "5", "--out", str(tmp_path / "a")]) == 0
    r = load_results(tmp_path / "a")
    assert (r.config["batch_size"] == 40 and r.config["optimizer"] == "cg"
            and r.config["optimizer_args"] == {"max_ls": 5})
    assert main([*base, "--batch-size", "40", "--out", str(tmp_path / "b")]) == 0
    pd.testing.assert_frame_equal(r.history.drop(columns=VOLATILE),
                                  load_results(tmp_path / "b").history.drop(columns=VOLATILE))
    capsys.readouterr()
    assert main([*base, "--batch-size", "20", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--batch-size: --optimizer cg takes the whole training set" in err[0] and "40" in err[0]
    assert not (tmp_path / "c").exists()
    assert main(["sweep", "--data", str(npz), "--widths", "2", "--epochs", "1", "--quiet", "--batch-size", "20",
                 "--max-ls", "3", "--out", str(tmp_path / "d")]) == 2
    assert "--max-ls: only with --optimizer cg" in capsys.readouterr().err
