"""Epoch commits on a helper thread (experiments/committer.py): the same directory as commits in
the training thread, the commits really off that thread, a failing background commit raised by
the sweep and resumed to the uninterrupted numbers, and the committer's own rules (one commit in
flight, its error raised once, never over another exception)."""
import errno
import importlib
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import tiny_classes

from pyireg import _core
from pyireg.experiments import load_results, sweep

S = importlib.import_module("pyireg.experiments.store")
C = importlib.import_module("pyireg.experiments.committer")
KW = dict(widths=[1, 3, 8], seeds=[0, 1], epochs=3, batch_size=20, progress=False, checkpoints="all")
VOLATILE = ["train_seconds"]


@pytest.fixture(autouse=True)
def _one_thread_no_fsync(monkeypatch):
    _core.set_num_threads(1)
    monkeypatch.setattr(S, "_DURABLE", False)


@pytest.fixture(scope="module")
def tiny():
    return tiny_classes()


DEFAULT_BYTES = C.BACKGROUND_BYTES


def _run(tiny, out, background, monkeypatch, **kw):
    """A sweep and the threads its file operations ran on."""
    monkeypatch.setattr(C, "BACKGROUND_BYTES", DEFAULT_BYTES if background else -1)
    threads = []
    S._FAULT_HOOK = lambda op, p: threads.append((op, Path(p).name, threading.current_thread().name))
    try:
        res = sweep(tiny, out=out, **{**KW, **kw})
    finally:
        S._FAULT_HOOK = None
    return res, threads


def _checkpoints(out):
    files = sorted((out / "checkpoints").glob("*.npz"))
    return {p.name: dict(np.load(p)) for p in files}


def test_background_commits_write_what_foreground_commits_write(tiny, tmp_path, monkeypatch):
    bg, bg_threads = _run(tiny, tmp_path / "bg", True, monkeypatch)
    fg, fg_threads = _run(tiny, tmp_path / "fg", False, monkeypatch)
    pd.testing.assert_frame_equal(bg.history.drop(columns=VOLATILE), fg.history.drop(columns=VOLATILE))
    pd.testing.assert_frame_equal(load_results(tmp_path / "bg").history.drop(columns=VOLATILE),
                                  fg.history.drop(columns=VOLATILE))
    a, b = _checkpoints(tmp_path / "bg"), _checkpoints(tmp_path / "fg")
    assert sorted(a) == sorted(b) and len(a) == 6            # 2 repetitions x 3 epochs, all kept
    for name in a:
        assert sorted(a[name]) == sorted(b[name])
        for member in set(a[name]) - {"sweep_id"}:           # each sweep has its own id
            np.testing.assert_array_equal(a[name][member], b[name][member], err_msg=f"{name}:{member}")
    # the same file operations in the same order, the commits' on the helper thread
    assert [op for op, _, _ in bg_threads] == [op for op, _, _ in fg_threads]

    def commits(ops):       # the threads that wrote the staged checkpoints and the history
        return {t for _, name, t in ops if name.endswith((".staged", "history.parquet.tmp"))}
    assert commits(bg_threads) and all(t.startswith("pyireg-commit") for t in commits(bg_threads))
    assert commits(fg_threads) == {"MainThread"}


