"""The measures of perturbed weights (``pyireg.measures``' perturbed group; their formulas are in
that module's docstring): the expected and the worst-case sharpness, and the PAC-Bayes estimate.
Every perturbed copy of every network is evaluated by packed models of many copies at once."""
from __future__ import annotations

import math

import numpy as np

from ._validate import positive_int

#: The perturbation scales the PAC-Bayes estimate minimizes over (the measures' default).
PAC_ALPHAS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)


def _noise(model, alphas, samples: int, seed: int):
    """Yields (copy, nuU, nuV) for every alpha (outer) and sample (inner): nu = sigma * eps with
    sigma_i = alpha (10 |w_i| + 1), eps ~ N(0, 1) over all of U and V, in float64."""
    rng = np.random.default_rng(seed)
    sU = 10 * np.abs(model.U.astype(np.float64)) + 1
    sV = 10 * np.abs(model.V.astype(np.float64)) + 1
    for a_i, a in enumerate(np.asarray(alphas, dtype=np.float64)):
        for s in range(samples):
            yield a_i * samples + s, a * sU * rng.standard_normal(sU.shape), a * sV * rng.standard_normal(sV.shape)


def relative_noise(model, alphas, samples: int, seed: int = 0):
    """The perturbations of the expected sharpness and the PAC-Bayes estimate, stacked:
    (nuU, nuV) of shape (len(alphas) * samples * S, d or k), float64; copy c (alpha-major, then
    sample) is rows c * S .. (c + 1) * S."""
    parts = list(_noise(model, alphas, samples, seed))
    return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


#: Most bytes of weights one packed model of perturbed copies may hold (more copies are
#: evaluated in several rounds).
COPIES_BYTES = 1 << 29


def _perturbed_eval(model, X, y, alphas, samples, seed, batch_size):
    """Error and mean loss (copies, N) of every perturbed copy of every network, evaluated by
    packed models of as many copies as fit ``COPIES_BYTES`` (copy c of network n is network
    c' * N + n of its round's model)."""
    count, S = len(alphas) * samples, model.num_units
    per_copy = S * (model.in_features + model.out_features) * model.dtype.itemsize
    rounds = max(1, min(count, COPIES_BYTES // max(1, per_copy)))
    U64, V64 = model.U.astype(np.float64), model.V.astype(np.float64)
    err = np.empty((count, model.num_networks))
    loss = np.empty((count, model.num_networks))
    noise = _noise(model, alphas, samples, seed)
    for c0 in range(0, count, rounds):
        nc = min(rounds, count - c0)
        U = np.empty((nc * S, model.in_features), dtype=model.dtype)
        V = np.empty((nc * S, model.out_features), dtype=model.dtype)
        for i in range(nc):
            _, nuU, nuV = next(noise)
            U[i * S:(i + 1) * S] = U64 + nuU
            V[i * S:(i + 1) * S] = V64 + nuV
        big = type(model).from_weights(list(model.widths) * nc, U, V, activation=model.activation, loss=model.loss,
                                     dtype=model.dtype, copy=False)
        e, l = big.evaluate(X, y, batch_size=batch_size)
        err[c0:c0 + nc] = e.reshape(nc, model.num_networks)
        loss[c0:c0 + nc] = l.reshape(nc, model.num_networks)
    return err, loss


def sharpness_expected(model, X, y, *, alpha=5e-4, samples=8, seed=0, batch_size=512) -> np.ndarray:
    """E_nu[L(w + nu)] - L(w) per network (module docstring), ``samples`` draws, every copy of
    every network evaluated by one packed model."""
    samples = positive_int(samples, "samples")
    if not alpha > 0:
        raise ValueError(f"alpha: expected a positive perturbation scale, got {alpha!r}")
    _, base = model.evaluate(X, y, batch_size=batch_size)
    _, loss = _perturbed_eval(model, X, y, [alpha], samples, seed, batch_size)
    return loss.mean(axis=0) - base


def sharpness_worst(model, X, y, *, alpha=5e-4, steps=10, batch_size=512) -> np.ndarray:
    """(max over the box |nu_i| <= alpha (|w_i| + 1) of L(w + nu) - L(w)) / (1 + L(w)) per network,
    the max found by projected sign-gradient ascent (module docstring). Gradients of every
    network at once, on the whole (X, y)."""
    steps = positive_int(steps, "steps")
    if not alpha > 0:
        raise ValueError(f"alpha: expected a positive perturbation scale, got {alpha!r}")
    U0, V0 = model.U.astype(np.float64), model.V.astype(np.float64)
    rU, rV = alpha * (np.abs(U0) + 1), alpha * (np.abs(V0) + 1)
    _, base = model.evaluate(X, y, batch_size=batch_size)
    work = model.copy()
    nuU, nuV = np.zeros_like(U0), np.zeros_like(V0)
    best = base.copy()
    for _ in range(steps):
        loss, gU, gV = work.loss_and_grad(X, y)
        best = np.fmax(best, loss)
        with np.errstate(invalid="ignore"):         # a diverged network's inf weights: its result is NaN
            nuU = np.clip(nuU + 0.25 * rU * np.sign(gU), -rU, rU)
            nuV = np.clip(nuV + 0.25 * rV * np.sign(gV), -rV, rV)
        work.U[...] = U0 + nuU
        work.V[...] = V0 + nuV
    _, last = work.evaluate(X, y, batch_size=batch_size)
    best = np.fmax(best, last)
    return (best - base) / (1 + base)


def pac_bayes(model, X, y, *, alphas=PAC_ALPHAS, samples=8, delta=0.01, seed=0,
              batch_size=512) -> np.ndarray:
    """min over alpha of E_nu[err(w + nu)] + 4 sqrt((KL + ln(2 m G / delta)) / m) per network
    (module docstring); every alpha's and sample's copies in one packed model."""
    samples = positive_int(samples, "samples")
    alphas = np.asarray(list(alphas), dtype=np.float64)
    if alphas.ndim != 1 or alphas.size == 0 or not np.all(alphas > 0):
        raise ValueError(f"pac_alphas: expected a non-empty list of positive scales, got {alphas!r}")
    if not 0 < delta < 1:
        raise ValueError(f"delta: expected a confidence parameter in (0, 1), got {delta!r}")
    X = model._X(X)
    n = X.shape[0]
    err, _ = _perturbed_eval(model, X, y, alphas, samples, seed, batch_size)
    err = err.reshape(len(alphas), samples, model.num_networks).mean(axis=1)
    # KL(N(w, sigma^2) || N(0, sigma^2)) = sum_i w_i^2 / (2 sigma_i^2), per network
    U, V = model.U.astype(np.float64), model.V.astype(np.float64)
    ratio = (np.sum((U / (10 * np.abs(U) + 1)) ** 2, axis=1) + np.sum((V / (10 * np.abs(V) + 1)) ** 2, axis=1))
    base = np.add.reduceat(ratio, model.offsets[:-1]) / 2                  # KL * alpha^2
    kl = base[None, :] / alphas[:, None] ** 2
    bound = err + 4 * np.sqrt((kl + math.log(2 * n * len(alphas) / delta)) / n)
    return bound.min(axis=0)
