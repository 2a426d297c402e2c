"""Sweeps on Ray, measured: the Figure-2 grid as 2 Ray workers x 1 thread against 1 process x 2
threads, the overhead per pack, and the speedup on M workers estimated from the measured packs.

    python benchmarks/sweep_on_ray.py --reps 5 --json ray-bench.json     # about 6 minutes on 2 cores

1. The original-labels grid of ``pyireg reproduce figure2`` (mnist5k 2,000 / 2,000 / 1,000, widths
   1, 2, 4, ..., 2048 x weight decays 0, 1e-5, 1e-4, 1e-3, 1e-2, 60 epochs, ``--reps``
   repetitions), once as the local sweep (one packed model per repetition, this process, 2 native
   threads) and once on an embedded Ray of 2 workers x 1 thread (default packing). The start of
   Ray is timed apart; both histories must be equal bit for bit (every column but the
   wall-clock), or the script fails.
2. Overhead per pack: ``--tiny-packs`` packs of one width-1 network (1 epoch on the same data), on
   1 Ray worker and in this process (LocalExecutor): (wall - the packs' own training seconds) /
   packs. It covers submitting the task, reading the data from the object store, building the
   model, writing, renaming and checking the pack file.
3. The estimate: every pack's time is modelled as the measured overhead + (its units x the
   measured seconds per unit), the grid is packed as the default packing would for M workers, and
   the packs are list-scheduled on M workers (the largest first, as the executor submits them).
   Ray's start, the driver's merge and a shared file system's latency are not in it.

The machine is shared: the load average is recorded before and after each part.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import pandas as pd

import pyireg
from pyireg import data as D
from pyireg.distributed import LocalExecutor, RayExecutor, default_pack_units, makespan, plan_packs
from pyireg.experiments import sweep

WIDTHS = [2 ** i for i in range(12)]
WEIGHT_DECAYS = [0.0, 1e-5, 1e-4, 1e-3, 1e-2]


class Recording:
    """Wraps an executor and records each finished pack (its units, its training seconds in the
    worker, and when it finished)."""

    def __init__(self, inner):
        self.inner, self.pack_units, self.records = inner, inner.pack_units, []

    def start(self):
        return self.inner.start()

    def stop(self):
        self.inner.stop()

    def run(self, job, ds, packs):
        t0 = time.perf_counter()
        for pack, outcome in self.inner.run(job, ds, packs):
            if isinstance(outcome, dict):
                self.records.append({"pack": pack.id, "repetition": pack.repetition, "networks": len(pack.networks),
                                     "units": pack.units, "seconds": outcome["seconds"], "host": outcome["host"],
                                     "finished_at": time.perf_counter() - t0})
            yield pack, outcome


def load():
    return os.getloadavg()[0]


def figure2_part(ds, reps, epochs, report):
    kw = dict(weight_decays=WEIGHT_DECAYS, seeds=list(range(reps)), epochs=epochs, progress=False)
    pyireg.set_num_threads(2)
    sweep(ds, [1, 2], epochs=1, progress=False)           # warm up: imports, first allocations
    report["load_before_local"] = load()
    t0 = time.perf_counter()
    local = sweep(ds, WIDTHS, **kw)
    report["local_2_threads_s"] = time.perf_counter() - t0
    report["load_after_local"] = load()
    print(f"local, 1 process x 2 threads: {report['local_2_threads_s']:.1f} s (load {report['load_before_local']:.2f} "
          f"-> {report['load_after_local']:.2f})", flush=True)
    rec = Recording(RayExecutor(workers=2, threads_per_worker=1))
    t0 = time.perf_counter()
    with rec.inner:
        report["ray_start_s"] = time.perf_counter() - t0
        report["load_before_ray"] = load()
        t0 = time.perf_counter()
        res = sweep(ds, WIDTHS, executor=rec, **kw)
        report["ray_2x1_s"] = time.perf_counter() - t0
    report["load_after_ray"] = load()
    report["ray_packs"] = rec.records
    pd.testing.assert_frame_equal(res.history.drop(columns="train_seconds"),
                                  local.history.drop(columns="train_seconds"), check_exact=True)
    report["bit_identical"] = True
    report["ratio_local_over_ray"] = report["local_2_threads_s"] / report["ray_2x1_s"]
    print(f"Ray, 2 workers x 1 thread: {report['ray_2x1_s']:.1f} s + {report['ray_start_s']:.1f} s to start Ray "
          f"({len(rec.records)} packs; load {report['load_before_ray']:.2f} -> {report['load_after_ray']:.2f}); "
          f"histories equal bit for bit; local / Ray = {report['ratio_local_over_ray']:.2f}", flush=True)


def overhead_part(ds, packs, report):
    kw = dict(seeds=[0], epochs=1, progress=False)
    widths = [1] * packs
    report["load_before_overhead"] = load()
    out = {}
    for name, ex in (("ray_1_worker", RayExecutor(workers=1, threads_per_worker=1, pack_units=1)),
                     ("in_process", LocalExecutor(pack_units=1, threads=1))):
        rec = Recording(ex)
        if name == "ray_1_worker":
            with ex:
                sweep(ds, widths[:2], executor=rec, **kw)          # warm up: the worker's imports
                rec.records.clear()
                t0 = time.perf_counter()
                sweep(ds, widths, executor=rec, **kw)
                wall = time.perf_counter() - t0
        else:
            t0 = time.perf_counter()
            sweep(ds, widths, executor=rec, **kw)
            wall = time.perf_counter() - t0
        train = sum(r["seconds"] for r in rec.records)
        out[name] = {"packs": packs, "wall_s": wall, "train_s": train, "overhead_per_pack_s": (wall - train) / packs}
        print(f"overhead per pack, {name}: {(wall - train) / packs * 1000:.0f} ms ({packs} packs of one width-1 "
              f"network: {wall:.2f} s wall, {train:.2f} s training)", flush=True)
    report["overhead"] = out
    report["load_after_overhead"] = load()


def estimate_part(report, reps):
    """Speedup on M workers from the measured packs: time(pack) = overhead + units x s_per_unit."""
    recs = report["ray_packs"]
    over = report["overhead"]["ray_1_worker"]["overhead_per_pack_s"]
    per_unit = sum(r["seconds"] for r in recs) / sum(r["units"] for r in recs)
    grid = WIDTHS * len(WEIGHT_DECAYS)
    seeds = list(range(reps))
    one = makespan([over + p.units * per_unit
                    for p in plan_packs(grid, seeds, 1, default_pack_units(grid, reps, 1))], 1)
    rows = []
    for M in (1, 2, 4, 8, 16, 32, 64, 128):
        plan = plan_packs(grid, seeds, 1, default_pack_units(grid, reps, M))
        times = sorted((over + p.units * per_unit for p in plan), reverse=True)
        span = makespan(times, M)
        rows.append({"workers": M, "packs": len(plan), "largest_pack_units": max(p.units for p in plan),
                     "estimated_s": span, "speedup_vs_1_worker": one / span,
                     "speedup_vs_local_2_threads": report["local_2_threads_s"] / span})
    report["seconds_per_unit"] = per_unit
    report["estimate"] = rows
    print(f"\nmeasured: {per_unit * 1e3:.3f} ms per hidden unit of a pack (all epochs), {over * 1e3:.0f} ms overhead "
          "per pack")
    print("| workers | packs | largest pack (units) | estimated s | speedup vs 1 worker | vs local 2 threads |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['workers']} | {r['packs']} | {r['largest_pack_units']} | {r['estimated_s']:.1f} | "
              f"{r['speedup_vs_1_worker']:.1f}x | {r['speedup_vs_local_2_threads']:.1f}x |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions of the Figure-2 grid")
    ap.add_argument("--epochs", type=int, default=60, help="epochs (the paper's 60)")
    ap.add_argument("--tiny-packs", type=int, default=40, help="packs of the overhead measurement")
    ap.add_argument("--json", help="save the report here")
    args = ap.parse_args(argv)
    ds = D.load("mnist5k", n_train=2000, n_val=2000, n_test=1000)
    report = {"reps": args.reps, "epochs": args.epochs, "cpus": os.cpu_count(), "python": sys.version.split()[0],
              "pyireg": pyireg.__version__}
    import ray
    report["ray"] = ray.__version__
    figure2_part(ds, args.reps, args.epochs, report)
    overhead_part(ds, args.tiny_packs, report)
    estimate_part(report, args.reps)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nsaved {args.json}")


if __name__ == "__main__":
    main()
