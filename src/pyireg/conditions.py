"""The thesis's conditions C1-C3 (its Figures 3-5) for every network of a packed two-layer model,
in float64 numpy: the ``c1``, ``c2``, ``c2_<eps>``, ``c3`` and ``c3_min`` measures, registered
here in :mod:`pyireg.measures` (``import pyireg`` imports this module), recorded only when named.
Network n is the two-layer ReLU net W_1 = U_n (H x d), W_2 = V_n^T (k x H). Networks of one width
are computed together (one batched product per width); nothing a network gets depends on the
other networks of its pack: the random perturbations of C2 are drawn from (seed, width, draw).
The same conditions for any depth, one network at a time: :mod:`pyireg.thesis_measures`."""
from __future__ import annotations

import math

import numpy as np

from ._validate import positive_int
from .measures import _U2, measure, pattern

#: Most float64 elements of one batched (networks x samples x k x H) block of C1.
BLOCK_ELEMENTS = 1 << 21


def _groups(model):
    """(nets, U (n, H, d), V (n, H, k)) in float64 for each width of the model."""
    widths, off = np.asarray(model.widths), np.asarray(model.offsets)
    for H in np.unique(widths):
        nets = np.flatnonzero(widths == H)
        rows = off[nets][:, None] + np.arange(H)[None, :]
        yield nets, model.U[rows].astype(np.float64), model.V[rows].astype(np.float64)


