"""Sweeps in packs (pyireg.distributed): the packing, bit-identity with the local sweep whatever
the packing, the files and their reconciliation (a kill before every file operation, refusals),
and on a local Ray of 2 CPUs started once per session: local vs Ray bit-identity, a killed
worker, a killed driver resumed pack by pack, a pack that raises, the command line."""
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pyireg import _core
from pyireg import data as D
from pyireg.cli import main
from pyireg.distributed import LocalExecutor, PackError, RayExecutor, makespan, plan_packs
from pyireg.distributed.packs import check_plan
from pyireg.experiments import SweepStateError, load_results, sweep

S = importlib.import_module("pyireg.experiments.store")
R = importlib.import_module("pyireg.experiments.packed")
VOLATILE = ["train_seconds"]                                   # wall-clock, per pack
# 2 repetitions x (4 widths x 2 weight decays) = 16 networks, 64 units per repetition
KW = dict(widths=[1, 3, 8, 20], seeds=[0, 2], weight_decays=[0.0, 1e-3], epochs=2, batch_size=20, progress=False)


class Killed(BaseException):
    """Stands for SIGKILL (see test_sweep_safety): the sweep's error clean-up does not run."""


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one native thread (the conftest fixture restores the setting)."""
    _core.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    return D.from_arrays(X, y, n_val=20, n_test=20)


@pytest.fixture(scope="module")
def ref(tiny):
    """The local sweep (one packed model per repetition), without its wall-clock column."""
    return sweep(tiny, **KW).history.drop(columns=VOLATILE)


def _same(history, ref, why=""):
    pd.testing.assert_frame_equal(history.drop(columns=VOLATILE), ref, check_exact=True, obj=why or "history")


def _leftovers(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.name.endswith((".tmp", ".staged"))
                  or p.parent.name == "packs")


# ----------------------------------------------------------------------------- packing
def test_plan_packs_covers_the_grid_once_in_packs_of_similar_cost():
    rng = np.random.default_rng(5)
    grids = [[2 ** i for i in range(12)] * 5, list(range(1, 200)), rng.integers(1, 500, 77).tolist(), [7], [4096, 1, 2]]
    for widths in grids:
        total = sum(widths)
        for units in (1, 100, 1000, 5000, 10 ** 9):
            plan = plan_packs(widths, [3, 0, 9], 4, units)
            assert check_plan(plan, len(widths), [3, 0, 9]) is None
            assert [p.repetition for p in plan] == sorted([p.repetition for p in plan], key=[3, 0, 9].index)
            per_rep = [p for p in plan if p.repetition == 3]
            assert len(per_rep) == min(len(widths), -(-total // units))
            loads = [p.units for p in per_rep]
            assert sum(loads) == total and all(p.cost == 4 * p.units for p in per_rep)
            # list scheduling from the widest: packs differ by at most one network's width
            assert max(loads) - min(loads) <= max(widths), (widths[:5], units, loads)
            # the same packs for every repetition, and the same plan every time
            assert [p.networks for p in per_rep] == [p.networks for p in plan if p.repetition == 9]
            assert plan == plan_packs(widths, [3, 0, 9], 4, units)
    fig2 = plan_packs([2 ** i for i in range(12)] * 5, [0], 60, 4096)
    assert sorted(p.units for p in fig2) == [4095] * 5               # one network of each width per pack
    with pytest.raises(ValueError, match="pack_units: expected a positive integer"):
        plan_packs([1, 2], [0], 1, 0)
    with pytest.raises(ValueError, match="pack_units"):
        plan_packs([1, 2], [0], 1, 2.5)
    broken = plan_packs([1, 2, 3], [0], 1, 2)
    assert "network 0 of repetition 0 is in 2 packs" in check_plan(broken + [broken[0].__class__(
        len(broken), 0, (0,), 1, 1)], 3, [0])
    assert "is in 0 packs" in check_plan(broken[:-1], 3, [0])


def test_makespan_is_list_scheduling():
    assert makespan([3, 3, 2, 2, 2], 2) == 7                           # 3+2+2 on one worker, 3+2 on the other
    assert makespan([5, 1, 1, 1], 1) == 8
    assert makespan([5, 1, 1, 1], 10) == 5
    assert makespan([], 3) == 0
    with pytest.raises(ValueError, match="workers"):
        makespan([1], 0)


# ----------------------------------------------------------------------------- packs in this process
def test_packs_are_bit_identical_to_the_local_sweep_whatever_the_packing(tiny):
    """Every column but the wall-clock, bit for bit, with per-network init_std of both layers,
    label noise and a split drawn per repetition, lr scales, and float64."""
    kw = dict(KW, lr_scales=[1.0, 0.5], init_std=(np.linspace(0.1, 0.5, 16), 0.3), label_noise=0.1,
              resample_split=True)
    for dtype in ("float32", "float64"):
        local = sweep(tiny, dtype=dtype, **kw).history.drop(columns=VOLATILE)
        sizes = []
        for units in (1, 13, 40, 10 ** 6):                              # 1 network per pack ... 1 pack per repetition
            res = sweep(tiny, dtype=dtype, executor=LocalExecutor(pack_units=units), **kw)
            _same(res.history, local, f"{dtype}, pack_units {units}")
            assert res.complete and res.out is None
            sizes.append(len(plan_packs(res.config["grid_widths"], kw["seeds"], 2, units)))
        assert sizes == [32, 20, 8, 2]


def test_a_sweep_in_packs_killed_at_every_file_operation_then_resumed(tiny, ref, tmp_path, monkeypatch):
    """A kill before each file operation of a sweep in packs; the files left are a state the
    resume accepts, the resume trains only the packs not published, and ends with the local
    sweep's history and no temporary file."""
    monkeypatch.setattr(S, "_DURABLE", False)
    trained = []
    real = R.train_networks
    monkeypatch.setattr(R, "train_networks", lambda ds, spec, rep, networks, **kw: (
        trained.append((rep, tuple(networks))), real(ds, spec, rep, networks, **kw))[1])
    ex = LocalExecutor(pack_units=40)                                    # 2 packs per repetition
    ops = []
    S._FAULT_HOOK = lambda op, p: ops.append((op, Path(p).name))
    try:
        _same(sweep(tiny, out=tmp_path / "ref", executor=ex, **KW).history, ref)
    finally:
        S._FAULT_HOOK = None
    packs = [f"pack-0000{i}.parquet" for i in range(4)]
    assert [name for op, name in ops if op == "rename"] == ["config.json", "packs.json", *packs, "history.parquet"]
    _same(load_results(tmp_path / "ref").history, ref)
    for i in range(len(ops) + 1):
        out = tmp_path / f"k{i}"
        why = f"killed before operation {i} {ops[i:i + 1]}"
        count = [0]

        def hook(op, path):
            count[0] += 1
            if count[0] - 1 == i:
                raise Killed
        S._FAULT_HOOK = hook
        try:
            sweep(tiny, out=out, executor=ex, **KW)
            assert i == len(ops), why
        except Killed:
            pass
        finally:
            S._FAULT_HOOK = None
        published = sorted(p.name for p in (out / "packs").glob("pack-*.parquet")) if (out / "packs").is_dir() else []
        merged = (out / "history.parquet").exists()
        if merged:
            _same(load_results(out).history, ref, why)                  # published whole, or not at all
        del trained[:]
        res = sweep(tiny, out=out, executor=ex, resume=True, **KW)
        _same(res.history, ref, why)
        _same(load_results(out).history, ref, why)
        assert _leftovers(out) == [], why
        assert len(trained) == (0 if merged else 4 - len(published)), (why, published, trained)


