"""What recording complexity measures every epoch would cost a sweep: the seconds of one epoch of
the sweep's work against those of each set of measures on the same model (moved here from the
thesis experiments: it is a timing, not a reproduction).

    python benchmarks/measures_cost.py [--widths pow2:2048] [--cheap] [--json cost.json]

Timings: run it on an idle machine and name the host with the numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from pyireg import data as D
from pyireg.experiments._common import widths_arg
from pyireg.measures import PERTURBED, compute
from pyireg.experiments.training import TrainSpec, build, train_networks
from pyireg.schedule import PaperSchedule

POW2 = [2 ** i for i in range(12)]


def _log(progress, msg):
    if progress:
        print(msg, file=sys.stderr, flush=True)


COST_SETS = {
    "native (the six of measures())": None,
    "weights (all without data)": "weights",
    "weights + init": "init",
    "all cheap (weights, init, margins on the training set)": "all",
    "sharpness_expected + pac_bayes": ["sharpness_expected", "pac_bayes"],
    "sharpness_worst": ["sharpness_worst"],
}


def measures_cost(*, dataset="mnist5k", data_dir=None, widths=None, epochs=3, seed=0, perturbed=True,
                  progress=True):
    """What recording measures every epoch would cost a sweep: the seconds of one epoch of the
    sweep's work (20 steps of 100 samples, then train / val / test evaluation, by the sweep's
    own loop) and of each set
    of measures (``COST_SETS``) on the same model, best of ``epochs`` rounds each (the perturbed
    ones, end-of-training measures, timed once; skipped without ``perturbed``). Returns a
    DataFrame with the ratio of each to the epoch."""
    import pandas as pd
    from pyireg.measures import INIT, WEIGHT
    widths = list(widths or POW2)
    ds = D.load(dataset, data_dir=data_dir, n_train=2000, n_val=2000, n_test=1000)
    # the sweep's epochs, timed inside the one training loop: its training part (train_seconds of
    # each epoch's rows) and the whole epoch with the evaluation (between after_epoch calls)
    N = len(widths)
    spec = TrainSpec(grid_widths=tuple(widths), grid_weight_decays=(0.0,) * N, grid_lr_scales=(1.0,) * N,
                     epochs=int(epochs), batch_size=100, drop_last=False, schedule=PaperSchedule(), init_std=None,
                     label_noise=0.0, resample_split=False, eval_batch=256)
    init, _ = build(ds, spec, seed, np.arange(N))
    stamps, kept = [time.perf_counter()], {}

    def after_epoch(epoch, frame, model, opt, ev):
        stamps.append(time.perf_counter())
        kept.setdefault("train", []).append(float(frame.train_seconds.iloc[0]))
        kept["model"] = model
    train_networks(ds, spec, seed, range(N), after_epoch=after_epoch)
    model = kept["model"]
    best_train = min(kept["train"])
    best_epoch = float(np.min(np.diff(stamps)))
    rows = [{"what": "epoch: 20 training steps", "seconds": best_train},
            {"what": "epoch: training + train/val/test evaluation (the sweep's epoch)", "seconds": best_epoch}]
    _log(progress, f"  epoch: {best_train:.3f} s training, {best_epoch:.3f} s with evaluation")
    for label, names in COST_SETS.items():
        if names == "weights":
            names = list(WEIGHT)
        elif names == "init":
            names = list(WEIGHT + INIT)
        is_perturbed = isinstance(names, list) and set(names) <= set(PERTURBED)
        if is_perturbed and not perturbed:
            continue
        best = float("inf")
        for _ in range(1 if is_perturbed else epochs):
            t0 = time.perf_counter()
            compute(model, names, X=ds.X_train, y=ds.y_train, init=init)
            best = min(best, time.perf_counter() - t0)
        rows.append({"what": f"measures: {label}", "seconds": best})
        _log(progress, f"  {label}: {best:.3f} s")
    df = pd.DataFrame(rows)
    df["fraction_of_sweep_epoch"] = df.seconds / best_epoch
    return df


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/measures_cost.py", description=__doc__.splitlines()[0])
    p.add_argument("--widths", type=widths_arg, default=None, help="default pow2:2048")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cheap", action="store_true", help="skip the sharpness and PAC-Bayes timings")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", default=None, help="also save the table here")
    a = p.parse_args(argv)
    df = measures_cost(dataset=a.dataset, data_dir=a.data_dir, widths=a.widths, seed=a.seed,
                       perturbed=not a.cheap, progress=not a.quiet)
    print(df.to_string(index=False))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(df.to_dict(orient="records"), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
