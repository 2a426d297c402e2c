"""The per-network stopping rule of the training loop (``stop_when``, ``patience``;
``--stop-when``, ``--patience``): its criterion and patience against the networks' own
trajectories, the freeze (weights and optimizer state fixed, the others bit for bit as without
it), the early end, packs, resume, the record in config.json, and bad values."""
import json

import numpy as np
import pandas as pd
import pytest
from helpers import tiny_classes

from pyireg import _core
from pyireg.cli import main
from pyireg.experiments import sweep
from pyireg.experiments.store import load_checkpoint
from pyireg.experiments.training import spec_from_config, train_networks

VOLATILE = ["train_seconds"]


@pytest.fixture(autouse=True)
def _one_thread():
    _core.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    return tiny_classes()


def _first_streak(values, patience):
    """First epoch (1-based) of the first run of ``patience`` True values, or -1."""
    run = 0
    for e, v in enumerate(values, 1):
        run = run + 1 if v else 0
        if run == patience:
            return e - patience + 1
    return -1


def _ckpt(out, rep, epoch, members):
    from pyireg.experiments.history import read_history
    _, meta = read_history(out / "history.parquet")
    name = f"rep{rep}-epoch{epoch}.npz"
    return load_checkpoint(out / "checkpoints" / name, members, meta["checkpoints"][name])


@pytest.mark.parametrize("optimizer", ["momentum_sgd", "adam", "cg"])
def test_a_converged_network_is_frozen_and_the_others_train_as_without_it(tiny, tmp_path, optimizer):
    """Width 64 reaches zero training error on the 40 training samples, widths 1 and 3 do not:
    the wide one's weights and optimizer state stay fixed from its stop on, the others' rows equal
    the run without a rule and the run where they train alone (a pack of their own)."""
    full_batch = optimizer == "cg"
    kw = dict(widths=[1, 3, 64], epochs=25, batch_size=40 if full_batch else 10, progress=False,
              optimizer=optimizer, schedule=None)
    if optimizer == "adam":
        from pyireg.schedule import ConstantSchedule
        kw["schedule"] = ConstantSchedule(0.01, 0.0)
    if optimizer == "cg":
        from pyireg.schedule import ConstantSchedule
        kw["schedule"] = ConstantSchedule(1.0, 0.0)
    ref = sweep(tiny, **kw).history.drop(columns=VOLATILE)
    P = 2
    conv = {n: _first_streak((ref[ref.network == n].train_error == 0).tolist(), P) for n in range(3)}
    assert conv[0] == conv[1] == -1 and conv[2] > 0, conv          # the scenario the test is about
    stop = conv[2] + P - 1                                       # its last trained epoch
    assert stop < kw["epochs"]
    out = tmp_path / "stop"
    res = sweep(tiny, out=out, checkpoints="all", stop_when="zero-error", patience=P, **kw)
    h = res.history.drop(columns=VOLATILE)
    assert h.groupby("network")["converged_epoch"].last().tolist() == [-1, -1, conv[2]]
    # the converged epoch appears in the rows from the epoch the streak reached patience on
    w = h[h.network == 2]
    assert (w[w.epoch < stop].converged_epoch == -1).all() and (w[w.epoch >= stop].converged_epoch == conv[2]).all()
    # the others: bit for bit the run without the rule
    cols = [c for c in ref.columns]
    for n in (0, 1):
        pd.testing.assert_frame_equal(h[h.network == n][cols].reset_index(drop=True),
                                      ref[ref.network == n].reset_index(drop=True))
    # the converged one: the run without the rule up to its stop, then fixed (lr 0)
    pd.testing.assert_frame_equal(w[w.epoch <= stop][cols].reset_index(drop=True),
                                  ref[(ref.network == 2) & (ref.epoch <= stop)].reset_index(drop=True))
    after = w[w.epoch > stop]
    assert (after.lr == 0).all() and len(after) == kw["epochs"] - stop
    for c in ("train_error", "train_loss", "test_error", "val_loss", "norm_U", "norm_V", "balance_drift"):
        assert (after[c] == w[w.epoch == stop][c].iloc[0]).all(), c
    # weights and optimizer state of the frozen network: the same arrays in every later checkpoint
    spec = spec_from_config(res.config)
    from pyireg.experiments.training import build
    model, _ = build(tiny, spec, 0, np.arange(3))
    members = spec.checkpoint_members(model)
    units = slice(int(model.offsets[2]), int(model.offsets[3]))
    first = _ckpt(out, 0, stop, members)
    last = _ckpt(out, 0, kw["epochs"], members)
    per_unit = [k for k, (shape, _) in members.items() if len(shape) == 2]
    per_net = [k for k, (shape, _) in members.items() if shape == (3,) and not k.startswith("stop_")]
    assert "U" in per_unit and "V" in per_unit and len(per_unit) > 2      # weights and optimizer state
    for k in per_unit:
        np.testing.assert_array_equal(first[k][units], last[k][units], err_msg=k)
        if k not in ("U", "V"):                 # the others' state moved on
            assert not np.array_equal(first[k][:units.start], last[k][:units.start]), k
    for k in per_net:
        np.testing.assert_array_equal(first[k][2], last[k][2], err_msg=k)
    # networks 0 and 1 trained alone (a pack of their own) under the rule: the same rows
    alone = []
    train_networks(tiny, spec, 0, [0, 1], after_epoch=lambda e, frame, *r: alone.append(frame))
    alone = pd.concat(alone, ignore_index=True).drop(columns=VOLATILE)
    pd.testing.assert_frame_equal(alone.reset_index(drop=True), h[h.network < 2].reset_index(drop=True))