class _Lossy(LocalExecutor):
    """An executor whose run() never reports its first pack (a bug, a lost result)."""

    def run(self, job, ds, packs):
        yield from super().run(job, ds, list(packs)[1:])


def test_an_executor_that_loses_a_pack_publishes_nothing(tiny, ref, tmp_path):
    """A history is published only when every pack of the plan came back: a lost pack is an
    error naming it (in memory too), the finished packs are kept, and a resume trains the rest."""
    out = tmp_path / "s"
    for where in (out, None):
        with pytest.raises(PackError, match=r"executor: _Lossy.run reported \d+ of \d+ packs \(no result for pack "
                                            r"\d+\); nothing was published"):
            sweep(tiny, out=where, executor=_Lossy(pack_units=8), **KW)
    assert not (out / "history.parquet").exists() and any((out / "packs").iterdir())
    _same(sweep(tiny, out=out, resume=True, executor=LocalExecutor(pack_units=8), **KW).history, ref)
    _same(load_results(out).history, ref)


def test_an_in_process_executor_leaves_the_thread_count_as_it_was(tiny, ref):
    _core.set_num_threads(2)
    _same(sweep(tiny, executor=LocalExecutor(pack_units=8, threads=1), **KW).history, ref)
    assert _core.get_num_threads() == 2


