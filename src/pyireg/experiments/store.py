"""The sweep directory: its files, the lock, atomic commits, checksummed checkpoints, and the
checks on resume (reconciliation). The public names here are what :mod:`pyireg.experiments.sweep`
and :mod:`pyireg.distributed` build on; nothing in this module trains.

Files of a sweep directory, and the resume guarantee
----------------------------------------------------
``config.json``
    The settings, the data's fingerprint, the run record and a sweep id. Written once,
    atomically, when the sweep starts; never rewritten.
``history.parquet``
    One row per network per finished epoch (a tidy table, ``pandas.read_parquet`` reads it).
    Its Parquet metadata (key ``pyireg``) is the record of what is done: the sweep id, the epochs
    finished by each repetition, the SHA-256 of the rows' values (``rows_sha256``) and of every
    committed checkpoint file (``checkpoints``). Both are verified on resume and by
    ``load_results``: a changed byte or value stops with the file's name.
``checkpoints/rep{SEED}-epoch{E}.npz``
    Weights, optimizer state and divergence flags of repetition SEED after epoch E
    (``numpy.load`` reads it). Written after every epoch, or every K epochs and after the last
    (``checkpoint_every``, recorded in config.json when it is not 1). Only the one resume needs
    is kept (``checkpoints="resume"``), or also each repetition's final one (``"final"``), or
    every one written (``"all"``). With K > 1, a resume restores the last checkpoint and
    replays the epochs after it, each replayed row checked against the history (the sweep's
    ``check_replayed``): a replay that differs refuses to continue.
``.lock``
    Locked while a process works on the sweep, so that two cannot write it at once. Opened
    without following links: a link anywhere among the sweep's own files is refused.

The files are always a consistent prefix of the uninterrupted run, whatever instant the
process dies (kill, full disk, power loss): epoch E of repetition SEED is committed by one
function, :func:`commit_epoch`, in three steps: (1) when the epoch writes one, stage the
checkpoint as ``rep{SEED}-epoch{E}.npz.staged`` (written and fsynced, its checksum taken as it
is written); (2) write the history with the new rows and the checksums to ``history.parquet.tmp``, fsync
it, and rename it onto ``history.parquet``: the one atomic step that publishes the epoch;
(3) rename the staged checkpoint to its final name and delete the checkpoints resume no longer
needs. On resume, :func:`reconcile` takes the history as the truth, completes or removes what
an interrupted commit left (a staged checkpoint, ``*.tmp`` files), and refuses with the reason
(never starting over) when a file is missing, corrupt, changed or belongs to another sweep.
"""
from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Callable


from .history import check_history, parquet_bytes, read_history
from .npzfile import OVERLAP_BYTES, helper_pool, read_npz, write_npz
from .refusals import SweepStateError, read_bounded, read_json, refuse_links

# Tests set this (through set_fault_hook) to a callable hook(op, path), called before every file
# operation on a sweep directory (op: "mkdir", "lock", "open", "write", "fsync", "rename",
# "remove", "fsync-dir"), to stop the sweep there (as a kill would) or make the operation fail
# (as a full disk would).
_FAULT_HOOK: Callable[[str, str], None] | None = None
# fsync files and directories before and after each rename, so that a commit survives a power
# loss. A killed process cannot lose what the page cache holds, so the in-process kill tests
# switch it off to save time on a busy disk (the "fsync" points are still passed).
_DURABLE = True

FORMAT = 2        # 2: checksummed commits, recorded schedules and optimizers (1: before them)
CHECKPOINT_POLICIES = ("resume", "final", "all")
# config keys that may differ on resume (the run record describes the process, not the sweep)
NOT_COMPARED = ("sweep_id", "dataset", "written_by", "tag", "run")
CKPT_RE = re.compile(r"^rep(\d+)-epoch(\d+)\.npz(\.staged)?$")


def set_fault_hook(hook: Callable[[str, str], None] | None) -> None:
    """Install (or remove, with None) the test hook called before every file operation."""
    global _FAULT_HOOK
    _FAULT_HOOK = hook


