"""Width sweeps: widths x weight decays (x lr scales) trained together in one packed model per
repetition, with train / validation / test error, loss and weight norms recorded every epoch.

``balance_drift`` is sum_h |b_h(t) - b_h(0)| / sum_h (||u_h(0)||^2 + ||v_h(0)||^2) with
b_h = ||u_h||^2 - ||v_h||^2: gradient flow conserves every b_h exactly, so this measures how far
SGD's finite steps (and weight decay) moved the per-unit balance, by width and learning rate.
``at_chance`` marks a network whose training loss is ln k (to 1e-4 relative): its outputs are
constant, almost always because every hidden unit is inactive on every sample, and it will not
learn again; the sweep warns (``ChanceWarning``) and names the likely cause.

Files of a sweep directory, and the resume guarantee
----------------------------------------------------
``config.json``
    The settings, the data's fingerprint and a sweep id. Written once, atomically, when the
    sweep starts; never rewritten.
``history.parquet``
    One row per network per finished epoch (a tidy table, ``pandas.read_parquet`` reads it).
    Its Parquet metadata (key ``pyireg``) records the sweep id and the epochs finished by each
    repetition: it is the record of what is done.
``checkpoints/rep{SEED}-epoch{E}.npz``
    Weights, momentum buffers and divergence flags of repetition SEED after epoch E
    (``numpy.load`` reads it). Only the one resume needs is kept (``checkpoints="resume"``),
    or also each repetition's final one (``"final"``), or all (``"all"``).
``.lock``
    Locked while a process works on the sweep, so that two cannot write it at once.

The files are always a consistent prefix of the uninterrupted run, whatever instant the
process dies (kill, full disk, power loss): epoch E of repetition SEED is committed by one
function, :func:`_commit_epoch`, in three steps: (1) stage the checkpoint as
``rep{SEED}-epoch{E}.npz.staged`` (written and fsynced; not yet part of the sweep); (2) write the
history with the new rows to ``history.parquet.tmp``, fsync it, and rename it onto
``history.parquet``: the one atomic step that publishes the epoch; (3) rename the staged
checkpoint to its final name and delete the checkpoints resume no longer needs. On resume,
:func:`_reconcile` takes the history as the truth, completes or removes what an interrupted
commit left (a staged checkpoint, ``*.tmp`` files), and refuses with the reason (never starting
over) when a file is missing, corrupt or belongs to another sweep. ``resume=True`` then
finishes with exactly the numbers of an uninterrupted run (every column but the wall-clock
``train_seconds``): the data order of epoch e of repetition r depends on (r, e) only, and the
kernels are deterministic.

A sweep with an executor (``executor="ray"``, ...) trains in packs instead and commits pack by
pack (``packs.json``, ``packs/``); :mod:`pyireg.distributed.runner` describes its files.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import numbers
import os
import re
import sys
import time
import uuid
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .. import _profile
from .. import data as D
from ..model import PackedMLP
from ..optim import MomentumSGD
from ..schedule import PaperSchedule
from ._common import check_writable

if TYPE_CHECKING:
    import pandas as pd

FORMAT = 1
METRICS = ["train_error", "train_loss", "val_error", "val_loss", "test_error", "test_loss"]
COLUMNS = (["repetition", "network", "width", "weight_decay", "lr_scale", "epoch", "lr", "momentum"] + METRICS
           + ["norm_U", "norm_V", "balance_drift", "diverged", "at_chance", "train_seconds"])
CHECKPOINT_POLICIES = ("resume", "final", "all")
CHANCE_RTOL = 1e-4            # |train_loss - ln k| <= CHANCE_RTOL * ln k  ->  at chance
NOISE_SEED_OFFSET = 1000      # repetition r draws its label noise with seed NOISE_SEED_OFFSET + r
PROGRESS_INTERVAL = 30.0      # seconds between plain progress lines when stderr is not a terminal
_NOT_COMPARED = ("sweep_id", "dataset", "written_by", "tag")   # config keys that may differ on resume

# Tests set this to a callable hook(op, path), called before every file operation on a sweep
# directory (op: "mkdir", "lock", "open", "write", "fsync", "rename", "remove", "fsync-dir"), to
# stop the sweep there (as a kill would) or make the operation fail (as a full disk would).
_FAULT_HOOK: Callable[[str, str], None] | None = None
# fsync files and directories before and after each rename, so that a commit survives a power
# loss. A killed process cannot lose what the page cache holds, so the in-process kill tests
# switch it off to save time on a busy disk (the "fsync" points are still passed).
_DURABLE = True


class SweepStateError(RuntimeError):
    """The files of a sweep directory are missing, corrupt or inconsistent: resuming would lose
    or overwrite finished work, so the sweep refuses and says why."""


class ChanceWarning(UserWarning):
    """Some networks ended a sweep at chance (training loss ln k, constant outputs) or diverged."""


@dataclasses.dataclass
class SweepResult:
    """A sweep's history (one row per repetition, network and epoch), its configuration and
    its directory (None for a sweep kept in memory)."""
    history: "pd.DataFrame"
    config: dict
    out: Path | None = None

    def epochs_done(self) -> dict:
        """Epochs recorded per repetition seed."""
        if len(self.history) == 0:
            return {}
        return {int(k): int(v) for k, v in self.history.groupby("repetition")["epoch"].max().items()}

    @property
    def complete(self) -> bool:
        """Every repetition of the configuration recorded all its epochs (True when the
        configuration is unknown and the repetitions agree)."""
        done = self.epochs_done()
        if not self.config:
            return len(set(done.values())) <= 1
        return all(done.get(int(s), 0) == self.config["epochs"] for s in self.config["seeds"])

    def summary(self, **kw):
        return summarize(self.history, **kw)

    def plot(self, out_file=None):
        """See :func:`pyireg.plots.plot_results`."""
        from ..plots import plot_results
        return plot_results(self, out_file)


# ----------------------------------------------------------------------------- file operations
class _HookedRaw(io.RawIOBase):
    """The raw (unbuffered) file under a sweep's writes: every write that reaches the operating
    system is a numbered point of the fault hook. It says it cannot seek, so that zip archives
    (np.savez) are written in one sequential pass."""

    def __init__(self, path, disk):
        self._f = open(path, "wb", buffering=0)
        self._disk, self._path = disk, path

    def writable(self):
        return True

    def seekable(self):
        return False

    def write(self, data):
        self._disk.at("write", self._path)
        return self._f.write(data)

    def fileno(self):
        return self._f.fileno()

    def close(self):
        if not self.closed:
            self._f.close()
        super().close()


class _Disk:
    """Every file operation a sweep makes on its directory, in one place (see _FAULT_HOOK)."""

    @staticmethod
    def at(op, path):
        if _FAULT_HOOK is not None:
            _FAULT_HOOK(op, str(path))

    def write(self, path: Path, fill: Callable) -> None:
        """Create ``path`` with ``fill(file)`` (through a 1 MiB buffer) and fsync it. On an error
        (a full disk) or Ctrl-C the partial file is removed; a kill leaves it, for _reconcile."""
        self.at("open", path)
        raw = _HookedRaw(path, self)
        f = io.BufferedWriter(raw, buffer_size=1 << 20)
        try:
            fill(f)
            f.flush()
            self.at("fsync", path)
            if _DURABLE:
                os.fsync(raw.fileno())
        except (Exception, KeyboardInterrupt):
            with contextlib.suppress(Exception):
                raw.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        f.close()

    def replace(self, src: Path, dst: Path) -> None:
        self.at("rename", dst)
        os.replace(src, dst)

    def remove(self, path: Path) -> None:
        self.at("remove", path)
        os.unlink(path)

    def rmdir(self, path: Path) -> None:
        self.at("remove", path)
        os.rmdir(path)

    def mkdir(self, path: Path) -> None:
        if not path.is_dir():
            self.at("mkdir", path)
            path.mkdir(parents=True, exist_ok=True)

    def sync_dir(self, path: Path) -> None:
        self.at("fsync-dir", path)
        if _DURABLE and os.name == "posix":
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def write_atomic(self, path: Path, fill: Callable) -> None:
        tmp = path.with_name(path.name + ".tmp")
        self.write(tmp, fill)
        try:
            self.replace(tmp, path)
        except (Exception, KeyboardInterrupt):
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.sync_dir(path.parent)


_CKPT_RE = re.compile(r"^rep(\d+)-epoch(\d+)\.npz(\.staged)?$")


class _SweepDir:
    """A sweep directory: lock, creation, reconciliation on resume, and the epoch commit."""

    def __init__(self, out: Path, config: dict, policy: str):
        self.out, self.config, self.policy = out, config, policy
        self.ckdir = out / "checkpoints"
        self.history_path = out / "history.parquet"
        self.config_path = out / "config.json"
        self.disk = _Disk()
        self._lock_fd = None

    def ckpt(self, seed, epoch, staged=False) -> Path:
        return self.ckdir / (f"rep{seed}-epoch{epoch}.npz" + (".staged" if staged else ""))

    # -- lock
    def lock(self) -> None:
        self.disk.mkdir(self.out)
        self.disk.at("lock", self.out / ".lock")
        fd = os.open(self.out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:        # no advisory locks on this platform
            self._lock_fd = fd
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SweepStateError(f"out: another process is working on the sweep in {self.out} (its .lock is "
                                  "held); wait for it to finish or stop it first") from None
        except OSError:              # a file system without locks (some network mounts): go on unlocked
            pass
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- start
    def ours(self) -> list[Path]:
        """Files of a sweep in the directory (not temporaries)."""
        found = [p for p in (self.config_path, self.history_path, self.out / "packs.json") if p.exists()]
        if self.ckdir.is_dir():
            found += sorted(p for p in self.ckdir.iterdir() if _CKPT_RE.match(p.name))
        if (self.out / "packs").is_dir():
            found += sorted((self.out / "packs").glob("pack-*.parquet"))
        return found

    def remove_temporaries(self) -> None:
        for p in (self.out / "config.json.tmp", self.out / "history.parquet.tmp"):
            if p.exists():
                self.disk.remove(p)
        if self.ckdir.is_dir():
            for p in sorted(self.ckdir.glob("*.tmp")):
                self.disk.remove(p)

    def open(self, resume: bool) -> tuple:
        """Start or resume: returns (config, history DataFrame or None, epochs done per seed)."""
        if self.config_path.exists() and not resume:         # before anything is touched
            raise FileExistsError(f"out: {self.out} already holds a sweep; pass resume=True (--resume) to continue "
                                  "it, or choose another directory")
        self.remove_temporaries()
        if not self.config_path.exists():
            others = self.ours()
            if others:
                raise SweepStateError(
                    f"out: {self.config_path} is missing, but {others[0].name} of a sweep is there; without the "
                    "configuration the finished work cannot be continued safely. Restore config.json, or start "
                    "the sweep in another directory")
            self.disk.mkdir(self.ckdir)
            self.disk.write_atomic(self.config_path, lambda f: f.write(_json_bytes(self.config)))
            return self.config, None, {}
        saved = _read_config(self.config_path)
        _compare_configs(saved, self.config, self.out)
        self.config = dict(self.config, sweep_id=saved["sweep_id"], tag=saved.get("tag", ""),
                           written_by=saved.get("written_by"), dataset=saved["dataset"])
        self.disk.mkdir(self.ckdir)
        hist, done = self.reconcile()
        return self.config, hist, done

    def reconcile(self):
        """Check the files against each other on resume (a sweep in packs has its own)."""
        return _reconcile(self)

    # -- commit
    def history_meta(self, done) -> dict:
        return {"format": FORMAT, "sweep_id": self.config["sweep_id"],
                "epochs_done": {str(k): int(v) for k, v in done.items()}}


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _read_config(path: Path) -> dict:
    try:
        cfg = json.loads(path.read_bytes().decode())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SweepStateError(f"out: {path} is empty or corrupt ({type(e).__name__}: {e}); the sweep cannot be "
                              "resumed without it: restore it, or start the sweep in another directory") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT or "sweep_id" not in cfg:
        raise SweepStateError(f"out: {path} is not the configuration of a sweep of this pyireg version "
                              f"(format {cfg.get('format') if isinstance(cfg, dict) else '?'}, expected {FORMAT}); "
                              "resume it with the version that made it, or start in another directory")
    return cfg


def _compare_configs(saved: dict, new: dict, out: Path) -> None:
    diff = []
    for key in sorted(set(saved) | set(new)):
        if key in _NOT_COMPARED:
            continue
        a, b = saved.get(key), json.loads(json.dumps(new.get(key)))
        if a != b:
            if key == "data_sha256":
                diff.append(f"the data differ (the sweep was made with {saved['dataset'].get('name', '?')} "
                            f"data of fingerprint {str(a)[:12]}, these are {new['dataset'].get('name', '?')}, "
                            f"{str(b)[:12]})")
            else:
                show = lambda v: (json.dumps(v)[:60] + "...") if len(json.dumps(v)) > 60 else json.dumps(v)
                diff.append(f"{key}: {show(a)} there, {show(b)} here")
    if diff:
        raise ValueError(f"resume: the sweep in {out} was made with another configuration: {'; '.join(diff)}. "
                         "Resume with the same settings, or start a new sweep in another directory")


def _read_history(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise SweepStateError(f"out: {path} is corrupt ({type(e).__name__}: {e}); the finished epochs it held "
                              "cannot be read: restore it from a backup, or start in another directory") from None
    raw = (table.schema.metadata or {}).get(b"pyireg")
    meta = None
    if raw is not None:
        with contextlib.suppress(ValueError):
            meta = json.loads(raw.decode())
    return table.to_pandas(), meta


def _reconcile(d: _SweepDir):
    """Check the files of an interrupted sweep against each other, finish or undo what an
    interrupted commit left, and return (history, epochs done per seed). Refuses with the
    reason when they cannot all be true at once."""
    cfg = d.config
    seeds, epochs = cfg["seeds"], cfg["epochs"]
    hist, done = None, {}
    if d.history_path.exists():
        hist, meta = _read_history(d.history_path)
        if not isinstance(meta, dict) or meta.get("sweep_id") != cfg["sweep_id"]:
            why = ("has no record of a pyireg sweep" if not isinstance(meta, dict)
                   else "belongs to another sweep (its sweep id differs from config.json's)")
            raise SweepStateError(f"out: {d.history_path} {why}; restore the sweep's own history, or start "
                                  "in another directory")
        done = {int(k): int(v) for k, v in meta.get("epochs_done", {}).items()}
        _check_history(hist, done, cfg, d.history_path)
    if (d.out / "packs.json").exists() and any(done.get(s, 0) < epochs for s in seeds):
        raise SweepStateError(f"out: {d.out} holds a sweep trained in packs (packs.json), not repetition by "
                              "repetition; resume it with an executor (executor='ray' or 'local'; --ray)")
    # checkpoints: the history says what is committed; a checkpoint may be one epoch ahead only
    # if it is still staged (an interrupted commit), never behind what resume needs
    files = sorted((p for p in d.ckdir.iterdir() if _CKPT_RE.match(p.name)), key=lambda p: p.name)
    for p in files:
        seed, e, staged = int(_CKPT_RE.match(p.name)[1]), int(_CKPT_RE.match(p.name)[2]), bool(_CKPT_RE.match(p.name)[3])
        if seed not in seeds:
            raise SweepStateError(f"out: {p} is a checkpoint of seed {seed}, which this sweep (seeds {seeds}) does "
                                  "not have; move it away to resume")
        E = done.get(seed, 0)
        if staged and e == E + 1:
            d.disk.remove(p)                        # its epoch was never published: it is redone
        elif staged and e == E and E >= 1:
            final = d.ckpt(seed, e)
            if _needed(d.policy, e, E, epochs):
                d.disk.replace(p, final)            # published, not yet renamed: finish the commit
            else:
                d.disk.remove(p)
        elif staged or e > E:
            where = ("history.parquet is missing" if not d.history_path.exists()
                     else f"history.parquet records {E} epoch(s) of seed {seed}")
            raise SweepStateError(f"out: {p.name} is from epoch {e}, but {where}: the history of finished epochs "
                                  "was deleted or replaced by an older copy. Restore the history, or start the "
                                  "sweep in another directory")
        elif not _needed(d.policy, e, E, epochs):
            d.disk.remove(p)                        # a commit was interrupted before its pruning
    d.disk.sync_dir(d.ckdir)
    for seed in seeds:
        E = done.get(seed, 0)
        if 0 < E < epochs and not d.ckpt(seed, E).exists():
            raise SweepStateError(
                f"out: checkpoints/{d.ckpt(seed, E).name} is missing: history.parquet records {E} of {epochs} "
                f"epochs of seed {seed}, and training cannot continue without the weights of epoch {E}. The "
                "finished epochs stay in history.parquet; restore the checkpoint, or start in another directory")
    return hist, done


def _needed(policy, e, E, epochs) -> bool:
    """Whether the checkpoint of epoch e is kept when E epochs are committed."""
    if policy == "all":
        return True
    if e == E and E < epochs:
        return True
    return policy == "final" and e == epochs


def _check_history(hist, done, cfg, path) -> None:
    seeds, epochs, N = cfg["seeds"], cfg["epochs"], cfg["num_networks"]
    bad = lambda why: SweepStateError(f"out: {path} is inconsistent ({why}); restore the sweep's own history, "
                                      "or start in another directory")
    missing = (set(COLUMNS) | set(cfg.get("measures", []))) - set(hist.columns)
    if missing:
        raise bad(f"columns {sorted(missing)} are missing")
    if set(done) - set(seeds) or set(hist["repetition"].unique().tolist()) - set(done):
        raise bad("it holds repetitions this sweep does not have")
    pattern = [done.get(s, 0) for s in seeds]
    # repetitions run in order: complete ones, at most one partial, then untouched ones
    j = next((i for i, v in enumerate(pattern) if v < epochs), len(pattern))
    if any(v > epochs for v in pattern) or any(v != 0 for v in pattern[j + 1:]):
        raise bad(f"epochs done per seed {dict(zip(seeds, pattern))} is not a state an uninterrupted run passes")
    counts = hist.groupby("repetition").size().to_dict()
    widths = np.asarray(cfg["grid_widths"])
    for s in seeds:
        E = done.get(s, 0)
        if counts.get(s, 0) != N * E:
            raise bad(f"seed {s} has {counts.get(s, 0)} rows, expected {N} networks x {E} epochs")
        if E:
            h = hist[hist["repetition"] == s]
            ep = h["epoch"].to_numpy().reshape(E, N)
            net = h["network"].to_numpy().reshape(E, N)
            if not ((ep == np.arange(1, E + 1)[:, None]).all() and (net == np.arange(N)).all()
                    and (h["width"].to_numpy().reshape(E, N) == widths).all()):
                raise bad(f"the rows of seed {s} are not epochs 1..{E} of networks 0..{N - 1} of this grid")


def _parquet_bytes(frame, meta: dict) -> memoryview:
    """``frame`` as a Parquet file in memory, with ``meta`` (JSON) under the metadata key pyireg."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"pyireg": json.dumps(meta).encode()})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    return memoryview(buf.getvalue())


