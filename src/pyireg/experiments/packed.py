"""A sweep in packs: plan, run the packs through an executor of :mod:`pyireg.distributed`,
publish each pack's rows, merge. (The executors run jobs; this module, above them, knows what a
pack's job is and where its rows go.)

Files (besides ``config.json``, ``history.parquet`` and ``.lock`` of every sweep)
---------------------------------------------------------------------------------
``packs.json``
    The plan: which networks of which repetition each pack holds. Written once, atomically,
    when the sweep starts, and kept: a resumed sweep runs the same packs, whatever its number
    of workers.
``packs/pack-{ID}.parquet``
    The rows of a finished pack (every epoch of its networks), with the sweep id, the pack id
    and its networks in the Parquet metadata (key ``pyireg``). A worker writes it to a
    temporary file of its own (``pack-{ID}.parquet.{random}.tmp``), fsyncs it and renames it:
    the one step that publishes the pack. Two attempts at one pack (a retry after a lost
    worker, a task of a killed driver still running) each publish a complete file with the
    same numbers; the last rename wins.

When every pack is finished, the driver merges their rows in the order of a local sweep
(repetition, epoch, network), publishes ``history.parquet`` by one atomic rename, and then
removes the pack files. On resume the history, if present, is the truth (a finished sweep);
otherwise the plan and the finished packs are checked (leftover temporaries are removed), and
only the other packs run. Missing, corrupt or inconsistent files are refused with the reason.

The directory must be one every worker reaches at the same path: a local directory on one
machine, a shared file system (NFS, CephFS, Lustre, ...) on a cluster. The driver checks each
pack file as its task returns, so a worker writing somewhere the driver cannot see is an error
naming the node, not a silent loss.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import socket
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from ..distributed.executors import PackError, as_executor
from ..distributed.packs import Pack, check_plan, default_pack_units, plan_packs
from . import resources, store
from .results import SweepResult
from .history import COLUMNS, parquet_bytes, read_parquet
from .refusals import SweepStateError, read_bounded, refuse_links
from .training import TrainSpec, train_networks

PLAN_FORMAT = 1
_PACK_RE = re.compile(r"^pack-(\d+)\.parquet$")
VISIBILITY_SECONDS = 30.0    # how long the driver waits for a pack file a worker reported (NFS caches)


def pack_name(pack_id: int) -> str:
    return f"pack-{pack_id:05d}.parquet"


# ----------------------------------------------------------------------------- the worker's side
@dataclasses.dataclass(frozen=True)
class PackJob:
    """Trains one pack: what a worker needs besides the data and the pack (small, picklable).
    ``packs_dir``: where the pack's rows are published (None: returned instead, for a sweep
    kept in memory); ``threads``: native threads (None: leave the process's setting)."""
    spec: TrainSpec
    packs_dir: str | None
    sweep_id: str
    threads: int | None
    version: str

    def __call__(self, ds, pack: Pack, fault_hook=None) -> dict:
        """Train ``pack`` and publish its rows; ``fault_hook`` (tests only): the store's hook
        around this pack's file operations."""
        if fault_hook is None:
            return self._run(ds, pack)
        store.set_fault_hook(fault_hook)
        try:
            return self._run(ds, pack)
        finally:
            store.set_fault_hook(None)

    def _run(self, ds, pack: Pack) -> dict:
        from .. import get_num_threads, set_num_threads
        if self.threads is None:
            return self._train(ds, pack)
        before = get_num_threads()          # an in-process executor shares the caller's setting
        set_num_threads(self.threads)
        try:
            return self._train(ds, pack)
        finally:
            set_num_threads(before)

    def _train(self, ds, pack: Pack) -> dict:
        from .. import __version__
        host = socket.gethostname()
        if __version__ != self.version:
            raise RuntimeError(f"pyireg {__version__} is installed on {host}, but the driver runs pyireg "
                               f"{self.version}: install the same version on every node")
        if self.packs_dir is not None and not os.path.isdir(self.packs_dir):
            raise FileNotFoundError(f"out: {self.packs_dir} does not exist on {host}: the sweep directory must be "
                                    "one every worker reaches at the same path (a shared file system such as NFS)")
        import pandas as pd
        t0 = time.perf_counter()
        frames = []
        train_networks(ds, self.spec, pack.repetition, pack.networks,
                       after_epoch=lambda epoch, frame, *rest: frames.append(frame))
        history = pd.concat(frames, ignore_index=True)
        seconds = time.perf_counter() - t0
        result = {"pack": pack.id, "rows": len(history), "seconds": seconds, "host": host, "pid": os.getpid()}
        if self.packs_dir is None:
            result["history"] = history
        else:
            _publish_pack(Path(self.packs_dir), pack, history, self.sweep_id, self.spec.epochs)
        return result


def _pack_meta(pack: Pack, sweep_id: str, epochs: int) -> dict:
    return {"format": PLAN_FORMAT, "sweep_id": sweep_id, "pack": pack.id, "repetition": pack.repetition,
            "networks": list(pack.networks), "epochs": int(epochs)}


def _publish_pack(packs_dir: Path, pack: Pack, history, sweep_id: str, epochs: int) -> None:
    data = parquet_bytes(history, _pack_meta(pack, sweep_id, epochs))
    disk = store.Disk()
    final = packs_dir / pack_name(pack.id)
    tmp = packs_dir / f"{final.name}.{uuid.uuid4().hex[:12]}.tmp"    # its own: attempts never share one
    disk.write(tmp, lambda f: f.write(data))
    try:
        disk.replace(tmp, final)                   # publishes the pack
    except (Exception, KeyboardInterrupt):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    disk.sync_dir(packs_dir)


# ----------------------------------------------------------------------------- the directory
class _PackDir(store.SweepDir):
    """A sweep directory trained in packs: the plan, the pack files, the merged history."""

    def __init__(self, out: Path, config: dict, policy: str, spec: TrainSpec):
        super().__init__(out, config, policy)
        self.spec = spec
        self.packs_dir = out / "packs"
        self.plan_path = out / "packs.json"
        self.complete = False

    def pack_path(self, pack_id: int) -> Path:
        return self.packs_dir / pack_name(pack_id)

    def remove_temporaries(self) -> None:
        super().remove_temporaries()
        for p in (self.out / "packs.json.tmp",):
            if p.exists():
                self.disk.remove(p)
        if self.packs_dir.is_dir():
            for p in sorted(self.packs_dir.glob("*.tmp")):
                self.disk.remove(p)

    def reconcile(self):
        """On resume: a finished history ends the sweep (what an interrupted clean-up left is
        removed); a history of a sweep trained repetition by repetition, or its checkpoints,
        are refused (it resumes without an executor)."""
        cfg = self.config
        seeds, epochs = cfg["seeds"], cfg["epochs"]
        if self.history_path.exists():
            hist, done = self.read_own_history()
            if any(done.get(s, 0) < epochs for s in seeds):
                raise SweepStateError(
                    f"out: {self.out} holds a sweep trained repetition by repetition (epochs done per seed "
                    f"{ {s: done.get(s, 0) for s in seeds} }), not in packs; resume it without an executor (no --ray)")
            self.complete = True
            if self.packs_dir.is_dir():               # a clean-up after the merge was interrupted
                for p in sorted(self.packs_dir.glob("pack-*.parquet")):
                    self.disk.remove(p)
                with contextlib.suppress(OSError):
                    self.disk.rmdir(self.packs_dir)
            return hist, done
        refuse_links(sorted(self.ckdir.iterdir()))
        for p in sorted(self.ckdir.iterdir()):
            m = store.CKPT_RE.match(p.name)
            if m and m[3] and int(m[2]) == 1:
                self.disk.remove(p)                  # the first epoch of a sweep never committed
            elif m:
                raise SweepStateError(f"out: checkpoints/{p.name} is of a sweep trained repetition by repetition, "
                                      "and its history.parquet is missing; restore the history and resume without "
                                      "an executor, or start in another directory")
        return None, {}

    def prepare(self, new_plan: list) -> tuple[list, dict]:
        """The plan (the saved one, or ``new_plan``, saved now) and the finished packs, checked:
        returns (plan, {pack id: its rows})."""
        self.disk.mkdir(self.packs_dir)
        files = {}
        for p in sorted(self.packs_dir.iterdir()):
            m = _PACK_RE.match(p.name)
            if m:
                files[int(m[1])] = p
        if self.plan_path.exists():
            plan = _read_plan(self.plan_path, self.config)
        elif files:
            first = files[min(files)]
            raise SweepStateError(f"out: {self.plan_path} is missing, but packs/{first.name} of a finished pack is "
                                  "there; without the plan the finished packs cannot be matched to networks. "
                                  "Restore packs.json, or start the sweep in another directory")
        else:
            plan = new_plan
            body = {"format": PLAN_FORMAT, "sweep_id": self.config["sweep_id"], "packs": [p.to_json() for p in plan]}
            self.disk.write_atomic(self.plan_path, lambda f: f.write(store.json_bytes(body)))
        finished = {}
        for pid, path in files.items():
            if pid >= len(plan):
                raise SweepStateError(f"out: {path} is a pack that {self.plan_path.name} does not have (it plans "
                                      f"{len(plan)} packs); move it away to resume")
            finished[pid] = read_pack(path, plan[pid], self.config["sweep_id"], self.spec)
        return plan, finished

    def publish(self, history, done: dict) -> None:
        """Publish the merged history (one rename), then remove the pack files."""
        data = parquet_bytes(history, self.history_meta(done))
        self.disk.write_atomic(self.history_path, lambda f: f.write(data))
        for p in sorted(self.packs_dir.glob("pack-*")):
            self.disk.remove(p)
        with contextlib.suppress(OSError):          # a task of an earlier driver may still write there
            self.disk.rmdir(self.packs_dir)
        self.complete = True


def _read_plan(path: Path, config: dict) -> list:
    try:
        body = json.loads(read_bounded(path, "out").decode())
        packs = [Pack(int(p["id"]), int(p["repetition"]), tuple(int(n) for n in p["networks"]), int(p["units"]),
                      int(p["cost"])) for p in body["packs"]]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError, OverflowError) as e:
        e = "nested too deeply" if isinstance(e, RecursionError) else f"{type(e).__name__}: {e}"
        raise SweepStateError(f"out: {path} is empty or corrupt ({e}); the finished packs cannot "
                              "be matched to networks without it: restore it, or start in another directory") from None
    if body.get("format") != PLAN_FORMAT or body.get("sweep_id") != config["sweep_id"]:
        raise SweepStateError(f"out: {path} belongs to another sweep (its sweep id or format differs from "
                              "config.json's); restore the sweep's own plan, or start in another directory")
    why = check_plan(packs, config["num_networks"], config["seeds"])
    widths = config["grid_widths"]
    if why is None and any(p.units != sum(widths[n] for n in p.networks) for p in packs):
        why = "its units do not match the grid's widths"
    if why is not None:
        raise SweepStateError(f"out: {path} is not a plan of this sweep's grid ({why}); restore it, or start in "
                              "another directory")
    return packs


