"""Tutorial demos beyond the paper: Adam's two weight decays, spectral bias, and SGD's
temperature against Langevin gradient descent. Each function returns a tidy pandas table; the
figures are in pyireg/tutorial_plots.py and the edge of stability in pyireg/hessian.py.

Each keeps a minimal loop of its own (full-batch or mini-batch steps of the native optimizers
on one packed model); they are meant to move onto the experiment layer's one training loop.
"""
from __future__ import annotations

import numpy as np

from .._validate import positive_int
from ..hessian import hessian_top, teacher_regression
from ..model import PackedMLP
from ..optim import MomentumSGD
from ..optim.adam import Adam, AdamW


def _per_network(model, rowsU, rowsV):
    """Per-network sums of per-unit row values (U rows + V rows)."""
    return np.add.reduceat(rowsU + rowsV, model.offsets[:-1]) if model.num_units else np.zeros(0)


def _weights_distance(a: PackedMLP, b: PackedMLP):
    """Per network ||w_a - w_b|| / ||w_a|| over both layers, float64."""
    U, V = a.U.astype(np.float64), a.V.astype(np.float64)
    dU, dV = U - b.U, V - b.V
    num = _per_network(a, (dU ** 2).sum(1), (dV ** 2).sum(1))
    den = _per_network(a, (U ** 2).sum(1), (V ** 2).sum(1))
    return np.sqrt(num / np.maximum(den, 1e-300))


def adam_weight_decay(widths=(4, 16, 64, 256), *, weight_decay=0.1, sgd_lr=0.05, adam_lr=1e-2, steps=200,
                      every=10, samples=200, d=10, seed=0, dtype="float64"):
    """L2 penalty against decoupled weight decay, for full-batch SGD and for Adam, on packed
    widths (a squared-loss teacher regression). For each optimizer two copies of one model take
    the same steps: one with the L2 penalty (weight_decay added to the gradient: MomentumSGD
    and Adam), one with decoupled decay (w *= 1 - lr wd, then the plain step: for SGD
    ``loss_and_grad`` + scaling + ``apply_update``, for Adam the native AdamW). Returns a table
    with one row per (optimizer, width, recorded step): relative_distance
    = ||w_L2 - w_decoupled|| / ||w_L2|| and both runs' losses and weight norms.

    For SGD the two are the same update (w - lr (g + wd w) = (1 - lr wd) w - lr g), so the
    distance is rounding only; for Adam the L2 term is divided by sqrt(v) and the runs part."""
    import pandas as pd
    widths = [positive_int(w, "widths") for w in widths]
    steps, every = positive_int(steps, "steps"), positive_int(every, "every")
    X, y = teacher_regression(samples, d, 8, seed)
    rows = []
    for name in ("SGD", "Adam"):
        l2 = PackedMLP(widths, d, 1, loss="squared", seed=seed + 1, dtype=dtype)
        dec = l2.copy()
        if name == "SGD":
            o_l2 = MomentumSGD(l2, sgd_lr, 0.0, weight_decay)
            o_dec = MomentumSGD(dec, sgd_lr, 0.0, 0.0)
        else:
            o_l2 = Adam(l2, lr=adam_lr, weight_decay=weight_decay)
            o_dec = AdamW(dec, lr=adam_lr, weight_decay=weight_decay)
        for s in range(steps + 1):
            if s % every == 0 or s == steps:
                dist = _weights_distance(l2, dec)
                (_, loss_a), (_, loss_b) = l2.evaluate(X, y), dec.evaluate(X, y)
                na = np.sqrt(_per_network(l2, (l2.U.astype(float) ** 2).sum(1), (l2.V.astype(float) ** 2).sum(1)))
                nb = np.sqrt(_per_network(dec, (dec.U.astype(float) ** 2).sum(1), (dec.V.astype(float) ** 2).sum(1)))
                rows += [{"optimizer": name, "width": w, "step": s, "relative_distance": float(dist[i]),
                          "loss_l2": float(loss_a[i]), "loss_decoupled": float(loss_b[i]),
                          "norm_l2": float(na[i]), "norm_decoupled": float(nb[i])} for i, w in enumerate(widths)]
            if s == steps:
                break
            o_l2.step(X, y)
            if name == "SGD":
                _, gU, gV = dec.loss_and_grad(X, y)
                dec.U *= 1 - sgd_lr * weight_decay       # decoupled: decay the weights before the step
                dec.V *= 1 - sgd_lr * weight_decay
                o_dec.apply_update(gU, gV)
            else:
                o_dec.step(X, y)
    return pd.DataFrame(rows)


