"""What an epoch commit of a sweep costs (store.commit_epoch: the checkpoint, the history, their
checksums, fsyncs and renames), in milliseconds per commit and as a share of an epoch of Figure 2.

    python benchmarks/commit_cost.py [--reps 41] [--epochs 5] [--compare] [--sweep-epochs 20]
                                     [--checkpoint-every K]
                                     [--json cost.json]

Shapes: Figure 2's sweeps on the embedded mnist5k (d = 100, k = 10, 2,000 training samples,
batch 100): "original" (widths 1, 2, 4 .. 2048 times 5 weight decays: 60 networks, 20,475 units,
an 18 MB checkpoint with the momentum buffers) and "censored" (12 networks, 4,095 units, 3.6 MB).
The history holds ``--history-epochs`` epochs of rows (default 150: the middle of a 5 x 60 epoch
sweep). Each commit is durable (fsync, as in a real run) into a temporary directory on the same
file system as ``--dir``. ``--compare`` also times the writer before this one (np.savez, the
SHA-256 after each write on the same thread, dictionary-encoded Parquet), alternating the two
per repetition, so that both see the same load, and this writer without its helper threads
("serial"). ``--sweep-epochs E`` times the real sweep end to end (E epochs) without commits,
with its commits on the helper thread (experiments/committer.py) and with them in the training
thread, alternating; ``--checkpoint-every K`` adds background commits that write the weights
every K epochs (the sweep's ``checkpoint_every``). The epoch is the sweep's own loop (training and
the train / val / test evaluation), the median interval between epochs; the share is commit /
(epoch + commit). Report medians, and say whether the host was busy.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from pyireg.experiments import history as H
from pyireg.experiments import store as S

POW2 = [2 ** i for i in range(12)]
SHAPES = {"original": (POW2, 5), "censored": (POW2, 1)}     # widths, weight decays


def _history(rng, N, epochs):
    import pandas as pd
    rows = N * epochs
    cols = {c: rng.random(rows) for c in H.COLUMNS}
    cols.update(repetition=np.zeros(rows, np.int64), network=np.arange(rows) % N,
                width=np.arange(rows) % N, epoch=np.arange(rows) // N + 1,
                diverged=np.zeros(rows, bool), at_chance=np.zeros(rows, bool))
    return pd.DataFrame(cols)


def _checkpoint(rng, widths, wds, d=100, k=10):
    units = sum(widths) * wds
    N = len(widths) * wds
    return {"U": rng.standard_normal((units, d), dtype=np.float32),
            "V": rng.standard_normal((units, k), dtype=np.float32),
            "diverged": np.zeros(N, bool), "epoch": np.int64(1), "seed": np.int64(0), "steps": np.int64(20),
            "offsets": np.arange(N + 1, dtype=np.int64), "sweep_id": np.str_(uuid.uuid4().hex),
            "bufU": rng.standard_normal((units, d), dtype=np.float32),
            "bufV": rng.standard_normal((units, k), dtype=np.float32)}


class _Before:
    """The writer before this one, for --compare: np.savez, the SHA-256 after each write on the
    same thread, Parquet with dictionary encoding."""

    def __enter__(self):
        self.saved = (S.save_checkpoint, S.OVERLAP_BYTES, dict(H.PARQUET_OPTIONS))
        S.save_checkpoint = lambda f, arrays: np.savez(f, **arrays)
        S.OVERLAP_BYTES = 1 << 62
        H.PARQUET_OPTIONS.clear()

    def __exit__(self, *exc):
        S.save_checkpoint, S.OVERLAP_BYTES, opts = self.saved
        H.PARQUET_OPTIONS.clear()
        H.PARQUET_OPTIONS.update(opts)


def commit_ms(shape, *, reps, history_epochs, where, modes, seed=0):
    """{mode: [ms of each commit]} for Figure 2's ``shape``, the modes alternating."""
    rng = np.random.default_rng(seed)
    widths, wds = SHAPES[shape]
    arrays = _checkpoint(rng, widths, wds)
    N = len(widths) * wds
    hist = _history(rng, N, history_epochs)
    times = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        dirs = {}
        for m in modes:
            out = Path(tmp) / m
            cfg = {"sweep_id": arrays["sweep_id"].item(), "epochs": 10 ** 6, "seeds": [0]}
            dirs[m] = S.SweepDir(out, cfg, "resume")
            dirs[m].disk.mkdir(dirs[m].ckdir)
        for epoch in range(1, reps + 2):
            for m in modes:
                ctx = _Before() if m == "before" else _Serial() if m == "serial" else _Nothing()
                with ctx:
                    t0 = time.perf_counter()
                    S.commit_epoch(dirs[m], 0, epoch, arrays, hist, {0: epoch})
                    dt = time.perf_counter() - t0
                if epoch > 1:                     # the first commit creates the files' pages
                    times[m].append(dt * 1e3)
    return times


