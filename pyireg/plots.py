"""Figures laid out like the paper's: error against the number of hidden units on a log axis."""
from __future__ import annotations

import json
from pathlib import Path

from .experiments.sweep import load_results, summarize

ROWS = {"original": "original labels", "censored": "censored labels", "censored_noise": "censored + 5% label noise"}


def _panel(ax, summ, wd, title, label_suffix=""):
    s = summ.xs(wd, level="weight_decay").xs(1.0, level="lr_scale")
    H = s.index.to_numpy()
    for col, label, style in (("train_error_final", "training", "o-"), ("test_error_final", "test (final)", "s-"),
                              ("test_error_es", "test (early stopping)", "^--")):
        ax.errorbar(H, s[col + "_mean"], yerr=s[col + "_std"].fillna(0), fmt=style, ms=4, capsize=2,
                    label=label + label_suffix)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("hidden units H")
    ax.set_ylabel("error")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_results(path, out_file=None):
    """Plot a saved experiment directory: a figure directory with original/ censored/
    censored_noise/ sub-sweeps (Figure 2), original/ alone (Figure 1), or one sweep. Returns
    the path of the PNG written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path = Path(path)
    meta = json.loads((path / "figure.json").read_text()) if (path / "figure.json").exists() else {}
    rows = [r for r in ROWS if (path / r / "history.parquet").exists()]
    if not rows:
        rows = [None]
    summaries = {r: summarize((load_results(path / r) if r else load_results(path)).history) for r in rows}
    first = summaries[rows[0]]
    wds = list(dict.fromkeys(first.index.get_level_values("weight_decay")))
    has_wd = len(wds) > 1
    ncols = 2 if has_wd else 1
    fig, axes = plt.subplots(len(rows), ncols, figsize=(5.2 * ncols, 3.6 * len(rows)), squeeze=False)
    name = meta.get("dataset", "")
    for i, r in enumerate(rows):
        summ = summaries[r]
        title = ROWS.get(r, "sweep") + (f" ({name})" if name else "")
        _panel(axes[i][0], summ, 0.0, title + (", no weight decay" if has_wd else ""))
        if ncols == 2:
            if "chosen" in summ.index.get_level_values("weight_decay"):
                _panel(axes[i][1], summ, "chosen", title + ", wd chosen by val.")
            else:
                axes[i][1].axis("off")
    ymax = max(ax.get_ylim()[1] for row in axes for ax in row if ax.axison)
    for row in axes:
        for ax in row:
            if ax.axison:
                ax.set_ylim(0, ymax)
    fig.tight_layout()
    out_file = Path(out_file) if out_file else path / f"{meta.get('figure', 'sweep')}.png"
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return out_file


def results_table(path) -> str:
    """A markdown table of the mean errors by width for each row of a figure directory."""
    path = Path(path)
    rows = [r for r in ROWS if (path / r / "history.parquet").exists()] or [None]
    lines = []
    for r in rows:
        summ = summarize((load_results(path / r) if r else load_results(path)).history)
        lines.append(f"\n**{ROWS.get(r, 'sweep')}**\n")
        wds = list(dict.fromkeys(summ.index.get_level_values("weight_decay")))
        head = "| H | train (final) | test (final) | test (early stop) |"
        if "chosen" in wds:
            head += " test, wd chosen (early stop) | chosen wd (mean) |"
        lines += [head, "|" + " ---: |" * (head.count("|") - 1)]
        base = summ.xs(0.0, level="weight_decay").xs(1.0, level="lr_scale")
        ch = summ.xs("chosen", level="weight_decay").xs(1.0, level="lr_scale") if "chosen" in wds else None
        for H, row in base.iterrows():
            line = (f"| {H} | {row.train_error_final_mean:.4f} | {row.test_error_final_mean:.4f} "
                    f"± {_sd(row.test_error_final_std)} | {row.test_error_es_mean:.4f} ± {_sd(row.test_error_es_std)} |")
            if ch is not None:
                c = ch.loc[H]
                line += f" {c.test_error_es_mean:.4f} ± {_sd(c.test_error_es_std)} | {c.chosen_weight_decay_mean:.1e} |"
            lines.append(line)
    return "\n".join(lines)


def _sd(x) -> str:
    return "—" if x != x else f"{x:.4f}"