def test_a_failing_background_commit_stops_the_sweep_and_resumes_exactly(tiny, tmp_path, monkeypatch):
    ref, _ = _run(tiny, tmp_path / "ref", False, monkeypatch)
    ref = ref.history.drop(columns=VOLATILE)
    monkeypatch.setattr(C, "BACKGROUND_BYTES", DEFAULT_BYTES)
    for target in (1, 4, 9, 12):                 # the n-th write of a commit fails (a full disk)
        out = tmp_path / f"full{target}"
        count = [0]

        def full_disk(op, p, target=target, count=count):
            if op == "write" and threading.current_thread().name.startswith("pyireg-commit"):
                count[0] += 1
                if count[0] == target:
                    raise OSError(errno.ENOSPC, "No space left on device (test)", str(p))
        S._FAULT_HOOK = full_disk
        try:
            with pytest.raises(OSError, match="No space left"):
                sweep(tiny, out=out, **KW)
        finally:
            S._FAULT_HOOK = None
        if (out / "history.parquet").exists():       # a prefix of the uninterrupted run
            h = load_results(out).history.drop(columns=VOLATILE)
            pd.testing.assert_frame_equal(h, ref.iloc[:len(h)].reset_index(drop=True))
        res = sweep(tiny, out=out, resume=True, **KW)
        pd.testing.assert_frame_equal(res.history.drop(columns=VOLATILE), ref)
        assert not list(out.rglob("*.tmp")) and not list(out.rglob("*.staged"))


class _Dir:
    """Stands for a sweep directory in the committer's own tests (store.commit_epoch is replaced)."""


def test_committer_rules(monkeypatch):
    calls, gate = [], threading.Event()

    def commit_epoch(d, seed, epoch, arrays, history, done):
        gate.wait(5)
        if epoch == 2:
            raise OSError(errno.EIO, "write failed (test)")
        calls.append((epoch, arrays["U"].copy(), dict(done)))
    monkeypatch.setattr(C.store, "commit_epoch", commit_epoch)
    c = C.EpochCommitter(_Dir())
    U = np.zeros(3)
    done = {0: 1}
    c.commit(0, 1, {"U": U}, None, done)
    U[:] = 7                                     # the training goes on: the commit has its copy
    done[0] = 2
    assert c.busy()
    gate.set()
    c.wait()
    assert not c.busy()
    np.testing.assert_array_equal(calls[0][1], np.zeros(3))
    assert calls[0][2] == {0: 1}
    c.commit(0, 2, {"U": U}, None, done)         # fails on the helper thread
    with pytest.raises(OSError, match="write failed"):
        c.commit(0, 3, {"U": U}, None, done)     # raised before the next commit starts
    assert [e for e, _, _ in calls] == [1]
    c.wait()                                     # raised once
    # close(error) never raises over the exception the caller propagates: it notes the commit's
    c.commit(0, 2, {"U": U}, None, done)
    with pytest.raises(KeyError) as info:
        try:
            raise KeyError("the training's own error")
        except BaseException as e:
            c.close(error=e)
            raise
    assert "also failed: OSError" in "".join(getattr(info.value, "__notes__", []))
    assert not c.busy()
    c.commit(0, 2, {"U": U}, None, done)         # and without one, close() raises the commit's
    with pytest.raises(OSError, match="write failed"):
        c.close()
    # above the size bound the commit runs in the calling thread
    monkeypatch.setattr(C, "BACKGROUND_BYTES", 8)
    c2 = C.EpochCommitter(_Dir())
    c2.commit(0, 4, {"U": np.zeros(4)}, None, done)
    assert not c2.busy() and calls[-1][0] == 4
    c2.close()


def test_the_size_bound_of_background_commits():
    assert C.EpochCommitter(_Dir()).background_bytes == C.BACKGROUND_BYTES == DEFAULT_BYTES == 256 * 2 ** 20
    assert C.EpochCommitter(_Dir(), background_bytes=10).background_bytes == 10


def test_the_commit_cost_benchmark_runs(capsys):
    """benchmarks/commit_cost.py reaches into the store and the history (their options, the
    columns): a quick run keeps it working when they move."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "commit_cost.py"
    spec = importlib.util.spec_from_file_location("commit_cost", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.main(["--reps", "2", "--epochs", "1", "--history-epochs", "3", "--compare"])
    assert {(r["shape"], r["writer"]) for r in rows} >= {("original", "now"), ("censored", "before")}
    assert all(r["ms_per_commit"] > 0 for r in rows) and "ms per commit" in capsys.readouterr().out
