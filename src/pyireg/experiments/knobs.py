"""The tutorial's implicit regularizers on the two-layer ReLU engine, each a packed run on the
embedded digits (mnist5k: 2,000 train / 2,000 validation / 1,000 test at 10x10 pixels):
learning-rate scale, initialization scale (lazy vs rich), batch size (lr / batch size as the
axis) and early stopping. One packed model holds every setting of a run (its widths, learning
rates, init scales and seeds, all per network); batch sizes are separate runs, since every
network of a packed model sees the same mini-batch.

The training loop is plain: shuffle once per epoch, ``MomentumSGD.step`` on consecutive
batches, evaluate every network on the three splits after each epoch.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from .. import data as D
from .. import measures as M
from ..model import PackedMLP
from ..schedule import PaperSchedule
from ._common import (
    DemoResult,
    distance_per_network,
    network_sq_norms,
    num_threads,
    pyplot,
    save_figure,
)


@dataclasses.dataclass
class Run:
    model: PackedMLP
    history: "pd.DataFrame"   # noqa: F821  one row per network per recorded epoch
    diverged: np.ndarray      # (N,) bool
    final: dict = dataclasses.field(default_factory=dict)   # measure name -> (N,) after the last epoch


def load_digits(name="mnist5k", n_train=None, n_val=None, n_test=None, seed=0, label_noise=0.0, data_dir=None):
    ds = D.load(name, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed, data_dir=data_dir)
    return D.label_noise(ds, label_noise, seed=seed + 1000) if label_noise > 0 else ds


def train(ds, widths, *, lr, momentum=0.0, batch_size=100, epochs=50, init_std=None, seed=0,
          schedule=None, columns=None, stop_epoch=None, final_measures=(), out=None, tag="") -> Run:
    """Train one packed model on ``ds`` with the one training loop
    (:func:`pyireg.experiments.training.train_networks`) and record, at initialization (epoch 0)
    and after every epoch, for every network: the train / validation / test error and loss, the
    relative weight movement ||theta - theta_0|| / ||theta_0|| (theta = both layers) and the l2
    penalty.

    ``lr``, ``momentum``, ``init_std`` (as in PackedMLP) and ``seed``: scalars or one value per
    network (a seed array gives each network its own generator, so that settings compared at
    one width can start alike). With a ``schedule`` the lr and momentum of epoch e are
    ``lr * schedule.lr(e) / schedule.lr(0)`` and ``schedule.momentum(e)``. ``columns``: extra
    per-network columns (name -> array) copied into every row. ``stop_epoch`` (one value per
    network): network n trains for ``stop_epoch[n]`` epochs and then keeps its weights (its lr
    is 0), so networks with different budgets share one packed run. Batches follow the loop's
    batch policy with repetition = the first seed, whole batches only. ``final_measures``: names
    of ``pyireg.measures`` computed on the training set after the last epoch (``Run.final``).
    With ``out``, the run is also written there as a sweep directory (config.json with the run
    record, history.parquet in the sweep's schema, epoch 0 included) that load_results reads."""
    import pandas as pd

    from ..schedule import ConstantSchedule
    from .training import TrainSpec, train_networks
    widths = [int(w) for w in widths]
    N = len(widths)
    n = len(ds.y_train)
    batch_size = int(batch_size)
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size: expected 1..{n} (the training set size), got {batch_size}")
    stop = np.full(N, epochs) if stop_epoch is None else np.asarray(stop_epoch, np.int64)
    if stop.shape != (N,) or stop.min() < 0:
        raise ValueError(f"stop_epoch: expected {N} non-negative epoch counts, got {stop_epoch!r}")
    lr = np.broadcast_to(np.asarray(lr, np.float64), (N,)).copy()
    if schedule is None:
        schedule, scales = ConstantSchedule(lr0=1.0, momentum0=float(momentum)), lr
    else:
        scales = lr / schedule.lr(0)          # any schedule: lr(epoch), momentum(epoch)
    seeds = np.broadcast_to(np.asarray(seed), (N,))
    first_seed = int(np.ravel(seed)[0])
    std = None
    if init_std is not None:
        pair = init_std if isinstance(init_std, tuple) else (init_std, init_std)
        std = tuple(np.broadcast_to(np.asarray(v, np.float64), (N,)).tolist() for v in pair)
    spec = TrainSpec(grid_widths=tuple(widths), grid_weight_decays=(0.0,) * N, grid_lr_scales=tuple(scales.tolist()),
                     epochs=int(epochs), batch_size=batch_size, drop_last=True, schedule=schedule, init_std=std,
                     label_noise=0.0, resample_split=False, eval_batch=1024,
                     init_seeds=tuple(int(v) for v in seeds), stop_epochs=tuple(int(v) for v in stop),
                     record_epoch0=True)
    rows, frames, kept = [], [], {}
    extra = {k: np.asarray(v) for k, v in (columns or {}).items()}

    def after_epoch(epoch, frame, model, opt, ev):
        if epoch == 0:
            kept.update(U0=model.U.astype(np.float64), V0=model.V.astype(np.float64),
                        norm0=np.sqrt(network_sq_norms(model)))
        kept.update(model=model, opt=opt)
        frames.append(frame)
        move = distance_per_network(model, kept["U0"], kept["V0"]) / kept["norm0"]
        l2 = model.measures()["l2_penalty"]
        for j, w in enumerate(widths):
            row = {"net": j, "H": w, "epoch": epoch, "lr": lr[j], "movement": move[j], "l2_penalty": l2[j],
                   "diverged": bool(opt.diverged[j])}
            for split, (err, loss) in ev.items():
                row[f"{split}_error"] = err[j]
                row[f"{split}_loss"] = loss[j]
            for k, v in extra.items():
                row[k] = v[j]
            rows.append(row)

    train_networks(ds, spec, first_seed, range(N), after_epoch=after_epoch)
    model, opt = kept["model"], kept["opt"]
    final = M.compute(model, list(final_measures), X=ds.X_train, y=ds.y_train) if final_measures else {}
    if out is not None:
        _save_run(out, ds, spec, first_seed, pd.concat(frames, ignore_index=True), tag)
    return Run(model, pd.DataFrame(rows), opt.diverged.copy(), final)


def _save_run(out, ds, spec, rep, history, tag):
    """A demonstration's run as a sweep directory: config.json and history.parquet (atomic)."""
    import uuid
    from pathlib import Path

    from .. import __version__
    from ..schedule import schedule_to_json
    from .record import run_record
    from .history import parquet_bytes
    from .store import FORMAT, Disk, json_bytes
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    widths = sorted(set(spec.grid_widths))
    config = {"format": FORMAT, "sweep_id": uuid.uuid4().hex, "written_by": f"pyireg {__version__}",
              "kind": "demonstration run", "tag": tag, "dataset": json.loads(json.dumps(ds.info, default=str)),
              "data_sha256": ds.fingerprint(), "widths": widths, "grid_widths": list(spec.grid_widths),
              "num_networks": spec.num_networks, "seeds": [int(rep)], "epochs": spec.epochs,
              "batch_size": spec.batch_size, "drop_last": spec.drop_last,
              "schedule": schedule_to_json(spec.schedule, spec.epochs), "lr_scales": list(spec.grid_lr_scales),
              "init_seeds": list(spec.init_seeds or ()), "stop_epochs": list(spec.stop_epochs or ()),
              "record_epoch0": True, "optimizer": spec.optimizer, "run": run_record()}
    disk = Disk()
    disk.write_atomic(out / "config.json", lambda f: f.write(json_bytes(config)))
    data = parquet_bytes(history, {"format": FORMAT, "sweep_id": config["sweep_id"],
                                   "epochs_done": {str(rep): spec.epochs}, "checkpoints": {}})
    disk.write_atomic(out / "history.parquet", lambda f: f.write(data))


def final_and_early(history, keys, final=None):
    """Per network: the last epoch's row, plus the test error at the epoch of least validation
    error (early stopping: the first such epoch after the initialization). ``failed``: the run
    diverged (a loss not finite) or ended with a larger training loss than it started from,
    i.e. its learning rate was too large to train. ``final``: per-network measures after the
    last epoch (``Run.final``), added as columns."""
    h = history.sort_values(["net", "epoch"])
    start = h[h["epoch"] == 0].set_index("net")
    h = h[h["epoch"] > 0]
    last = h.groupby("net").tail(1).set_index("net")
    best = h.loc[h.groupby("net")["val_error"].idxmin()].set_index("net")
    last = last.assign(test_error_es=best["test_error"], epoch_es=best["epoch"],
                       failed=last["diverged"] | ~(last["train_loss"] <= start["train_loss"]))
    for name, values in (final or {}).items():
        last[name] = np.asarray(values)[last.index.to_numpy()]
    return last.reset_index()[keys + ["train_error", "test_error", "test_error_es", "epoch_es", "test_loss",
                                      "movement", "l2_penalty", *(final or {}), "failed"]]


# The sharpness the tutorial appeals to (flat minima): the worst-case sharpness of the
# registry (Keskar et al. 2017, relative box alpha (|w| + 1), alpha 5e-4), on the training set.
SHARPNESS = ("sharpness_worst",)
SHARPNESS_LABEL = "worst-case sharpness (α 5e-4)"


def _paired_seeds(grid, seed_at, width_at):
    """One generator seed per network of ``grid`` (tuples holding a repetition seed at
    ``seed_at`` and a width at ``width_at``, or None when all widths are equal) that depends on
    the repetition and the width only: the settings compared at one width start from the same
    random draws (init scales multiply the same directions), so their differences are not
    differences between initializations."""
    widths = sorted({g[width_at] for g in grid}) if width_at is not None else [None]
    return np.array([1000 * int(g[seed_at]) + widths.index(g[width_at] if width_at is not None else None)
                     for g in grid])


def _settings_table(res, by, cols):
    """Per setting (the columns ``by``): the mean and standard deviation of ``cols`` over its
    runs, and how many of them failed to train."""
    table = _mean_by(res, by, cols)
    table["failed"] = res.groupby(by)["failed"].sum().to_numpy()
    return table


def _mean_by(df, by, cols):
    g = df.groupby(by, sort=True)[cols]
    out = g.mean()
    out.columns = [c for c in cols]
    if g.ngroups and g.size().max() > 1:
        sd = g.std()
        for c in cols:
            out[c + " sd"] = sd[c]
    return out.reset_index()


# ----------------------------------------------------------------------------- learning rate
def learning_rate_demo(out, *, widths=(32, 256, 2048), lrs=(0.003, 0.01, 0.03, 0.1, 0.3, 1.0), seeds=(0, 1),
                       epochs=60, batch_size=100, dataset="mnist5k", data_dir=None, n_train=None, n_val=None,
                       n_test=None, threads=None) -> DemoResult:
    """Plain SGD (no momentum) at several constant learning rates, every width and seed in one
    packed model."""
    t0 = time.perf_counter()
    ds = load_digits(dataset, n_train, n_val, n_test, data_dir=data_dir)
    grid = [(s, lr, w) for s in seeds for lr in lrs for w in widths]
    with num_threads(threads):
        run = train(ds, [g[2] for g in grid], lr=np.array([g[1] for g in grid]), momentum=0.0,
                    batch_size=batch_size, epochs=epochs, seed=_paired_seeds(grid, 0, 2),
                    columns={"seed": np.array([g[0] for g in grid])}, final_measures=SHARPNESS,
                    out=Path(out) / "learning-rate-run", tag="learning-rate")
    res = final_and_early(run.history, ["seed", "lr", "H"], run.final)
    table = _settings_table(res, ["H", "lr"], ["train_error", "test_error", "test_error_es", "movement",
                                               "l2_penalty", *SHARPNESS])

    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    for c, w in enumerate(widths):
        t = table[(table["H"] == w) & (table["failed"] == 0)]
        axes[0].errorbar(t["lr"], t["test_error"], yerr=t.get("test_error sd"), fmt="o-", color=f"C{c}", capsize=2,
                         label=f"H={w} test (final)")
        axes[0].plot(t["lr"], t["train_error"], "x:", color=f"C{c}", label=f"H={w} train")
        axes[1].plot(t["lr"], t["movement"], "o-", color=f"C{c}", label=f"H={w}")
        axes[2].loglog(t["lr"], t["l2_penalty"], "o-", color=f"C{c}", label=f"H={w}")
        axes[3].loglog(t["lr"], t["sharpness_worst"], "o-", color=f"C{c}", label=f"H={w}")
    axes[0].set_ylabel("error")
    axes[0].set_title(f"SGD, batch {batch_size}, {epochs} epochs, no momentum")
    axes[1].set_ylabel("||θ - θ0|| / ||θ0||")
    axes[1].set_title("relative weight movement")
    axes[2].set_ylabel("1/2 (||U||² + ||V||²)")
    axes[2].set_title("l2 penalty of the solution")
    axes[3].set_ylabel(SHARPNESS_LABEL)
    axes[3].set_title("sharpness of the solution (training set)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylim(bottom=0)
    fig_path = save_figure(fig, out / "learning-rate.png")

    summary = []
    for w in widths:
        t = table[(table["H"] == w) & (table["failed"] == 0)]
        if not len(t):
            continue
        best = t.loc[t["test_error"].idxmin()]
        fit = t[t["train_error"] == 0]
        summary.append(
            f"H={w}: final test error {t['test_error'].iloc[0]:.3f} at lr {t['lr'].iloc[0]:g} (train error "
            f"{t['train_error'].iloc[0]:.3f}), {best['test_error']:.3f} at the best lr {best['lr']:g}, "
            f"{t['test_error'].iloc[-1]:.3f} at lr {t['lr'].iloc[-1]:g}; "
            + (f"among the runs that fit the training set (lr >= {fit['lr'].min():g}) the test error goes "
               f"{fit['test_error'].iloc[0]:.3f} -> {fit['test_error'].iloc[-1]:.3f}, the l2 penalty "
               f"{fit['l2_penalty'].iloc[0]:.3g} -> {fit['l2_penalty'].iloc[-1]:.3g} and the worst-case sharpness "
               f"{fit['sharpness_worst'].iloc[0]:.3g} -> {fit['sharpness_worst'].iloc[-1]:.3g} as lr grows."
               if len(fit) else "no lr fits the training set."))
    if table["failed"].any():
        summary.append("failed to train (lr too large): " + ", ".join(
            f"H={r.H} lr={r.lr:g}" for r in table[table["failed"] > 0].itertuples()))
    return DemoResult("learning-rate", table, fig_path, summary, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- initialization scale
def init_scale_demo(out, *, widths=(32, 256, 2048), scales=(0.1, 0.3, 1.0, 2.0, 4.0), seeds=(0, 1), lr=0.01,
                    momentum=0.9, epochs=60, batch_size=100, dataset="mnist5k", data_dir=None, n_train=None, n_val=None,
                    n_test=None, threads=None) -> DemoResult:
    """Every weight drawn with alpha times the default std (1/sqrt(d) for U, 1/sqrt(H) for V),
    one packed model for every alpha x width x seed, same optimizer."""
    t0 = time.perf_counter()
    ds = load_digits(dataset, n_train, n_val, n_test, data_dir=data_dir)
    d = ds.num_features
    grid = [(s, a, w) for s in seeds for a in scales for w in widths]
    std_u = np.array([a / np.sqrt(d) for _, a, _ in grid])
    std_v = np.array([a / np.sqrt(w) for _, a, w in grid])
    with num_threads(threads):
        run = train(ds, [g[2] for g in grid], lr=lr, momentum=momentum, batch_size=batch_size, epochs=epochs,
                    init_std=(std_u, std_v), seed=_paired_seeds(grid, 0, 2),
                    columns={"seed": np.array([g[0] for g in grid]), "init_scale": np.array([g[1] for g in grid])},
                    out=Path(out) / "init-scale-run", tag="init-scale")
    res = final_and_early(run.history, ["seed", "init_scale", "H"])
    table = _settings_table(res, ["H", "init_scale"],
                            ["train_error", "test_error", "test_error_es", "movement", "l2_penalty"])

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for c, a in enumerate(scales):
        t = table[(table["init_scale"] == a) & (table["failed"] == 0)]
        axes[0].errorbar(t["H"], t["test_error"], yerr=t.get("test_error sd"), fmt="o-", color=f"C{c}", capsize=2,
                         label=f"α={a:g}")
        axes[1].loglog(t["H"], t["movement"], "o-", color=f"C{c}", label=f"α={a:g}")
    h = run.history
    big = max(widths)
    for c, a in enumerate(scales):
        hh = h[(h["H"] == big) & (h["init_scale"] == a) & (h["seed"] == seeds[0])]
        axes[2].plot(hh["epoch"], hh["test_error"], "-", color=f"C{c}", label=f"α={a:g} test")
        axes[2].plot(hh["epoch"], hh["train_error"], ":", color=f"C{c}")
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("hidden units H")
    axes[0].set_ylabel("test error (final)")
    axes[0].set_title(f"init std = α x default; SGD lr {lr:g}, momentum {momentum:g}")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xlabel("hidden units H")
    axes[1].set_ylabel("||θ - θ0|| / ||θ0||")
    axes[1].set_title("relative weight movement (small: lazy)")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("error (solid test, dotted train)")
    axes[2].set_title(f"H={big}")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig_path = save_figure(fig, out / "init-scale.png")

    summary = []
    for a in scales:
        t = table[(table["init_scale"] == a) & (table["failed"] == 0)]
        if len(t):
            summary.append(f"α={a:g}: relative weight movement {t['movement'].iloc[0]:.3g} (H={t['H'].iloc[0]}) -> "
                           f"{t['movement'].iloc[-1]:.3g} (H={t['H'].iloc[-1]}); final test error "
                           + ", ".join(f"{e:.3f}" for e in t["test_error"]) + f" for H = {list(t['H'])}; "
                           f"train error at the largest width {t['train_error'].iloc[-1]:.3f}.")
    if table["failed"].any():
        summary.append("failed to train: " + ", ".join(f"H={r.H} α={r.init_scale:g}"
                                                       for r in table[table["failed"] > 0].itertuples()))
    return DemoResult("init-scale", table, fig_path, summary, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- batch size
def batch_size_demo(out, *, batch_sizes=(10, 25, 50, 100, 250, 500), ratios=(1e-3, 3e-3, 1e-2, 3e-2), width=256,
                    seeds=(0, 1), time_budget=120.0, label_noise=0.0, dataset="mnist5k", data_dir=None,
                    n_train=None, n_val=None, n_test=None, threads=None) -> DemoResult:
    """One packed run per batch size B, holding lr = ratio * B for every ratio (and seed), plain
    SGD. Every run gets the same gradient time, steps x lr = ``time_budget`` (so a run of ratio
    r trains for time_budget / (n r) epochs, then stops): runs then differ only in the scale
    of their gradient noise, which lr / B sets."""
    import pandas as pd
    t0 = time.perf_counter()
    ds = load_digits(dataset, n_train, n_val, n_test, label_noise=label_noise, data_dir=data_dir)
    n = len(ds.y_train)
    budget = {r: max(1, int(round(time_budget / (n * r)))) for r in ratios}
    parts = []
    with num_threads(threads):
        for B in batch_sizes:
            grid = [(s, r) for s in seeds for r in ratios]
            stop = np.array([budget[r] for _, r in grid])
            run = train(ds, [width] * len(grid), lr=np.array([r * B for _, r in grid]), momentum=0.0, batch_size=B,
                        epochs=int(stop.max()), stop_epoch=stop, out=Path(out) / f"batch-size-run-b{B}",
                        tag=f"batch-size {B}",
                        seed=_paired_seeds(grid, 0, None),
                        columns={"seed": np.array([s for s, _ in grid]), "ratio": np.array([r for _, r in grid]),
                                 "batch_size": np.full(len(grid), B), "epochs": stop}, final_measures=SHARPNESS)
            parts.append(final_and_early(run.history, ["seed", "batch_size", "ratio", "lr", "epochs", "H"], run.final))
    res = pd.concat(parts, ignore_index=True)
    table = _settings_table(res, ["batch_size", "ratio"], ["lr", "epochs", "train_error", "test_error",
                                                           "test_loss", "movement", "l2_penalty", *SHARPNESS])

    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    for c, B in enumerate(batch_sizes):
        t = table[(table["batch_size"] == B) & (table["failed"] == 0)]
        axes[0].errorbar(t["ratio"], t["test_error"], yerr=t.get("test_error sd"), fmt="o-", color=f"C{c}",
                         capsize=2, label=f"B={B}")
        axes[1].plot(t["ratio"], t["train_error"], "o-", color=f"C{c}", label=f"B={B}")
        axes[2].plot(t["lr"], t["test_error"], "o-", color=f"C{c}", label=f"B={B}")
        axes[3].plot(t["ratio"], t["sharpness_worst"], "o-", color=f"C{c}", label=f"B={B}")
    axes[0].set_xlabel("lr / batch size")
    axes[0].set_ylabel("test error (final)")
    axes[0].set_title(f"H={width}, plain SGD, gradient time {time_budget:g}"
                      + (f", {label_noise:.0%} label noise" if label_noise else ""))
    axes[1].set_xlabel("lr / batch size")
    axes[1].set_ylabel("training error (final)")
    axes[1].set_title("epochs: " + ", ".join(f"{budget[r]} at {r:g}" for r in ratios))
    axes[2].set_xlabel("lr")
    axes[2].set_ylabel("test error (final)")
    axes[2].set_title("the same runs against lr alone")
    axes[3].set_xlabel("lr / batch size")
    axes[3].set_ylabel(SHARPNESS_LABEL)
    axes[3].set_yscale("log")
    axes[3].set_title("sharpness of the solution (training set)")
    for ax in axes:
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig_path = save_figure(fig, out / "batch-size.png")

    ok = table[table["failed"] == 0]
    summary = []
    for r in ratios:
        t = ok[ok["ratio"] == r]
        if len(t):
            summary.append(f"lr/B = {r:g} ({budget[r]} epochs): final test error " + ", ".join(
                f"{e:.3f}" for e in t["test_error"]) + f" for B = {list(t['batch_size'])} (spread "
                f"{t['test_error'].max() - t['test_error'].min():.3f}); train error "
                + ", ".join(f"{e:.3f}" for e in t["train_error"]) + "; worst-case sharpness "
                + ", ".join(f"{e:.2g}" for e in t["sharpness_worst"]))
    if table["failed"].any():
        summary.append("failed to train (lr = ratio x B too large): " + ", ".join(
            f"B={r.batch_size} lr={r.lr:g}" for r in table[table["failed"] > 0].itertuples()))
    return DemoResult("batch-size", table, fig_path, summary, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- early stopping
def early_stopping_demo(out, *, widths=(4, 16, 64, 256, 1024), noise_levels=(0.0, 0.05, 0.2), seeds=(0, 1),
                        epochs=60, batch_size=100, dataset="mnist5k", data_dir=None, n_train=None, n_val=None,
                        n_test=None, threads=None) -> DemoResult:
    """The paper's schedule (momentum SGD, lr 0.1 x 0.99^epoch) on the original labels and with a
    fraction of the training labels changed at random, one packed run per noise level; the test
    error at the end against the test error at the epoch of least validation error."""
    import pandas as pd
    t0 = time.perf_counter()
    sched = PaperSchedule()
    parts, curves = [], {}
    with num_threads(threads):
        for q in noise_levels:
            ds = load_digits(dataset, n_train, n_val, n_test, label_noise=q, data_dir=data_dir)
            grid = [(s, w) for s in seeds for w in widths]
            run = train(ds, [w for _, w in grid], lr=sched.lr0, batch_size=batch_size, epochs=epochs,
                        schedule=sched, seed=_paired_seeds(grid, 0, 1), out=Path(out) / f"early-stopping-run-q{q:g}",
                        tag=f"early-stopping, label noise {q:g}",
                        columns={"seed": np.array([s for s, _ in grid]), "label_noise": np.full(len(grid), q)})
            parts.append(final_and_early(run.history, ["seed", "label_noise", "H"]))
            curves[q] = run.history
    res = pd.concat(parts, ignore_index=True)
    table = _mean_by(res, ["label_noise", "H"], ["train_error", "test_error", "test_error_es", "epoch_es"])
    table["early stopping gain"] = table["test_error"] - table["test_error_es"]

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    qn = noise_levels[-1]
    h = curves[qn]
    for c, w in enumerate(widths):
        hh = h[(h["H"] == w) & (h["seed"] == seeds[0])]
        axes[0].plot(hh["epoch"], hh["test_error"], "-", color=f"C{c}", label=f"H={w} test")
        axes[0].plot(hh["epoch"], hh["train_error"], ":", color=f"C{c}")
        e = hh.loc[hh["val_error"].idxmin()]
        axes[0].plot(e["epoch"], e["test_error"], "v", color=f"C{c}", ms=8)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("error (solid test, dotted train)")
    axes[0].set_title(f"{qn:.0%} label noise; ▼ = least validation error")
    axes[0].set_ylim(0, 0.6)
    for j, q in enumerate(noise_levels):
        t = table[table["label_noise"] == q]
        axes[1].plot(t["H"], t["test_error"], "o-", color=f"C{j}", label=f"{q:.0%} noise: final")
        axes[1].plot(t["H"], t["test_error_es"], "s--", color=f"C{j}", label=f"{q:.0%} noise: early stopped")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xlabel("hidden units H")
    axes[1].set_ylabel("test error")
    axes[1].set_title("training to the end vs early stopping")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig_path = save_figure(fig, out / "early-stopping.png")

    summary = []
    for q in noise_levels:
        t = table[table["label_noise"] == q]
        summary.append(f"{q:.0%} label noise: test error final " + ", ".join(f"{e:.3f}" for e in t["test_error"])
                       + "; early stopped " + ", ".join(f"{e:.3f}" for e in t["test_error_es"])
                       + f" (H = {list(t['H'])}); train error at the end "
                       + ", ".join(f"{e:.3f}" for e in t["train_error"]))
    return DemoResult("early-stopping", table, fig_path, summary, time.perf_counter() - t0)
