"""Data safety of sweeps: a sweep stopped at every file operation (as by a kill), at random
instants (SIGKILL / SIGTERM to a process), or by a failing operation (a full disk), then resumed,
ends with exactly the history of the uninterrupted run; between interruptions the files on disk
are always a prefix of it. Files that are missing, corrupt or inconsistent are refused with the
reason, never overwritten."""
import errno
import fcntl
import hashlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import kill_after_ops

from pyireg import _core
from pyireg import data as D
from pyireg.experiments import SweepStateError, load_results, sweep
from pyireg.experiments.history import parquet_bytes, read_history
from pyireg.schedule import PaperSchedule

S = importlib.import_module("pyireg.experiments.store")   # the sweep directory: its fault hook
KW = dict(widths=[1, 3], seeds=[0, 1], epochs=2, batch_size=20, progress=False)   # 4 commits
VOLATILE = ["train_seconds"]                                                        # wall-clock


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so the sweep's error cleanup does not run, as after a
    real kill (only the lock is released, as the operating system would)."""


@pytest.fixture(autouse=True)
def _one_thread_no_fsync(monkeypatch):
    """Tiny models: one native thread avoids waiting at parallel barriers on a busy machine (the
    conftest fixture restores the setting). In-process kills cannot lose the page cache, so fsync
    is skipped here (its points are still passed); the random-kill test's processes do fsync."""
    _core.set_num_threads(1)
    monkeypatch.setattr(S, "_DURABLE", False)


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    return D.from_arrays(X, y, n_val=20, n_test=20)


def _ops(tiny, out, **kw):
    """Run a sweep; returns its history and its file operations, in order, as (op, file name)."""
    seen = []
    S._FAULT_HOOK = lambda op, p: seen.append((op, Path(p).name))
    try:
        res = sweep(tiny, out=out, **{**KW, **kw})
    finally:
        S._FAULT_HOOK = None
    return res.history.drop(columns=VOLATILE), seen


def _assert_prefix(out, ref, why):
    """The committed history is the first rows of the uninterrupted run's, in order."""
    if not (out / "history.parquet").exists():
        return 0
    h = load_results(out).history.drop(columns=VOLATILE)
    assert len(h) <= len(ref) and len(h) % ref["network"].nunique() == 0, why     # whole epochs only
    pd.testing.assert_frame_equal(h, ref.iloc[:len(h)].reset_index(drop=True), obj=why)
    return len(h)


def _leftovers(out):
    return sorted(p.name for p in out.rglob("*") if p.name.endswith((".tmp", ".staged")))


def _resume_through(tiny, out, ref, hook_factory, policy, why, **extra):
    """Run and resume until the sweep completes; hook_factory() gives the hook of each run (it
    may stop it). Checks the prefix property after every interruption. Returns the number of runs."""
    for runs in range(1, 50):
        S._FAULT_HOOK = hook_factory()
        try:
            res = sweep(tiny, out=out, resume=True, checkpoints=policy, **{**KW, **extra})
        except (Killed, OSError):
            _assert_prefix(out, ref, f"{why}, after interruption {runs}")
            continue
        finally:
            S._FAULT_HOOK = None
        pd.testing.assert_frame_equal(res.history.drop(columns=VOLATILE), ref, obj=why)
        pd.testing.assert_frame_equal(load_results(out).history.drop(columns=VOLATILE), ref, obj=why)
        assert _leftovers(out) == [], why
        return runs
    raise AssertionError(f"{why}: the sweep never completed")


def _expected_checkpoints(policy):
    if policy == "resume":
        return []
    if policy == "final":
        return ["rep0-epoch2.npz", "rep1-epoch2.npz"]
    return [f"rep{s}-epoch{e}.npz" for s in (0, 1) for e in (1, 2)]