def test_a_resume_over_memory_names_the_saved_plan(tiny, ref, tmp_path):
    """A resume keeps the packs of packs.json: when they do not fit max_memory, the advice is
    not "smaller packs" (pack_units is not read on resume) but what a resume can change."""
    out = tmp_path / "s"
    _lossy = _Lossy(pack_units=64)                         # 1 pack per repetition; one never comes back
    with pytest.raises(PackError):
        sweep(tiny, out=out, executor=_lossy, **KW)
    res = importlib.import_module("pyireg.experiments.resources")
    need = {u: res.estimate_memory([w for w in KW["widths"] for _ in KW["weight_decays"]][:u], 6, 3,
                                   batch_size=20, eval_batch=512, dtype="float32")["total"] for u in (2, 8)}
    limit = (need[2] + need[8]) // 2
    with pytest.raises(MemoryError, match=r"a resume keeps the packs of .*packs.json whatever pack_units says"):
        sweep(tiny, out=out, resume=True, executor=LocalExecutor(pack_units=1), max_memory=limit, **KW)
    _same(sweep(tiny, out=out, resume=True, executor=LocalExecutor(pack_units=1), **KW).history, ref)


def test_refusals_of_a_sweep_in_packs(tiny, ref, tmp_path):
    ex = LocalExecutor(pack_units=40)
    out = tmp_path / "s"

    def cut():
        """A sweep stopped after its first pack was published."""
        def stop(op, path):
            if op == "rename" and Path(path).name == "pack-00001.parquet":
                raise Killed
        S._FAULT_HOOK = stop
        try:
            with pytest.raises(Killed):
                sweep(tiny, out=out, executor=ex, **KW)
        finally:
            S._FAULT_HOOK = None

    cut()
    with pytest.raises(FileNotFoundError, match=r"trains in packs.*1 finished so far"):
        load_results(out)
    with pytest.raises(SweepStateError, match="trained in packs.*resume it with an executor"):
        sweep(tiny, out=out, resume=True, **KW)                          # not without an executor
    pack = out / "packs" / "pack-00000.parquet"
    good = pack.read_bytes()
    pack.write_bytes(good[:200])
    with pytest.raises(SweepStateError,
                       match=r"pack-00000.parquet is corrupt.*delete it to train pack 0 \(repetition 0"):
        sweep(tiny, out=out, executor=ex, resume=True, **KW)
    (out / "packs.json").rename(out / "packs.json.away")
    pack.write_bytes(good)
    with pytest.raises(SweepStateError, match="packs.json is missing, but packs/pack-00000.parquet"):
        sweep(tiny, out=out, executor=ex, resume=True, **KW)
    plan = json.loads((out / "packs.json.away").read_text())
    plan["packs"][0]["networks"] = plan["packs"][1]["networks"]
    (out / "packs.json").write_text(json.dumps(plan))
    with pytest.raises(SweepStateError, match=r"packs.json is not a plan of this sweep's grid \(network 0 of "
                                              "repetition 0 is in 0 packs"):
        sweep(tiny, out=out, executor=ex, resume=True, **KW)
    (out / "packs.json").write_text("{")
    with pytest.raises(SweepStateError, match="packs.json is empty or corrupt"):
        sweep(tiny, out=out, executor=ex, resume=True, **KW)
    (out / "packs.json").write_text("[" * 100_000)
    with pytest.raises(SweepStateError, match=r"packs.json is empty or corrupt \(nested too deeply\)"):
        sweep(tiny, out=out, executor=ex, resume=True, **KW)
    (out / "packs.json").unlink()
    os.mkfifo(out / "packs.json")                        # read_bytes() would block on it
    with pytest.raises(SweepStateError, match=r"packs.json is a FIFO \(named pipe\), not a regular file"):
        sweep(tiny, out=out, executor=ex, resume=True, **KW)
    (out / "packs.json").unlink()
    (out / "packs.json.away").rename(out / "packs.json")
    with pytest.raises(SweepStateError, match="pack-00003.parquet is not a pack of this sweep"):
        other_pack = out / "packs" / "pack-00003.parquet"
        R._publish_pack(out / "packs", plan_packs([1, 3, 8, 20] * 2, [0, 2], 2, 40)[3], ref.iloc[:0], "0" * 32, 2)
        sweep(tiny, out=out, executor=ex, resume=True, **KW)
    other_pack.unlink()
    _same(sweep(tiny, out=out, executor=ex, resume=True, **KW).history, ref)
    # a sweep trained repetition by repetition, interrupted, is not resumed in packs
    local = tmp_path / "local"

    def stop(rep, epoch):
        raise Killed
    with pytest.raises(Killed):
        sweep(tiny, out=local, on_epoch=stop, **KW)
    with pytest.raises(SweepStateError, match="trained repetition by repetition.*without an executor"):
        sweep(tiny, out=local, executor=ex, resume=True, **KW)
    # arguments that make no sense in packs, checked before any output
    for kw, exc, match in ((dict(checkpoints="final"), ValueError, "checkpoints: with an executor only 'resume'"),
                           (dict(on_epoch=print), ValueError, "on_epoch: not available with an executor"),
                           (dict(max_memory=10_000), MemoryError, r"pack_units: 1 pack\(s\) trained at once"),
                           (dict(executor=42), TypeError, "executor: expected None, 'local', 'ray'")):
        never = tmp_path / "never"
        with pytest.raises(exc, match=match):
            sweep(tiny, out=never, **{"executor": ex, **KW, **kw})
        assert not never.exists()
    with pytest.raises(ValueError, match="threads: expected a positive integer"):
        LocalExecutor(threads=0)
    for kw, match in ((dict(workers=0), "workers: expected a positive integer"), (dict(address=""), "address"),
                      (dict(pack_units=-1), "pack_units"), (dict(max_retries=-1), "max_retries")):
        with pytest.raises(ValueError, match=match):
            RayExecutor(**kw)


