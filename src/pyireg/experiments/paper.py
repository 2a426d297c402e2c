"""Figures 1 and 2 of the paper as runnable experiments."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .. import data as D
from ..schedule import PaperSchedule
from . import teacher
from .store import Disk as _Disk
from .stopping import parse_stop_when
from .store import check_reproduction
from .sweep import sweep

H0 = {"mnist5k": 4, "mnist": 4, "digits": 4, "mnist1d": 4, "cifar10": 16}

FIGURE1 = dict(widths=[2 ** i for i in range(0, 12)], epochs=60, seeds=(0,))
FIGURE2 = dict(widths=[2 ** i for i in range(0, 12)], epochs=60, seeds=(0, 1, 2, 3, 4),
               weight_decays=(0.0, 1e-5, 1e-4, 1e-3, 1e-2), noise=0.05)
ROWS = {"figure1": ("original",), "figure2": ("original", "teacher", "censored", "censored_noise")}


def check_outputs(out, figure: str, resume: bool = False) -> None:
    """Check every sweep directory of a figure before the first one starts (a later one that
    already holds a sweep would otherwise fail after hours of work)."""
    check_reproduction(out, figure, ROWS[figure], resume)


def reproduce_figure1(out, *, dataset="mnist5k", data_dir=None, widths=None, epochs=None, seeds=None,
                      progress=True, resume=False, resample_split=False, checkpoints="resume", stop_when=None,
                      patience=1, checkpoint_every=None):
    """Figure 1: training error and test error (final and early-stopped) against the width, no
    explicit regularization. On mnist / cifar10 the paper's 50,000 (40,000) / 10,000 / 10,000
    split; on the embedded data sets their default splits. ``stop_when``, ``patience``: train
    each network to convergence, ``epochs`` being the cap (see :func:`.sweep.sweep`)."""
    out = Path(out)
    parse_stop_when(stop_when, patience)
    check_outputs(out, "figure1", resume)
    ds = D.load(dataset, data_dir=data_dir)
    t0 = time.perf_counter()
    res = sweep(ds, widths or FIGURE1["widths"], seeds=seeds or FIGURE1["seeds"], epochs=epochs or FIGURE1["epochs"],
                schedule=PaperSchedule(), out=out / "original", progress=progress, resume=resume, tag="figure1",
                resample_split=resample_split, checkpoints=checkpoints, stop_when=stop_when, patience=patience,
                checkpoint_every=checkpoint_every)
    _write_meta(out, "figure1", dataset, time.perf_counter() - t0)
    return {"original": res}


def reproduce_figure2(out, *, dataset="mnist5k", data_dir=None, widths=None, epochs=None, seeds=None,
                      weight_decays=None, noise=None, progress=True, resume=False, resample_split=False,
                      checkpoints="resume", teacher_data="entire", stop_when=None, patience=1,
                      checkpoint_every=None):
    """Figure 2, on 2,000 training and 2,000 validation images: (top) the original labels with
    and without weight decay (chosen by validation error); (middle) censored labels from an
    H0-unit teacher trained on the entire data set (train+validation+test: every sample it has,
    70,000 images for mnist), as the paper says, then labelling the subsets; (bottom) censored labels with ``noise``
    (5%) of the training labels changed at random, a different draw per repetition (as
    ``sweep(label_noise=...)`` draws it). 5 repetitions; ``resample_split`` draws the
    2,000/2,000 split again for each repetition (the paper's "random repetitions" may mean
    either). One teacher (seed 0) serves the five repetitions: the paper builds one censored data
    set. ``teacher_data="splits"`` trains it on the 2,000 / 2,000 / test subsets instead (this
    library's behaviour before it followed the paper). ``stop_when``, ``patience``: the three rows'
    networks train to convergence, ``epochs`` being the cap (the teacher trains its fixed epochs).
    ``checkpoint_every``: the rows' sweeps write their weights every K epochs (see
    :func:`.sweep.sweep`)."""
    if teacher_data not in ("entire", "splits"):
        raise ValueError(f"teacher_data: expected 'entire' or 'splits', got {teacher_data!r}")
    out = Path(out)
    widths = widths or FIGURE2["widths"]
    epochs = epochs or FIGURE2["epochs"]
    seeds = seeds or FIGURE2["seeds"]
    weight_decays = weight_decays or FIGURE2["weight_decays"]
    noise = FIGURE2["noise"] if noise is None else noise
    parse_stop_when(stop_when, patience)
    check_outputs(out, "figure2", resume)
    t0 = time.perf_counter()
    n_test = 1000 if dataset in ("mnist5k", "mnist1d") else None
    split = dict(data_dir=data_dir, n_train=2000, n_val=2000, n_test=n_test)
    ds = D.load(dataset, **split)
    kw = dict(seeds=seeds, epochs=epochs, progress=progress, resume=resume, resample_split=resample_split,
              checkpoints=checkpoints, stop_when=stop_when, patience=patience, checkpoint_every=checkpoint_every)
    results = {"original": sweep(ds, widths, weight_decays=weight_decays, out=out / "original", tag="original", **kw)}
    # the teacher is a step of the experiment: its own sweep directory, resumed with the rest
    h0, tkw = H0.get(dataset, 4), dict(epochs=epochs, seed=0, out=out / "teacher", resume=resume, progress=progress)
    if teacher_data == "entire":
        cens = teacher.censor_entire(dataset, h0, **split, **tkw)
    else:
        cens = teacher.censor(ds, h0, **tkw)
    results["censored"] = sweep(cens, widths, out=out / "censored", tag="censored", **kw)
    results["censored_noise"] = sweep(cens, widths, label_noise=noise, out=out / "censored_noise",
                                      tag="censored+noise", **kw)
    _write_meta(out, "figure2", dataset, time.perf_counter() - t0, censor=cens.info["censor"], noise=noise)
    return results


def _write_meta(out: Path, figure, dataset, seconds, **extra):
    out.mkdir(parents=True, exist_ok=True)
    meta = {"figure": figure, "dataset": dataset, "seconds": round(seconds, 1), **extra}
    _Disk().write_atomic(out / "figure.json", lambda f: f.write(json.dumps(meta, indent=2).encode()))
