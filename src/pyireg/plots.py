"""Figures laid out like the paper's: error against the number of hidden units on a log axis.

Each sweep (and each lr scale of it) is one row of two panels: all errors on a linear axis from
0, and the test errors alone on an axis zoomed to their range, where differences of a
percentage point (9% against 10%) are visible. Titles come from the data and the settings the
sweep saved (data set, labels, noise level, split, epochs, repetitions); a sweep that has not
finished is labelled so, in the title and in the table.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from .summary import history_problem, summarize

ROWS = ("original", "censored", "censored_noise")
_LINES = {  # summary column -> (legend label, marker/line style, colour)
    "train_error_final": ("training (final)", "o-", "C0"),
    "test_error_final": ("test (final)", "s-", "C1"),
    "test_error_es": ("test (early stopping)", "^--", "C2"),
    "chosen:test_error_es": ("test, weight decay chosen by validation (early stopping)", "D-.", "C3"),
}
ZOOM = 2.0          # the zoomed panel shows test errors up to ZOOM x the least one


def _sources(source, meta=None):
    """[(row key or None, result)] and the figure's metadata, from a result (anything with a
    ``history`` DataFrame and a ``config`` dict, such as a SweepResult), a history DataFrame, or
    a dict of them. Directories are read by the caller (pyireg.experiments.results.load_source,
    what ``pyireg plot`` does): this module draws results and never imports the experiments."""
    meta = dict(meta or {})
    if isinstance(source, dict):
        rows = []
        for k, v in source.items():
            rows.append((k, _sources(v)[0][0][1]))
        if not rows:
            raise ValueError("source: expected at least one sweep, got an empty dict")
        return rows, meta
    if hasattr(source, "columns") and hasattr(source, "groupby"):       # a pandas DataFrame
        missing = {"repetition", "network", "width", "weight_decay", "lr_scale", "epoch", "train_error",
                   "val_error", "test_error"} - set(source.columns)
        if missing:
            raise ValueError(f"source: a history DataFrame needs the columns {sorted(missing)}")
        why = history_problem(source)                   # summarize's checks, named as this argument
        if why is not None:
            raise ValueError(f"source: the history's {why}")
        return [(None, _Frame(source, {}))], meta
    if hasattr(source, "history") and hasattr(source, "config"):
        return [(None, source)], meta
    if isinstance(source, (str, Path)):
        raise TypeError(f"source: {source} is a path; read it first with pyireg.load_results(path) (one sweep) or "
                        "pyireg.experiments.results.load_source(path) (a figure's directory), or use pyireg plot")
    raise TypeError(f"source: expected a SweepResult, a history DataFrame or a dict of them, "
                    f"got {type(source).__name__}")


class _Frame:
    """A bare history drawn as a result with no saved settings."""

    def __init__(self, history, config):
        self.history, self.config = history, config


def _done(res) -> dict:
    h = res.history
    return {} if len(h) == 0 else {int(k): int(v) for k, v in h.groupby("repetition")["epoch"].max().items()}


def _complete(res) -> bool:
    done, cfg = _done(res), res.config
    if not cfg or "seeds" not in cfg:
        return len(set(done.values())) <= 1
    return all(done.get(int(s), 0) == cfg["epochs"] for s in cfg["seeds"])


def _labels(res, key) -> str:
    cfg = res.config
    info = cfg.get("dataset", {}) if cfg else {}
    cens = info.get("censor")
    noise = cfg.get("label_noise", 0.0) if cfg else 0.0
    if cens:
        text = f"censored labels (H0 = {cens['h0']} teacher, {cens['changed_total']:,} changed)"
    elif key in ("censored", "censored_noise"):
        text = "censored labels"
    else:
        text = "original labels"
    if noise:
        text += f" + {100 * noise:g}% label noise (drawn per repetition)"
    elif key == "censored_noise":
        text += " + label noise"
    return text


def progress_note(res) -> str:
    """'' for a finished sweep, else what is missing, e.g. 'INCOMPLETE: 2 of 5 repetitions
    finished, seed 2 at epoch 13 of 60'."""
    if _complete(res):
        return ""
    done = _done(res)
    cfg = res.config
    if not cfg:
        return f"INCOMPLETE: repetitions stopped at different epochs ({sorted(set(done.values()))})"
    E, seeds = cfg["epochs"], cfg["seeds"]
    full = sum(done.get(s, 0) == E for s in seeds)
    part = [s for s in seeds if 0 < done.get(s, 0) < E]
    text = f"INCOMPLETE: {full} of {len(seeds)} repetitions finished"
    if part:
        text += f", seed {part[0]} at epoch {done[part[0]]} of {E}"
    return text + " (the last recorded epoch is shown as final)"