def test_an_unreachable_ray_address_is_refused_at_once(tiny, tmp_path):
    """ray.init retried an address nobody listens on for minutes (Ray's GCS warnings, no
    error); the executor now tries one TCP connection first. Nothing is written."""
    pytest.importorskip("ray")
    import socket
    with socket.socket() as s:                     # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    never = tmp_path / "never"
    with pytest.raises(ConnectionError, match=f"address: no Ray cluster answers at 127.0.0.1:{port}"):
        sweep(tiny, out=never, executor=RayExecutor(address=f"127.0.0.1:{port}"), **KW)
    assert not never.exists()


# ----------------------------------------------------------------------------- on Ray
def _register_for_workers():
    """This module's hooks travel to the Ray workers by value (the workers cannot import it)."""
    import ray.cloudpickle
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class _Log:
    """Logs the start of every attempt at a pack (one line per attempt; appends are atomic)."""

    def __init__(self, log):
        self.log = str(log)

    def __call__(self, pack, op, path):
        if op == "start":
            with open(self.log, "a") as f:
                f.write(f"{pack}\n")


class _KillWorkerOnce(_Log):
    """Kills its own worker the first time pack ``pack`` writes its file (mid-write, the rows
    trained); the marker file says it happened."""

    def __init__(self, log, pack, marker):
        super().__init__(log)
        self.pack, self.marker = pack, str(marker)

    def __call__(self, pack, op, path):
        super().__call__(pack, op, path)
        if pack == self.pack and op == "write" and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


