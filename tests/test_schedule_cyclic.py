"""The cyclic schedule (pyireg.schedule.CyclicSchedule): its rates and momenta are those of
torch.optim.lr_scheduler.CyclicLR stepped once per epoch, in every mode; it is recorded in a
sweep's config.json, comes back from it, and a sweep killed mid-run resumes to the numbers of
the uninterrupted one; `pyireg sweep --schedule cyclic` and its refusals."""
import json

import numpy as np
import pandas as pd
import pytest
from helpers import Killed, tiny_classes, tiny_npz

from pyireg.experiments import load_results, sweep
from pyireg.schedule import CyclicSchedule, WarmupSchedule, schedule_from_json, schedule_to_json

VOLATILE = ["train_seconds"]


@pytest.mark.parametrize("mode, up, down, gamma", [("triangular", 3, None, 1.0), ("triangular", 1, 1, 1.0),
                                                   ("triangular2", 2, 5, 1.0), ("exp_range", 4, 3, 0.97),
                                                   ("triangular", 7, 2, 1.0)])
@pytest.mark.parametrize("cycle_momentum", [True, False])
def test_rates_and_momenta_are_torchs_cycliclr_per_epoch(mode, up, down, gamma, cycle_momentum):
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.5, momentum=0.95)
    sched = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=0.013, max_lr=0.31, step_size_up=up, step_size_down=down,
                                              mode=mode, gamma=gamma, base_momentum=0.7, max_momentum=0.95,
                                              cycle_momentum=cycle_momentum)
    ours = CyclicSchedule(0.013, 0.31, up, down, mode, gamma, 0.7, 0.95, cycle_momentum)
    got, want = [], []
    for epoch in range(50):
        want.append((opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]))
        got.append((ours.lr(epoch), ours.momentum(epoch)))
        opt.step()
        sched.step()
    assert got == want            # the same formulas in the same order: equal as floats
    lrs = [g[0] for g in got]
    assert min(lrs) == 0.013 and max(lrs) <= 0.31 + 1e-15
    if mode != "exp_range":                        # the top of the first cycle, up to rounding
        assert lrs[up] == pytest.approx(0.31, rel=1e-14) and lrs[up] == max(lrs)


def test_recorded_and_restored_and_refused():
    for s in (CyclicSchedule(), CyclicSchedule(0.0, 0.2, 3, 5, "exp_range", 0.9, 0.5, 0.6, False),
              WarmupSchedule(CyclicSchedule(0.01, 0.1, 2, mode="triangular2"), 3)):
        body = json.loads(json.dumps(schedule_to_json(s, 5)))
        assert body["kind"] in ("cyclic", "warmup")
        back = schedule_from_json(body)
        assert back == s and [back.lr(e) for e in range(20)] == [s.lr(e) for e in range(20)]
    for kw, match in ((dict(base_lr=0.2, max_lr=0.1), r"base_lr: expected a number in \[0, 0.1\]"),
                      (dict(max_lr=0.0), r"max_lr: expected a number in \(0, inf\)"),
                      (dict(step_size_up=0), "step_size_up: expected a positive integer, got 0"),
                      (dict(step_size_down=1.5), "step_size_down: expected a positive integer"),
                      (dict(mode="triangle"), "mode: expected one of triangular, triangular2, exp_range"),
                      (dict(gamma=1.5), r"gamma: expected a number in \(0, 1\]"),
                      (dict(max_momentum=1.0), r"max_momentum: expected a number in \[0, 1\)"),
                      (dict(base_momentum=0.95), r"base_momentum: expected a number in \[0, 0.9\]"),
                      (dict(cycle_momentum="yes"), "cycle_momentum: expected True or False")):
        with pytest.raises(ValueError, match="^" + match):
            CyclicSchedule(**kw)


@pytest.mark.parametrize("named", [True, False])
def test_a_killed_cyclic_sweep_resumes_exactly(tmp_path, named):
    """Killed after epoch 3 of repetition 1 (mid-cycle), resumed with the schedule named again or
    not named at all (then the one config.json records): the history of the uninterrupted run."""
    ds = tiny_classes()
    sched = CyclicSchedule(0.01, 0.2, 2, 3, "triangular2", base_momentum=0.5, max_momentum=0.9)
    kw = dict(widths=[2, 7], seeds=[0, 1], epochs=7, batch_size=20, progress=False)
    ref = sweep(ds, schedule=sched, **kw).history.drop(columns=VOLATILE)
    lrs = ref[ref.repetition == 0].groupby("epoch").lr.first().to_numpy()
    np.testing.assert_array_equal(lrs, np.float32([sched.lr(e) for e in range(7)]))     # the model dtype

    def stop(rep, epoch):
        if rep == 1 and epoch == 3:
            raise Killed
    with pytest.raises(Killed):
        sweep(ds, schedule=sched, out=tmp_path / "s", on_epoch=stop, **kw)
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())["schedule"]
    assert cfg == {"kind": "cyclic", "base_lr": 0.01, "max_lr": 0.2, "step_size_up": 2, "step_size_down": 3,
                   "mode": "triangular2", "gamma": 1.0, "base_momentum": 0.5, "max_momentum": 0.9,
                   "cycle_momentum": True}
    with pytest.raises(ValueError, match="resume: .*schedule"):
        sweep(ds, schedule=CyclicSchedule(0.01, 0.2, 2, 3), out=tmp_path / "s", resume=True, **kw)
    res = sweep(ds, schedule=sched if named else None, out=tmp_path / "s", resume=True, **kw)
    pd.testing.assert_frame_equal(res.history.drop(columns=VOLATILE), ref)


def test_command_line_cyclic(tmp_path, capsys):
    from pyireg.cli import main
    npz = tiny_npz(tmp_path / "d.npz")
    base = ["sweep", "--data", str(npz), "--n-val", "20", "--n-test", "20", "--widths", "2", "--epochs", "6",
            "--batch-size", "20", "--quiet", "--threads", "1"]
    assert main([*base, "--schedule", "cyclic", "--lr", "0.02", "--max-lr", "0.1", "--cycle-up", "2",
                 "--momentum", "0.6", "--out", str(tmp_path / "a")]) == 0
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())["schedule"]
    assert cfg["kind"] == "cyclic" and cfg["step_size_up"] == 2 and cfg["step_size_down"] is None
    lrs = load_results(tmp_path / "a").history.groupby("epoch").lr.first().to_numpy()
    np.testing.assert_allclose(lrs, [0.02, 0.06, 0.1, 0.06, 0.02, 0.06], rtol=1e-6)   # epochs 0..5
    for extra, match in ((["--schedule", "cyclic"], "--max-lr: --schedule cyclic needs"),
                         (["--max-lr", "0.3"], "--max-lr: only with --schedule cyclic"),
                         (["--schedule", "cyclic", "--max-lr", "0.01", "--lr", "0.1"],
                          r"--lr: expected a number in [0, 0.01]"),
                         (["--schedule", "cyclic", "--max-lr", "0.3", "--cycle-gamma", "0.9"],
                          "--cycle-gamma: only with --cycle-mode exp_range")):
        capsys.readouterr()
        assert main([*base, *extra, "--out", str(tmp_path / "b")]) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err
    assert not (tmp_path / "b").exists()