def _commit_epoch(d: _SweepDir, seed: int, epoch: int, arrays: dict, history, done: dict) -> None:
    """Commit epoch ``epoch`` of repetition ``seed``: stage the checkpoint, publish the history
    (with ``done[seed] == epoch``) by one rename, then finish the checkpoint and prune the ones
    resume no longer needs. Every file operation goes through ``d.disk`` (see _FAULT_HOOK)."""
    epochs = d.config["epochs"]
    keep = _needed(d.policy, epoch, epoch, epochs)
    staged = d.ckpt(seed, epoch, staged=True)
    # serialized in memory first (it is small next to the weights): an interrupt during the file
    # write then never leaves a half-closed Parquet writer behind
    parquet = _parquet_bytes(history, d.history_meta(done))
    tmp = d.history_path.with_name(d.history_path.name + ".tmp")
    renaming = False
    try:
        if keep:
            d.disk.write(staged, lambda f: np.savez(f, **arrays))
            d.disk.sync_dir(d.ckdir)
        d.disk.write(tmp, lambda f: f.write(parquet))
        renaming = True
        d.disk.replace(tmp, d.history_path)                 # the commit: one atomic rename
    except (Exception, KeyboardInterrupt):
        if not (renaming and not tmp.exists()):             # not published (a Ctrl-C may land just after)
            for p in (staged, tmp):                         # the temporaries are of no use; after a
                with contextlib.suppress(OSError):          # kill, _reconcile removes them
                    os.unlink(p)
        raise
    d.disk.sync_dir(d.out)
    if keep:
        d.disk.replace(staged, d.ckpt(seed, epoch))
    prev = d.ckpt(seed, epoch - 1)
    if epoch > 1 and not _needed(d.policy, epoch - 1, epoch, epochs) and prev.exists():
        d.disk.remove(prev)
    d.disk.sync_dir(d.ckdir)