def spectral_target(x, frequencies, amplitudes=None):
    """sum_j a_j sin(pi f_j x) on x in [-1, 1] (a_j = 1 by default)."""
    freqs = np.asarray(frequencies, dtype=np.float64)
    amps = np.ones_like(freqs) if amplitudes is None else np.asarray(amplitudes, dtype=np.float64)
    return np.sin(np.pi * np.outer(x, freqs)) @ amps


def spectral_bias(widths=(64, 256, 1024), frequencies=(1, 3, 5, 9), *, samples=256, epochs=1000, every=10, lr=1e-2,
                  seed=0, dtype="float64"):
    """Fit y = sum_j sin(pi f_j x) on ``samples`` evenly spaced x in [-1, 1) with every width
    packed into one model (inputs (x, 1): the bias feature the networks lack; full-batch Adam,
    one step an epoch). Every ``every`` epochs, the residual r = f(x) - y of each network is
    projected on each s_j = sin(pi f_j x): relative_error = |<r, s_j>| / |<y, s_j>|. Returns a
    table (width, frequency, epoch, relative_error, loss); the low frequencies' errors fall first.

    On the grid x_k = -1 + 2k / samples, s_j is (-1)^f_j sin(2 pi f_j k / samples): distinct
    frequencies below samples / 2 give orthogonal vectors, f = samples / 2 gives the zero vector
    and f > samples / 2 the vector of samples - f (mod samples), up to sign. So ``samples`` must
    be above 2 max(frequencies); a smaller grid is refused."""
    import pandas as pd
    widths = [positive_int(w, "widths") for w in widths]
    freqs = [positive_int(f, "frequencies") for f in frequencies]
    samples, epochs, every = (positive_int(samples, "samples"), positive_int(epochs, "epochs"),
                              positive_int(every, "every"))
    if not freqs:
        raise ValueError("frequencies: expected at least one frequency, got none")
    if samples <= 2 * max(freqs):
        raise ValueError(f"samples (--samples): expected more than 2 x the largest frequency = {2 * max(freqs)} "
                         f"grid points (fewer alias frequency {max(freqs)} onto a lower one), got {samples}")
    x = -1.0 + 2.0 * np.arange(samples) / samples
    X = np.stack([x, np.ones_like(x)], 1)
    y = spectral_target(x, freqs)[:, None]
    basis = np.sin(np.pi * np.outer(x, freqs))                  # samples x F
    target_proj = basis.T @ y[:, 0]
    model = PackedMLP(widths, 2, 1, loss="squared", seed=seed, dtype=dtype)
    opt = Adam(model, lr=lr)
    rows = []
    for e in range(epochs + 1):
        if e % every == 0 or e == epochs:
            out = model.forward(X)[:, :, 0].astype(np.float64)      # N x samples
            res = out - y[:, 0]
            err = np.abs(res @ basis) / np.abs(target_proj)         # N x F
            loss = 0.5 * (res ** 2).mean(1)
            rows += [{"width": w, "frequency": f, "epoch": e, "relative_error": float(err[i, j]),
                      "loss": float(loss[i])} for i, w in enumerate(widths) for j, f in enumerate(freqs)]
        if e < epochs:
            opt.step(X, y)
    return pd.DataFrame(rows)


def learned_epoch(table, threshold=0.5):
    """The first recorded epoch at which each (width, frequency) component's relative error is
    below ``threshold`` (NaN if never): a table indexed by width, one column per frequency."""
    t = table[table["relative_error"] < threshold]
    first = t.groupby(["width", "frequency"])["epoch"].min()
    return first.unstack("frequency").reindex(index=sorted(table["width"].unique()),
                                              columns=sorted(table["frequency"].unique()))


def _gradient_noise_std(model, X, y):
    """Per network, sigma with sigma^2 = the per-coordinate variance of the per-sample gradients
    of the squared loss (one output), averaged over the network's coordinates:
    (E_i ||g_i||^2 - ||E_i g_i||^2) / P_n. Per-sample gradients in closed form, float64:
    gU_i[h] = r_i v_h act'(z_ih) x_i, gV_i[h] = act(z_ih) r_i, r_i = f(x_i) - y_i."""
    U, V = model.U.astype(np.float64), model.V.astype(np.float64)[:, 0]
    seg = np.repeat(np.arange(model.num_networks), np.diff(model.offsets))
    Z = X @ U.T                                                      # n x S
    A = np.maximum(Z, 0) if model.activation == "relu" else Z
    D = (Z > 0).astype(np.float64) if model.activation == "relu" else np.ones_like(Z)
    out = np.add.reduceat(A * V, model.offsets[:-1], axis=1)         # n x N
    r = (out - y)[:, seg]                                            # n x S (each unit's network residual)
    x2 = (X ** 2).sum(1)[:, None]
    sq = ((r * V * D) ** 2 * x2 + (A * r) ** 2).mean(0)              # E_i ||g_i||^2 per unit
    gU = ((r * V * D).T @ X) / X.shape[0]                            # mean gradient, S x d
    gV = (A * r).mean(0)
    per_unit = sq - (gU ** 2).sum(1) - gV ** 2
    P = np.diff(model.offsets) * (model.in_features + 1)
    return np.sqrt(np.maximum(np.bincount(seg, per_unit, model.num_networks), 0) / P)