def condition_number(model, X, spectral_U, spectral_V) -> np.ndarray:
    """C1 per network: 1/mu = max over the rows x of X of ||W_2||_2 ||W_1||_2 / ||W_2 D(x) W_1||_2,
    D(x) = diag(U_n x > 0); ``spectral_U``, ``spectral_V`` are ||U_n||_2, ||V_n||_2 (N,). For two
    layers (a, c, b) = (1, 1, 2) is the only triple of the thesis's definition. inf where the
    Jacobian W_2 D(x) W_1 vanishes on some x while the product does not (mu = 0 there); NaN for a
    network with NaN or inf weights."""
    X = np.asarray(X, np.float64)
    B, d = X.shape
    out = np.empty(model.num_networks)
    k = model.out_features
    for nets, U, V in _groups(model):
        n, H = U.shape[0], U.shape[1]
        top = np.empty((n, B))
        step = max(1, BLOCK_ELEMENTS // max(1, n * k * max(H, d)))
        with np.errstate(invalid="ignore", over="ignore"):
            for b0 in range(0, B, step):
                on = (np.einsum("bd,nhd->nbh", X[b0:b0 + step], U) > 0).astype(np.float64)   # (n, b, H)
                # J(x) = V^T D(x) U, (n, b, k, d); its top singular value from the smaller Gram matrix
                J = np.matmul((on[..., None] * V[:, None]).swapaxes(-1, -2), U[:, None])
                G = J @ J.swapaxes(-1, -2) if k <= d else J.swapaxes(-1, -2) @ J
                ok = np.isfinite(G).all(axis=(-1, -2))
                ev = np.full(ok.shape, np.nan)
                if ok.any():
                    ev[ok] = np.linalg.eigvalsh(G[ok])[..., -1]
                top[:, b0:b0 + step] = np.sqrt(np.maximum(ev, 0.0))
        num = (np.asarray(spectral_U, np.float64) * np.asarray(spectral_V, np.float64))[nets][:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(top > 0, num / np.where(top > 0, top, 1.0), np.where(num > 0, np.inf, np.nan))
        ratio = np.where(np.isnan(top) | np.isnan(num), np.nan, ratio)
        out[nets] = np.max(ratio, axis=1)     # NaN propagates: a diverged network gets NaN
    return out


def flip_fraction(model, X, magnitude: float, draws: int, seed: int) -> np.ndarray:
    """C2 per network (Figure 5 at one magnitude eps): the fraction of the hidden ReLU activations
    (rows of X x H units) whose on/off state (z > 0) changes when W_1 = U_n becomes U_n + E, with
    E = s G, G (H x d) standard Gaussian drawn by ``numpy.random.default_rng([seed, H, draw])`` and
    s such that ||E||_F = eps ||U_n||_F, averaged over ``draws`` draws. Perturbing W_2 = V_n^T as
    well (the thesis perturbs every layer) changes no hidden activation of a two-layer net, so it
    is left out."""
    X = np.asarray(X, np.float64)
    B, d = X.shape
    eps = float(magnitude)
    out = np.empty(model.num_networks)
    for nets, U, _ in _groups(model):
        H = U.shape[1]
        Z = np.einsum("bd,nhd->nbh", X, U)
        base = Z > 0
        norm = np.sqrt((U ** 2).sum(axis=(1, 2)))
        flips = np.zeros(len(nets))
        for r in range(draws):
            Gm = np.random.default_rng([int(seed), int(H), r]).standard_normal((H, d))
            s = eps * norm / max(float(np.sqrt((Gm ** 2).sum())), 1e-300)
            with np.errstate(invalid="ignore", over="ignore"):
                flips += (((Z + s[:, None, None] * (X @ Gm.T)[None]) > 0) != base).sum(axis=(1, 2))
        bad = ~np.isfinite(norm)
        out[nets] = np.where(bad, np.nan, flips / (draws * B * H))
    return out


def unit_norm_ratios(model, U2) -> list:
    """C3: for each network, ||u_h|| / mean_h' ||u_h'|| for its units (``U2``: ||u_h||^2 of every
    row of U, (S,)); NaN for a network whose units all have zero norm."""
    norms = np.sqrt(np.asarray(U2, np.float64))
    off = np.asarray(model.offsets)
    out = []
    for n in range(model.num_networks):
        r = norms[off[n]:off[n + 1]]
        m = r.mean()
        out.append(r / m if m > 0 else np.full_like(r, np.nan))
    return out


# ---------------------------------------------------------------------------- the registry's measures
def _rows(ctx):
    return ctx.X[:positive_int(ctx.opt["condition_samples"], "condition_samples")]


@measure("c1", needs={"data"}, group="conditions",
         doc="C1, the condition number 1/µ: max over the first condition_samples rows x of X of "
             "‖U_n‖_2 ‖V_n‖_2 / ‖V_nᵀ D(x) U_n‖_2, D(x) = diag(U_n x > 0) (inf where that Jacobian is 0)")
def _c1(ctx):
    return condition_number(ctx.m, _rows(ctx), ctx.get("spectral_U"), ctx.get("spectral_V"))


def _c2_at(ctx, eps):
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"c2: expected a positive finite magnitude, got {eps!r}")
    return flip_fraction(ctx.m, _rows(ctx), eps, positive_int(ctx.opt["c2_draws"], "c2_draws"), int(ctx.opt["seed"]))


@measure("c2", needs={"data"}, group="conditions",
         doc="C2, the fraction of hidden ReLU activations (first condition_samples rows of X × H) that flip "
             "when U_n gets a Gaussian perturbation of Frobenius norm c2_magnitude ‖U_n‖_F (default 1e-2; "
             "mean of c2_draws draws)")
def _c2(ctx):
    return _c2_at(ctx, float(ctx.opt["c2_magnitude"]))


def _c2_name(name, match):
    eps = float(match.group(1))
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"names: {name!r}: expected a positive finite magnitude eps")


@pattern(r"^c2_((\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)$", needs={"data"}, check=_c2_name,
         doc_row="| `c2_<eps>` (named only) | data | both | C2 at the relative magnitude eps > 0, e.g. `c2_0.001`, "
                 "`c2_1e-3` (Figure 5's curve: several eps) |")
def _c2_pattern(ctx, match):
    return _c2_at(ctx, float(match.group(1)))


def _unit_norms(ctx):
    norms = np.sqrt(ctx.stats()[:, _U2])
    mean = ctx._sum(norms) / np.asarray(ctx.m.widths, np.float64)
    return norms, np.where(mean > 0, mean, np.nan)


@measure("c3", group="conditions", doc="C3, max_h ‖u_h‖ / mean_h′ ‖u_h′‖: each unit's incoming norm over its "
         "layer's mean, the largest (NaN when every u_h = 0)")
def _c3(ctx):
    norms, mean = _unit_norms(ctx)
    return ctx._max(norms) / mean


@measure("c3_min", group="conditions", doc="min_h ‖u_h‖ / mean_h′ ‖u_h′‖ (with c3, C3's range)")
def _c3_min(ctx):
    norms, mean = _unit_norms(ctx)
    return np.minimum.reduceat(norms, ctx.starts) / mean