def describe(res, key=None, lr_scale=None) -> list[str]:
    """Title lines of a sweep from its saved settings: data and labels, then split, epochs,
    repetitions and the weight decays, then (if unfinished) what is missing."""
    cfg = res.config
    info = cfg.get("dataset", {}) if cfg else {}
    name = info.get("name") or (cfg.get("tag") if cfg else "") or "sweep"
    lines = [f"{name}: {_labels(res, key)}"]
    h = res.history
    reps = h["repetition"].nunique()
    parts = []
    if info.get("n_train"):
        parts.append(f"{info['n_train']:,} train / {info.get('n_val', 0):,} validation")
    if cfg:
        opt = cfg.get("optimizer", "momentum_sgd")
        parts.append(_epochs(cfg["epochs"]) + ("" if opt == "momentum_sgd" else f" of {opt}"))
        if cfg.get("stop_when"):
            parts.append(f"to convergence ({cfg['stop_when']['stop_when']}, patience {cfg['stop_when']['patience']})")
        nrep = len(cfg["seeds"])
        parts.append(f"{nrep} repetition{'s' if nrep > 1 else ''}"
                     + (", split redrawn" if cfg.get("resample_split") else ""))
    else:
        parts.append(f"{_epochs(h['epoch'].max())}, {reps} repetition{'s' if reps > 1 else ''}")
    wds = sorted(h["weight_decay"].unique().tolist())
    if len(wds) > 1:
        parts.append("weight decay from {" + ", ".join(f"{w:g}" for w in wds) + "}")
    elif wds[0]:
        parts.append(f"weight decay {wds[0]:g}")
    if lr_scale is not None and h["lr_scale"].nunique() > 1:
        parts.append(f"lr scale {lr_scale:g}")
    lines.append(", ".join(parts))
    note = progress_note(res)
    if note:
        lines.append(note)
    return lines


def _series(summ, wd, ls):
    s = summ.xs(wd, level="weight_decay").xs(ls, level="lr_scale")
    return s.index.to_numpy(), s


def _curves(res, ls):
    """{summary column: (H, mean, sd)} of the lines of one row."""
    summ = summarize(res.history)
    wds = list(dict.fromkeys(summ.index.get_level_values("weight_decay")))
    numeric = [w for w in wds if w != "chosen"]
    base = 0.0 if 0.0 in numeric else min(numeric)
    out = {}
    H, s = _series(summ, base, ls)
    for col in ("train_error_final", "test_error_final", "test_error_es"):
        out[col] = (H, s[col + "_mean"].to_numpy(), s[col + "_std"].fillna(0).to_numpy())
    if "chosen" in wds:
        H, s = _series(summ, "chosen", ls)
        out["chosen:test_error_es"] = (H, s["test_error_es_mean"].to_numpy(),
                                       s["test_error_es_std"].fillna(0).to_numpy())
    return out, base