class _Raise(_Log):
    def __init__(self, log, pack):
        super().__init__(log)
        self.pack = pack

    def __call__(self, pack, op, path):
        super().__call__(pack, op, path)
        if pack == self.pack and op == "start":
            raise ValueError("injected failure of the test")


def _attempts(log):
    return sorted(int(x) for x in Path(log).read_text().split()) if Path(log).exists() else []


def test_ray_sweep_is_bit_identical_to_the_local_sweep(ray_address, tiny, ref, tmp_path):
    local = sweep(tiny, out=tmp_path / "local", **KW)
    # 14 packs on 2 workers of 1 thread, the history on disk
    res = sweep(tiny, out=tmp_path / "ray", executor=RayExecutor(pack_units=10), **KW)
    _same(res.history, ref, "14 packs")
    disk = pd.read_parquet(tmp_path / "ray" / "history.parquet")
    pd.testing.assert_frame_equal(disk.drop(columns=VOLATILE), pd.read_parquet(tmp_path / "local" / "history.parquet")
                                  .drop(columns=VOLATILE), check_exact=True)
    assert list(disk.columns) == list(local.history.columns) and disk.dtypes.equals(local.history.dtypes)
    assert {k: v for k, v in res.config.items() if k != "sweep_id"} == \
        {k: v for k, v in local.config.items() if k != "sweep_id"}
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == [".lock", "checkpoints", "config.json",
                                                                     "history.parquet", "packs.json"]
    assert len(json.loads((tmp_path / "ray" / "packs.json").read_text())["packs"]) == 14
    # one worker of 2 threads, default packs, kept in memory; per-network init, label noise and split
    # drawn per repetition in the workers (from the data they read, read-only, from the object store)
    kw = dict(KW, init_std=(np.linspace(0.1, 0.5, 8), 0.3), label_noise=0.1, resample_split=True)
    _same(sweep(tiny, executor=RayExecutor(workers=1), **kw).history,
          sweep(tiny, **kw).history.drop(columns=VOLATILE), "1 worker x 2 threads")
    # a resume of the finished sweep returns it
    _same(sweep(tiny, out=tmp_path / "ray", executor="ray", resume=True, **KW).history, ref, "resumed")


def test_a_killed_worker_is_retried_and_nothing_is_lost_or_duplicated(ray_address, tiny, ref, tmp_path):
    _register_for_workers()
    log, marker = tmp_path / "attempts", tmp_path / "killed"
    ex = RayExecutor(pack_units=20, _task_hook=_KillWorkerOnce(log, 2, marker))
    res = sweep(tiny, out=tmp_path / "s", executor=ex, **KW)
    assert marker.exists()                                             # the worker of pack 2 was killed ...
    attempts = _attempts(log)
    assert attempts.count(2) == 2 and sorted(set(attempts)) == list(range(8)) and len(attempts) == 9  # ... and retried
    _same(res.history, ref)
    assert not res.history.duplicated(["repetition", "network", "epoch"]).any()
    _same(load_results(tmp_path / "s").history, ref)
    assert _leftovers(tmp_path / "s") == []                            # the killed attempt's temporary is removed


_DRIVER = r"""
import sys
import time
import numpy as np
from pyireg import data as D
from pyireg.distributed import RayExecutor
from pyireg.experiments import sweep


def slow(pack, op, path, log=sys.argv[3]):   # each pack takes a while: the driver dies with packs in flight
    if op == "start":
        with open(log, "a") as f:
            f.write(f"{pack}\n")
        time.sleep(0.4)


rng = np.random.default_rng(0)
X = rng.normal(size=(120, 6))
ds = D.from_arrays(X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5), n_val=20, n_test=20)
sweep(ds, out=sys.argv[2], executor=RayExecutor(address=sys.argv[1], pack_units=10, _task_hook=slow), resume=True,
      **KWARGS)
"""