def langevin(lrs=(0.05, 0.1), batch_sizes=(1, 4, 16), *, width=32, time=20.0, samples=200, test_samples=1000,
             d=10, seed=0, iters=60):
    """SGD at every (lr, |B|) against full-batch GD plus isotropic Gaussian noise of the matched
    temperature lr / |B|: each Langevin step is w -= lr grad + lr sigma / sqrt(|B|) xi, xi
    standard normal, sigma^2 the per-coordinate variance of the per-sample gradients at the
    current weights (``_gradient_noise_std``), so one step's noise has SGD's variance averaged
    over the coordinates. Every run trains for the same continuous time ``time`` = lr x steps
    from the same initialization (a squared-loss teacher regression, ``samples`` training and
    ``test_samples`` test points, one width). SGD takes shuffled mini-batches, epoch by epoch.
    Returns a table: method ('sgd' or 'gd+noise'), lr, batch_size, temperature, steps,
    train_loss, test_loss, hessian_top (on the training set)."""
    import pandas as pd
    width = positive_int(width, "width")
    lrs, batch_sizes = [float(v) for v in lrs], [positive_int(b, "batch_sizes") for b in batch_sizes]
    if not all(np.isfinite(v) and v > 0 for v in lrs):
        raise ValueError(f"lrs: expected learning rates > 0, got {lrs!r}")
    if not (np.isfinite(time) and time > 0):
        raise ValueError(f"time: expected a finite training time > 0, got {time!r}")
    if max(batch_sizes) > samples:
        raise ValueError(f"batch_sizes: expected at most samples = {samples}, got {max(batch_sizes)}")
    Xa, ya = teacher_regression(samples + test_samples, d, 8, seed)
    X, y, Xt, yt = Xa[:samples], ya[:samples], Xa[samples:], ya[samples:]
    steps = [int(round(time / lr)) for lr in lrs]
    rng = np.random.default_rng(seed + 7)
    rows = []

    lrs_of = [lr for _ in batch_sizes for lr in lrs]
    steps_of = [s for _ in batch_sizes for s in steps]

    def record(method, model, B_of, lrs_of, steps_of):
        _, train = model.evaluate(X, y)
        _, test = model.evaluate(Xt, yt)
        top = hessian_top(model, X, y, iters=iters, tol=1e-6)
        for i, lr in enumerate(lrs_of):
            B = B_of[i]
            rows.append({"method": method, "lr": lr, "batch_size": B, "temperature": lr / B, "steps": steps_of[i],
                         "train_loss": float(train[i]), "test_loss": float(test[i]), "hessian_top": float(top[i])})

    # SGD: one model per batch size (its networks see the same batches), one network per lr
    for B in batch_sizes:
        model = PackedMLP([width] * len(lrs), d, 1, loss="squared", seed=seed + 1, dtype="float64")
        opt = MomentumSGD(model, np.array(lrs), 0.0, 0.0)
        order, pos = rng.permutation(samples), 0
        for s in range(max(steps)):
            opt.lr = np.where(np.array(steps) > s, lrs, 0.0)   # each network stops at its own time
            if pos + B > samples:
                order, pos = rng.permutation(samples), 0
            idx = order[pos:pos + B]
            pos += B
            opt.step(X[idx], y[idx])
        record("sgd", model, [B] * len(lrs), lrs, steps)
    # GD + noise: one model with a network per (B, lr) pair
    n = len(lrs_of)
    model = PackedMLP([width] * n, d, 1, loss="squared", seed=seed + 1, dtype="float64")
    B_of = [B for B in batch_sizes for _ in lrs]
    opt = MomentumSGD(model, np.array(lrs_of), 0.0, 0.0)
    seg = np.repeat(np.arange(n), np.diff(model.offsets))
    lr_arr, B_arr, st = np.array(lrs_of), np.array(B_of, dtype=np.float64), np.array(steps_of)
    for s in range(max(steps_of)):
        active = st > s
        sigma = _gradient_noise_std(model, X, y)
        opt.lr = np.where(active, lr_arr, 0.0)
        opt.step(X, y)
        amp = np.where(active, lr_arr * sigma / np.sqrt(B_arr), 0.0)[seg][:, None]
        model.U += amp * rng.standard_normal(model.U.shape)
        model.V += amp * rng.standard_normal(model.V.shape)
    record("gd+noise", model, B_of, lrs_of, steps_of)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the demo commands