@pytest.mark.parametrize("rule,patience", [("zero-error", 1), ("zero-error", 3), ("loss:0.3", 2)])
def test_criterion_and_patience_follow_the_trajectory(tiny, rule, patience):
    """converged_epoch is the first epoch of the first streak of ``patience`` epochs meeting the
    criterion in the run without a rule (derived here from that run's rows); a network that
    never meets it trains every epoch."""
    kw = dict(widths=[2, 16, 64, 128], epochs=30, batch_size=10, progress=False)
    ref = sweep(tiny, **kw).history
    res = sweep(tiny, stop_when=rule, patience=patience, **kw).history
    conv = []
    for n in range(4):
        r = ref[ref.network == n]
        met = (r.train_error == 0) if rule == "zero-error" else (r.train_loss <= 0.3)
        conv.append(_first_streak(met.tolist(), patience))
    assert res.groupby("network")["converged_epoch"].last().tolist() == conv
    assert -1 in conv and max(conv) > 0, conv                    # both kinds of network are there
    for n, c in enumerate(conv):
        lr = res[res.network == n].set_index("epoch").lr
        if c < 0:
            assert (lr > 0).all()
        else:
            last = c + patience - 1
            assert (lr.loc[:last] > 0).all() and (lr.loc[last + 1:] == 0).all()


def test_the_run_ends_when_every_network_has_converged(tiny, tmp_path):
    """Every network converged: no more steps (the final checkpoint counts the steps taken), and the
    remaining epochs' rows repeat the frozen rows with lr 0, in one commit."""
    kw = dict(widths=[64, 128], epochs=40, batch_size=10, progress=False)
    ref = sweep(tiny, **kw).history
    conv = [_first_streak((ref[ref.network == n].train_error == 0).tolist(), 1) for n in range(2)]
    end = max(conv)
    assert 0 < end < 40, conv
    out = tmp_path / "s"
    res = sweep(tiny, out=out, checkpoints="all", stop_when="zero-error", **kw)
    h = res.history
    assert len(h) == 2 * 40 and h.epoch.max() == 40
    spec = spec_from_config(res.config)
    from pyireg.experiments.training import build
    model, _ = build(tiny, spec, 0, np.arange(2))
    members = spec.checkpoint_members(model)
    steps_per_epoch = 4                                       # 40 samples in batches of 10
    assert int(_ckpt(out, 0, 40, members)["steps"]) == end * steps_per_epoch
    assert not (out / "checkpoints" / f"rep0-epoch{end + 1}.npz").exists()   # epochs end+1.. in one commit
    tail = h[h.epoch > end]
    assert (tail.lr == 0).all() and (tail.train_seconds == 0).all()
    for c in ("train_error", "test_loss", "norm_U", "converged_epoch"):
        for n in range(2):
            assert (tail[tail.network == n][c] == h[(h.network == n) & (h.epoch == end)][c].iloc[0]).all()