def set_durable(durable: bool) -> None:
    """fsync (True, the default) or not (the in-process kill tests)."""
    global _DURABLE
    _DURABLE = bool(durable)


# ----------------------------------------------------------------------------- file operations
class _HookedRaw(io.RawIOBase):
    """The raw (unbuffered) file under a sweep's writes: every write that reaches the operating
    system is a numbered point of the fault hook, and is hashed (SHA-256) as it is written (a
    large buffer on a helper thread while this one writes it: the two passes overlap). It says
    it cannot seek, so that a checkpoint is written in one sequential pass."""

    def __init__(self, path, disk):
        self._f = open(path, "wb", buffering=0)
        self._disk, self._path = disk, path
        self.sha = hashlib.sha256()

    def writable(self):
        return True

    def seekable(self):
        return False

    def write(self, data):
        self._disk.at("write", self._path)
        mv = memoryview(data).cast("B")
        hashing = helper_pool().submit(self.sha.update, mv) if mv.nbytes >= OVERLAP_BYTES else None
        try:
            done = 0
            while done < mv.nbytes:       # all of it, so that what is hashed is what is written
                n = self._f.write(mv[done:])
                if not n:
                    raise OSError(f"cannot write {self._path}: the write made no progress")
                done += n
        finally:
            if hashing is not None:
                hashing.result()          # (the buffer must outlive the hash; an error wins below)
        if hashing is None:
            self.sha.update(mv)
        return done

    def fileno(self):
        return self._f.fileno()

    def close(self):
        if not self.closed:
            self._f.close()
        super().close()