# `pyireg demo NAME` wrappers (fn(out, **settings) -> DemoResult): the table and figure of each,
# and a few sentences computed from the table. tutorial.run writes NAME.csv and NAME.json.
def _demo_result(name, out, table, plot, summary):
    from pathlib import Path

    from ._common import DemoResult
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figure = plot(table, out / f"{name}.png")
    return DemoResult(name, table, Path(figure), summary)


def edge_of_stability_demo(out, *, widths=(16, 64), lrs=(0.1, 0.4, 0.8, 1.2), steps=1000, every=50, samples=200,
                           seed=0, threads=None):
    """Full-batch GD's sharpness (pyireg.hessian): at lr 0.8 and 1.2 it rises to about 2 / lr and
    hovers there; at lr 0.1 and 0.4 (2 / lr = 20, 5) it is still rising after 1,000 steps."""
    from ._common import num_threads
    from ..hessian import edge_of_stability
    from ..tutorial_plots import plot_edge_of_stability
    with num_threads(threads):
        t = edge_of_stability(widths=widths, lrs=lrs, steps=steps, every=every, samples=samples, seed=seed)
    last = t[t["step"] == t["step"].max()]
    summary = [f"lr {r.lr:g}, H={r.width}: final sharpness {r.hessian_top:.3g} against 2/lr = {r.two_over_lr:.3g} "
               f"(loss {r.loss:.3g})" for r in last.itertuples()]
    return _demo_result("edge-of-stability", out, t, plot_edge_of_stability, summary)


def spectral_bias_demo(out, *, widths=(64, 256, 1024), frequencies=(1, 3, 5, 9), samples=256, epochs=1000, every=10,
                       lr=1e-2, seed=0, threads=None):
    """Low frequencies of the target are learned first (full-batch Adam)."""
    from ._common import num_threads
    from ..tutorial_plots import plot_spectral_bias
    with num_threads(threads):
        t = spectral_bias(widths=widths, frequencies=frequencies, samples=samples, epochs=epochs, every=every, lr=lr,
                          seed=seed)
    first = learned_epoch(t)
    summary = [f"H={w}: epoch at which each frequency's error falls below 1/2: "
               + ", ".join(f"f={f}: {'never' if np.isnan(first.loc[w, f]) else int(first.loc[w, f])}"
                           for f in first.columns) for w in first.index]
    return _demo_result("spectral-bias", out, t, plot_spectral_bias, summary)


def langevin_demo(out, *, lrs=(0.05, 0.1), batch_sizes=(1, 4, 16), width=32, time=20.0, samples=200, seed=0,
                  threads=None):
    """SGD against full-batch GD plus Gaussian noise of the matched temperature lr / |B|."""
    from ._common import num_threads
    from ..tutorial_plots import plot_langevin
    with num_threads(threads):
        t = langevin(lrs=lrs, batch_sizes=batch_sizes, width=width, time=time, samples=samples, seed=seed)
    summary = []
    for method, g in t.groupby("method", sort=False):
        lo, hi = g.loc[g["temperature"].idxmin()], g.loc[g["temperature"].idxmax()]
        summary.append(f"{method}: temperature {lo.temperature:g} -> sharpness {lo.hessian_top:.3g}, test loss "
                       f"{lo.test_loss:.3g}; temperature {hi.temperature:g} -> sharpness {hi.hessian_top:.3g}, "
                       f"test loss {hi.test_loss:.3g}")
    return _demo_result("langevin", out, t, lambda tab, f: plot_langevin(tab.dropna(), f), summary)


def adam_weight_decay_demo(out, *, widths=(4, 16, 64, 256), weight_decay=0.1, steps=200, every=10, seed=0,
                           threads=None):
    """L2 penalty against decoupled weight decay: the same for SGD, different for Adam."""
    from ._common import num_threads
    from ..tutorial_plots import plot_adam_weight_decay
    with num_threads(threads):
        t = adam_weight_decay(widths=widths, weight_decay=weight_decay, steps=steps, every=every, seed=seed)
    last = t[t["step"] == t["step"].max()]
    summary = [f"{name}: after {steps} steps ||w_L2 - w_decoupled|| / ||w_L2|| is at most "
               f"{g['relative_distance'].max():.3g} over the widths"
               for name, g in last.groupby("optimizer", sort=False)]
    return _demo_result("adam-weight-decay", out, t, plot_adam_weight_decay, summary)