def _load_checkpoint(path: Path, model: PackedMLP, opt: MomentumSGD, seed: int, epoch: int, sweep_id: str) -> None:
    """Load and validate a checkpoint into ``model`` and ``opt`` (shapes, dtypes, network
    structure, seed, epoch, sweep id): a wrong file is refused, never broadcast."""
    fail = lambda why: SweepStateError(f"out: checkpoint {path} {why}; restore it, or start the sweep in "
                                       "another directory")
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:   # our handle: closed on errors too
            arr = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise fail(f"is corrupt ({type(e).__name__}: {e})") from None
    need = {"U", "V", "bufU", "bufV", "diverged", "epoch", "seed", "offsets", "sweep_id"}
    if need - set(arr):
        raise fail(f"lacks {sorted(need - set(arr))}")
    if str(arr["sweep_id"]) != sweep_id:
        raise fail("belongs to another sweep (its sweep id differs from config.json's)")
    if int(arr["seed"]) != seed or int(arr["epoch"]) != epoch:
        raise fail(f"holds seed {int(arr['seed'])} epoch {int(arr['epoch'])}, expected seed {seed} epoch {epoch}")
    if not np.array_equal(arr["offsets"], model.offsets):
        raise fail("was made for other widths (its network offsets differ)")
    for name, like in (("U", model.U), ("V", model.V), ("bufU", opt.bufU), ("bufV", opt.bufV)):
        if arr[name].shape != like.shape or arr[name].dtype != like.dtype:
            raise fail(f"holds {name} of shape {arr[name].shape} {arr[name].dtype}, expected {like.shape} {like.dtype}")
    if arr["diverged"].shape != opt.diverged.shape or arr["diverged"].dtype != np.bool_:
        raise fail(f"holds diverged of shape {arr['diverged'].shape}, expected {opt.diverged.shape} bool")
    model.U[...], model.V[...] = arr["U"], arr["V"]
    opt.bufU[...], opt.bufV[...] = arr["bufU"], arr["bufV"]
    opt.diverged[...] = arr["diverged"]
    opt.steps = int(arr["steps"]) if "steps" in arr else 0