@pytest.mark.parametrize("policy", ["resume", "all"])
def test_killed_at_every_file_operation_then_resumed(tiny, tmp_path, policy):
    """A kill before each file operation of a sweep; then a kill before each change the resume's
    reconciliation makes (what it finishes or removes); then a resume to the end."""
    ref, ops = _ops(tiny, tmp_path / "ref", checkpoints=policy)
    # the window of the reported bug (checkpoint written, history not yet) is among the points
    publish = [i for i, (op, name) in enumerate(ops) if op == "rename" and name == "history.parquet"]
    assert len(publish) == 4
    assert ("open", "rep0-epoch1.npz.staged") in ops[:publish[0]]
    assert sorted(p.name for p in (tmp_path / "ref" / "checkpoints").iterdir()) == _expected_checkpoints(policy)
    kills, second = 0, 0
    for i in range(len(ops) + 1):                        # + 1: after the last operation
        out = tmp_path / f"k{i}"
        why = f"killed before operation {i} {ops[i:i + 1]}"
        kills += _killed_run(tiny, out, i, len(ops), why, checkpoints=policy)
        _assert_prefix(out, ref, why)
        snapshot = tmp_path / f"k{i}-snapshot"
        if out.exists():                                 # a kill before the first mkdir leaves nothing
            shutil.copytree(out, snapshot)
        # the resume's own file operations, up to its first write of a new epoch
        _, resume_ops = _ops(tiny, out, checkpoints=policy, resume=True)
        reconcile = resume_ops[:next((j for j, (op, _) in enumerate(resume_ops) if op == "open"), len(resume_ops))]
        _resume_through(tiny, out, ref, lambda: None, policy, why)
        assert sorted(p.name for p in (out / "checkpoints").iterdir()) == _expected_checkpoints(policy)
        for j in range(len(reconcile)):
            if reconcile[j][0] not in ("remove", "rename", "mkdir"):
                continue        # a kill before a lock or an fsync leaves the files as a kill before the next change
            again = tmp_path / f"k{i}-{j}"
            if snapshot.exists():
                shutil.copytree(snapshot, again)
            hooks = iter([_kill_at(j)])
            _resume_through(tiny, again, ref, lambda: next(hooks, None), policy,
                            f"{why}, then before operation {j} {reconcile[j]} of the resume")
            second += 1
    assert kills == len(ops) and second >= len(ops) // 2
    print(f"\n{policy}: {len(ops)} file operations killed at, then {second} kills before the changes the "
          "resume's reconciliation makes; every one resumed to the same history")


@pytest.mark.parametrize("policy", ["resume", "all"])
def test_killed_at_every_file_operation_with_a_stopping_rule(tiny, tmp_path, policy):
    """A run with a stopping rule, killed before each of its file operations and resumed: its
    state (streaks, converged epochs) travels in the checkpoints, and the commit that ends a
    repetition early (every network converged: the remaining epochs' rows at once) is atomic,
    also when it writes a checkpoint ("all"), and prunes the checkpoint before it ("resume")."""
    rule = dict(epochs=3, stop_when="loss:1.13")
    plain = sweep(tiny, **{**KW, "epochs": 3}).history
    conv = {}
    for (rep, net), r in plain.groupby(["repetition", "network"]):
        met = (r.sort_values("epoch").train_loss <= 1.13).tolist()
        conv[rep, net] = met.index(True) + 1 if True in met else -1
    # the scenario: in seed 0 network 0 is frozen while network 1 trains, then both have converged
    # and epoch 3 is filled; in seed 1 network 1 is frozen while network 0 trains to the cap
    assert conv == {(0, 0): 1, (0, 1): 2, (1, 0): -1, (1, 1): 2}, conv
    ref, ops = _ops(tiny, tmp_path / "ref", checkpoints=policy, **rule)
    final = {"resume": [], "all": ["rep0-epoch1.npz", "rep0-epoch2.npz", "rep0-epoch3.npz", "rep1-epoch1.npz",
                                   "rep1-epoch2.npz", "rep1-epoch3.npz"]}[policy]
    assert sorted(p.name for p in (tmp_path / "ref" / "checkpoints").iterdir()) == final
    assert ref.groupby(["repetition", "network"])["converged_epoch"].last().tolist() == [1, 2, -1, 2]
    publish = [i for i, (op, name) in enumerate(ops) if op == "rename" and name == "history.parquet"]
    assert len(publish) == 6                            # seed 0: epochs 1, 2, then 3 filled; seed 1: 3 epochs
    assert (ref[(ref.repetition == 0) & (ref.epoch == 3)].lr == 0).all()
    _kill_at_every_operation(tiny, tmp_path, ops, ref, policy, final, **rule)