class Disk:
    """Every file operation a sweep makes on its directory, in one place (see set_fault_hook)."""

    @staticmethod
    def at(op, path):
        if _FAULT_HOOK is not None:
            _FAULT_HOOK(op, str(path))

    def write(self, path: Path, fill: Callable) -> str:
        """Create ``path`` with ``fill(file)`` (through a 1 MiB buffer) and fsync it; returns the
        SHA-256 (hex) of what was written. On an error (a full disk) or Ctrl-C the partial file
        is removed; a kill leaves it, for reconcile."""
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
        return raw.sha.hexdigest()

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
        if path.is_symlink():
            raise SweepStateError(f"out: {path} is a symbolic link; a sweep keeps its own files in real directories "
                                  "(a link could make it write or delete elsewhere): replace it by a directory")
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

    def write_atomic(self, path: Path, fill: Callable) -> str:
        tmp = path.with_name(path.name + ".tmp")
        sha = self.write(tmp, fill)
        try:
            self.replace(tmp, path)
        except (Exception, KeyboardInterrupt):
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.sync_dir(path.parent)
        return sha


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def read_config(path: Path, what: str = "out") -> dict:
    """config.json of a sweep, checked (format, sweep id); every failure is one line naming it."""
    try:
        cfg = json.loads(read_bounded(path, what).decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, OverflowError, ValueError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else f"{type(e).__name__}: {e}"
        raise SweepStateError(f"{what}: {path} is empty or corrupt ({why}); the sweep cannot be resumed "
                              "without it: restore it, or start the sweep in another directory") from None
    if not isinstance(cfg, dict) or ("format" not in cfg and "sweep_id" not in cfg):
        raise SweepStateError(f"{what}: {path} is not the configuration of a pyireg sweep (no format or sweep id): "
                              "the directory holds someone else's config.json; choose another directory")
    if cfg.get("format") != FORMAT or "sweep_id" not in cfg:
        raise SweepStateError(f"{what}: {path} is not the configuration of a sweep of this pyireg version "
                              f"(format {cfg.get('format') if isinstance(cfg, dict) else '?'}, expected {FORMAT}); "
                              "resume it with the version that made it, or start in another directory")
    return cfg


def compare_configs(saved: dict, new: dict, out: Path) -> None:
    """Refuse a resume whose settings differ from the saved ones (the run record is not compared)."""
    diff = []
    for key in sorted(set(saved) | set(new)):
        if key in NOT_COMPARED:
            continue
        a, b = saved.get(key), json.loads(json.dumps(new.get(key)))
        if a != b:
            if key == "data_sha256":
                diff.append(f"the data differ (the sweep was made with {saved['dataset'].get('name', '?')} "
                            f"data of fingerprint {str(a)[:12]}, these are {new['dataset'].get('name', '?')}, "
                            f"{str(b)[:12]})")
            else:
                def show(v):
                    s = json.dumps(v)
                    return s[:60] + "..." if len(s) > 60 else s
                diff.append(f"{key}: {show(a)} there, {show(b)} here")
    if diff:
        raise ValueError(f"resume: the sweep in {out} was made with another configuration: {'; '.join(diff)}. "
                         "Resume with the same settings, or start a new sweep in another directory")


# ----------------------------------------------------------------------------- checkpoint policy
def checkpoint_written(e, epochs, every=1) -> bool:
    """Whether epoch e's commit writes a checkpoint: every ``every``-th epoch and the last."""
    return e % every == 0 or e == epochs


def resume_epoch(E, every=1) -> int:
    """The epoch whose checkpoint a resume after E committed epochs starts from (0: the
    initialization); epochs after it up to E are replayed and checked against the history."""
    return E - E % every


def checkpoint_needed(policy, e, E, epochs, every=1) -> bool:
    """Whether the checkpoint of epoch e is kept when E epochs are committed, one written every
    ``every`` epochs (and at the last)."""
    if not checkpoint_written(e, epochs, every):
        return False
    if policy == "all":
        return True
    if E < epochs and e == resume_epoch(E, every):
        return True
    return policy == "final" and e == epochs


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(f, arrays: dict) -> None:
    """Write ``arrays`` to the open file ``f`` as an uncompressed .npz (numpy.load reads it),
    straight from their memory (npzfile.write_npz: no copies, unlike np.savez)."""
    write_npz(f, arrays)


def load_checkpoint(path: Path, expected: dict, sha256: str | None, what: str = "out") -> dict:
    """The arrays of checkpoint ``path``, checked before anything large is read (see
    npzfile.read_npz: members by name and declared size, the file's SHA-256 against the one
    recorded at its commit, each member's shape and dtype against ``expected``, {name: (shape,
    dtype)}). A wrong file is refused naming it, never broadcast."""
    def fail(why):
        return SweepStateError(f"{what}: checkpoint {path} {why}; restore it, or start the sweep in another "
                               "directory")
    refuse_links([path], what)
    return read_npz(path, expected, sha256, fail)


# ----------------------------------------------------------------------------- the directory
class SweepDir:
    """A sweep directory: lock, creation, reconciliation on resume, and the epoch commit.
    ``checksums`` holds the SHA-256 of each committed checkpoint (by file name)."""

    def __init__(self, out: Path, config: dict, policy: str):
        self.out, self.config, self.policy = out, config, policy
        self.every = int(config.get("checkpoint_every", 1))     # absent in sweeps that write one each epoch
        self.ckdir = out / "checkpoints"
        self.history_path = out / "history.parquet"
        self.config_path = out / "config.json"
        self.disk = Disk()
        self.checksums: dict = {}
        self._lock_fd = None

    def ckpt(self, seed, epoch, staged=False) -> Path:
        return self.ckdir / (f"rep{seed}-epoch{epoch}.npz" + (".staged" if staged else ""))

    # -- lock
    def lock(self) -> None:
        self.disk.mkdir(self.out)
        self.disk.at("lock", self.out / ".lock")
        try:
            fd = os.open(self.out / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as e:
            if os.path.islink(self.out / ".lock"):
                refuse_links([self.out / ".lock"])
            raise SweepStateError(f"out: cannot open {self.out / '.lock'} ({e.strerror or e})") from None
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
    def own_paths(self) -> list[Path]:
        return [self.config_path, self.history_path, self.ckdir, self.out / "packs.json", self.out / "packs"]

    def ours(self) -> list[Path]:
        """Files of a sweep in the directory (not temporaries)."""
        refuse_links(self.own_paths())
        found = [p for p in (self.config_path, self.history_path, self.out / "packs.json") if p.exists()]
        if self.ckdir.is_dir():
            found += sorted(p for p in self.ckdir.iterdir() if CKPT_RE.match(p.name))
        if (self.out / "packs").is_dir():
            found += sorted((self.out / "packs").glob("pack-*.parquet"))
        return found

    def remove_temporaries(self) -> None:
        refuse_links(self.own_paths())
        for p in (self.out / "config.json.tmp", self.out / "history.parquet.tmp"):
            if p.exists() or p.is_symlink():
                self.disk.remove(p)
        if self.ckdir.is_dir():
            for p in sorted(self.ckdir.glob("*.tmp")):
                self.disk.remove(p)

    def open(self, resume: bool) -> tuple:
        """Start or resume: returns (config, history DataFrame or None, epochs done per seed)."""
        refuse_links(self.own_paths())
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
            self.disk.write_atomic(self.config_path, lambda f: f.write(json_bytes(self.config)))
            return self.config, None, {}
        saved = read_config(self.config_path)
        compare_configs(saved, self.config, self.out)
        self.config = dict(self.config, sweep_id=saved["sweep_id"], tag=saved.get("tag", ""),
                           written_by=saved.get("written_by"), dataset=saved["dataset"], run=saved.get("run"))
        self.disk.mkdir(self.ckdir)
        hist, done = self.reconcile()
        return self.config, hist, done

    def reconcile(self):
        """Check the files against each other on resume (a sweep in packs has its own)."""
        return reconcile(self)

    # -- commit
    def history_meta(self, done) -> dict:
        return {"format": FORMAT, "sweep_id": self.config["sweep_id"],
                "epochs_done": {str(k): int(v) for k, v in done.items()},
                "checkpoints": dict(sorted(self.checksums.items()))}

    def read_own_history(self):
        """The history and epochs done per seed, checked against config.json (None, {} when
        there is none yet); the recorded checkpoint checksums are taken from it."""
        if not self.history_path.exists():
            return None, {}
        hist, meta = read_history(self.history_path)
        if not isinstance(meta, dict) or meta.get("sweep_id") != self.config["sweep_id"]:
            why = ("has no record of a pyireg sweep" if not isinstance(meta, dict)
                   else "belongs to another sweep (its sweep id differs from config.json's)")
            raise SweepStateError(f"out: {self.history_path} {why}; restore the sweep's own history, or start "
                                  "in another directory")
        done = {int(k): int(v) for k, v in meta.get("epochs_done", {}).items()}
        sums = meta.get("checkpoints", {})
        self.checksums = {str(k): str(v) for k, v in sums.items()} if isinstance(sums, dict) else {}
        check_history(hist, done, self.config, self.history_path)
        return hist, done


def reconcile(d: SweepDir):
    """Check the files of an interrupted sweep against each other, finish or undo what an
    interrupted commit left, and return (history, epochs done per seed). Refuses with the
    reason when they cannot all be true at once."""
    cfg = d.config
    seeds, epochs = cfg["seeds"], cfg["epochs"]
    hist, done = d.read_own_history()
    if (d.out / "packs.json").exists() and any(done.get(s, 0) < epochs for s in seeds):
        raise SweepStateError(f"out: {d.out} holds a sweep trained in packs (packs.json), not repetition by "
                              "repetition; resume it with an executor (executor='ray' or 'local'; --ray)")
    # checkpoints: the history says what is committed; a checkpoint may be one epoch ahead only
    # if it is still staged (an interrupted commit), never behind what resume needs
    files = sorted((p for p in d.ckdir.iterdir() if CKPT_RE.match(p.name)), key=lambda p: p.name)
    refuse_links(files)
    for p in files:
        m = CKPT_RE.match(p.name)
        seed, e, staged = int(m[1]), int(m[2]), bool(m[3])
        if seed not in seeds:
            raise SweepStateError(f"out: {p} is a checkpoint of seed {seed}, which this sweep (seeds {seeds}) does "
                                  "not have; move it away to resume")
        E = done.get(seed, 0)
        if staged and e == E + 1:
            d.disk.remove(p)                        # its epoch was never published: it is redone
        elif staged and e == E and E >= 1:
            final = d.ckpt(seed, e)
            if checkpoint_needed(d.policy, e, E, epochs, d.every):
                d.disk.replace(p, final)            # published, not yet renamed: finish the commit
            else:
                d.disk.remove(p)
        elif staged and e == epochs and cfg.get("stop_when") is not None:
            d.disk.remove(p)                        # a stopping rule's early end, never published
        elif staged or e > E:
            where = ("history.parquet is missing" if not d.history_path.exists()
                     else f"history.parquet records {E} epoch(s) of seed {seed}")
            raise SweepStateError(f"out: {p.name} is from epoch {e}, but {where}: the history of finished epochs "
                                  "was deleted or replaced by an older copy. Restore the history, or start the "
                                  "sweep in another directory")
        elif not checkpoint_needed(d.policy, e, E, epochs, d.every):
            d.disk.remove(p)                        # a commit was interrupted before its pruning
    d.disk.sync_dir(d.ckdir)
    for seed in seeds:
        E = done.get(seed, 0)
        c = resume_epoch(E, d.every)
        if 0 < E < epochs and c > 0 and not d.ckpt(seed, c).exists():
            raise SweepStateError(
                f"out: checkpoints/{d.ckpt(seed, c).name} is missing: history.parquet records {E} of {epochs} "
                f"epochs of seed {seed}, and training cannot continue without the weights of epoch {c}. The "
                "finished epochs stay in history.parquet; restore the checkpoint, or start in another directory")
    return hist, done


def commit_epoch(d: SweepDir, seed: int, epoch: int, arrays: dict, history, done: dict) -> None:
    """Commit epoch ``epoch`` of repetition ``seed``: stage the checkpoint, publish the history
    (with ``done[seed] == epoch`` and the checkpoint's checksum) by one rename, then finish the
    checkpoint and prune the ones resume no longer needs. Every file operation goes through
    ``d.disk`` (see set_fault_hook)."""
    epochs = d.config["epochs"]
    keep = checkpoint_needed(d.policy, epoch, epoch, epochs, d.every)
    staged = d.ckpt(seed, epoch, staged=True)
    tmp = d.history_path.with_name(d.history_path.name + ".tmp")
    # the checkpoints of this repetition written before: resume no longer needs them once this
    # epoch writes one or ends the repetition (the one before may be further back than epoch - K:
    # a stopping rule ends a repetition with one commit of all its remaining epochs)
    prunes = []
    if checkpoint_written(epoch, epochs, d.every):
        for name in sorted(d.checksums):
            m = CKPT_RE.match(name)
            if (m and not m[3] and int(m[1]) == seed and int(m[2]) < epoch
                    and not checkpoint_needed(d.policy, int(m[2]), epoch, epochs, d.every)):
                prunes.append(d.ckdir / name)
    renaming = False
    sums = dict(d.checksums)
    try:
        if keep:
            sums[d.ckpt(seed, epoch).name] = d.disk.write(staged, lambda f: save_checkpoint(f, arrays))
            d.disk.sync_dir(d.ckdir)
        for p in prunes:
            sums.pop(p.name, None)
        old, d.checksums = d.checksums, sums
        try:
            # serialized in memory first (it is small next to the weights): an interrupt during the
            # file write then never leaves a half-closed Parquet writer behind
            parquet = parquet_bytes(history, d.history_meta(done))
        finally:
            d.checksums = old
        d.disk.write(tmp, lambda f: f.write(parquet))
        renaming = True
        d.disk.replace(tmp, d.history_path)                 # the commit: one atomic rename
    except (Exception, KeyboardInterrupt):
        if not (renaming and not tmp.exists()):             # not published (a Ctrl-C may land just after)
            for p in (staged, tmp):                         # the temporaries are of no use; after a
                with contextlib.suppress(OSError):          # kill, reconcile removes them
                    os.unlink(p)
            raise
        d.checksums = sums
        raise
    d.checksums = sums
    d.disk.sync_dir(d.out)
    if keep:
        d.disk.replace(staged, d.ckpt(seed, epoch))
    for p in prunes:
        if p.exists():
            d.disk.remove(p)
    d.disk.sync_dir(d.ckdir)


def check_output(out, resume: bool = False) -> str:
    """Check, without writing anything that stays, that ``out`` can hold a sweep: "new" (it
    will be created or is empty of sweep files) or "resume" (it holds one and ``resume`` is
    set). Raises FileExistsError when it holds a sweep and ``resume`` is not set, and an OSError
    naming the path when it cannot be written (a file in the way, no permission, read-only)."""
    from ._common import check_writable
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out: {out} exists and is not a directory; choose a directory")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"out: cannot create {out}: {probe} is a file, not a directory")
    check_writable(probe, "out", "directory")
    refuse_links([out / n for n in ("config.json", "history.parquet", "checkpoints", ".lock", "packs.json", "packs")])
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


def _recorded_kind(out: Path):
    """The experiment a reproduction's directory records (figure.json's "figure", or the thesis
    experiments' run.json "experiment"), None when it records none."""
    for name, key in (("figure.json", "figure"), ("run.json", "experiment")):
        path = out / name
        if path.exists():
            try:
                value = read_json(path, "out").get(key)
            except SweepStateError:
                value = None
            return value if isinstance(value, str) else "another experiment"
    return None


def check_kind(out, kind: str, rows=()) -> None:
    """Refuse a directory that holds another kind of run, before anything is written. A
    reproduction is a directory of sweeps (one subfolder each) with a record of the experiment
    (figure.json, or run.json for the thesis's), written when it ends. ``kind`` "sweep": refused
    where a reproduction is, finished or not. Any other ``kind`` (figure1, sgd-vs-cg, measures,
    ...): refused over a sweep, over another experiment's record, and over sweep subfolders
    whose names match none of ``rows`` (glob patterns of its own). Mixing them hid one from
    ``pyireg plot`` and overwrote the other's tables."""
    out = Path(out)
    if not out.is_dir():
        return
    subs = []
    with contextlib.suppress(OSError):
        subs = sorted(p.name for p in out.iterdir() if p.is_dir() and (p / "config.json").exists())
    recorded = _recorded_kind(out)
    if kind == "sweep":
        if recorded is not None or subs:
            what = f"the reproduction of {recorded}" if recorded is not None else \
                f"the sweeps of a reproduction ({', '.join(subs[:3])}{', ...' if len(subs) > 3 else ''})"
            raise FileExistsError(f"out: {out} holds {what}, not a sweep; choose another directory")
        return
    if (out / "config.json").exists() or (out / "history.parquet").exists():
        raise FileExistsError(f"out: {out} holds a sweep (config.json), not a reproduction of {kind}; choose "
                              "another directory")
    if recorded is not None and recorded != kind:
        raise FileExistsError(f"out: {out} holds the reproduction of {recorded}, not of {kind}; choose another "
                              "directory")
    foreign = [n for n in subs if not any(fnmatch.fnmatchcase(n, r) for r in rows)]
    if foreign:
        raise FileExistsError(f"out: {out} holds sweeps of another experiment ({', '.join(foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}), not of {kind}; choose another directory")


def check_reproduction(out, kind: str, rows, resume: bool = False, own=None) -> None:
    """Check a reproduction's directory before its first sweep starts: that it holds no other
    kind of run (``check_kind``, its own subfolders ``own``, glob patterns, default ``rows``),
    and every row's sweep directory (``check_output``; a later one that already holds a sweep
    would otherwise fail after hours of work)."""
    check_kind(out, kind, rows if own is None else own)
    for row in rows:
        check_output(Path(out) / row, resume)
