"""Two experiments of Neyshabur's thesis on the embedded data, each one command of the command
table (``pyireg reproduce measures``, ``pyireg reproduce pathsgd``).

``measures``: networks of widths 1..2048 trained on mnist5k with the true labels and with
random labels (the thesis's "exploring generalization" study); every measure of
``pyireg.measures`` against the width next to the test error, and a summary of which measures
grow with the width and which track the test error.

``pathsgd``: Path-SGD against momentum SGD across widths 1..1024 on the paper's protocol (batch 100,
60 epochs, lr x 0.99 and momentum 0.5 -> 0.9 per epoch), from the standard initialization and
from a deliberately unbalanced one (every unit rescaled by u_h -> c_h u_h, v_h -> v_h / c_h, c_h
log-uniform in [1/10, 10]: the same functions), with the learning rate chosen per width from a
small grid by validation error. All variants of one optimizer are one packed model.
"""
from __future__ import annotations

import json
import math
import numbers
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .. import data as D
from ..measures import ALL, PERTURBED, compute
from ..plots import check_figure_suffix
from ..schedule import PaperSchedule
from .store import check_reproduction
from .sweep import ChanceWarning, sweep
from .training import models_of

POW2 = [2 ** i for i in range(12)]

# the measures shown, in the figure's order (name, label)
SHOWN = [
    ("margin", "margin (5th pct.)"), ("fro_margin", "||U||_F ||V||_F / margin"),
    ("path_l1_margin", "l1 path / margin"), ("path_l2_margin", "l2 path / margin"),
    ("spectral_margin", "||U||_2 ||V||_2 / margin"), ("overparam_bound", "over-param. bound (2018)"),
    ("l2_penalty", "l2 penalty"), ("group_l1", "group-l1"), ("dist_U", "||U - U0||_F"),
    ("dist_V", "||V - V0||_F"), ("trace_norm", "trace norm of V^T U"), ("ddp_path", "DDP path norm (a=0.5)"),
    ("sharpness_expected", "expected sharpness"), ("sharpness_worst", "worst-case sharpness"),
    ("pac_bayes", "PAC-Bayes estimate"),
]


def _check_counts(**counts):
    """Epoch and sample counts, checked before any file or folder is made."""
    for name, v in counts.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")