@pytest.mark.parametrize("policy,every", [("resume", 1), ("all", 1), ("resume", 2), ("final", 2)])
def test_an_early_end_several_epochs_before_the_cap_killed_at_every_file_operation(tiny, tmp_path, policy, every):
    """Seed 0 has converged after epoch 2 of a cap of 6: one commit records epochs 3..6 at once.
    Killed before each file operation and resumed, the sweep ends with the uninterrupted history
    and with the checkpoints of its policy only (the one of epoch 2 pruned by that commit)."""
    rule = dict(seeds=[0], epochs=6, stop_when="loss:1.13", checkpoint_every=every)
    ref, ops = _ops(tiny, tmp_path / "ref", checkpoints=policy, **rule)
    assert ref.groupby("network")["converged_epoch"].last().tolist() == [1, 2]
    publish = [i for i, (op, name) in enumerate(ops) if op == "rename" and name == "history.parquet"]
    assert len(publish) == 3                            # epochs 1, 2, then 3..6 at once
    final = {"resume": [], "all": ["rep0-epoch1.npz", "rep0-epoch2.npz", "rep0-epoch6.npz"],
             "final": ["rep0-epoch6.npz"]}[policy]
    _kill_at_every_operation(tiny, tmp_path, ops, ref, policy, final, **rule)


def _kill_at_every_operation(tiny, tmp_path, ops, ref, policy, final, **rule) -> None:
    """The run killed before each of its file operations ``ops`` in turn, then resumed: each
    time a prefix of ``ref`` on disk, the uninterrupted history after the resume, and the
    checkpoints ``final`` of the policy left."""
    for i in range(len(ops) + 1):
        out = tmp_path / f"k{i}"
        why = f"killed before operation {i} {ops[i:i + 1]}"
        _killed_run(tiny, out, i, len(ops), why, checkpoints=policy, **rule)
        _assert_prefix(out, ref, why)
        _resume_through(tiny, out, ref, lambda: None, policy, why, **rule)
        assert sorted(p.name for p in (out / "checkpoints").iterdir()) == final, why


def _killed_run(tiny, out, i, n, why, **kw) -> bool:
    """Run the sweep with a kill before its file operation i (of n: none when i == n); whether
    it was killed."""
    S._FAULT_HOOK = _kill_at(i)
    try:
        sweep(tiny, out=out, **{**KW, **kw})
        assert i == n, why
        return False
    except Killed:
        return True
    finally:
        S._FAULT_HOOK = None


def _kill_at(i):
    count = [0]

    def hook(op, path):
        count[0] += 1
        if count[0] - 1 == i:
            raise Killed
    return hook