def read_pack(path: Path, pack: Pack, sweep_id: str, spec: TrainSpec):
    """The rows of a finished pack, checked against the plan (sweep, pack, networks, epochs)."""
    again = f"delete it to train {pack.describe(spec.grid_widths)} again"
    frame, meta = read_parquet(path, "out", again)
    if isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if k != "rows_sha256"}
    if not isinstance(meta, dict) or meta.get("sweep_id") != sweep_id:
        raise SweepStateError(f"out: {path} is not a pack of this sweep (its sweep id differs from config.json's); "
                              f"move it away, or {again}")
    if meta != _pack_meta(pack, sweep_id, spec.epochs):
        raise SweepStateError(f"out: {path} holds other networks than packs.json gives pack {pack.id}; {again}")
    E, n = spec.epochs, len(pack.networks)
    first = 0 if spec.record_epoch0 else 1
    R = E - first + 1
    ok = list(frame.columns) == COLUMNS + spec.extra_columns and len(frame) == R * n
    if ok:
        nets = np.asarray(pack.networks)
        ok = ((frame["repetition"].to_numpy() == pack.repetition).all()
              and (frame["epoch"].to_numpy().reshape(R, n) == np.arange(first, E + 1)[:, None]).all()
              and (frame["network"].to_numpy().reshape(R, n) == nets).all()
              and (frame["width"].to_numpy().reshape(R, n) == np.asarray(spec.grid_widths)[nets]).all())
    if not ok:
        raise SweepStateError(f"out: {path} is inconsistent (its rows are not epochs {first}..{E} of the {n} "
                              f"networks of pack {pack.id}); {again}")
    return frame