# ----------------------------------------------------------------------------- checks before any output
def _int_list(values, name, lo):
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name}: expected a sequence of integers, got {type(values).__name__}")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
            raise ValueError(f"{name}: expected integers >= {lo}, got {v!r} at index {i}")
        out.append(int(v))
    if not out:
        raise ValueError(f"{name}: expected at least one value, got an empty sequence")
    return out


def _float_list(values, name, positive):
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name}: expected a sequence of numbers, got {type(values).__name__}")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
                or (v <= 0 if positive else v < 0):
            raise ValueError(f"{name}: expected {'positive' if positive else 'non-negative'} finite numbers, "
                             f"got {v!r} at index {i}")
        out.append(float(v))
    if not out:
        raise ValueError(f"{name}: expected at least one value, got an empty sequence")
    return out


def _pos_int(v, name):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    return int(v)


def _check_init_std(init_std, N):
    def one(v, name):
        a = np.asarray(v, dtype=np.float64) if not isinstance(v, (str, bytes)) else None
        if a is None or a.ndim > 1 or (a.ndim == 1 and a.shape != (N,)) or not np.isfinite(a).all() or (a <= 0).any():
            raise ValueError(f"{name}: expected a positive number or {N} positive numbers (one per network), "
                             f"got {v!r}")
        return a.tolist()
    if init_std is None:
        return None
    if isinstance(init_std, tuple):
        if len(init_std) != 2:
            raise ValueError(f"init_std: expected a number, one per network, or a pair (std_u, std_v), got {init_std!r}")
        return [one(init_std[0], "init_std[0]"), one(init_std[1], "init_std[1]")]
    return one(init_std, "init_std")


def available_memory() -> int | None:
    """Bytes of memory this process can still use: the smaller of the system's available memory
    and the cgroup (container) limit minus its usage; None where neither can be read."""
    found = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    for limit, usage, stat, cache in (
            ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat",
             "inactive_file"),
            ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes",
             "/sys/fs/cgroup/memory/memory.stat", "total_inactive_file")):
        with contextlib.suppress(OSError, ValueError):
            lim = Path(limit).read_text().strip()
            if lim != "max" and int(lim) < 2 ** 60:
                used = int(Path(usage).read_text().strip())
                with contextlib.suppress(OSError, ValueError):   # page cache the kernel can drop is free
                    fields = dict(line.split() for line in Path(stat).read_text().splitlines() if " " in line)
                    used -= int(fields.get(cache, 0))
                found.append(int(lim) - used)
    if not found and hasattr(os, "sysconf"):
        with contextlib.suppress(ValueError, OSError):
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return max(0, min(found)) if found else None


def estimate_memory(widths: Sequence[int], num_features: int, num_classes: int, *, networks_per_width: int = 1,
                    batch_size: int = 100, eval_batch: int = 512, dtype="float32", num_samples: int = 0) -> dict:
    """Bytes a sweep needs at its peak, by part, and their ``total``: weights and momentum
    buffers (2 x S x (d + k) values for S hidden units in all), the float64 draw that
    initializes the widest network, per-unit bookkeeping (float64 vectors of length S),
    activation scratch of the native kernels (bounded by streaming groups of 8,192 units), and
    the data (num_samples x d). ``networks_per_width``: weight decays x lr scales."""
    item = D.as_dtype(dtype).itemsize
    d, k = int(num_features), int(num_classes)
    S = int(sum(int(w) for w in widths)) * int(networks_per_width)
    N = len(widths) * int(networks_per_width)
    group = min(S, 8192)
    parts = {
        "weights and momentum": 2 * S * (d + k) * item,
        "initialization (widest network, float64)": 2 * max(int(w) for w in widths) * (d + k) * 8,
        "per-unit bookkeeping": 4 * S * 8,
        "kernel scratch": (4 * max(batch_size, eval_batch) * group + N * max(batch_size, eval_batch) * k) * item,
        "data": int(num_samples) * d * item,
    }
    parts["total"] = sum(parts.values())
    parts["hidden_units"] = S
    return parts


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.3g} PiB"


def check_memory(estimate: dict, max_memory=None) -> None:
    """Raise MemoryError, with the estimate, when ``estimate['total']`` exceeds ``max_memory``
    (bytes; default: :func:`available_memory`; 0 skips the check)."""
    if max_memory == 0:
        return
    limit = available_memory() if max_memory is None else max_memory
    if limit is None or estimate["total"] <= limit:
        return
    parts = ", ".join(f"{k} {_fmt_bytes(v)}" for k, v in estimate.items() if k not in ("total", "hidden_units") and v)
    raise MemoryError(f"widths: this sweep needs about {_fmt_bytes(estimate['total'])} ({estimate['hidden_units']:,} "
                      f"hidden units in all: {parts}) but {_fmt_bytes(limit)} "
                      f"{'are available' if max_memory is None else 'is the limit (max_memory)'}; use fewer or "
                      "narrower widths, fewer weight decays or lr scales, or run them as separate sweeps")