@pytest.mark.parametrize("optimizer", ["momentum_sgd", "path_sgd", "ddp_sgd"])
def test_full_disk_at_every_file_operation_then_resumed(tiny, tmp_path, optimizer):
    """OSError ENOSPC raised by each file operation in turn (each write that reaches the
    operating system, each fsync, rename, removal), as a full disk or a failing device would;
    for every optimizer (each checkpoints its own state)."""
    extra = dict(optimizer=optimizer, schedule=PaperSchedule(lr0=0.05))
    ref, ops = _ops(tiny, tmp_path / "ref", checkpoints="final", **extra)
    writes = sum(op == "write" for op, _ in ops)
    assert writes >= 9                            # config, 2 + 2 checkpoints (final kept), 4 histories
    for i, (op, name) in enumerate(ops):
        out = tmp_path / f"f{i}"
        state = {"count": 0, "failed": False}

        def factory():
            def hook(op_, path):
                state["count"] += 1
                if state["count"] - 1 == i and not state["failed"]:
                    state["failed"] = True
                    raise OSError(errno.ENOSPC, "No space left on device", path)
            return hook
        # the first run fails at operation i with the error, and leaves no temporary file behind
        S._FAULT_HOOK = factory()
        try:
            with pytest.raises(OSError) as info:
                sweep(tiny, out=out, checkpoints="final", **KW, **extra)
        finally:
            S._FAULT_HOOK = None
        assert info.value.errno == errno.ENOSPC
        left = _leftovers(out)
        # only a staged checkpoint whose epoch is already published may wait for the next run
        assert all(n.endswith(".staged") for n in left) and (not left or op in ("rename", "fsync-dir")), \
            f"failure at {i} {op} {name}: left {left}"
        _assert_prefix(out, ref, f"failure at operation {i} ({op} {name})")
        _resume_through(tiny, out, ref, lambda: None, "final", f"failure at operation {i} ({op} {name})", **extra)
        assert sorted(p.name for p in (out / "checkpoints").iterdir()) == _expected_checkpoints("final")
    print(f"\nENOSPC at each of {len(ops)} file operations ({writes} writes), each resumed to the same history")


_CHILD = r"""
import importlib
import sys
import pyarrow.parquet                    # imported before the sweep starts, as in the parent's timing
S = importlib.import_module("pyireg.experiments.store")


def report(op, path):                     # tell the parent about each file operation, as it starts
    sys.stdout.write(f"op {op}\n")
    sys.stdout.flush()


S._FAULT_HOOK = report
from pyireg.cli import main
sys.exit(main(["sweep", "--data", sys.argv[1], "--n-val", "20", "--n-test", "20", "--widths", "1,3,8",
               "--reps", "3", "--epochs", "4", "--batch-size", "20", "--out", sys.argv[2], "--resume",
               "--quiet", "--threads", "1"]))
"""