def merge(frames, seeds):
    """The rows of all packs in the order of a local sweep: repetition (in ``seeds`` order),
    epoch, network."""
    import pandas as pd
    h = pd.concat(frames, ignore_index=True)
    rank = {int(s): i for i, s in enumerate(seeds)}
    order = np.lexsort((h["network"].to_numpy(), h["epoch"].to_numpy(),
                        h["repetition"].map(rank).to_numpy()))
    return h.take(order).reset_index(drop=True)


# ----------------------------------------------------------------------------- executors
# ----------------------------------------------------------------------------- the driver
def _check_pack_memory(plan, spec: TrainSpec, ds, per_machine, max_memory, saved=None) -> None:
    """The packs trained at once on one machine must fit its memory (or ``max_memory``); on a
    cluster, where the driver cannot know the nodes' memory, only ``max_memory`` is checked.
    ``saved``: the plan file a resume keeps (its packs, not ``pack_units``, decide the sizes)."""
    biggest = max(plan, key=lambda p: p.units)
    est = resources.estimate_memory([spec.grid_widths[n] for n in biggest.networks], ds.num_features, ds.num_classes,
                            batch_size=spec.batch_size, eval_batch=spec.eval_batch, dtype=ds.dtype)
    if max_memory == 0 or (per_machine is None and max_memory is None):
        return
    limit = resources.available_memory() if max_memory is None else max_memory
    at_once = per_machine or 1
    need = est["total"] * at_once
    if limit is None or need <= limit:
        return
    raise MemoryError(f"pack_units: {at_once} pack(s) trained at once on {'this machine' if per_machine else 'a node'} "
                      f"need about {resources.fmt_bytes(need)} "
                      f"(the largest, {biggest.describe(spec.grid_widths)}, about "
                      f"{resources.fmt_bytes(est['total'])}) but {resources.fmt_bytes(limit)} "
                      f"{'are available' if max_memory is None else 'is the limit (max_memory)'}; "
                      + ("use smaller packs (pack_units), fewer workers, or more machines" if saved is None else
                         f"a resume keeps the packs of {saved} whatever pack_units says: use fewer workers, more "
                         "memory, or max_memory=0 to skip this check"))


