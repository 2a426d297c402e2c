"""Two experiments of Neyshabur's thesis on the embedded data, each one command:

    python -m pyireg.experiments.thesis measures [--out DIR] [--figure PNG]
    python -m pyireg.experiments.thesis pathsgd  [--out DIR] [--figure PNG]

(``main(argv)`` is the entry a command line can hook as ``pyireg reproduce measures|pathsgd``.)

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

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from .. import data as D
from ..measures import ALL, PERTURBED, compute
from ..model import PackedMLP
from ..optim import MomentumSGD, PathSGD
from ..schedule import PaperSchedule
from ._common import widths_arg

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


def _log(progress, msg):
    if progress:
        print(msg, file=sys.stderr, flush=True)


def _train(models, X, y, epochs, schedule, batch, rng, evals, progress, tag):
    """Train every (model, optimizer, lr0) of ``models`` on the same batches with the paper's
    schedule (lr0 * lr_decay**epoch, the schedule's momentum); evaluate on ``evals`` before
    training and after every epoch. Returns per model {set: {"error", "loss"}: (epochs + 1, N)}."""
    hist = [{k: {"error": [], "loss": []} for k in evals} for _ in models]

    def record():
        for h, (model, _, _) in zip(hist, models):
            for k, (Xe, ye) in evals.items():
                e, l = model.evaluate(Xe, ye, batch_size=500)
                h[k]["error"].append(e)
                h[k]["loss"].append(l)

    record()
    t0 = time.perf_counter()
    n = X.shape[0]
    for ep in range(epochs):
        for _, opt, lr0 in models:
            opt.lr = lr0 * schedule.lr(ep) / schedule.lr0
            opt.momentum = schedule.momentum(ep)
        order = rng.permutation(n)
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            for _, opt, _ in models:
                opt.step(X[idx], y[idx])
        record()
        if (ep + 1) % 10 == 0 or ep + 1 == epochs:
            _log(progress, f"  {tag}: epoch {ep + 1}/{epochs}, {time.perf_counter() - t0:.0f} s")
    return [{k: {m: np.array(v) for m, v in d.items()} for k, d in h.items()} for h in hist]


# ============================================================================ measures
def reproduce_measures(out="results/thesis-measures", *, dataset="mnist5k", data_dir=None, widths=None,
                       epochs=60, random_epochs=150, seeds=(0, 1, 2), samples=8, figure=None, progress=True,
                       seed=None):
    """Train widths 1..2048 on the true and on random training labels (the paper's protocol;
    random labels get ``random_epochs`` to fit), then compute every measure on the training
    set; one repetition per seed (initialization, batch order and random labels). Writes
    ``measures.csv`` (one row per labels x seed x width), ``summary.csv`` (on the means over
    the seeds), ``run.json`` and the figure; returns (table, summary) as pandas DataFrames."""
    import pandas as pd
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    widths = list(widths or POW2)
    seeds = [seed] if seed is not None else list(seeds)
    t_start = time.perf_counter()
    ds = D.load(dataset, data_dir=data_dir, n_train=2000, n_val=2000, n_test=1000)
    k = ds.num_classes
    rows = []
    timing = {}
    for rep in seeds:
        for labels in ("true", "random"):
            rng = np.random.default_rng(rep)
            ytr = ds.y_train if labels == "true" else rng.integers(0, k, len(ds.y_train))
            model = PackedMLP(widths, ds.num_features, k, seed=rep)
            init = model.copy()
            opt = MomentumSGD(model, 0.1, 0.5)
            ep = epochs if labels == "true" else random_epochs
            t0 = time.perf_counter()
            _train([(model, opt, 0.1)], ds.X_train, ytr, ep, PaperSchedule(), 100, np.random.default_rng(rep + 1),
                   {}, progress, f"seed {rep}, {labels} labels")
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
    (out / "run.json").write_text(json.dumps({"experiment": "measures", "dataset": dataset, "seconds": round(seconds, 1),
                                              "timing": timing, "widths": widths, "seeds": seeds}, indent=2))
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
        for labels, st in styles.items():
            t = table[table.labels == labels]
            v = t[name].to_numpy(dtype=float)
            ax.plot(t.width, v, **st)
            if reps > 1:
                g = raw[raw.labels == labels].groupby("width", sort=False)[name]
                ax.fill_between(t.width, g.min().to_numpy(), g.max().to_numpy(), color=st["color"], alpha=0.15)
        ax.set_title(label, fontsize=10)
        ax.set_xscale("log", base=2)
        vals = table[name].to_numpy(dtype=float)
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
                      lrs=(0.03, 0.1, 0.3), unbalance=10.0, seeds=(0, 1, 2), figure=None, progress=True, seed=None):
    """Path-SGD against momentum SGD (both with the paper's schedule, lr0 from ``lrs`` chosen per
    width and repetition by validation error), from the standard and from an unbalanced
    initialization, one repetition per seed (the initial weights and the unbalancing factors;
    all networks see the same batches). Every variant of one optimizer is one packed model.
    Writes ``history.npz`` (every network's train / val / test error and loss per epoch),
    ``results.csv`` (per method, init, seed and width: final and early-stopped test error, the
    chosen lr), ``run.json`` and the figure; returns (results, invariance gaps, seconds)."""
    import pandas as pd
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    widths = list(widths or POW2[:11])
    seeds = [seed] if seed is not None else list(seeds)
    t_start = time.perf_counter()
    ds = D.load(dataset, data_dir=data_dir, n_train=2000, n_val=2000, n_test=1000)
    inits = ("standard", "unbalanced")
    # networks (init, seed, lr, width), width fastest; the same initial weights for every lr and
    # both inits of a seed, which differ only by the function-preserving rescaling
    combos = [(ini, rep, lr, H) for ini in inits for rep in seeds for lr in lrs for H in widths]
    net_widths = [c[3] for c in combos]
    net_seeds = np.array([c[1] * 1000 + widths.index(c[3]) for c in combos])
    net_lr = np.array([c[2] for c in combos])
    factors = np.ones(sum(net_widths))
    start = 0
    for c, H in zip(combos, net_widths):
        if c[0] == "unbalanced":
            rng = np.random.default_rng([c[1], 7, widths.index(H)])
            factors[start:start + H] = np.exp(rng.uniform(-math.log(unbalance), math.log(unbalance), H))
        start += H
    models = []
    for cls in (MomentumSGD, PathSGD):
        model = PackedMLP(net_widths, ds.num_features, ds.num_classes, seed=net_seeds)
        model.U *= factors[:, None].astype(model.dtype)
        model.V /= factors[:, None].astype(model.dtype)
        models.append((model, cls(model, net_lr, 0.5), net_lr))
    evals = {"train": (ds.X_train, ds.y_train), "val": (ds.X_val, ds.y_val), "test": (ds.X_test, ds.y_test)}
    hist = _train(models, ds.X_train, ds.y_train, epochs, PaperSchedule(), 100, np.random.default_rng(1),
                  evals, progress, f"SGD and Path-SGD, {len(combos)} networks each")
    np.savez_compressed(out / "history.npz", **{f"{m}_{s}_{q}": hist[i][s][q]
                                                for i, m in enumerate(("sgd", "path_sgd"))
                                                for s in evals for q in ("error", "loss")},
                        widths=np.array(net_widths), lr=net_lr, seed=np.array([c[1] for c in combos]),
                        init=np.array([c[0] for c in combos]))
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
                    rows.append({"method": method, "init": ini, "seed": rep, "width": H,
                                 "lr_final": combos[nets[f]][2], "train_final": train[-1, f],
                                 "test_final": test[-1, f], "lr_early": combos[nets[e_net]][2],
                                 "epoch_early": int(e_ep), "test_early": test[e_ep, e_net],
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


# ============================================================================ cost in a sweep
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
    sweep's work (20 steps of 100 samples, then train / val / test evaluation) and of each set
    of measures (``COST_SETS``) on the same model, best of ``epochs`` rounds each (the perturbed
    ones, end-of-training measures, timed once; skipped without ``perturbed``). Returns a
    DataFrame with the ratio of each to the epoch."""
    import pandas as pd
    from ..measures import INIT, WEIGHT
    widths = list(widths or POW2)
    ds = D.load(dataset, data_dir=data_dir, n_train=2000, n_val=2000, n_test=1000)
    model = PackedMLP(widths, ds.num_features, ds.num_classes, seed=seed)
    init = model.copy()
    opt = MomentumSGD(model, 0.1, 0.5)
    rng = np.random.default_rng(seed)
    best_train = best_epoch = float("inf")
    for _ in range(epochs):
        t0 = time.perf_counter()
        order = rng.permutation(len(ds.y_train))
        for i in range(0, len(order), 100):
            opt.step(ds.X_train[order[i:i + 100]], ds.y_train[order[i:i + 100]])
        t1 = time.perf_counter()
        for Xs, ys in ds.splits().values():
            model.evaluate(Xs, ys, batch_size=256)
        t2 = time.perf_counter()
        best_train, best_epoch = min(best_train, t1 - t0), min(best_epoch, t2 - t0)
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


# ============================================================================ entry
def main(argv=None, prog="pyireg reproduce", experiments=("measures", "pathsgd", "cost")) -> int:
    p = argparse.ArgumentParser(prog=prog,
                                description="Experiments of the thesis: complexity measures, Path-SGD")
    p.add_argument("experiment", choices=list(experiments),
                   help="measures: every measure against width, true and random labels; pathsgd: Path-SGD "
                        "against SGD" + ("; cost: what recording measures every epoch costs a sweep"
                                         if "cost" in experiments else ""))
    p.add_argument("--out", default=None, help="output folder (default results/thesis-<experiment>)")
    p.add_argument("--figure", default=None, help="figure path (default <out>/<experiment>.png)")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--widths", type=widths_arg, default=None, metavar="LIST",
                   help="'1,2,4', '1:1024' or 'pow2:4096' (default pow2:2048 for measures and cost, pow2:1024 "
                        "for pathsgd)")
    p.add_argument("--epochs", type=int, default=60, help="epochs of the paper's schedule (true labels)")
    p.add_argument("--random-epochs", type=int, default=None,
                   help="measures: epochs on random labels (default 150, enough to fit them)")
    p.add_argument("--seed", type=int, default=None,
                   help="one repetition with this seed (default: three, seeds 0, 1, 2)")
    p.add_argument("--threads", type=int, default=None, help="native threads (default: all cores)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--cheap", action="store_true", help="cost: skip the sharpness and PAC-Bayes timings")
    a = p.parse_args(argv)
    if a.threads is not None:
        from .. import set_num_threads
        set_num_threads(a.threads)
    widths = a.widths
    out = a.out or f"results/thesis-{a.experiment}"
    common = dict(dataset=a.dataset, data_dir=a.data_dir, widths=widths, epochs=a.epochs, figure=a.figure,
                  progress=not a.quiet)
    if a.experiment == "cost":
        df = measures_cost(dataset=a.dataset, data_dir=a.data_dir, widths=widths, seed=a.seed or 0,
                           perturbed=not a.cheap, progress=not a.quiet)
        print(df.to_string(index=False))
        return 0
    if a.experiment == "measures":
        extra = {} if a.random_epochs is None else {"random_epochs": a.random_epochs}
        _, summary = reproduce_measures(out, seed=a.seed, **common, **extra)
        print(summary.to_string(index=False))
    else:
        res, inv, _ = reproduce_pathsgd(out, seed=a.seed, **common)
        print(pathsgd_table(res).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print("test-error gap between the two initializations:", inv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