def _quiet_sweep(*args, **kw):
    """A sweep whose chance and divergence warnings are left to the experiment's own table (it
    counts the diverged networks; a large lr of the grid diverges by design)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ChanceWarning)
        return sweep(*args, **kw)


def _log(progress, msg):
    if progress:
        print(msg, file=sys.stderr, flush=True)


# ============================================================================ measures
def reproduce_measures(out="results/thesis-measures", *, dataset="mnist5k", data_dir=None, widths=None,
                       epochs=60, random_epochs=150, seeds=(0, 1, 2), samples=8, figure=None, progress=True,
                       seed=None, resume=False):
    """Train widths 1..2048 on the true and on random training labels (the paper's protocol;
    random labels get ``random_epochs`` to fit), then compute every measure on the training
    set; one repetition per seed (initialization, batch order and random labels). Writes
    ``measures.csv`` (one row per labels x seed x width), ``summary.csv`` (on the means over
    the seeds), ``run.json`` and the figure; returns (table, summary) as pandas DataFrames.
    ``resume``: continue the sweeps of an interrupted run in ``out`` (each is one sweep
    directory, ``{labels}-seed{seed}``) to the numbers of an uninterrupted one."""
    import pandas as pd
    out = Path(out)
    widths = list(widths or POW2)
    seeds = [seed] if seed is not None else list(seeds)
    _check_counts(epochs=epochs, random_epochs=random_epochs, samples=samples)
    if figure is not None:
        check_figure_suffix(figure, "figure")           # before the training, not after it
    t_start = time.perf_counter()
    ds = D.load(dataset, data_dir=data_dir, n_train=2000, n_val=2000, n_test=1000)   # before any folder
    check_reproduction(out, "measures", [f"{labels}-seed{rep}" for rep in seeds for labels in ("true", "random")],
                       resume, own=("true-seed*", "random-seed*"))
    out.mkdir(parents=True, exist_ok=True)
    k = ds.num_classes
    rows = []
    timing = {}
    for rep in seeds:
        for labels in ("true", "random"):
            rng = np.random.default_rng(rep)
            ytr = ds.y_train if labels == "true" else rng.integers(0, k, len(ds.y_train))
            dsl = ds if labels == "true" else ds.replace(y_train=ytr, info={"labels": f"random (seed {rep})"})
            ep = epochs if labels == "true" else random_epochs
            t0 = time.perf_counter()
            # one sweep directory per (labels, seed): the one training loop, its history and its
            # final weights (checkpoints="final"), from which the measures are computed
            run_dir = out / f"{labels}-seed{rep}"
            _quiet_sweep(dsl, widths, seeds=[rep], epochs=ep, schedule=PaperSchedule(), out=run_dir,
                         checkpoints="final", progress=progress, resume=resume,
                         tag=f"thesis measures, {labels} labels, seed {rep}")
            init, model = models_of(dsl, run_dir, rep)
            t1 = time.perf_counter()
            tr_err, tr_loss = model.evaluate(ds.X_train, ytr)
            te_err, te_loss = model.evaluate(ds.X_test, ds.y_test)
            names = list(ALL) + list(PERTURBED)
            vals = compute(model, names, X=ds.X_train, y=ytr, init=init, samples=samples, seed=rep)
            t2 = time.perf_counter()
            timing[f"{labels}, seed {rep}"] = {"train_s": round(t1 - t0, 1), "measures_s": round(t2 - t1, 1),
                                                "epochs": ep}
            _log(progress, f"  seed {rep}, {labels} labels: trained in {t1 - t0:.0f} s, measures in {t2 - t1:.0f} s")
            for i, H in enumerate(widths):
                row = {"labels": labels, "seed": rep, "width": H, "epochs": ep, "train_error": tr_err[i],
                       "test_error": te_err[i], "train_loss": tr_loss[i], "test_loss": te_loss[i]}
                row.update({n: float(v[i]) for n, v in vals.items()})
                rows.append(row)
    table = pd.DataFrame(rows)
    table.to_csv(out / "measures.csv", index=False)
    summary = summarize_measures(table)
    summary.to_csv(out / "summary.csv", index=False)
    seconds = time.perf_counter() - t_start
    (out / "run.json").write_text(json.dumps({"experiment": "measures", "dataset": dataset,
                                              "seconds": round(seconds, 1), "timing": timing,
                                              "widths": widths, "seeds": seeds}, indent=2))
    plot_measures(table, figure or out / "measures.png")
    _log(progress, f"measures: {seconds:.0f} s; table {out / 'measures.csv'}")
    return table, summary


def mean_over_seeds(table):
    """The measures table averaged over the repetitions (NaN where any repetition is NaN)."""
    cols = [c for c in table.columns if c not in ("labels", "seed", "width")]
    return table.groupby(["labels", "width"], sort=False)[cols].agg(lambda v: v.mean(skipna=False)).reset_index()


def _spearman(a, b):
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def summarize_measures(table, h_from=None):
    """Per measure: its growth from the first width with a positive margin on the true labels
    (where every margin-normalized measure is defined) to the widest, its rank correlation
    (Spearman) with the test error over those widths (true labels), and its ratio random /
    true labels at the widest network."""
    import pandas as pd
    if "seed" in table.columns:
        table = mean_over_seeds(table)
    true = table[table.labels == "true"].set_index("width")
    rand = table[table.labels == "random"].set_index("width")
    ok = true.index[true.margin > 0]
    h0 = h_from or int(ok.min() if len(ok) else true.index.max())
    H = [h for h in true.index if h >= h0]
    wide = max(true.index)
    rows = []
    for name, label in SHOWN:
        t = true.loc[H, name].to_numpy(dtype=float)
        ok = np.isfinite(t)
        rows.append({"measure": name, "label": label, "from_width": h0,
                     "at_first": t[0], "at_widest": t[-1], "growth": t[-1] / t[0] if t[0] else float("nan"),
                     "spearman_with_test_error": _spearman(t[ok], true.loc[H, "test_error"].to_numpy()[ok])
                     if ok.sum() > 2 else float("nan"),
                     "random_over_true_at_widest": rand.loc[wide, name] / true.loc[wide, name]})
    return pd.DataFrame(rows)


def plot_measures(table, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(SHOWN) + 1
    cols = 4
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows))
    axes = axes.ravel()
    styles = {"true": dict(color="C0", marker="o", label="true labels"),
              "random": dict(color="C3", marker="s", ls="--", label="random labels")}
    reps = table.seed.nunique() if "seed" in table.columns else 1
    raw = table
    table = mean_over_seeds(table) if "seed" in table.columns else table
    ax = axes[0]
    for labels, st in styles.items():
        t = table[table.labels == labels]
        ax.plot(t.width, t.test_error, **st)
        ax.plot(t.width, t.train_error, color=st["color"], ls=":", marker=".", label=f"train ({labels})")
    ax.set_title("error (solid/dashed: test)")
    ax.set_xscale("log", base=2)
    ax.legend(fontsize=7)
    for ax, (name, label) in zip(axes[1:], SHOWN):
        if not np.isfinite(raw[name].to_numpy(dtype=float)).any():
            # nothing to draw (the margin measures when no margin is positive, e.g. after a few
            # epochs): said in the panel; a log x axis over no data made matplotlib fail
            ax.set_title(label, fontsize=10)
            ax.text(0.5, 0.5, "undefined at every width\n(no positive margin)", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        for labels, st in styles.items():
            t = table[table.labels == labels]
            v = t[name].to_numpy(dtype=float)
            ax.plot(t.width, v, **st)
            if reps > 1:
                g = raw[raw.labels == labels].groupby("width", sort=False)[name]
                ax.fill_between(t.width, g.min().to_numpy(), g.max().to_numpy(), color=st["color"], alpha=0.15)
        ax.set_title(label, fontsize=10)
        ax.set_xscale("log", base=2)
        # a log axis only when every value drawn (the means and the band's repetitions) is > 0
        vals = np.concatenate([table[name].to_numpy(dtype=float), raw[name].to_numpy(dtype=float)])
        vals = vals[np.isfinite(vals)]
        if vals.size and np.all(vals > 0):
            ax.set_yscale("log")
    for ax in axes[n:]:
        ax.axis("off")
    for ax in axes[-cols:]:
        ax.set_xlabel("hidden units H")
    fig.suptitle("Complexity measures against width, mnist5k (2,000 training samples), measured on the training set"
                 + (f"; mean of {reps} repetitions, band: min to max" if reps > 1 else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ============================================================================ Path-SGD
def reproduce_pathsgd(out="results/thesis-pathsgd", *, dataset="mnist5k", data_dir=None, widths=None, epochs=60,
                      lrs=(0.03, 0.1, 0.3), unbalance=10.0, seeds=(0, 1, 2), figure=None, progress=True, seed=None,
                      resume=False):
    """Path-SGD against momentum SGD (both with the paper's schedule, lr0 from ``lrs`` chosen per
    width and repetition by validation error), from the standard and from an unbalanced
    initialization, one repetition per seed (the initial weights and the unbalancing factors;
    all networks see the same batches). Every variant of one optimizer is one packed model.
    Writes one sweep directory per method and initialization (``{method}-{init}``: every
    network's history per epoch), ``results.csv`` (per method, init, seed and width: final and
    early-stopped test error, the chosen lr), ``run.json`` and the figure; returns (results,
    invariance gaps, seconds). ``resume``: continue an interrupted run in ``out`` to the numbers
    of an uninterrupted one."""
    import pandas as pd
    out = Path(out)
    widths = list(widths or POW2[:11])
    seeds = [seed] if seed is not None else list(seeds)
    _check_counts(epochs=epochs)
    if figure is not None:
        check_figure_suffix(figure, "figure")           # before the training, not after it
    if not (isinstance(unbalance, (int, float)) and unbalance >= 1):
        raise ValueError(f"unbalance: expected a factor >= 1, got {unbalance!r}")
    t_start = time.perf_counter()
    ds = D.load(dataset, data_dir=data_dir, n_train=2000, n_val=2000, n_test=1000)   # before any folder
    inits = ("standard", "unbalanced")
    methods = {"sgd": "momentum_sgd", "path_sgd": "path_sgd"}
    check_reproduction(out, "pathsgd", [f"{method}-{ini}" for method in methods for ini in inits], resume,
                       own=("sgd-*", "path_sgd-*"))
    out.mkdir(parents=True, exist_ok=True)
    # networks (init, seed, lr, width), width fastest, as the table and figure read them; each
    # (method, init) is one sweep with the lrs as lr scales of the paper's schedule (lr0 0.1):
    # the same initial weights for both inits (the unbalanced one is their rescaling, a
    # function-preserving transform) and the same batches for every network (the batch policy)
    combos = [(ini, rep, lr, H) for ini in inits for rep in seeds for lr in lrs for H in widths]
    scales = [lr / 0.1 for lr in lrs]
    hist = []
    for method, optimizer in methods.items():
        h = {k: {"error": [], "loss": []} for k in ("train", "val", "test")}
        for ini in inits:
            res = _quiet_sweep(ds, widths, seeds=seeds, lr_scales=scales, epochs=epochs,
                        schedule=PaperSchedule(lr0=0.1),
                        optimizer=optimizer, init_transform=None if ini == "standard" else "unbalanced",
                        init_transform_args=None if ini == "standard" else {"factor": float(unbalance)},
                        out=out / f"{method}-{ini}", progress=progress, resume=resume,
                        tag=f"{method}, {ini} init")
            rank = {int(r): i for i, r in enumerate(seeds)}
            frame = res.history.assign(_rep=res.history.repetition.map(rank))
            frame = frame.sort_values(["epoch", "_rep", "network"], kind="stable")
            for k in h:
                for q in ("error", "loss"):
                    # (epochs, seeds x lrs x widths): the network index is lr scale-major, width fastest
                    h[k][q].append(frame[f"{k}_{q}"].to_numpy().reshape(epochs, len(seeds) * len(scales) * len(widths)))
        hist.append({k: {q: np.concatenate(v, axis=1) for q, v in d.items()} for k, d in h.items()})
    rows = []
    for i, method in enumerate(("sgd", "path_sgd")):
        h = hist[i]
        for ini in inits:
            for rep in seeds:
                for H in widths:
                    nets = [j for j, c in enumerate(combos) if c[0] == ini and c[1] == rep and c[3] == H]
                    val, test, train = (h[s]["error"][:, nets] for s in ("val", "test", "train"))
                    val = np.where(np.isfinite(val), val, 1.0)
                    f = int(np.argmin(val[-1]))                                  # lr by final validation error
                    e_ep, e_net = np.unravel_index(np.argmin(val), val.shape)   # lr and epoch by validation
                    e_ep += 1                                                   # row 0 is epoch 1
                    rows.append({"method": method, "init": ini, "seed": rep, "width": H,
                                 "lr_final": combos[nets[f]][2], "train_final": train[-1, f],
                                 "test_final": test[-1, f], "lr_early": combos[nets[e_net]][2],
                                 "epoch_early": int(e_ep), "test_early": test[e_ep - 1, e_net],
                                 "diverged": int(np.sum(~np.isfinite(h["train"]["loss"][-1, nets])))})
    res = pd.DataFrame(rows)
    res.to_csv(out / "results.csv", index=False)
    # the invariance, measured: test-error differences between the two initializations at the
    # same seed, lr, width and epoch
    half = len(combos) // 2
    inv = {}
    for i, method in enumerate(("sgd", "path_sgd")):
        g = np.abs(hist[i]["test"]["error"][:, :half] - hist[i]["test"]["error"][:, half:])
        inv[method] = {"max": float(np.nanmax(g)), "mean": float(np.nanmean(g)), "final_max": float(np.nanmax(g[-1]))}
    seconds = time.perf_counter() - t_start
    (out / "run.json").write_text(json.dumps({"experiment": "pathsgd", "dataset": dataset, "seconds": round(seconds, 1),
                                              "widths": widths, "lrs": list(lrs), "epochs": epochs, "seeds": seeds,
                                              "unbalance": unbalance, "test_error_gap_between_inits": inv},
                                             indent=2))
    plot_pathsgd(res, hist, combos, widths, figure or out / "pathsgd.png")
    _log(progress, f"pathsgd: {seconds:.0f} s; test-error gap between the initializations: {inv}")
    return res, inv, seconds


def pathsgd_table(res):
    """Mean and standard deviation over the repetitions per method, init and width."""
    g = res.groupby(["method", "init", "width"], sort=False)
    return g[["train_final", "test_final", "test_early"]].agg(["mean", "std"]).reset_index()


def plot_pathsgd(res, hist, combos, widths, path, curve_widths=(16, 128, 1024)):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    curve_widths = [h for h in curve_widths if h in widths]
    fig, axes = plt.subplots(1, 2 + len(curve_widths), figsize=(3.6 * (2 + len(curve_widths)), 3.4))
    colors = {"sgd": "C0", "path_sgd": "C3"}
    names = {"sgd": "SGD", "path_sgd": "Path-SGD"}
    ls = {"standard": "-", "unbalanced": "--"}
    mean = res.groupby(["method", "init", "width"], sort=False)[["test_final", "test_early"]].mean().reset_index()
    for ax, col, title in ((axes[0], "test_final", "test error, final epoch"),
                           (axes[1], "test_early", "test error, early stopped")):
        for method in ("sgd", "path_sgd"):
            for ini in ("standard", "unbalanced"):
                r = mean[(mean.method == method) & (mean.init == ini)]
                ax.plot(r.width, r[col], color=colors[method], ls=ls[ini], marker="o", ms=3,
                        label=f"{names[method]}, {ini} init")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_ylim(0.07, 0.9)
        ax.set_title(title + (f" (mean of {res.seed.nunique()})" if res.seed.nunique() > 1 else ""), fontsize=9)
        ax.set_xlabel("hidden units H")
    axes[0].legend(fontsize=7)
    rep = res.seed.min()
    for ax, H in zip(axes[2:], curve_widths):
        for i, method in enumerate(("sgd", "path_sgd")):
            for ini in ("standard", "unbalanced"):
                r = res[(res.method == method) & (res.init == ini) & (res.width == H) & (res.seed == rep)].iloc[0]
                j = [n for n, c in enumerate(combos) if c == (ini, rep, r.lr_final, H)][0]
                ax.plot(hist[i]["test"]["error"][:, j], color=colors[method], ls=ls[ini])
                ax.plot(hist[i]["train"]["error"][:, j], color=colors[method], ls=ls[ini], alpha=0.4, lw=1)
        ax.set_ylim(0, 0.3)
        ax.set_title(f"H = {H} (seed {rep}): test (dark), train (light)", fontsize=9)
        ax.set_xlabel("epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
