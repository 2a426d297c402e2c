"""Width sweeps: widths x weight decays (x lr scales) trained together in one packed model per
repetition, with train / validation / test error, loss and weight norms recorded every epoch.

``balance_drift`` is sum_h |b_h(t) - b_h(0)| / sum_h (||u_h(0)||^2 + ||v_h(0)||^2) with
b_h = ||u_h||^2 - ||v_h||^2: gradient flow conserves every b_h exactly, so this measures how far
SGD's finite steps (and weight decay) moved the per-unit balance, by width and learning rate.

Results are a tidy pandas DataFrame (one row per network per epoch), written to Parquet after
every epoch together with a checkpoint, so that an interrupted sweep loses at most the epoch in
progress; ``resume=True`` continues it to the same numbers as an uninterrupted run (the data
order of epoch e of repetition r depends on (r, e) only, and the kernels are deterministic).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..model import PackedMLP
from ..optim import MomentumSGD
from ..schedule import PaperSchedule

METRICS = ["train_error", "train_loss", "val_error", "val_loss", "test_error", "test_loss"]


@dataclasses.dataclass
class SweepResult:
    history: "pd.DataFrame"   # noqa: F821  one row per (repetition, network, epoch)
    config: dict
    out: Path | None = None

    def summary(self, **kw):
        return summarize(self.history, **kw)


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    tmp = str(path) + ".tmp"
    write(tmp)
    os.replace(tmp, path)


def sweep(dataset, widths: Sequence[int], *, seeds: Sequence[int] = (0,), weight_decays: Sequence[float] = (0.0,),
          lr_scales: Sequence[float] = (1.0,), epochs: int = 40, batch_size: int = 100,
          schedule: PaperSchedule | None = None, init_std=None, out=None, resume: bool = False,
          progress: bool = True, tag: str = "", eval_batch: int = 512,
          on_epoch: Callable[[int, int], None] | None = None) -> SweepResult:
    """Train every combination of width x weight decay x lr scale for ``epochs`` epochs of the
    paper's protocol, once per seed in ``seeds`` (a repetition: its own initialization and data
    order), and record every epoch.

    Parameters
    ----------
    dataset : pyireg.data.Dataset
    widths, weight_decays, lr_scales : the grid; lr_scales multiply the schedule's lr.
    epochs, batch_size, schedule : the protocol (defaults: the paper's, batch 100).
    init_std : passed to PackedMLP (default 1/sqrt(fan_in) per layer).
    out : directory for ``history.parquet``, ``config.json`` and per-repetition checkpoints.
    resume : continue the sweep saved in ``out`` (its configuration must match).
    on_epoch : called as on_epoch(repetition, epoch) after each saved epoch (used by tests to
        interrupt a sweep).
    """
    import pandas as pd

    schedule = schedule or PaperSchedule()
    widths = [int(w) for w in widths]
    if not widths or min(widths) < 1:
        raise ValueError(f"widths: expected positive integers, got {widths!r}")
    if epochs < 1:
        raise ValueError(f"epochs: expected a positive integer, got {epochs!r}")
    if batch_size < 1 or batch_size > len(dataset.y_train):
        raise ValueError(f"batch_size: expected 1..{len(dataset.y_train)} (the training set size), got {batch_size}")
    if any(w < 0 for w in weight_decays):
        raise ValueError(f"weight_decays: expected non-negative values, got {list(weight_decays)}")
    grid = [(w, float(wd), float(ls)) for wd in weight_decays for ls in lr_scales for w in widths]
    config = {"dataset": dataset.info, "widths": widths, "seeds": [int(s) for s in seeds],
              "weight_decays": [float(w) for w in weight_decays], "lr_scales": [float(x) for x in lr_scales],
              "epochs": int(epochs), "batch_size": int(batch_size), "schedule": dataclasses.asdict(schedule),
              "init_std": None if init_std is None else np.asarray(init_std).tolist(), "tag": tag}
    out = Path(out) if out is not None else None
    rows_done = []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        cfg_path = out / "config.json"
        if resume and cfg_path.exists():
            saved = json.loads(cfg_path.read_text())
            if saved != json.loads(json.dumps(config)):
                raise ValueError(f"resume: the sweep in {out} was made with another configuration")
            if (out / "history.parquet").exists():
                rows_done = pd.read_parquet(out / "history.parquet").to_dict("records")
        elif not resume and (out / "history.parquet").exists():
            raise FileExistsError(f"out: {out} already holds a sweep; pass resume=True (--resume) or another directory")
        cfg_path.write_text(json.dumps(config, indent=2))

    N = len(grid)
    net_width = np.array([g[0] for g in grid])
    net_wd = np.array([g[1] for g in grid])
    net_ls = np.array([g[2] for g in grid])
    total = len(seeds) * epochs
    bar = _progress(total, progress, f"{tag or 'sweep'}: {N} networks x {len(seeds)} reps")
    history = list(rows_done)
    try:
        for rep in seeds:
            model = PackedMLP(net_width.tolist(), dataset.num_features, dataset.num_classes,
                              init_std=init_std, seed=int(rep))
            opt = MomentumSGD(model, schedule.lr(0) * net_ls, schedule.momentum(0), net_wd)
            start = 0
            balance0 = model.unit_balance()   # ||u_h||^2 - ||v_h||^2 at initialization
            scale0 = 2 * model.measures()["l2_penalty"]   # sum_h ||u_h||^2 + ||v_h||^2 per network
            ckpt = out / f"checkpoint_rep{rep}.npz" if out is not None else None
            if ckpt is not None and resume and ckpt.exists():
                z = np.load(ckpt)
                model.U[...], model.V[...] = z["U"], z["V"]
                opt.bufU[...], opt.bufV[...] = z["bufU"], z["bufV"]
                opt.diverged[...] = z["diverged"]
                start = int(z["epoch"])
                history = [r for r in history if r["repetition"] != rep or r["epoch"] <= start]
            elif out is not None:
                history = [r for r in history if r["repetition"] != rep]
            bar.update(start)
            for epoch in range(start, epochs):
                t0 = time.perf_counter()
                opt.lr = schedule.lr(epoch) * net_ls
                opt.momentum = schedule.momentum(epoch)
                perm = np.random.default_rng([int(rep), epoch]).permutation(len(dataset.y_train))
                X, y = dataset.X_train, dataset.y_train
                for i in range(0, len(perm) - batch_size + 1, batch_size):   # the paper drops no data at 2000/100
                    b = perm[i:i + batch_size]
                    opt.step(X[b], y[b])
                train_s = time.perf_counter() - t0
                ev = {}
                for split, (Xs, ys) in dataset.splits().items():
                    ev[split] = model.evaluate(Xs, ys, batch_size=eval_batch)
                drift = np.add.reduceat(np.abs(model.unit_balance() - balance0), model.offsets[:-1]) / scale0
                norms = model.measures()   # native, one pass over the weights, no copies
                nU, nV = norms["norm_U"], norms["norm_V"]
                for n in range(N):
                    history.append({
                        "repetition": int(rep), "network": n, "width": int(net_width[n]),
                        "weight_decay": float(net_wd[n]), "lr_scale": float(net_ls[n]), "epoch": epoch + 1,
                        "lr": float(opt.lr[n]), "momentum": float(opt.momentum[n]),
                        **{f"{s}_{m}": float(ev[s][j][n]) for s in ("train", "val", "test")
                           for j, m in enumerate(("error", "loss"))},
                        "norm_U": float(nU[n]), "norm_V": float(nV[n]), "balance_drift": float(drift[n]),
                        "diverged": bool(opt.diverged[n]),
                        "train_seconds": train_s})
                if out is not None:
                    state = dict(U=model.U, V=model.V, bufU=opt.bufU, bufV=opt.bufV, diverged=opt.diverged,
                                 epoch=epoch + 1)
                    _atomic_write(ckpt, lambda p: _savez(p, state))
                    df = pd.DataFrame(history)
                    _atomic_write(out / "history.parquet", lambda p: df.to_parquet(p, index=False))
                bar.update(1)
                bar.set_postfix(rep=rep, epoch=epoch + 1,
                                best_test=f"{min(ev['test'][0]):.3f}")
                if on_epoch is not None:
                    on_epoch(int(rep), epoch + 1)
    finally:
        bar.close()
    return SweepResult(pd.DataFrame(history), config, out)


def _savez(path, arrays) -> None:
    with open(path, "wb") as f:   # a file object: np.savez would append .npz to a path
        np.savez(f, **arrays)


def _progress(total, enabled, desc):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="epoch", disable=not enabled, leave=False)


def load_results(path) -> SweepResult:
    """Read a sweep saved in a directory (history.parquet + config.json)."""
    import pandas as pd
    path = Path(path)
    if not (path / "history.parquet").exists():
        raise FileNotFoundError(f"path: no history.parquet in {path}")
    config = json.loads((path / "config.json").read_text()) if (path / "config.json").exists() else {}
    return SweepResult(pd.read_parquet(path / "history.parquet"), config, path)


def summarize(history, choose_weight_decay: bool = True):
    """Per-network summaries, then mean and standard deviation over repetitions.

    For each (repetition, network): the final epoch's errors; the early-stopped errors (at the
    first epoch of least validation error). With several weight decays and
    ``choose_weight_decay``, also the weight decay chosen per (repetition, width, lr scale) by
    the least early-stopped validation error, reported as weight_decay = "chosen".
    Returns a DataFrame indexed by (weight_decay, lr_scale, width) with <metric>_mean / _std.
    """
    import pandas as pd
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