class _Serial:
    """This writer without its helper threads (the CRC-32 and SHA-256 on the committing thread)."""

    def __enter__(self):
        from pyireg.experiments import npzfile
        self.saved = (S.OVERLAP_BYTES, npzfile.OVERLAP_BYTES)
        S.OVERLAP_BYTES = npzfile.OVERLAP_BYTES = 1 << 62

    def __exit__(self, *exc):
        from pyireg.experiments import npzfile
        S.OVERLAP_BYTES, npzfile.OVERLAP_BYTES = self.saved


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def epoch_ms(shape, epochs):
    """Median milliseconds between the epochs of Figure 2's sweep ``shape`` (the one training
    loop: 20 steps, then train / val / test evaluation), without commits."""
    from pyireg import data as D
    from pyireg.experiments.training import TrainSpec, train_networks
    from pyireg.schedule import PaperSchedule
    widths, wds = SHAPES[shape]
    grid = [(w, wd) for wd in [0.0, 1e-5, 1e-4, 1e-3, 1e-2][:wds] for w in widths]
    ds = D.load("mnist5k", n_train=2000, n_val=2000, n_test=1000)
    spec = TrainSpec(grid_widths=tuple(g[0] for g in grid), grid_weight_decays=tuple(g[1] for g in grid),
                     grid_lr_scales=(1.0,) * len(grid), epochs=int(epochs) + 1, batch_size=100, drop_last=False,
                     schedule=PaperSchedule(), init_std=None, label_noise=0.0, resample_split=False, eval_batch=256)
    stamps = [time.perf_counter()]
    train_networks(ds, spec, 0, range(len(grid)), after_epoch=lambda *a: stamps.append(time.perf_counter()))
    return statistics.median(np.diff(stamps[1:]) * 1e3)      # (the first epoch warms the caches)


def sweep_seconds(shape, epochs, where, modes=("none", "background", "foreground"), rounds=2, every=1):
    """{mode: best seconds} of the real sweep (pyireg.experiments.sweep, Figure 2's ``shape``,
    ``epochs`` epochs) without a directory ("none": no commits), with its commits on the helper
    thread ("background", the default), with every commit in the training thread
    ("foreground") and with background commits writing the weights every ``every`` epochs
    ("every", the sweep's ``checkpoint_every``), the modes alternating over ``rounds``."""
    from pyireg import data as D
    from pyireg.experiments import committer
    from pyireg.experiments.sweep import sweep
    widths, wds = SHAPES[shape]
    ds = D.load("mnist5k", n_train=2000, n_val=2000, n_test=1000)
    best = {m: float("inf") for m in modes}
    for _ in range(rounds):
        for m in modes:
            with tempfile.TemporaryDirectory(dir=where) as tmp:
                saved = committer.BACKGROUND_BYTES
                committer.BACKGROUND_BYTES = -1 if m == "foreground" else saved
                try:
                    t0 = time.perf_counter()
                    sweep(ds, widths, weight_decays=[0.0, 1e-5, 1e-4, 1e-3, 1e-2][:wds], epochs=epochs,
                          out=None if m == "none" else Path(tmp) / "s", progress=False, eval_batch=256,
                          checkpoint_every=every if m == "every" else 1)
                    best[m] = min(best[m], time.perf_counter() - t0)
                finally:
                    committer.BACKGROUND_BYTES = saved
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=41, help="commits timed per shape and mode (median)")
    ap.add_argument("--history-epochs", type=int, default=150, help="epochs of rows in the history")
    ap.add_argument("--epochs", type=int, default=5, help="epochs timed for the share (0: skip)")
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--compare", action="store_true", help="also time the previous writer, alternating")
    ap.add_argument("--dir", default=None, help="where the temporary sweep directories go (default: TMPDIR)")
    ap.add_argument("--sweep-epochs", type=int, default=0,
                    help="also time the real sweep for this many epochs without commits, with background "
                         "commits and with foreground ones (0: skip)")
    ap.add_argument("--checkpoint-every", type=int, default=0, metavar="K",
                    help="with --sweep-epochs, also time background commits writing the weights every K epochs")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    modes = ["now", "serial", "before"] if a.compare else ["now"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"host: load average {load:.2f} on {os.cpu_count()} processors at the start; durable commits (fsync)")
    rows = []
    for shape in a.shapes:
        times = commit_ms(shape, reps=a.reps, history_epochs=a.history_epochs, where=a.dir, modes=modes)
        ep = epoch_ms(shape, a.epochs) if a.epochs > 0 else float("nan")
        for m in modes:
            med = statistics.median(times[m])
            q1, _, q3 = statistics.quantiles(times[m], n=4)
            share = med / (ep + med) if ep == ep else float("nan")
            rows.append({"shape": shape, "writer": m, "ms_per_commit": med, "q1": q1, "q3": q3,
                         "epoch_ms": ep, "share_of_epoch": share, "reps": len(times[m])})
            tail = (f", epoch {ep:.1f} ms without commits: the commit is {100 * share:.1f}% of an epoch"
                    if ep == ep else "")
            print(f"{shape:9s} {m:6s}: {med:7.2f} ms per commit (quartiles {q1:.2f}-{q3:.2f}){tail}", flush=True)
        if a.sweep_epochs > 0:
            k = a.checkpoint_every
            sweep_modes = ("none", "background", "foreground") + (("every",) if k > 1 else ())
            sec = sweep_seconds(shape, a.sweep_epochs, a.dir, modes=sweep_modes, every=max(k, 1))
            per = {m: 1e3 * (sec[m] - sec["none"]) / a.sweep_epochs for m in sweep_modes[1:]}
            rows.append({"shape": shape, "sweep_seconds": sec, "commit_ms_per_epoch": per,
                         "sweep_epochs": a.sweep_epochs})
            print(f"{shape:9s} sweep of {a.sweep_epochs} epochs: {sec['none']:.2f} s without commits, "
                  f"{sec['background']:.2f} s with background commits ({sec['background'] / sec['none']:.3f}x, "
                  f"{per['background']:.1f} ms per epoch), {sec['foreground']:.2f} s with foreground commits "
                  f"({sec['foreground'] / sec['none']:.3f}x, {per['foreground']:.1f} ms per epoch)"
                  + (f", {sec['every']:.2f} s with a checkpoint every {k} epochs ({sec['every'] / sec['none']:.3f}x, "
                     f"{per['every']:.1f} ms per epoch)" if k > 1 else ""), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"load_average": load, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