def test_packs_equal_one_model_and_resume_equals_uninterrupted(tiny, tmp_path):
    kw = dict(widths=[1, 3, 64, 128], seeds=[0, 1], epochs=30, batch_size=10, progress=False,
              stop_when="zero-error", patience=2)
    one = sweep(tiny, out=tmp_path / "one", **kw).history.drop(columns=VOLATILE)
    assert (one.converged_epoch > 0).any()
    packs = sweep(tiny, executor="local", **kw).history.drop(columns=VOLATILE)
    pd.testing.assert_frame_equal(packs, one)
    # stopped after each epoch (on_epoch raising), then resumed: the same history
    out = tmp_path / "cut"
    for cut in range(1, 61, 7):
        def stop_at(rep, epoch, cut=cut):
            if rep * 30 + epoch >= cut:
                raise KeyboardInterrupt
        try:
            sweep(tiny, out=out, resume=True, on_epoch=stop_at, **kw)
        except KeyboardInterrupt:
            pass
    res = sweep(tiny, out=out, resume=True, **kw).history.drop(columns=VOLATILE)
    pd.testing.assert_frame_equal(res, one)


def test_config_records_the_rule_and_a_resume_with_another_is_refused(tiny, tmp_path):
    out = tmp_path / "s"
    sweep(tiny, [2, 64], epochs=3, batch_size=10, progress=False, out=out, stop_when="loss:0.25", patience=2,
          checkpoints="final")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["stop_when"] == {"stop_when": "loss:0.25", "patience": 2}
    assert spec_from_config(cfg).stop_rule == ("loss", 0.25, 2)
    with pytest.raises(ValueError, match="stop_when"):
        sweep(tiny, [2, 64], epochs=3, batch_size=10, progress=False, out=out, resume=True, stop_when="zero-error")
    from pyireg.experiments.training import models_of
    _, model = models_of(tiny, out, 0)            # the final weights of a run with a rule
    assert model.num_networks == 2
    plain = sweep(tiny, [2, 64], epochs=3, batch_size=10, progress=False, out=tmp_path / "p")
    assert json.loads((tmp_path / "p" / "config.json").read_text())["stop_when"] is None
    assert "converged_epoch" not in plain.history.columns


@pytest.mark.parametrize("kw,match", [
    (dict(stop_when="zero"), "stop_when: expected 'zero-error' or 'loss:TOL'"),
    (dict(stop_when="loss:-1"), "stop_when: expected"),
    (dict(stop_when="loss:nan"), "stop_when: expected"),
    (dict(stop_when="loss<0.1"), "stop_when: expected"),
    (dict(stop_when=0.1), "stop_when: expected"),
    (dict(stop_when="zero-error", patience=0), "patience: expected a positive integer"),
    (dict(stop_when="zero-error", patience=1.5), "patience: expected a positive integer"),
    (dict(patience=3), "patience: only with a stopping rule"),
])
def test_bad_values_are_refused_before_anything_is_written(tiny, tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        sweep(tiny, [2], epochs=2, progress=False, out=tmp_path / "s", **kw)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("argv,match", [
    (["--stop-when", "loss<1e-3"], "--stop-when: expected 'zero-error' or 'loss:TOL'"),
    (["--stop-when", "zero-error", "--patience", "0"], "--patience"),
    (["--patience", "2"], "--patience: only with a stopping rule"),
])
def test_command_line_errors_name_the_option(tmp_path, capsys, argv, match):
    for cmd in (["sweep"], ["reproduce", "figure1"]):
        cmd = [*cmd, "--widths", "2", "--epochs", "2"]
        try:
            rc = main([*cmd, "--out", str(tmp_path / "o"), "--quiet", *argv])
        except SystemExit as e:                 # a usage error of the parser
            rc = e.code
        err = capsys.readouterr().err
        assert rc == 2 and match in err and len(err.strip().splitlines()) <= 2, err
        assert not (tmp_path / "o").exists()


def test_command_line_sweep_and_figure1_with_a_rule(tmp_path, capsys):
    out = tmp_path / "f1"
    assert main(["reproduce", "figure1", "--widths", "1,64", "--epochs", "12", "--stop-when", "zero-error",
                 "--patience", "2", "--out", str(out), "--quiet"]) == 0
    cfg = json.loads((out / "original" / "config.json").read_text())
    assert cfg["stop_when"] == {"stop_when": "zero-error", "patience": 2}
    h = pd.read_parquet(out / "original" / "history.parquet")
    assert "converged_epoch" in h.columns
    out = tmp_path / "sw"
    assert main(["sweep", "--widths", "2,64", "--epochs", "3", "--stop-when", "loss:0.5", "--out", str(out),
                 "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["stop_when"] == {"stop_when": "loss:0.5", "patience": 1}
