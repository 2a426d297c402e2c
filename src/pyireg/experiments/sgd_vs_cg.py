"""Figure 1's protocol trained with momentum SGD and with batch conjugate gradient side by side
(paper, Section 2: "We also tried training using batch conjugate gradient descent and observed
almost identical behavior"): the same widths, data and seeds, two sweeps of the one training
loop, one comparison table (train / test error per width for each optimizer and the
difference) and one figure.

Files of ``out``: ``sgd/`` and ``cg/`` (sweep directories: history, config, checkpoints; they
resume), ``comparison.csv`` (full precision), ``comparison.md``, ``comparison.png`` and
``figure.json`` (``pyireg plot`` draws the two sweeps).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .. import data as D
from ..schedule import ConstantSchedule, PaperSchedule
from ._common import markdown_table, pyplot, save_figure
from .stopping import parse_stop_when
from .store import Disk, check_reproduction
from .sweep import sweep

ROWS = ("sgd", "cg")
LABELS = {"sgd": "momentum SGD (batch 100, the paper's schedule)", "cg": "batch conjugate gradient (full batch)"}
FULL = dict(widths=tuple(2 ** i for i in range(12)), epochs=60, cg_epochs=100, n_train=None, n_val=None, n_test=None)
QUICK = dict(widths=(1, 4, 16, 64), epochs=10, cg_epochs=20, n_train=400, n_val=200, n_test=200)


def comparison_table(histories: dict):
    """Per width: each optimizer's final training and test error (mean over repetitions of the
    last epoch's rows) and the difference CG - SGD; with a stopping rule, also how many
    repetitions converged (``*_converged``) and their mean first epoch of the streak
    (``*_converged_epoch``, NaN when none did)."""
    import pandas as pd
    cols = {}
    for name, h in histories.items():
        last = h[h["epoch"] == h.groupby("repetition")["epoch"].transform("max")]
        g = last.groupby("width")
        cols[f"{name}_train_error"] = g["train_error"].mean()
        cols[f"{name}_test_error"] = g["test_error"].mean()
        if "converged_epoch" in last.columns:
            # repetitions that converged, and their mean first epoch of the streak (-1: never;
            # the max over repetitions hid a -1 behind another repetition's epoch)
            done = last["converged_epoch"] >= 0
            cols[f"{name}_converged"] = done.groupby(last["width"]).sum()
            cols[f"{name}_converged_epoch"] = last["converged_epoch"].where(done).groupby(last["width"]).mean()
    t = pd.DataFrame(cols)
    t["diff_train_error"] = t["cg_train_error"] - t["sgd_train_error"]
    t["diff_test_error"] = t["cg_test_error"] - t["sgd_test_error"]
    t.index.name = "width"
    return t.reset_index()


def summary_lines(table) -> list:
    """The comparison the paper describes, in words."""
    def first_zero(col):
        z = table[table[col] == 0]
        return f"H = {int(z['width'].iloc[0])}" if len(z) else "no width"
    worst = table.loc[table["diff_test_error"].abs().idxmax()]
    best = {n: table.loc[table[f"{n}_test_error"].idxmin()] for n in ROWS}
    return [
        "test error vs width, SGD: " + ", ".join(f"{e:.4f}" for e in table["sgd_test_error"])
        + f" (H = {', '.join(str(int(w)) for w in table['width'])})",
        "test error vs width, CG:  " + ", ".join(f"{e:.4f}" for e in table["cg_test_error"]),
        f"largest |test error difference| {abs(worst['diff_test_error']):.4f} at H = {int(worst['width'])}; mean "
        f"|difference| {table['diff_test_error'].abs().mean():.4f}",
        f"zero training error from {first_zero('sgd_train_error')} (SGD) and {first_zero('cg_train_error')} (CG); "
        f"least test error {best['sgd']['sgd_test_error']:.4f} at H = {int(best['sgd']['width'])} (SGD), "
        f"{best['cg']['cg_test_error']:.4f} at H = {int(best['cg']['width'])} (CG)",
    ]


def plot_comparison(table, path, title=""):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for name, style in (("sgd", "o-"), ("cg", "s--")):
        axes[0].plot(table["width"], table[f"{name}_test_error"], style, label=f"{name.upper()} test")
        axes[0].plot(table["width"], table[f"{name}_train_error"], style, alpha=0.5, label=f"{name.upper()} train")
    axes[0].set_ylabel("error (last epoch)")
    axes[0].set_title(title or "Figure 1's protocol: SGD vs batch CG")
    axes[1].axhline(0, color="gray", lw=0.8)
    axes[1].plot(table["width"], table["diff_test_error"], "o-", label="test")
    axes[1].plot(table["width"], table["diff_train_error"], "s--", label="train")
    axes[1].set_ylabel("error of CG - error of SGD")
    axes[1].set_title("difference")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("hidden units H")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def reproduce_sgd_vs_cg(out="results/sgd-vs-cg", *, dataset="mnist5k", data_dir=None, widths=None, seeds=(0,),
                        epochs=None, cg_epochs=None, cg_lr=1.0, n_train=None, n_val=None, n_test=None,
                        stop_when=None, patience=1, resume=False, progress=True, seed=None, figure=None,
                        quick=False):
    """Figure 1's protocol (every width of ``widths``, no explicit regularization) with momentum
    SGD (batch 100, the paper's schedule, ``epochs``) and with batch conjugate gradient
    (``cg_epochs`` full-batch iterations, first trial step ``cg_lr``), the same data,
    initializations (seeds) and widths. The settings left None take FULL's values (widths
    1..2048 in powers of two, 60 epochs, 100 CG iterations, the data set's split), or QUICK's
    with ``quick`` (a run of seconds on 400 embedded digits). ``stop_when``, ``patience``: both
    train each network to convergence, their epochs being the caps. Returns (table, summary
    lines, figure path, heading)."""
    given = dict(widths=widths, epochs=epochs, cg_epochs=cg_epochs, n_train=n_train, n_val=n_val, n_test=n_test)
    base = QUICK if quick else FULL
    given = {k: (base[k] if v is None else v) for k, v in given.items()}
    widths = list(given["widths"])
    seeds = [seed] if seed is not None else list(seeds)
    parse_stop_when(stop_when, patience)
    out = Path(out)
    check_reproduction(out, "sgd-vs-cg", ROWS, resume)
    if figure is not None:
        from ._common import check_writable
        from ..plots import check_figure_suffix
        check_writable(Path(figure).parent if str(Path(figure).parent) else Path("."), "figure", "path")
        check_figure_suffix(figure, "figure")
    ds = D.load(dataset, data_dir=data_dir, n_train=given["n_train"], n_val=given["n_val"], n_test=given["n_test"])
    n = len(ds.y_train)
    common = dict(seeds=seeds, progress=progress, resume=resume, stop_when=stop_when, patience=patience)
    t0 = time.perf_counter()
    results = {
        "sgd": sweep(ds, widths, epochs=given["epochs"], schedule=PaperSchedule(), out=out / "sgd", tag="sgd",
                     **common),
        "cg": sweep(ds, widths, epochs=given["cg_epochs"], optimizer="cg", batch_size=n,
                    schedule=ConstantSchedule(cg_lr, 0.0), out=out / "cg", tag="cg", **common),
    }
    seconds = time.perf_counter() - t0
    table = comparison_table({k: r.history for k, r in results.items()})
    lines = summary_lines(table)
    table.to_csv(out / "comparison.csv", index=False)
    head = (f"SGD vs CG on Figure 1's protocol: {ds.info.get('name', dataset)}, {n} training samples, "
            f"{len(seeds)} repetition(s); SGD {given['epochs']} epochs, CG {given['cg_epochs']} iterations "
            f"(first step {cg_lr:g})" + (f"; stopping rule {stop_when}, patience {patience}" if stop_when else ""))
    md = f"{head}\n\n{markdown_table(table)}\n\n" + "\n".join(f"- {x}" for x in lines) + "\n"
    Disk().write_atomic(out / "comparison.md", lambda f: f.write(md.encode()))
    png = plot_comparison(table, figure or out / "comparison.png",
                          f"{ds.info.get('name', dataset)}: SGD vs batch CG, test error vs width")
    meta = {"figure": "sgd-vs-cg", "dataset": dataset, "seconds": round(seconds, 1), "quick": bool(quick),
            "settings": {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in given.items()},
                         "widths": widths, "seeds": seeds, "cg_lr": cg_lr, "stop_when": stop_when,
                         "patience": patience}}
    Disk().write_atomic(out / "figure.json", lambda f: f.write(json.dumps(meta, indent=2).encode()))
    return table, lines, png, head


def equal_to_histories(out) -> bool:
    """Whether comparison.csv's numbers are those of the two histories (a check for readers of
    a saved comparison)."""
    import pandas as pd

    from .results import load_results
    saved = pd.read_csv(Path(out) / "comparison.csv")
    fresh = comparison_table({r: load_results(Path(out) / r).history for r in ROWS})
    return list(saved.columns) == list(fresh.columns) and np.allclose(saved.to_numpy(float), fresh.to_numpy(float),
                                                                      rtol=0, atol=0, equal_nan=True)
