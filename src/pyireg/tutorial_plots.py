"""Figures of the tutorial demos that are not sweeps: the edge of stability (hessian.py), Adam's
two weight decays, spectral bias and the temperature of SGD (experiments/tutorial_extra.py).
Each takes the tidy table its experiment returns and writes one PNG (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, out_file):
    out_file = Path(out_file)
    fig.savefig(out_file, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return out_file


def plot_edge_of_stability(table, out_file):
    """Top Hessian eigenvalue (top row) and training loss (bottom row) against the step, one
    column per width, one colour per learning rate, with the 2 / lr lines dashed."""
    plt = _plt()
    widths, lrs = sorted(table["width"].unique()), sorted(table["lr"].unique())
    fig, axes = plt.subplots(2, len(widths), figsize=(4.2 * len(widths), 6.5), squeeze=False, sharex=True)
    for c, w in enumerate(widths):
        for i, lr in enumerate(lrs):
            t = table[(table["width"] == w) & (table["lr"] == lr)].sort_values("step")
            axes[0, c].plot(t["step"], t["hessian_top"], "o-", ms=3, color=f"C{i}", label=f"lr {lr:g}")
            axes[0, c].axhline(2.0 / lr, color=f"C{i}", ls="--", lw=1)
            axes[1, c].semilogy(t["step"], t["loss"], "-", color=f"C{i}")
        top = np.nanmax(table["hessian_top"].to_numpy(dtype=float))
        axes[0, c].set_ylim(0, 1.25 * top if np.isfinite(top) else None)
        axes[0, c].set_title(f"width {w}")
        axes[1, c].set_xlabel("step (full-batch GD)")
    axes[0, 0].set_ylabel("top Hessian eigenvalue (dashed: 2 / lr)")
    axes[1, 0].set_ylabel("training loss")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Edge of stability: the sharpness rises to 2 / lr and hovers there")
    return _save(fig, out_file)


def plot_adam_weight_decay(table, out_file):
    """The distance between the L2-penalty and the decoupled-decay runs (relative to the weights'
    norm) against the step, for SGD and for Adam, one line per width."""
    plt = _plt()
    opts = list(dict.fromkeys(table["optimizer"]))
    fig, axes = plt.subplots(1, len(opts), figsize=(4.5 * len(opts), 3.8), squeeze=False, sharey=True)
    for c, o in enumerate(opts):
        for i, w in enumerate(sorted(table["width"].unique())):
            t = table[(table["optimizer"] == o) & (table["width"] == w)].sort_values("step")
            # zeros (SGD's runs are the same up to rounding) drawn at the axis' floor
            axes[0, c].semilogy(t["step"], np.maximum(t["relative_distance"], 1e-17), "-", color=f"C{i}",
                                label=f"width {w}")
        axes[0, c].set_title(o)
        axes[0, c].set_xlabel("step")
    axes[0, 0].set_ylabel("||w_L2 - w_decoupled|| / ||w_L2||")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("L2 penalty vs decoupled weight decay")
    return _save(fig, out_file)


def plot_spectral_bias(table, out_file):
    """Relative error of each frequency component of the fit against the epoch, one panel per
    width, one colour per frequency."""
    plt = _plt()
    widths, freqs = sorted(table["width"].unique()), sorted(table["frequency"].unique())
    fig, axes = plt.subplots(1, len(widths), figsize=(4.2 * len(widths), 3.8), squeeze=False, sharey=True)
    for c, w in enumerate(widths):
        for i, f in enumerate(freqs):
            t = table[(table["width"] == w) & (table["frequency"] == f)].sort_values("epoch")
            axes[0, c].plot(t["epoch"], t["relative_error"], "-", color=f"C{i}", label=f"frequency {f:g}")
        axes[0, c].set_title(f"width {w}")
        axes[0, c].set_xlabel("epoch")
        axes[0, c].set_ylim(0, 1.1)
    axes[0, 0].set_ylabel("relative error of the component")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Spectral bias: low frequencies are learned first")
    return _save(fig, out_file)


def plot_langevin(table, out_file):
    """Final top Hessian eigenvalue and test loss against the temperature lr / |B|, SGD and
    full-batch GD with matched Gaussian noise side by side."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for i, (method, marker) in enumerate((("sgd", "o"), ("gd+noise", "s"))):
        t = table[table["method"] == method]
        axes[0].loglog(t["temperature"], t["hessian_top"], marker, color=f"C{i}", label=method)
        axes[1].semilogx(t["temperature"], t["test_loss"], marker, color=f"C{i}", label=method)
    axes[0].set_xlabel("temperature lr / |B|")
    axes[1].set_xlabel("temperature lr / |B|")
    axes[0].set_ylabel("final top Hessian eigenvalue")
    axes[1].set_ylabel("final test loss")
    axes[0].legend(fontsize=8)
    fig.suptitle("SGD and Langevin GD at matched temperature")
    return _save(fig, out_file)