def zoom_limits(values) -> tuple[float, float]:
    """y limits that show test errors from just below the least one up to ZOOM times it, so that
    differences of a percentage point near 10% fill a visible part of the axis."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    if lo <= 0:
        return 0.0, max(hi * 1.05, 0.01)
    top = min(hi, ZOOM * lo)
    pad = max(0.05 * (top - lo), 0.002)
    return max(0.0, lo - pad), top + pad


def _draw(ax, curves, cols, bands, base=None):
    """``base``: the weight decay of the final/early-stopped lines when the sweep has several
    (their labels then say so), None when it has one."""
    for col in cols:
        if col not in curves:
            continue
        H, m, sd = curves[col]
        label, style, colour = _LINES[col]
        if base is not None and not col.startswith("chosen:"):
            label += f", weight decay {base:g}"
        ax.plot(H, m, style, color=colour, ms=4, label=label)
        if bands and np.any(sd > 0):
            ax.fill_between(H, m - sd, m + sd, color=colour, alpha=0.15, linewidth=0)
    ax.set_xscale("log", base=2)
    from matplotlib.ticker import FuncFormatter
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("hidden units H")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)


def results_figure(source, meta=None):
    """A matplotlib Figure of a sweep or a figure's sweeps (see the module documentation);
    ``source`` is a SweepResult, a history DataFrame, or a dict of them (as
    ``reproduce_figure2`` and ``load_source`` return; ``meta``: the figure's figure.json).
    Needs no pyplot, so it leaves matplotlib's state alone; a notebook shows it inline."""
    from matplotlib.figure import Figure
    rows, meta = _sources(source, meta)
    panels = []
    for key, res in rows:
        if len(res.history) == 0:
            raise ValueError("source: a sweep with no finished epoch has nothing to plot")
        scales = sorted(res.history["lr_scale"].unique().tolist())
        for ls in scales:
            panels.append((key, res, ls))
    fig = Figure(figsize=(11.5, 3.9 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 2, squeeze=False)
    for (key, res, ls), (left, right) in zip(panels, axes):
        curves, base = _curves(res, ls)
        if res.history["weight_decay"].nunique() == 1:
            base = None
        bands = res.history["repetition"].nunique() > 1
        _draw(left, curves, list(_LINES), bands, base)
        top = max(float(np.nanmax(m + sd)) for _, m, sd in curves.values())
        left.set_ylim(0, min(1.0, top * 1.05) if top > 0 else 1.0)
        left.set_ylabel("error")
        lines = [textwrap.fill(line, 78) for line in describe(res, key, ls)]    # within the panel's width
        left.set_title("\n".join(lines), fontsize=9, loc="left",
                       color="firebrick" if progress_note(res) else "black")
        test_cols = [c for c in _LINES if c != "train_error_final"]
        _draw(right, curves, test_cols, bands, base)
        right.set_ylim(*zoom_limits(np.concatenate([curves[c][1] for c in test_cols if c in curves])))
        right.set_ylabel("test error (zoomed)")
        right.set_title(f"test error, zoomed to [{right.get_ylim()[0]:.3f}, {right.get_ylim()[1]:.3f}]",
                        fontsize=9, loc="left")
    if meta.get("figure"):
        fig.suptitle(f"{meta['figure'].replace('figure', 'Figure ')} of Neyshabur, Tomioka & Srebro on "
                     f"{meta.get('dataset', '?')}", fontsize=11)
    elif meta.get("incomplete"):
        fig.suptitle(textwrap.fill(meta["incomplete"], 120), fontsize=10, color="firebrick")
    return fig


def plot_results(source, out_file=None, meta=None):
    """Plot a sweep: a SweepResult, a history DataFrame, or a dict of them (``meta``: the
    figure.json of a figure's directory). Returns the Figure (shown inline in a notebook), or,
    with ``out_file``, writes a PNG there and returns its path."""
    if out_file is not None:
        out_file = _check_out_file(out_file)
    fig = results_figure(source, meta)
    if out_file is None:
        return fig
    fig.savefig(out_file, dpi=110)
    return out_file


def check_figure_suffix(path, what: str) -> None:
    """A figure file's suffix is one of matplotlib's formats (none: .png is added)."""
    from matplotlib.backend_bases import FigureCanvasBase
    path = Path(path)
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix and path.suffix[1:].lower() not in formats:
        raise ValueError(f"{what}: {path.name} has the suffix {path.suffix}, not one of the figure formats "
                         f"({', '.join('.' + f for f in sorted(formats))})")


def _check_out_file(out_file) -> Path:
    """The file a figure goes to, checked before drawing: ".png" added when it has no suffix
    (matplotlib would add it without saying), a format matplotlib writes, an existing folder."""
    out_file = Path(out_file)
    if out_file.is_dir():
        raise IsADirectoryError(f"out_file: {out_file} is a directory; give a file name such as "
                                f"{out_file / 'sweep.png'}")
    if not out_file.suffix:
        out_file = out_file.with_suffix(".png")
    check_figure_suffix(out_file, "out_file")
    if not out_file.parent.is_dir():
        raise FileNotFoundError(f"out_file: the folder {out_file.parent} does not exist")
    return out_file


def results_table(source, meta=None) -> str:
    """A markdown table of the mean errors by width for each sweep (row) of ``source`` (as for
    plot_results), headed by its description. With several weight decays, the final and
    early-stopped columns are those of one weight decay (0 when swept), and the header says so."""
    rows, meta = _sources(source, meta)
    lines = [f"**{meta['incomplete']}**"] if meta.get("incomplete") else []
    for key, res in rows:
        summ = summarize(res.history)
        for ls in sorted(res.history["lr_scale"].unique().tolist()):
            lines.append("\n**" + " — ".join(describe(res, key, ls)) + "**\n")
            wds = list(dict.fromkeys(summ.index.get_level_values("weight_decay")))
            numeric = [w for w in wds if w != "chosen"]
            base = 0.0 if 0.0 in numeric else min(numeric)
            head = "| H | train (final) | test (final) | test (early stop) |"
            if len(numeric) > 1:
                head = (f"| H | train (final, wd {base:g}) | test (final, wd {base:g}) | test (early stop, "
                        f"wd {base:g}) |")
            if "chosen" in wds:
                head += " test, wd chosen (early stop) | chosen wd (mean) |"
            lines += [head, "|" + " ---: |" * (head.count("|") - 1)]
            _, b = _series(summ, base, ls)
            ch = _series(summ, "chosen", ls)[1] if "chosen" in wds else None
            for H, row in b.iterrows():
                line = (f"| {H} | {row.train_error_final_mean:.4f} | {row.test_error_final_mean:.4f} "
                        f"± {_sd(row.test_error_final_std)} | {row.test_error_es_mean:.4f} "
                        f"± {_sd(row.test_error_es_std)} |")
                if ch is not None:
                    c = ch.loc[H]
                    line += (f" {c.test_error_es_mean:.4f} ± {_sd(c.test_error_es_std)} | "
                             f"{c.chosen_weight_decay_mean:.1e} |")
                lines.append(line)
            lines += _flag_notes(res.history, ls)
    return "\n".join(lines)


def _flag_notes(h, ls) -> list:
    """Footnotes of a table block (lr scale ``ls``): the networks that ended at chance or
    diverged, counted in that block's last epoch of each repetition, with their widths and
    weight decays."""
    h = h[h["lr_scale"] == ls]
    last = h[h["epoch"] == h.groupby("repetition")["epoch"].transform("max")]
    notes = []
    for col, what in (("at_chance", "ended at chance (training loss ln k)"),
                      ("diverged", "diverged (a loss became NaN or inf: its errors count as 1.0 from then on, "
                                   "its early-stopped ones come from before)")):
        if col not in last.columns or not last[col].any():
            continue
        bad = last[last[col].astype(bool)]
        widths = sorted(bad["width"].unique().tolist())
        wds = sorted(bad["weight_decay"].unique().tolist())
        shown = ", ".join(map(str, widths[:8])) + (", ..." if len(widths) > 8 else "")
        notes.append(f"\n{len(bad)} network(s) {what}: widths {shown}; weight decay "
                     f"{', '.join(f'{w:g}' for w in wds)}; see the {col} column")
    return notes


def _epochs(n) -> str:
    return f"{int(n)} epoch{'s' if int(n) != 1 else ''}"


def _sd(x) -> str:
    return "—" if x != x else f"{x:.4f}"