class _PackProgress:
    """Progress across packs, on stderr: a tqdm bar on a terminal, else a line per finished pack at
    most every PROGRESS_INTERVAL seconds (always the first and the last); failures always."""

    def __init__(self, plan, finished, enabled, desc, where, grid_widths):
        self.n, self.grid_widths = len(plan), grid_widths
        self.total = sum(p.cost for p in plan)
        self.count = len(finished)
        self.done_cost = self.start_cost = sum(plan[i].cost for i in finished)
        self.enabled, self.desc = bool(enabled), desc
        self.t0, self.last_line, self.bar = time.perf_counter(), -math.inf, None
        if not self.enabled:
            return
        print(f"{desc}: {self.n} packs, {where}" + (f"; {self.count} already finished" if self.count else ""),
              file=sys.stderr, flush=True)
        if resources.isatty(sys.stderr):
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.n, initial=self.count, desc=desc, unit="pack", leave=False)

    def done(self, pack, outcome):
        self.count += 1
        self.done_cost += pack.cost
        if not self.enabled:
            return
        where = f" on {outcome['host']}" if isinstance(outcome, dict) and "host" in outcome else ""
        secs = outcome.get("seconds", 0.0) if isinstance(outcome, dict) else 0.0
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"pack {pack.id} in {secs:.1f} s{where}")
            return
        now = time.perf_counter()
        if self.count == self.n or now - self.last_line >= resources.PROGRESS_INTERVAL:
            self.last_line = now
            work = self.done_cost - self.start_cost
            left = (now - self.t0) / work * (self.total - self.done_cost) if work else 0.0
            print(f"{self.desc}: pack {pack.id} done in {secs:.1f} s{where}: {self.count}/{self.n} packs, "
                  f"{100 * self.done_cost / self.total:.0f}% of the work; about {resources.fmt_time(left)} left",
                  file=sys.stderr, flush=True)

    def failed(self, pack, error):
        if self.enabled:
            print(f"{self.desc}: {pack.describe(self.grid_widths)} failed: {type(error).__name__}: {error}",
                  file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _wait_for(path: Path, outcome) -> None:
    """A worker reported ``path`` published; on a shared file system it may take a moment to show."""
    deadline = time.monotonic() + VISIBILITY_SECONDS
    while not path.exists():
        if time.monotonic() > deadline:
            host = outcome.get("host", "?") if isinstance(outcome, dict) else "?"
            raise SweepStateError(f"out: {path.parent.parent} is not shared: the worker on {host} published "
                                  f"{path.name}, but this machine does not see it after {VISIBILITY_SECONDS:.0f} s. "
                                  "Use a directory every node mounts at the same path (NFS or another shared "
                                  "file system)")
        time.sleep(0.2)


def run_in_packs(ds, spec: TrainSpec, config: dict, *, out, resume: bool, checkpoints: str, executor, progress: bool,
                 desc: str, max_memory) -> SweepResult:
    """The sweep of pyireg.sweep(..., executor=...), everything checked: see the module
    documentation."""
    from .. import __version__
    if checkpoints != "resume":
        raise ValueError(f"checkpoints: with an executor only 'resume' (a sweep in packs resumes pack by pack "
                         f"and keeps no weights), got {checkpoints!r}; leave executor=None to keep weights")
    ex = as_executor(executor)
    seeds, epochs = config["seeds"], spec.epochs
    info = ex.start()
    try:
        pack_units = getattr(ex, "pack_units", None) or default_pack_units(spec.grid_widths, len(seeds),
                                                                             info["workers"])
        plan = plan_packs(spec.grid_widths, seeds, epochs, pack_units)
        _check_pack_memory(plan, spec, ds, info.get("per_machine"), max_memory)
        d = _PackDir(Path(out), config, checkpoints, spec) if out is not None else None
        bar = None
        try:
            finished = {}
            if d is not None:
                d.lock()
                config, hist, done = d.open(resume)
                if d.complete:
                    return SweepResult(hist, config, d.out)
                plan, finished = d.prepare(plan)
                _check_pack_memory(plan, spec, ds, info.get("per_machine"), max_memory,
                                   saved=d.out / "packs.json" if resume else None)
            job = PackJob(spec, str(d.packs_dir) if d is not None else None, config["sweep_id"], info.get("threads"),
                          __version__)
            todo = sorted((p for p in plan if p.id not in finished), key=lambda p: (-p.cost, p.id))
            bar = _PackProgress(plan, finished, progress, desc, info["where"], spec.grid_widths)
            failures = []
            for pack, outcome in ex.run(job, ds, todo):
                if isinstance(outcome, BaseException):
                    failures.append((pack, outcome))
                    bar.failed(pack, outcome)
                    continue
                if d is None:
                    finished[pack.id] = outcome["history"]
                else:
                    _wait_for(d.pack_path(pack.id), outcome)
                    finished[pack.id] = read_pack(d.pack_path(pack.id), pack, config["sweep_id"], spec)
                bar.done(pack, outcome)
            if failures:
                shown = "; ".join(f"{p.describe(spec.grid_widths)}: {type(e).__name__}: {e}" for p, e in failures[:3])
                kept = (f"kept in {d.packs_dir}; fix the cause and rerun with resume=True (--resume) to train only the "
                        "failed packs" if d is not None else "lost with it (no out directory)")
                raise PackError(f"{len(failures)} of {len(plan)} packs failed: {shown}"
                                f"{'; ...' if len(failures) > 3 else ''}. The {len(finished)} finished packs are "
                                f"{kept}", failures) from failures[0][1]
            missing = sorted(p.id for p in plan if p.id not in finished)
            if missing:               # an executor that did not report every pack (a bug, a lost result)
                shown = ", ".join(f"pack {i}" for i in missing[:4]) + (", ..." if len(missing) > 4 else "")
                raise PackError(f"executor: {type(ex).__name__}.run reported {len(plan) - len(missing)} of "
                                f"{len(plan)} packs (no result for {shown}); nothing was published"
                                + (f", the finished packs are kept in {d.packs_dir}: rerun with resume=True "
                                   "(--resume) to train the others" if d is not None else ""), [])
            history = merge([finished[i] for i in sorted(finished)], seeds)
            if d is not None:
                d.publish(history, {s: epochs for s in seeds})
            return SweepResult(history, config, d.out if d is not None else None)
        finally:
            if bar is not None:
                bar.close()
            if d is not None:
                d.unlock()
    finally:
        ex.stop()
