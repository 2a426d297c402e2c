"""Per-network summaries of a sweep's history: final and early-stopped errors, the weight decay
chosen by validation, mean and spread over repetitions. Pure pandas, below both the experiments
(which write histories) and the plots (which draw them)."""
from __future__ import annotations

import numpy as np


def history_problem(history) -> str | None:
    """What makes ``history`` unfit to summarize (no rows; NaN or inf errors), or None."""
    if len(history) == 0:
        return "no rows to summarize (no epoch finished)"
    for col in ("train_error", "val_error", "test_error"):
        bad = ~np.isfinite(np.asarray(history[col], dtype=np.float64))
        if bad.any():           # a sweep records a diverged network's errors as 1.0, never NaN
            return (f"{col} holds NaN or inf (first in row {int(np.flatnonzero(bad)[0])}); errors are fractions in "
                    "[0, 1]: drop or fill those rows first")
    return None


def summarize(history, choose_weight_decay: bool = True):
    """Per-network summaries, then mean and standard deviation over repetitions.

    For each (repetition, network): the final epoch's errors; the early-stopped errors (at the
    first epoch of least validation error). With several weight decays and
    ``choose_weight_decay``, also the weight decay chosen per (repetition, width, lr scale) by
    the least early-stopped validation error, reported as weight_decay = "chosen".
    Returns a DataFrame indexed by (weight_decay, lr_scale, width) with <metric>_mean / _std.
    The final errors are those of the last recorded epoch of each network, whatever its weight
    decay: "test (final)" of a row with weight decay 0 is the unregularized network's.
    """
    import pandas as pd
    if hasattr(history, "history") and not hasattr(history, "columns"):     # a SweepResult
        history = history.history
    why = history_problem(history)
    if why is not None:
        raise ValueError(f"history: {why}")
    h = history.sort_values(["repetition", "network", "epoch"])
    keys = ["repetition", "network", "width", "weight_decay", "lr_scale"]
    g = h.groupby(keys, sort=False)
    final = g.tail(1).set_index(keys)
    best = h.loc[g["val_error"].idxmin()].set_index(keys)
    per = pd.DataFrame({
        "train_error_final": final["train_error"], "test_error_final": final["test_error"],
        "val_error_final": final["val_error"],
        "train_error_es": best["train_error"], "test_error_es": best["test_error"],
        "val_error_es": best["val_error"], "epoch_es": best["epoch"],
    }).reset_index()
    per["weight_decay"] = per["weight_decay"].astype(object)
    if choose_weight_decay and per["weight_decay"].nunique() > 1:
        idx = per.groupby(["repetition", "width", "lr_scale"])["val_error_es"].idxmin()
        chosen = per.loc[idx].copy()
        chosen["chosen_weight_decay"] = chosen["weight_decay"].astype(float)
        chosen["weight_decay"] = "chosen"
        per = pd.concat([per, chosen], ignore_index=True)
    cols = [c for c in per.columns if c.endswith(("_final", "_es")) or c == "chosen_weight_decay"]
    agg = per.groupby(["weight_decay", "lr_scale", "width"])[cols].agg(["mean", "std"])
    agg.columns = [f"{a}_{b}" for a, b in agg.columns]
    agg["repetitions"] = per.groupby(["weight_decay", "lr_scale", "width"]).size()
    return agg