def test_random_sigkill_and_sigterm_then_resume(tiny, tmp_path):
    rng = np.random.default_rng(1234)
    X = rng.normal(size=(80, 6))
    y = (X[:, 0] > 0).astype(int)
    npz = tmp_path / "data.npz"
    np.savez(npz, X=X, y=y)
    ds = D.load_file(npz, n_val=20, n_test=20)
    ref = sweep(ds, [1, 3, 8], seeds=[0, 1, 2], epochs=4, batch_size=20, progress=False,
                out=tmp_path / "ref").history.drop(columns=VOLATILE)
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    out = tmp_path / "cut"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    kills, exits, rows = 0, [], [0]
    for attempt in range(40):
        p = subprocess.Popen([sys.executable, str(script), str(npz), str(out)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, text=True)
        # a random instant: after a random number of the sweep's file operations, plus a random delay
        # (so it may land inside a write, an fsync or a training step)
        target = int(rng.integers(1, 30)) if kills < 6 else None
        killed, rc, err = kill_after_ops(p, target, signal.SIGKILL if kills % 2 == 0 else signal.SIGTERM,
                                         rng.uniform(0.0, 0.02) if target is not None else 0.0)
        kills += killed
        exits.append(rc)
        assert "Traceback" not in err, err
        rows.append(_assert_prefix(out, ref, f"after kill {kills}"))
        if rc == 0:
            break
        assert rc in (-signal.SIGKILL, -signal.SIGTERM, 128 + signal.SIGTERM), (rc, err)
    assert rc == 0 and kills >= 3, (kills, exits, rows)   # fewer only if a run finished before its kill
    assert len(set(rows[1:-1])) > 1, rows                # the kills landed at different points of the sweep
    pd.testing.assert_frame_equal(load_results(out).history.drop(columns=VOLATILE), ref)
    assert _leftovers(out) == [] and list((out / "checkpoints").iterdir()) == []
    print(f"\n{kills} random kills (exit codes {exits}); rows committed after each run {rows[1:]} of {len(ref)}")


# ----------------------------------------------------------------------------- refusals
def _finished(tiny, out, **kw):
    return sweep(tiny, out=out, **{**KW, **kw})


def _cut(tiny, out, **kw):
    """A sweep stopped after its first commit (seed 0 at epoch 1 of 2)."""
    def stop(rep, epoch):
        raise Killed
    with pytest.raises(Killed):
        sweep(tiny, out=out, on_epoch=stop, **{**KW, **kw})


def test_missing_config_is_refused_and_nothing_is_overwritten(tiny, tmp_path):
    out = tmp_path / "s"
    _finished(tiny, out)
    before = (out / "history.parquet").read_bytes()
    (out / "config.json").unlink()
    for resume in (True, False):
        with pytest.raises(SweepStateError, match="config.json is missing"):
            sweep(tiny, out=out, resume=resume, **KW)
    assert (out / "history.parquet").read_bytes() == before


def test_missing_history_with_checkpoints_is_refused(tiny, tmp_path):
    out = tmp_path / "s"
    _cut(tiny, out)
    (out / "history.parquet").unlink()
    with pytest.raises(SweepStateError, match="history.parquet is missing"):
        sweep(tiny, out=out, resume=True, **KW)
    assert (out / "checkpoints" / "rep0-epoch1.npz").exists()


def test_config_is_written_once_atomically_and_a_corrupt_one_is_refused(tiny, tmp_path):
    out = tmp_path / "s"
    _cut(tiny, out)
    cfg = out / "config.json"
    raw, stamp = cfg.read_bytes(), cfg.stat().st_mtime_ns
    res = sweep(tiny, out=out, resume=True, tag="renamed", **KW)
    assert res.complete and cfg.read_bytes() == raw and cfg.stat().st_mtime_ns == stamp
    cfg.write_bytes(b"")                                   # what a full disk did to the old, rewritten config
    with pytest.raises(SweepStateError, match="config.json is empty or corrupt.*restore it"):
        sweep(tiny, out=out, resume=True, **KW)


def _rerecord(out, name):
    """Record checkpoints/NAME's present checksum in the history, as if it had been committed so:
    what lies behind the checksum (the structural checks) is then tested."""
    hist, meta = read_history(out / "history.parquet")
    meta["checkpoints"][name] = hashlib.sha256((out / "checkpoints" / name).read_bytes()).hexdigest()
    del meta["rows_sha256"]
    (out / "history.parquet").write_bytes(bytes(parquet_bytes(hist, meta)))


def test_wrong_checkpoints_are_refused_never_broadcast(tiny, tmp_path):
    out = tmp_path / "s"
    _cut(tiny, out)
    ck = out / "checkpoints" / "rep0-epoch1.npz"
    good_bytes = ck.read_bytes()
    with np.load(ck) as z:
        good = dict(z)
    cases = {
        "U of shape": dict(good, U=good["U"][:1]),                     # (1, d): used to be broadcast
        "V of shape": dict(good, V=good["V"].astype(np.float64)),
        "another sweep": dict(good, sweep_id=np.str_("0" * 32)),
        "other widths": dict(good, offsets=good["offsets"] + 1),
        "diverged of shape": dict(good, diverged=good["diverged"][:1]),
        "expected seed 0 epoch 1": dict(good, epoch=np.int64(2)),
        r"other members .*unexpected: extra.npy": dict(good, extra=np.zeros(3)),
        r"other members .*missing: bufU": {k: v for k, v in good.items() if k != "bufU"},
    }
    for why, arrays in cases.items():
        np.savez(ck, **arrays)
        # members and sizes are checked before the bytes are hashed, the checksum before the values
        with pytest.raises(SweepStateError, match="was changed after it was committed|other members"):
            sweep(tiny, out=out, resume=True, **KW)
        _rerecord(out, ck.name)
        with pytest.raises(SweepStateError, match=why):
            sweep(tiny, out=out, resume=True, **KW)
    ck.write_bytes(good_bytes[:100])
    with pytest.raises(SweepStateError, match="is not a checkpoint archive"):
        sweep(tiny, out=out, resume=True, **KW)
    ck.unlink()
    with pytest.raises(SweepStateError, match="rep0-epoch1.npz is missing.*1 of 2 epochs"):
        sweep(tiny, out=out, resume=True, **KW)
    ck.write_bytes(good_bytes)
    _rerecord(out, ck.name)
    assert sweep(tiny, out=out, resume=True, **KW).complete


def test_history_of_another_sweep_or_older_than_checkpoints_is_refused(tiny, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _cut(tiny, a)
    _finished(tiny, b)
    os.replace(b / "history.parquet", a / "history.parquet")
    with pytest.raises(SweepStateError, match="belongs to another sweep"):
        sweep(tiny, out=a, resume=True, **KW)
    c = tmp_path / "c"
    _cut(tiny, c, checkpoints="all")
    old = (c / "history.parquet").read_bytes()
    sweep(tiny, out=c, resume=True, checkpoints="all", **KW)
    (c / "history.parquet").write_bytes(old)            # an older copy restored over the finished history
    with pytest.raises(SweepStateError, match="older copy"):
        sweep(tiny, out=c, resume=True, checkpoints="all", **KW)
    (c / "history.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(SweepStateError, match="history.parquet is corrupt"):
        sweep(tiny, out=c, resume=True, **KW)


def test_other_data_or_settings_are_refused_on_resume(tiny, tmp_path):
    out = tmp_path / "s"
    _cut(tiny, out)
    other = tiny.replace(y_train=(tiny.y_train + 1) % tiny.num_classes)
    with pytest.raises(ValueError, match="the data differ"):
        sweep(other, out=out, resume=True, **KW)
    with pytest.raises(ValueError, match="epochs: 2 there, 3 here"):
        sweep(tiny, out=out, resume=True, **{**KW, "epochs": 3})
    with pytest.raises(FileExistsError, match="already holds a sweep; pass resume=True"):
        sweep(tiny, out=out, **KW)


def test_a_second_process_on_the_same_sweep_is_refused(tiny, tmp_path):
    out = tmp_path / "s"
    _cut(tiny, out)
    fd = os.open(out / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SweepStateError, match="another process"):
            sweep(tiny, out=out, resume=True, **KW)
    finally:
        os.close(fd)
    assert sweep(tiny, out=out, resume=True, **KW).complete


def test_checkpoints_are_pruned_to_what_resume_needs(tiny, tmp_path):
    sizes = {}
    for policy in ("all", "final", "resume"):
        out = tmp_path / policy
        res = sweep(tiny, out=out, checkpoints=policy, **{**KW, "widths": [64, 256], "epochs": 3})
        sizes[policy] = sum(p.stat().st_size for p in (out / "checkpoints").iterdir())
        assert res.complete
    assert sizes["resume"] == 0 < sizes["final"] < sizes["all"]
    # one checkpoint per repetition while it runs, none once it is finished
    seen = []

    def look(rep, epoch):
        seen.append(sorted(p.name for p in (tmp_path / "live" / "checkpoints").iterdir()))
    sweep(tiny, out=tmp_path / "live", on_epoch=look, **{**KW, "epochs": 3})
    assert seen == [["rep0-epoch1.npz"], ["rep0-epoch2.npz"], [], ["rep1-epoch1.npz"], ["rep1-epoch2.npz"], []]
    print(f"\ncheckpoint bytes after a 2-rep, 3-epoch sweep of widths 64, 256: {sizes}")


def test_resume_of_a_finished_or_empty_directory(tiny, tmp_path):
    out = tmp_path / "s"
    first = _finished(tiny, out).history
    again = sweep(tiny, out=out, resume=True, **KW).history      # nothing left to do
    pd.testing.assert_frame_equal(first, again)
    fresh = sweep(tiny, out=tmp_path / "new", resume=True, **KW).history   # nothing to resume: it starts
    pd.testing.assert_frame_equal(first.drop(columns=VOLATILE), fresh.drop(columns=VOLATILE))
    json.loads((out / "config.json").read_text())


# ----------------------------------------------------------------------------- checkpoint_every
EVERY = dict(epochs=5, checkpoint_every=2)          # checkpoints written after epochs 2, 4 and 5
ONE = dict(EVERY, seeds=[0])


@pytest.mark.parametrize("policy", ["resume", "final", "all"])
def test_checkpoints_every_k_epochs_killed_at_every_file_operation(tiny, tmp_path, policy):
    """With a checkpoint every 2 epochs of 5, a kill before each file operation, and before each
    change the resume's reconciliation makes, then resumes (each replaying from the last
    checkpoint, checked against the history) end with the history of the uninterrupted run
    that wrote a checkpoint every epoch. (One repetition: the moves between repetitions are
    those of the test above.)"""
    ref = sweep(tiny, **{**KW, "epochs": 5, "seeds": [0]}).history.drop(columns=VOLATILE)
    hist, ops = _ops(tiny, tmp_path / "ref", checkpoints=policy, **ONE)
    pd.testing.assert_frame_equal(hist, ref)
    staged = [name for op, name in ops if op == "open" and name.endswith(".staged")]
    assert staged == {"resume": [f"rep{s}-epoch{e}.npz.staged" for s in (0,) for e in (2, 4)],
                      "final": [f"rep{s}-epoch{e}.npz.staged" for s in (0,) for e in (2, 4, 5)],
                      "all": [f"rep{s}-epoch{e}.npz.staged" for s in (0,) for e in (2, 4, 5)]}[policy]
    final = {"resume": [], "final": ["rep0-epoch5.npz"],
             "all": [f"rep{s}-epoch{e}.npz" for s in (0,) for e in (2, 4, 5)]}[policy]
    second = 0
    for i in range(len(ops) + 1):
        out = tmp_path / f"k{i}"
        why = f"killed before operation {i} {ops[i:i + 1]}"
        _killed_run(tiny, out, i, len(ops), why, checkpoints=policy, **ONE)
        _assert_prefix(out, ref, why)
        snapshot = tmp_path / f"k{i}-snapshot"
        if out.exists():
            shutil.copytree(out, snapshot)
        _, resume_ops = _ops(tiny, out, checkpoints=policy, resume=True, **ONE)
        reconcile = resume_ops[:next((j for j, (op, _) in enumerate(resume_ops) if op == "open"), len(resume_ops))]
        _resume_through(tiny, out, ref, lambda: None, policy, why, **ONE)
        assert sorted(p.name for p in (out / "checkpoints").iterdir()) == final, why
        for j in range(len(reconcile)):
            if reconcile[j][0] not in ("remove", "rename") or policy == "final":
                continue
            again = tmp_path / f"k{i}-{j}"
            shutil.copytree(snapshot, again)
            hooks = iter([_kill_at(j)])
            _resume_through(tiny, again, ref, lambda: next(hooks, None), policy,
                            f"{why}, then before operation {j} {reconcile[j]} of the resume", **ONE)
            second += 1
    print(f"\n{policy}, a checkpoint every 2 epochs: {len(ops)} file operations killed at, then {second} kills in "
          "the resume's reconciliation; every one resumed to the history of the run without gaps")


def _cut_at(tiny, out, epoch, **kw):
    """A sweep stopped right after committing ``epoch`` of seed 0."""
    def stop(rep, e):
        if e == epoch:
            raise Killed
    with pytest.raises(Killed):
        sweep(tiny, out=out, on_epoch=stop, **{**KW, **kw})


@pytest.mark.parametrize("cut", [2, 4])          # no checkpoint yet (replay from the start); one at epoch 3
def test_a_replay_that_differs_from_the_history_is_refused(tiny, tmp_path, monkeypatch, cut):
    """A resume replays the epochs after the last checkpoint and checks every row against the
    history: a replay with other numbers (here the batches in another order, as another build
    or device could give) refuses to continue and leaves the files as they were."""
    ref = sweep(tiny, **{**KW, "epochs": 5}).history.drop(columns=VOLATILE)
    out = tmp_path / "s"
    _cut_at(tiny, out, cut, epochs=5, checkpoint_every=3)
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ([] if cut == 2 else ["rep0-epoch3.npz"])
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    T = importlib.import_module("pyireg.experiments.training")
    real = T.batches
    monkeypatch.setattr(T, "batches", lambda *a, **k: list(real(*a, **k))[::-1])
    with pytest.raises(SweepStateError, match=rf"replaying epoch {cut - 1 if cut == 2 else 4} of repetition 0 from "
                                              r"its last checkpoint gave other numbers than history.parquet records "
                                              r"\(column \w+, network \d"):
        sweep(tiny, out=out, resume=True, **{**KW, "epochs": 5})
    after = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before
    monkeypatch.setattr(T, "batches", real)
    res = sweep(tiny, out=out, resume=True, **{**KW, "epochs": 5})
    pd.testing.assert_frame_equal(res.history.drop(columns=VOLATILE), ref)


def test_checkpoint_every_is_recorded_checked_and_refused_where_it_cannot_apply(tiny, tmp_path):
    out = tmp_path / "s"
    _cut_at(tiny, out, 1, epochs=3, checkpoint_every=2)
    assert json.loads((out / "config.json").read_text())["checkpoint_every"] == 2
    with pytest.raises(ValueError, match=r"checkpoint_every: the sweep in .* writes a checkpoint every 2 epoch\(s\), "
                                         r"got 1; resume without it"):
        sweep(tiny, out=out, resume=True, checkpoint_every=1, **{**KW, "epochs": 3})
    with pytest.raises(SweepStateError, match="resume it without an executor"):  # K from config.json: not an
        sweep(tiny, out=out, resume=True, executor="local", **{**KW, "epochs": 3})  # option the user gave
    assert sweep(tiny, out=out, resume=True, **{**KW, "epochs": 3}).complete      # the sweep's own K
    assert sweep(tiny, out=out, resume=True, executor="local", **{**KW, "epochs": 3}).complete   # finished: read
    cfg = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(dict(cfg, checkpoint_every="2")))
    with pytest.raises(SweepStateError, match="records checkpoint_every '2', not a positive integer"):
        sweep(tiny, out=out, resume=True, **{**KW, "epochs": 3})
    _finished(tiny, tmp_path / "plain")                                          # K = 1: no key, as before
    assert "checkpoint_every" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises((ValueError, TypeError), match="checkpoint_every"):
            sweep(tiny, out=tmp_path / "bad", checkpoint_every=bad, **KW)
    with pytest.raises(ValueError, match="checkpoint_every: a sweep in packs"):
        sweep(tiny, out=tmp_path / "bad", checkpoint_every=2, executor="local", **KW)
    assert not (tmp_path / "bad").exists()
    seen = []

    def look(rep, epoch):
        seen.append(sorted(p.name for p in (tmp_path / "live" / "checkpoints").iterdir()))
    sweep(tiny, out=tmp_path / "live", on_epoch=look, checkpoint_every=2, **{**KW, "seeds": [0], "epochs": 5})
    assert seen == [[], ["rep0-epoch2.npz"], ["rep0-epoch2.npz"], ["rep0-epoch4.npz"], []]