def test_a_killed_driver_resumes_pack_by_pack(ray_address, tiny, ref, tmp_path):
    _register_for_workers()
    out, log = tmp_path / "s", tmp_path / "first"
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER.replace("KWARGS", repr(KW)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.Popen([sys.executable, str(script), ray_address, str(out), str(log)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=Path(R.__file__).parents[2])
    deadline = time.monotonic() + 60
    while p.poll() is None and time.monotonic() < deadline:
        if len(list((out / "packs").glob("pack-*.parquet"))) >= 3:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == -signal.SIGKILL, err
    finished = {int(f.name[5:10]) for f in (out / "packs").glob("pack-*.parquet")}
    assert 3 <= len(finished) < 14 and not (out / "history.parquet").exists(), (finished, err)
    # the resume: the same sweep, in this process; only the packs not finished run again
    resumed = tmp_path / "resumed"
    res = sweep(tiny, out=out, resume=True, executor=RayExecutor(pack_units=3, _task_hook=_Log(resumed)), **KW)
    again = _attempts(resumed)
    assert not set(again) & finished and len(set(again)) == len(again) <= 14 - len(finished), (again, finished)
    _same(res.history, ref)
    assert not res.history.duplicated(["repetition", "network", "epoch"]).any()
    assert len(json.loads((out / "packs.json").read_text())["packs"]) == 14   # the plan it started with
    assert _leftovers(out) == []


def test_a_pack_that_raises_names_the_pack_and_keeps_the_others(ray_address, tiny, ref, tmp_path, capsys):
    _register_for_workers()
    out, log = tmp_path / "s", tmp_path / "attempts"
    with pytest.raises(PackError, match=r"1 of 8 packs failed: pack 5 \(repetition 2, .* ValueError: injected failure "
                                        r"of the test\. The 7 finished packs are kept in .*--resume") as info:
        sweep(tiny, out=out, executor=RayExecutor(pack_units=20, _task_hook=_Raise(log, 5)), **{**KW, "progress": True})
    assert [p.id for p, _ in info.value.failures] == [5] and isinstance(info.value.__cause__, ValueError)
    assert "pack 5 (repetition 2" in capsys.readouterr().err                       # reported as it happened
    assert _attempts(log) == list(range(8))                                       # not retried: it would raise again
    assert sorted(int(f.name[5:10]) for f in (out / "packs").glob("pack-*.parquet")) == [0, 1, 2, 3, 4, 6, 7]
    assert not (out / "history.parquet").exists()
    res = sweep(tiny, out=out, resume=True, executor=RayExecutor(_task_hook=_Log(tmp_path / "again")), **KW)
    assert _attempts(tmp_path / "again") == [5]
    _same(res.history, ref)


@pytest.mark.parametrize("optimizer", ["path_sgd", "ddp_sgd"])
def test_every_optimizer_on_ray_equals_the_local_sweep(ray_address, tiny, tmp_path, optimizer, capsys):
    from pyireg.schedule import PaperSchedule
    from pyireg.experiments import ChanceWarning
    kw = dict(KW, optimizer=optimizer, schedule=PaperSchedule(lr0=0.05))
    with warnings.catch_warnings():              # a width-8 network may end at chance: the same in both
        warnings.simplefilter("ignore", ChanceWarning)
        local = sweep(tiny, **kw).history.drop(columns=VOLATILE)
        _same(sweep(tiny, out=tmp_path / "ray", executor=RayExecutor(pack_units=10), **kw).history, local, optimizer)
    # and from the command line, resumed on Ray (finished: nothing to do)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(80, 5))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(int))
    base = ["sweep", "--data", str(tmp_path / "d.npz"), "--widths", "1,4", "--epochs", "2", "--batch-size", "20",
            "--optimizer", optimizer, "--lr", "0.05", "--out", str(tmp_path / "cli"), "--quiet"]
    assert main(base) == 0
    assert main(base[:-3] + ["--out", str(tmp_path / "cli-ray"), "--ray", "--quiet"]) == 0
    pd.testing.assert_frame_equal(load_results(tmp_path / "cli-ray").history.drop(columns=VOLATILE),
                                  load_results(tmp_path / "cli").history.drop(columns=VOLATILE), check_exact=True)
    assert main(base[:-3] + ["--out", str(tmp_path / "cli-ray"), "--ray", "--resume", "--quiet"]) == 0


def test_command_line_ray(ray_address, tmp_path, capsys):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(100, 5))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(int))
    base = ["sweep", "--data", str(tmp_path / "d.npz"), "--widths", "1,4,9", "--weight-decay", "0,1e-3", "--reps", "2",
            "--epochs", "2", "--batch-size", "20"]
    assert main(base + ["--out", str(tmp_path / "local"), "--quiet"]) == 0
    assert main(base + ["--out", str(tmp_path / "ray"), "--ray", "--workers", "2", "--pack-units", "10"]) == 0
    err = capsys.readouterr().err
    assert "6 packs, on the Ray cluster this process is connected to (2 CPUs on 1 node): 2 workers x 1 thread" in err
    assert "6/6 packs, 100% of the work" in err
    pd.testing.assert_frame_equal(load_results(tmp_path / "ray").history.drop(columns=VOLATILE),
                                  load_results(tmp_path / "local").history.drop(columns=VOLATILE), check_exact=True)
    assert main(base + ["--out", str(tmp_path / "ray"), "--ray", "--resume", "--quiet"]) == 0  # finished: nothing to do
    for argv, match in ((["--address", "auto"], "--address: only with --ray"),
                        (["--workers", "2"], "--workers: only with --ray"),
                        (["--ray", "--address", "auto"], "--address: this process is already connected"),
                        (["--ray", "--threads", "3"], "--threads: expected at most 2 (the most CPUs of a node")):
        assert main(base + ["--out", str(tmp_path / "x"), "--quiet"] + argv) == 2
        line = capsys.readouterr().err.strip()
        assert match in line and len(line.splitlines()) == 1, line
    assert not (tmp_path / "x").exists()