def check_output(out, resume: bool = False) -> str:
    """Check, without writing anything that stays, that ``out`` can hold a sweep: "new" (it
    will be created or is empty of sweep files) or "resume" (it holds one and ``resume`` is
    set). Raises FileExistsError when it holds a sweep and ``resume`` is not set, and an OSError
    naming the path when it cannot be written (a file in the way, no permission, read-only)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out: {out} exists and is not a directory; choose a directory")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"out: cannot create {out}: {probe} is a file, not a directory")
    check_writable(probe, "out", "directory")
    if (out / "history.parquet").exists() and not (out / "config.json").exists():
        raise SweepStateError(f"out: {out / 'config.json'} is missing, but history.parquet of a sweep is there; "
                              "without the configuration the finished work cannot be continued safely. Restore "
                              "config.json, or start the sweep in another directory")
    if (out / "config.json").exists():
        if not resume:
            raise FileExistsError(f"out: {out} already holds a sweep; pass resume=True (--resume) to continue it, "
                                  "or choose another directory")
        return "resume"
    return "new"


def _as_dataset(dataset):
    if isinstance(dataset, D.Dataset):
        return dataset
    if isinstance(dataset, tuple) and len(dataset) == 2:
        return D.from_arrays(*dataset)
    raise TypeError(f"dataset: expected a pyireg.data.Dataset or a pair (X, y), got {type(dataset).__name__}"
                    + (f" of length {len(dataset)}" if isinstance(dataset, tuple) else ""))


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda v: v.item() if isinstance(v, np.generic) else
                                 v.tolist() if isinstance(v, np.ndarray) else str(v)))


def rep_dataset(dataset, seed: int, *, label_noise: float = 0.0, resample_split: bool = False):
    """The data repetition ``seed`` of a sweep trains on: the training/validation split drawn
    again with ``seed`` when ``resample_split`` (see Dataset.resplit), then ``label_noise`` of
    the training labels changed with seed NOISE_SEED_OFFSET + seed (a different draw per
    repetition, the same in ``sweep`` and ``reproduce``)."""
    ds = dataset
    if resample_split:
        ds = ds.resplit(seed)
    if label_noise:
        ds = D.label_noise(ds, label_noise, seed=NOISE_SEED_OFFSET + int(seed))
    return ds


# ----------------------------------------------------------------------------- the sweep
def sweep(dataset, widths: Sequence[int], *, seeds: Sequence[int] = (0,), weight_decays: Sequence[float] = (0.0,),
          lr_scales: Sequence[float] = (1.0,), epochs: int = 60, batch_size: int = 100, drop_last: bool = False,
          schedule: PaperSchedule | None = None, init_std=None, dtype=None, label_noise: float = 0.0,
          resample_split: bool = False, out=None, resume: bool = False, checkpoints: str = "resume",
          progress: bool = True, tag: str = "", eval_batch: int = 512, max_memory=None,
          on_epoch: Callable[[int, int], None] | None = None, executor=None, measures=None,
          activation: str = "relu", loss: str = "cross_entropy") -> SweepResult:
    """Train every combination of width x weight decay x lr scale for ``epochs`` epochs of the
    paper's protocol, once per seed in ``seeds`` (a repetition: its own initialization and data
    order), and record every epoch.

    Parameters
    ----------
    dataset : pyireg.data.Dataset, or a pair (X, y) made into one by pyireg.data.from_arrays
        (20% validation, 20% test, standardized, float32).
    widths, weight_decays, lr_scales : the grid; lr_scales multiply the schedule's lr.
    seeds : one repetition per seed (distinct non-negative integers); ``range(5)`` for five.
    epochs, batch_size, schedule : the protocol (defaults: the paper's 60 epochs, batch 100,
        PaperSchedule()). Every epoch uses every training sample: the last batch is smaller
        when batch_size does not divide the training set, unless ``drop_last``.
    init_std : passed to PackedMLP (default 1/sqrt(fan_in) per layer).
    dtype : the model's dtype, float32 or float64 (numpy dtype, name or torch dtype); default
        the dataset's. The data are converted once, before training.
    label_noise : fraction of training labels changed at random, drawn per repetition
        (see rep_dataset). resample_split : draw the training/validation split again per
        repetition (the test split is kept).
    out : directory for ``history.parquet``, ``config.json`` and checkpoints (see the module
        documentation for the files and the resume guarantee); None keeps it in memory.
    resume : continue the sweep saved in ``out`` (its configuration and data must match);
        with nothing saved there yet, start it.
    checkpoints : "resume" (default: keep only what resume needs), "final" (also each
        repetition's final weights), "all" (every epoch's).
    progress : a progress bar on a terminal, else a plain line at most every PROGRESS_INTERVAL
        seconds, on stderr; both show the best validation error.
    max_memory : bytes the sweep may use (default: the memory available; 0: no check); a sweep
        estimated to need more raises MemoryError before anything is allocated.
    on_epoch : called as on_epoch(repetition, epoch) after each committed epoch.
    executor : None (default) trains each repetition's grid as one packed model in this
        process, committing every epoch. Otherwise the grid is bin-packed into packs of networks
        of similar cost, trained as separate packed models and merged into the same history
        (bit-identical per network; see :mod:`pyireg.distributed`): "ray" (an embedded local Ray,
        or the cluster at $RAY_ADDRESS), "local" (the packs one after another in this process),
        or an executor object such as ``pyireg.distributed.RayExecutor(address=..., workers=...)``.
        A sweep in packs resumes pack by pack; ``max_memory`` then bounds each machine's packs.
    activation : "relu" (the paper's networks) or "linear" (the matrix-factorization model of
        Section 3: each network computes X U_n^T V_n).
    loss : "cross_entropy" (the paper's) or "squared": 1/2 the squared distance of the outputs to
        the one-hot code of the label, averaged over the batch (regression onto class codes, the
        usual loss of linear-network analyses). Errors are then those of the largest output.
    measures : complexity measures recorded for every network after every epoch, as columns of
        the history named like the measures: None (none beyond the norms always recorded),
        "all" (every measure of ``pyireg.measures.ALL``), or a list of names (see
        :mod:`pyireg.measures`; measures of data use the training set, ``dist_U``/``dist_V``
        the initialization). The perturbed ones (sharpness, PAC-Bayes) cost one to twenty
        epochs each and are refused here: compute them on the final model.

    Everything is checked before any file is written. Returns a SweepResult.
    """
    # ---- validate everything before any output
    ds = _as_dataset(dataset)
    if schedule is None:
        schedule = PaperSchedule()
    if not isinstance(schedule, PaperSchedule):
        raise TypeError(f"schedule: expected a PaperSchedule, got {type(schedule).__name__}")
    widths = _int_list(widths, "widths", 1)
    seeds = _int_list(seeds, "seeds", 0)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: expected distinct seeds (one repetition each), got {seeds}")
    weight_decays = _float_list(weight_decays, "weight_decays", positive=False)
    lr_scales = _float_list(lr_scales, "lr_scales", positive=True)
    epochs = _pos_int(epochs, "epochs")
    eval_batch = _pos_int(eval_batch, "eval_batch")
    batch_size = _pos_int(batch_size, "batch_size")
    if batch_size > len(ds.y_train):
        raise ValueError(f"batch_size: expected 1..{len(ds.y_train)} (the training set size), got {batch_size}")
    if isinstance(label_noise, bool) or not isinstance(label_noise, numbers.Real) or not 0 <= label_noise < 1:
        raise ValueError(f"label_noise: expected a fraction in [0, 1), got {label_noise!r}")
    if checkpoints not in CHECKPOINT_POLICIES:
        raise ValueError(f"checkpoints: expected one of {', '.join(CHECKPOINT_POLICIES)}, got {checkpoints!r}")
    if resume and out is None:
        raise ValueError("resume: needs out, the directory of the sweep to continue")
    if on_epoch is not None and not callable(on_epoch):
        raise TypeError(f"on_epoch: expected a callable, got {type(on_epoch).__name__}")
    if executor is not None and on_epoch is not None:
        raise ValueError("on_epoch: not available with an executor (packs commit all their epochs at once); "
                         "leave executor=None to be called after each epoch")
    ds = ds.astype(ds.dtype if dtype is None else D.as_dtype(dtype))
    measure_names = _measure_names(measures)
    from ..model import ACTIVATIONS, LOSSES
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {', '.join(LOSSES)}, got {loss!r}")
    grid = [(w, wd, ls) for wd in weight_decays for ls in lr_scales for w in widths]
    N = len(grid)
    init_json = _check_init_std(init_std, N)
    if executor is None:           # with an executor, each pack is checked (pyireg.distributed)
        est = estimate_memory(widths, ds.num_features, ds.num_classes,
                              networks_per_width=len(weight_decays) * len(lr_scales), batch_size=batch_size,
                              eval_batch=eval_batch, dtype=ds.dtype)
        check_memory(est, max_memory)
    if out is not None:
        check_output(out, resume)
    from .. import __version__
    config = {"format": FORMAT, "sweep_id": uuid.uuid4().hex, "written_by": f"pyireg {__version__}",
              "dataset": _jsonable(ds.info), "data_sha256": ds.fingerprint(), "num_features": ds.num_features,
              "num_classes": ds.num_classes, "widths": widths, "seeds": seeds, "weight_decays": weight_decays,
              "lr_scales": lr_scales, "num_networks": N, "grid_widths": [g[0] for g in grid],
              "epochs": epochs, "batch_size": batch_size, "drop_last": bool(drop_last),
              "schedule": dataclasses.asdict(schedule), "init_std": init_json, "dtype": ds.dtype,
              "label_noise": float(label_noise), "resample_split": bool(resample_split),
              "eval_batch": eval_batch, "measures": list(measure_names), "activation": activation, "loss": loss,
              "tag": str(tag)}
    import pandas as pd                           # the experiments extra, needed from here on

    spec = TrainSpec(grid_widths=tuple(g[0] for g in grid), grid_weight_decays=tuple(g[1] for g in grid),
                     grid_lr_scales=tuple(g[2] for g in grid), epochs=epochs, batch_size=batch_size,
                     drop_last=bool(drop_last), schedule=schedule, init_std=_init_pair(init_std, init_json),
                     label_noise=float(label_noise), resample_split=bool(resample_split), eval_batch=eval_batch,
                     measures=measure_names, activation=activation, loss=loss)
    desc = tag or ds.info.get("name", "sweep")
    if executor is not None:
        from ..distributed.runner import run_in_packs
        result = run_in_packs(ds, spec, config, out=out, resume=resume, checkpoints=checkpoints,
                              executor=executor, progress=progress, desc=desc, max_memory=max_memory)
        _warn_at_chance(result, ds, schedule, lr_scales)
        return result

    net_width = np.asarray(spec.grid_widths)
    sd = _SweepDir(Path(out), config, checkpoints) if out is not None else None
    frames, done = [], {}
    bar = _Progress(len(seeds) * epochs, progress, f"{desc}: {N} networks x {len(seeds)} "
                    f"rep{'s' if len(seeds) > 1 else ''}")
    try:
        if sd is not None:
            sd.lock()
            config, hist, done = sd.open(resume)
            if hist is not None:
                frames.append(hist)
        for rep in seeds:
            start = done.get(rep, 0)
            bar.skip(start)
            if start >= epochs:
                continue

            def restore(model, opt, rep=rep, start=start):
                _load_checkpoint(sd.ckpt(rep, start), model, opt, rep, start, config["sweep_id"])

            def after_epoch(epoch, frame, model, opt, ev, rep=rep):
                nonlocal frames
                frames.append(frame)
                done[rep] = epoch
                if sd is not None:
                    history = pd.concat(frames, ignore_index=True)
                    frames = [history]
                    state = dict(U=model.U, V=model.V, bufU=opt.bufU, bufV=opt.bufV, diverged=opt.diverged,
                                 epoch=np.int64(epoch), seed=np.int64(rep), offsets=model.offsets,
                                 steps=np.int64(opt.steps), sweep_id=np.str_(config["sweep_id"]))
                    with _profile.section("commit (history + checkpoint files)"):
                        _commit_epoch(sd, rep, epoch, state, history, done)
                bar.epoch(rep, seeds.index(rep), len(seeds), epoch, epochs, ev["val"][0], net_width)
                if on_epoch is not None:
                    on_epoch(int(rep), epoch)

            # the whole grid of the repetition is one pack
            train_networks(ds, spec, rep, range(N), start=start, restore=restore if start > 0 else None,
                           after_epoch=after_epoch)
    finally:
        bar.close()
        if sd is not None:
            sd.unlock()
    history = pd.concat(frames, ignore_index=True) if frames else _empty_history()
    result = SweepResult(history, config, Path(out) if out is not None else None)
    _warn_at_chance(result, ds, schedule, lr_scales)
    return result


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """What training any networks of a sweep needs besides the data: the grid (network n has
    width ``grid_widths[n]``, ...) and the protocol. Small and picklable, so that it travels to
    the workers of a distributed sweep."""
    grid_widths: tuple
    grid_weight_decays: tuple
    grid_lr_scales: tuple
    epochs: int
    batch_size: int
    drop_last: bool
    schedule: PaperSchedule
    init_std: object          # None, or a pair (std_u, std_v) of floats or lists of N floats (_init_pair)
    label_noise: float
    resample_split: bool
    eval_batch: int
    measures: tuple = ()      # complexity measures recorded every epoch (pyireg.measures names)
    activation: str = "relu"
    loss: str = "cross_entropy"   # squared: onto the one-hot code of the label

    @property
    def num_networks(self) -> int:
        return len(self.grid_widths)


def _init_pair(init_std, init_json):
    """init_std as TrainSpec keeps it: None (the default per layer), or a pair (std_u, std_v) of
    floats or lists of N floats. (The JSON form of the config cannot tell a pair from two
    per-network values.)"""
    if init_std is None:
        return None
    return tuple(init_json) if isinstance(init_std, tuple) else (init_json, init_json)


def _subset_init_std(init_std, networks):
    if init_std is None:
        return None
    return tuple(v if isinstance(v, float) else np.asarray(v, dtype=np.float64)[networks] for v in init_std)


def train_networks(ds, spec: TrainSpec, rep: int, networks, *, start: int = 0, restore=None, after_epoch=None):
    """Train networks ``networks`` (indices into the grid, ascending) of repetition ``rep`` as one
    packed model, from epoch ``start`` (``restore(model, opt)`` loads its state) to
    ``spec.epochs``, calling ``after_epoch(epoch, frame, model, opt, ev)`` after each epoch with
    its rows (one per network, in the order of ``networks``).

    This is the one training loop of every sweep: the local sweep runs it on the whole grid of a
    repetition, a distributed sweep on each pack. Network n gets the generator
    ``SeedSequence(rep).spawn(N)[n]``, as if the whole grid were one model seeded ``rep``, and
    the mini-batches of epoch e depend on (rep, e) only; since a network's arithmetic never
    depends on its neighbours in the packed model, its rows are bit-identical however the grid
    is cut into packs."""
    net = np.asarray(networks, dtype=np.int64)
    N = spec.num_networks
    if net.ndim != 1 or len(net) == 0 or (np.diff(net) <= 0).any() or net[0] < 0 or net[-1] >= N:
        raise ValueError(f"networks: expected ascending distinct indices into the grid of {N} networks, got "
                         f"{net.tolist()[:8]}")
    rds = rep_dataset(ds, rep, label_noise=spec.label_noise, resample_split=spec.resample_split)
    width = np.asarray(spec.grid_widths, dtype=np.int64)[net]
    wd = np.asarray(spec.grid_weight_decays, dtype=np.float64)[net]
    ls = np.asarray(spec.grid_lr_scales, dtype=np.float64)[net]
    children = np.random.SeedSequence(int(rep)).spawn(N)
    model = PackedMLP(width.tolist(), ds.num_features, ds.num_classes, dtype=ds.dtype,
                      init_std=_subset_init_std(spec.init_std, net), seed=[children[i] for i in net],
                      activation=spec.activation, loss=spec.loss)
    # the squared loss regresses onto the one-hot code of the label
    targets = (lambda y: y) if spec.loss == "cross_entropy" else (lambda y: np.eye(ds.num_classes, dtype=ds.dtype)[y])
    schedule = spec.schedule
    opt = MomentumSGD(model, schedule.lr(0) * ls, schedule.momentum(0), wd)
    balance0 = model.unit_balance()                 # ||u_h||^2 - ||v_h||^2 at initialization
    scale0 = 2 * model.measures()["l2_penalty"]     # sum_h ||u_h||^2 + ||v_h||^2 per network
    init = _measures_init(model, spec.measures)
    if restore is not None:
        restore(model, opt)
    X, y = rds.X_train, targets(rds.y_train)
    n = len(y)
    stop = n - spec.batch_size + 1 if spec.drop_last else n
    for epoch in range(start, spec.epochs):
        t0 = time.perf_counter()
        k0 = _profile.seconds("native training step")
        opt.lr = schedule.lr(epoch) * ls
        opt.momentum = schedule.momentum(epoch)
        perm = np.random.default_rng([int(rep), epoch]).permutation(n)
        for i in range(0, stop, spec.batch_size):
            b = perm[i:i + spec.batch_size]
            opt.step(X[b], y[b])
        train_s = time.perf_counter() - t0
        if _profile.enabled():
            _profile.add("training loop around the steps", train_s - (_profile.seconds("native training step") - k0))
        ev = {split: model.evaluate(Xs, targets(ys), batch_size=spec.eval_batch)
              for split, (Xs, ys) in rds.splits().items()}
        with _profile.section("per-epoch bookkeeping (norms, drift, rows)"):
            frame = _epoch_frame(model, opt, ev, balance0, scale0, rep, epoch + 1, width, wd, ls, ds.num_classes,
                                 train_s, networks=net, chance=spec.loss == "cross_entropy")
        if spec.measures:
            from .. import measures as M
            vals = M.compute(model, list(spec.measures), X=rds.X_train, y=rds.y_train, init=init)
            for name in spec.measures:
                frame[name] = np.asarray(vals[name], np.float64)
        if after_epoch is not None:
            after_epoch(epoch + 1, frame, model, opt, ev)


def _measure_names(measures) -> tuple:
    """The measures a sweep records every epoch, checked before anything runs."""
    if measures is None:
        return ()
    from .. import measures as M
    if isinstance(measures, str):
        if measures != "all":
            raise ValueError(f"measures: expected None, 'all' or a list of measure names, got {measures!r}")
        return tuple(n for n in M.ALL if n not in COLUMNS)      # norm_U, norm_V are always recorded
    names = list(measures)
    for name in names:
        if name in M.PERTURBED:
            raise ValueError(f"measures: {name!r} perturbs every network many times (one to twenty epochs of "
                             "work); compute it on the final model with pyireg.measures.compute")
        try:
            M.needs(name)
        except ValueError:
            raise ValueError(f"measures: unknown measure {name!r}; expected 'all' or names of "
                             f"{', '.join(M.ALL)} or path_l<p> (p > 0)") from None
        if name in COLUMNS:
            raise ValueError(f"measures: {name!r} is already a column of the history (always recorded)")
    if len(set(names)) != len(names):
        raise ValueError(f"measures: expected distinct names, got {names}")
    return tuple(names)


def _measures_init(model, names):
    """A copy of the initial weights when a recorded measure needs them (distance from
    initialization, the over-parametrization bound), else None."""
    from .. import measures as M
    if any("init" in M.needs(n) for n in names):
        return model.U.copy(), model.V.copy()
    return None


def _empty_history():
    import pandas as pd
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _DTYPES.items()})


_DTYPES = {**{c: "int64" for c in ("repetition", "network", "width", "epoch")},
           **{c: "float64" for c in COLUMNS if c not in ("repetition", "network", "width", "epoch", "diverged",
                                                          "at_chance")},
           "diverged": "bool", "at_chance": "bool"}


def _epoch_frame(model, opt, ev, balance0, scale0, rep, epoch, net_width, net_wd, net_ls, k, train_s,
                 networks=None, chance=True):
    """The rows of one epoch, one per network (``networks``: their indices in the grid, default
    0..N-1), built column-wise from per-network vectors: the norms come from the native measures
    and the drift from one per-unit vector, so no copy of the weights is made, whatever the
    width."""
    import pandas as pd
    N = model.num_networks
    drift = np.add.reduceat(np.abs(model.unit_balance() - balance0), model.offsets[:-1]) / scale0
    norms = model.measures()
    lnk = math.log(k)
    net = np.arange(N, dtype=np.int64) if networks is None else np.asarray(networks, dtype=np.int64)
    cols = {"repetition": np.full(N, rep, np.int64), "network": net,
            "width": net_width.astype(np.int64), "weight_decay": net_wd.astype(np.float64),
            "lr_scale": net_ls.astype(np.float64), "epoch": np.full(N, epoch, np.int64),
            "lr": opt.lr.astype(np.float64), "momentum": opt.momentum.astype(np.float64)}
    for s in ("train", "val", "test"):
        cols[f"{s}_error"] = np.asarray(ev[s][0], np.float64)
        cols[f"{s}_loss"] = np.asarray(ev[s][1], np.float64)
    cols.update(norm_U=np.asarray(norms["norm_U"], np.float64), norm_V=np.asarray(norms["norm_V"], np.float64),
                balance_drift=np.asarray(drift, np.float64), diverged=opt.diverged.copy(),
                at_chance=(np.abs(cols["train_loss"] - lnk) <= CHANCE_RTOL * lnk) if chance else np.zeros(N, bool),
                train_seconds=np.full(N, train_s, np.float64))
    return pd.DataFrame(cols, columns=COLUMNS)


def _chance_cause(ds, schedule, lr_scales, widths) -> str:
    rms = np.sqrt(np.mean(np.square(ds.X_train, dtype=np.float64), axis=0))
    if rms.max() > 10:
        return (f"the inputs are not standardized (feature scale up to {rms.max():.3g}, where standardized "
                "features have 1): use pyireg.data.from_arrays(X, y) with standardize=True (the default), or "
                "scale the features")
    if max(widths) <= 2:
        return ("every hidden unit of these narrow networks is inactive (a ReLU that outputs 0 on every "
                "sample); more repetitions or a smaller lr help")
    return (f"the step size may be too large (lr {schedule.lr0:g} x lr scale up to {max(lr_scales):g}): the "
            "first steps pushed every hidden unit into its inactive region")


def _warn_at_chance(result: SweepResult, ds, schedule, lr_scales) -> None:
    """Warn about networks that ended at chance (with the likely cause) or diverged."""
    h = result.history
    if len(h) and h["diverged"].any():
        last = h[h["epoch"] == h.groupby("repetition")["epoch"].transform("max")]
        bad = last[last["diverged"]]
        if len(bad):
            widths = sorted(bad["width"].unique().tolist())
            shown = ", ".join(map(str, widths[:8])) + (", ..." if len(widths) > 8 else "")
            warnings.warn(f"{len(bad)} of {len(last)} networks (widths {shown}) diverged: a loss became NaN or inf "
                          "(column diverged); lower their learning rate (lr, lr_scales)", ChanceWarning, stacklevel=3)
    if len(h) == 0 or not h["at_chance"].any():
        return
    last = h[h["epoch"] == h.groupby("repetition")["epoch"].transform("max")]
    stuck = last[last["at_chance"]]
    if len(stuck) == 0:
        return
    widths = sorted(stuck["width"].unique().tolist())
    reps = stuck["repetition"].nunique()
    shown = ", ".join(map(str, widths[:8])) + (", ..." if len(widths) > 8 else "")
    warnings.warn(f"{len(stuck)} of {len(last)} networks (widths {shown}; {reps} repetition"
                  f"{'s' if reps > 1 else ''}) ended at chance: training loss ln {ds.num_classes} = "
                  f"{math.log(ds.num_classes):.4f}, constant outputs (column at_chance). Likely cause: "
                  f"{_chance_cause(ds, schedule, lr_scales, widths)}", ChanceWarning, stacklevel=3)


class _Progress:
    """A tqdm bar when stderr is a terminal; otherwise a plain line per epoch, at most one every
    PROGRESS_INTERVAL seconds (and always the first and the last), so logs stay readable."""

    def __init__(self, total, enabled, desc):
        self.total, self.desc, self.enabled = total, desc, bool(enabled)
        self.count, self.bar, self.last_line = 0, None, -math.inf
        self.t0 = time.perf_counter()
        self.started = 0
        if self.enabled and _isatty(sys.stderr):
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="epoch", leave=False)

    def skip(self, n):
        self.count += n
        self.started += n
        if self.bar is not None:
            self.bar.update(n)

    def epoch(self, rep, rep_index, reps, epoch, epochs, val_error, widths):
        self.count += 1
        if not self.enabled:
            return
        j = int(np.argmin(val_error))
        best = f"{val_error[j]:.4f} (H={int(widths[j])})"
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"rep {rep} epoch {epoch}: best val error {best}")
            return
        now = time.perf_counter()
        if self.count - self.started == 1 or self.count == self.total or now - self.last_line >= PROGRESS_INTERVAL:
            self.last_line = now
            rate = (now - self.t0) / max(1, self.count - self.started)
            left = rate * (self.total - self.count)
            print(f"{self.desc}: rep {rep_index + 1}/{reps} (seed {rep}) epoch {epoch}/{epochs}: best val error "
                  f"{best}; {rate:.2f} s/epoch, about {_fmt_time(left)} left", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


# ----------------------------------------------------------------------------- reading results
def load_results(path) -> SweepResult:
    """Read a sweep saved in a directory (history.parquet + config.json); it may be incomplete
    (``SweepResult.complete`` says). Errors name the file."""
    path = Path(path)
    if not (path / "history.parquet").exists():
        if (path / "packs.json").exists():
            done = len(list((path / "packs").glob("pack-*.parquet"))) if (path / "packs").is_dir() else 0
            raise FileNotFoundError(f"path: no history.parquet in {path} yet: this sweep trains in packs and writes "
                                    f"it when every pack is finished ({done} finished so far, in packs/); resume "
                                    "it to finish")
        raise FileNotFoundError(f"path: no history.parquet in {path} (not a sweep directory, or no epoch finished yet)")
    hist, meta = _read_history(path / "history.parquet")
    config = {}
    if (path / "config.json").exists():
        try:
            config = json.loads((path / "config.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SweepStateError(f"path: {path / 'config.json'} is corrupt ({e})") from None
    return SweepResult(hist, config, path)


def summarize(history, choose_weight_decay: bool = True):
    """Per-network summaries, then mean and standard deviation over repetitions.

    For each (repetition, network): the final epoch's errors; the early-stopped errors (at the
    first epoch of least validation error). With several weight decays and
    ``choose_weight_decay``, also the weight decay chosen per (repetition, width, lr scale) by
    the least early-stopped validation error, reported as weight_decay = "chosen".
    Returns a DataFrame indexed by (weight_decay, lr_scale, width) with <metric>_mean / _std.
    """
    import pandas as pd
    if isinstance(history, SweepResult):
        history = history.history
    if len(history) == 0:
        raise ValueError("history: no rows to summarize (no epoch finished)")
    h = history.sort_values(["repetition", "network", "epoch"])
    keys = ["repetition", "network", "width", "weight_decay", "lr_scale"]
    g = h.groupby(keys, sort=False)
    final = g.tail(1).set_index(keys)
    best = h.loc[g["val_error"].idxmin()].set_index(keys)
    per = pd.DataFrame({
        "train_error_final": final["train_error"], "test_error_final": final["test_error"],
        "val_error_final": final["val_error"],
        "train_error_es": best["train_error"], "test_error_es": best["test_error"],
        "val_error_es": best["val_error"], "epoch_es": best["epoch"],
    }).reset_index()
    per["weight_decay"] = per["weight_decay"].astype(object)
    if choose_weight_decay and per["weight_decay"].nunique() > 1:
        idx = per.groupby(["repetition", "width", "lr_scale"])["val_error_es"].idxmin()
        chosen = per.loc[idx].copy()
        chosen["chosen_weight_decay"] = chosen["weight_decay"].astype(float)
        chosen["weight_decay"] = "chosen"
        per = pd.concat([per, chosen], ignore_index=True)
    cols = [c for c in per.columns if c.endswith(("_final", "_es")) or c == "chosen_weight_decay"]
    agg = per.groupby(["weight_decay", "lr_scale", "width"])[cols].agg(["mean", "std"])
    agg.columns = [f"{a}_{b}" for a, b in agg.columns]
    agg["repetitions"] = per.groupby(["weight_decay", "lr_scale", "width"]).size()
    return agg