_EMBEDDED = r"""
import os
import sys
import numpy as np
import ray
from pyireg import data as D
from pyireg.distributed import RayExecutor
from pyireg.distributed.ray_executor import machine_cpus
from pyireg.experiments import sweep

os.environ.pop("RAY_ADDRESS", None)
os.nice(3)                                # the workers must run at this priority, not Ray's 15 below it
rng = np.random.default_rng(0)
X = rng.normal(size=(120, 6))
ds = D.from_arrays(X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5), n_val=20, n_test=20)
kw = dict(widths=[1, 3, 8, 20], seeds=[0, 2], weight_decays=[0.0, 1e-3], epochs=2, batch_size=20)
with RayExecutor(pack_units=20) as ex:
    nice = ray.get(ray.remote(lambda: os.nice(0)).remote())
    res = sweep(ds, executor=ex, **kw)
    again = sweep(ds, executor=ex, progress=False, **kw)          # the same embedded Ray for both
assert not ray.is_initialized()           # stopped by the executor that started it
local = sweep(ds, progress=False, **kw)
cols = [c for c in local.history.columns if c != "train_seconds"]
assert res.history[cols].equals(local.history[cols]) and again.history[cols].equals(local.history[cols])
print(f"nice {nice} cpus {machine_cpus()}")
"""


def test_an_embedded_ray_is_sized_to_the_machine_started_and_stopped(tmp_path):
    pytest.importorskip("ray", reason='Ray is not installed (pip install "pyireg[ray]")')
    script = tmp_path / "embedded.py"
    script.write_text(_EMBEDDED)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120,
                       cwd=Path(R.__file__).parents[2])
    assert r.returncode == 0, r.stderr[-3000:]
    cpus = int(r.stdout.split()[-1])
    assert f"nice {os.nice(0) + 3} cpus" in r.stdout
    assert f"8 packs, on an embedded local Ray ({cpus} CPUs on 1 node): {cpus} workers x 1 thread" in r.stderr
