"""Complexity measures of every network of a PackedMLP, the registry of Neyshabur's thesis
("Implicit Regularization in Deep Learning", 2017) and the papers it collects.

``compute(model, names, X=None, y=None, init=None)`` returns a dict ``{name: (N,) float64
array}`` (a per-network table: ``pandas.DataFrame(compute(...))``); ``PackedMLP.measures`` is the
same call. Per-unit statistics come from the native core in one pass over the weights
(``unit_stats``: ||u_h||_2^2, ||v_h||_2^2, l1, lp^p and l-inf norms of every row, and the
squared distances to the initial rows; ``unit_moments``: per-unit sums of z^2 and act(z)^2,
z = <u_h, x>, over a data set) and are composed per network here. Notation: network n has H
units, U_n (H x d) with rows u_h, V_n (H x k) with rows v_h, y(x) = V_n^T act(U_n x); m samples
(X, y); gamma = the margin below.

Weight measures (no data)
    l2_penalty      1/2 (||U_n||_F^2 + ||V_n||_F^2)                         (the weight-decay term)
    group_l1        sum_h ||u_h|| ||v_h||   = min over Theorem-1 rescalings of l2_penalty
    norm_U, norm_V  ||U_n||_F, ||V_n||_F
    fro_product     ||U_n||_F ||V_n||_F      ("Exploring generalization", NIPS 2017, l2 norm measure)
    path_l1, path_l2, path_l<p>, path_linf
                    the lp path norm phi_p = (sum over paths i -> h -> j of |U[h,i] V[h,j]|^p)^(1/p)
                    = (sum_h ||u_h||_p^p ||v_h||_p^p)^(1/p); path_linf = max_h ||u_h||_inf ||v_h||_inf
                    (Neyshabur, Tomioka & Srebro, COLT 2015). Any p > 0: e.g. "path_l3", "path_l1.5".
    spectral_U, spectral_V, spectral_product
                    ||U_n||_2, ||V_n||_2 (largest singular values) and their product
    spectral_end_to_end, trace_norm
                    ||V_n^T U_n||_2 and the nuclear norm ||V_n^T U_n||_* of the end-to-end matrix:
                    the function itself for the linear activation, where the trace norm is the
                    least group_l1 over all factorizations (matrix factorization's regularizer);
                    for relu only a property of the weights.

Initialization (``init``: the model at initialization, or a pair (U0, V0))
    dist_U, dist_V  ||U_n - U0_n||_F, ||V_n - V0_n||_F
                    (distance from initialization, Nagarajan & Kolter 2017; "Exploring", NBLS 2019)

Data (``X``, ``y``: class labels; cross-entropy models)
    margin          the 5th percentile over the samples of gamma_i = y(x_i)[y_i] - max_{j != y_i} y(x_i)[j]
                    ("Exploring", Sec. 2; numpy's linear interpolation; option ``percentile``).
                    Take X, y = the training set, as the paper does.
    fro_margin, path_l1_margin, path_l2_margin, spectral_margin
                    ||U||_F ||V||_F / gamma, phi_1 / gamma, phi_2 / gamma, ||U||_2 ||V||_2 / gamma.
                    NaN where gamma <= 0.
    ddp_path        sqrt(gamma_net) of data-dependent path normalization (Neyshabur, Tomioka,
                    Salakhutdinov & Srebro, ICLR 2016) on X:
                    gamma_net = a^2 phi_2^2 + a (1 - a) sum_h E[z_h^2] ||v_h||^2 + (1 - a) E||y(x)||^2,
                    a = option ``ddp_alpha`` (default 0.5); a = 1 gives path_l2. See DDPSGD.
    overparam_bound (needs init too) the generalization bound for two-layer ReLU nets of Neyshabur,
                    Li, Bhojanapalli, LeCun & Srebro, "Towards understanding the role of
                    over-parametrization" (ICLR 2019), as its authors computed it (explicit
                    constants, delta = 0.01), with c = k classes:
                      R = 3 sqrt(2) (sqrt(2c) + 1) (||V||_F + 1) (||[U0 X]_+||_F / sqrt(m)
                          + ||U - U0||_F ||X||_F / sqrt(m) + 1) / gamma
                      capacity = (R + 3 sqrt(5 H + ln(max(1, gamma sqrt(m)) / delta)))^2
                      overparam_bound = sqrt(capacity / m)   (the bound on test error - train ramp loss)
                    The paper's Theorem 2 is O~(sqrt(c) ||V||_F (||U - U0||_F ||X||_F + ||U0 X||_F)
                    / (gamma m) + sqrt(h / m)); the constants, the +1 terms (from the union
                    bound over the norm grid) and the post-activation ||[U0 X]_+||_F are those of
                    the authors' code. Where the two differ we follow the code: it is what the
                    paper's plots show, and the paper's exact constants could not be checked here.
                    For the linear activation [U0 X]_+ is replaced by U0 X (our choice: the proof
                    uses only that the activation is 1-Lipschitz).

The thesis's conditions C1-C3 (Figures 3-5; only when named): c1, c2, c2_<eps>, c3, c3_min,
registered by :mod:`pyireg.conditions`, which defines them.

Sharpness and PAC-Bayes (only when named: they evaluate many perturbed copies)
    sharpness_expected
                    E_nu[L(w + nu)] - L(w), L = mean training loss (the model's loss), nu_i ~
                    N(0, sigma_i^2) with the relative scale sigma_i = alpha (10 |w_i| + 1) over
                    every weight of U and V ("Exploring", Sec. 3, expected sharpness), estimated
                    from ``samples`` draws (default 8); option ``alpha`` (default 5e-4).
    sharpness_worst (max_{|nu_i| <= alpha (|w_i| + 1)} L(w + nu) - L(w)) / (1 + L(w)) (Keskar et
                    al. 2017, as used in "Exploring"), the max found by ``ascent_steps`` (default
                    10) steps of projected sign-gradient ascent from nu = 0, step alpha (|w_i| + 1) / 4,
                    on the full (X, y) (the max includes nu = 0, so the value is >= 0). Keskar et
                    al. used 10 L-BFGS-B iterations; sign ascent in the box is our choice: one
                    packed gradient per step serves every network at once.
    pac_bayes       an estimate of McAllester's PAC-Bayes bound on the 0-1 error of the
                    perturbed network ("Exploring", Sec. 3): with the prior N(0, sigma^2) and
                    posterior N(w, sigma^2), KL = sum_i w_i^2 / (2 sigma_i^2),
                      min over alpha in ``pac_alphas`` of  E_nu[err(w + nu)]
                          + 4 sqrt((KL + ln(2 m G / delta)) / m)
                    (G = the grid size, a union bound over it; delta = 0.01), E_nu from
                    ``samples`` draws of sigma_i = alpha (10 |w_i| + 1). The 0-1 loss keeps the
                    bound valid (bounded loss); the relative sigma makes the prior depend on w,
                    as in the paper, which ignores that. It is an estimate, not a certificate.

Every perturbed copy of every network is evaluated at once by one packed model (all
networks x samples copies; in rounds of at most ``COPIES_BYTES`` of weights), so the cost is
that of evaluating a model ``samples`` (x the grid) times larger.

Spectral norms: per network, the largest eigenvalue of the smaller Gram matrix (U_n^T U_n,
d x d, when H >= d, else U_n U_n^T), in float64, by LAPACK's symmetric eigensolver, batched over
networks of equal width. Cost H d min(H, d) + min(H, d)^3 per network. Measured on the 2-core
development machine for one Gaussian H x 100 matrix (a random initialization, the hard case
for iterative methods): H = 4096: Gram 21 ms, full SVD 133 ms, power iteration 37 ms for 100
iterations with a relative error of 7e-3 (1,000 iterations: 157 ms, 4e-10); H = 512: 3.4 ms,
23 ms, 4.8 ms (error 4e-3). Power iteration converges at the rate sigma_2 / sigma_1, and at a
random initialization the top singular values crowd at the Marchenko-Pastur edge; the Gram
route is exact to rounding (sigma_1 to about 5e-16 relative here; only the small singular
values lose precision by squaring) and the fastest. The end-to-end matrix V_n^T U_n (k x d) is
formed in float64 and its singular values taken directly.
"""
from __future__ import annotations

import math
import numbers
import re

import numpy as np

from ._validate import as_float_array, as_labels, positive_int, to_numpy
from .perturbations import PAC_ALPHAS, pac_bayes, relative_noise, sharpness_expected, sharpness_worst

# column indices of the native unit_stats table (csrc/cpu/measures.h)
_U2, _V2, _U1, _V1, _UP, _VP, _UMAX, _VMAX, _DU2, _DV2 = range(10)

_PATH = re.compile(r"^path_l(\d+(\.\d+)?)$")
BOTH_LOSSES = ("cross_entropy", "squared")

DEFAULTS = dict(percentile=5.0, alpha=5e-4, samples=8, ascent_steps=10,
                pac_alphas=PAC_ALPHAS, ddp_alpha=0.5, delta=0.01, seed=0,
                batch_size=512, hessian_iters=100, hessian_tol=1e-6, condition_samples=100, c2_magnitude=1e-2,
                c2_draws=4)
_COUNTS = ("samples", "ascent_steps", "batch_size", "hessian_iters", "condition_samples", "c2_draws")
# the intervals of the real-valued options: (low, low included, high or None, high included)
_RANGES = {"percentile": (0.0, True, 100.0, True), "alpha": (0.0, False, None, False),
           "delta": (0.0, False, 1.0, False), "hessian_tol": (0.0, False, None, False),
           "c2_magnitude": (0.0, True, None, False)}


def _check_option(key: str, value) -> None:
    """A measure option given to compute(), checked before anything is computed: one line naming
    it (they reached numpy, which named neither the option nor the measure)."""
    if key in _COUNTS:
        positive_int(value, key)
    elif key == "seed":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {value!r}")
    elif key in _RANGES:
        low, low_in, high, high_in = _RANGES[key]
        real = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        if not (real and (value >= low if low_in else value > low)
                and (high is None or (value <= high if high_in else value < high))):
            span = f"{'[' if low_in else '('}{low:g}, " + (f"{high:g}{']' if high_in else ')'}" if high is not None
                                                         else "inf)")
            raise ValueError(f"{key}: expected a finite number in {span}, got {value!r}")


#: Groups of measures recorded only when named (never by "all"): too costly for every epoch.
NAMED_ONLY = ("curvature", "conditions")


# ----------------------------------------------------------------------------- the registry
class Measure:
    """One registered measure: its function fn(ctx) -> (N,) values, what it needs besides the
    weights ({"init", "data"}), the losses it is defined for, whether it perturbs the weights
    (computed only when named), its group in the documentation, and a one-line description."""

    __slots__ = ("name", "fn", "needs", "losses", "perturbed", "group", "doc")

    def __init__(self, name, fn, needs, losses, perturbed, group, doc):
        self.name, self.fn, self.needs, self.losses = name, fn, frozenset(needs), tuple(losses)
        self.perturbed, self.group, self.doc = bool(perturbed), group, doc


REGISTRY: dict = {}      # name -> Measure, in the order of the documentation
# (regex, needs, fn(ctx, match), documentation row, check(name, match) or None): names with a
# parameter
PATTERNS: list = []


class UnknownMeasureError(ValueError):
    """A name that is no measure (as opposed to a known one with a parameter it cannot take)."""


def pattern(regex: str, *, needs=(), doc_row: str = "", check=None):
    """Register ``fn(ctx, match)`` for every measure name matching ``regex`` (a decorator), such
    as ``c2_0.001``; recorded only when named. ``check(name, match)`` refuses a parameter the
    measure cannot take (``needs`` runs it, so a sweep refuses the name before it starts)."""
    def deco(fn):
        PATTERNS.append((re.compile(regex), frozenset(needs), fn, doc_row, check))
        return fn
    return deco


def _pattern_of(name):
    """(match, needs, fn, check) of the pattern ``name`` matches, or None."""
    for rx, need, fn, _, check in PATTERNS:
        mt = rx.match(name)
        if mt:
            return mt, need, fn, check
    return None


def measure(name: str, *, needs=(), losses=BOTH_LOSSES, perturbed=False, group="weights", doc=""):
    """Register ``fn(ctx)`` as the measure ``name`` (a decorator). ``ctx`` gives the model
    (``ctx.m``: anything shaped like a PackedMLP), the data, the initial weights and the other
    measures (``ctx.get(name)``), each computed once per ``compute`` call."""
    def deco(fn):
        REGISTRY[name] = Measure(name, fn, needs, losses, perturbed, group, doc or (fn.__doc__ or "").strip())
        return fn
    return deco


def needs(name: str) -> set:
    """What a measure needs besides the weights: a subset of {"init", "data"}."""
    if name in REGISTRY:
        return set(REGISTRY[name].needs)
    if _PATH.match(name):
        if not float(_PATH.match(name).group(1)) > 0:
            raise ValueError(f"names: {name!r}: expected p > 0")
        return set()
    found = _pattern_of(name)
    if found:
        mt, need, _, check = found
        if check is not None:
            check(name, mt)
        return set(need)
    raise UnknownMeasureError(f"names: unknown measure {name!r}; expected one of {', '.join(REGISTRY)}, "
                              "path_l<p> (p > 0) or c2_<eps> (eps > 0)")


def losses(name: str) -> tuple:
    """The losses a measure is defined for: margins need class labels (cross-entropy)."""
    needs(name)
    return REGISTRY[name].losses if name in REGISTRY else BOTH_LOSSES


def markdown_table() -> str:
    """The measures as a Markdown table (name, needs, losses, what it is), from the registry:
    the documentation's table."""
    rows = ["| measure | needs | losses | what it is |", "| --- | --- | --- | --- |"]
    for m in REGISTRY.values():
        need = ", ".join(sorted(m.needs)) or "weights"
        loss = "both" if set(m.losses) == set(BOTH_LOSSES) else ", ".join(m.losses)
        tag = " (perturbed)" if m.perturbed else " (named only)" if m.group in NAMED_ONLY else ""
        rows.append(f"| `{m.name}`{tag} | {need} | {loss} | {m.doc} |")
    rows.append("| `path_l<p>` | weights | both | the lp path norm for any p > 0, e.g. `path_l3` |")
    rows.extend(row for _, _, _, row, _ in PATTERNS if row)
    return "\n".join(rows)


def compute(model, names=None, X=None, y=None, init=None, **options) -> dict:
    """Per-network complexity measures: ``{name: array of shape (N,)}`` (float64).

    ``model``: a PackedMLP, or anything shaped like one (U, V, offsets, widths and the native
    engine). ``names``: None (the native weight measures, ``DEFAULT``), "all" (every measure of
    ``ALL`` the given inputs allow), or an iterable of names (module docstring; ``path_l<p>`` for
    any p > 0). ``X`` (m, d) and ``y`` (m,) class labels: the data of the margin-based measures,
    normally the training set. ``init``: the model at initialization (a model of the same
    widths, or a pair (U0, V0)). Options (``DEFAULTS``): percentile, alpha (sharpness scale),
    samples, ascent_steps, pac_alphas, ddp_alpha, delta, seed (of the perturbations),
    batch_size (samples per native block), condition_samples, c2_magnitude, c2_draws (C1, C2).
    """
    missing = [a for a in ("U", "V", "offsets", "widths", "_engine") if not hasattr(model, a)]
    if missing:
        raise TypeError(f"model: expected a PackedMLP (or a model shaped like one), got {type(model).__name__} "
                        f"without {', '.join(missing)}")
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"options: unknown option(s) {', '.join(sorted(unknown))}; expected any of "
                        f"{', '.join(DEFAULTS)}")
    for key, value in options.items():
        _check_option(key, value)
    opt = dict(DEFAULTS, **options)
    have_data = X is not None
    if (X is None) != (y is None):
        raise ValueError("X, y: expected both the samples and their labels, or neither")
    if names is None:
        names = list(DEFAULT)
    elif isinstance(names, str):
        if names != "all":
            raise ValueError(f"names: expected None, 'all' or a list of measure names, got the string {names!r}")
        names = names_available(init=init is not None, data=have_data)
    else:
        names = list(names)
    for n in names:
        need = needs(n)
        if "data" in need and not have_data:
            raise ValueError(f"X: the measure {n!r} needs data; pass X and y (normally the training set)")
        if "init" in need and init is None:
            raise ValueError(f"init: the measure {n!r} needs the initial weights; "
                             f"pass init=(U0, V0) or the initial model")
    ctx = _Context(model, X, y, init, opt)
    return {n: ctx.get(n) for n in names}


class _Context:
    """The shared intermediate results of one compute() call, each computed at most once."""

    def __init__(self, model, X, y, init, opt):
        self.m = model
        self.opt = opt
        self.cache: dict = {}
        self.starts = model.offsets[:-1]
        if X is not None:
            self.X = model._X(X)
            if model.loss != "cross_entropy":
                self.y = None          # margins and errors need class labels; checked where used
                self.y_raw = y
            else:
                self.y = as_labels(y, "y", self.X.shape[0], model.out_features)
        if init is not None:
            self.U0, self.V0 = _init_weights(model, init)

    # ---------------------------------------------------------------- per-unit, per-network sums
    def _sum(self, a):
        return np.add.reduceat(a, self.starts)

    def _max(self, a):
        return np.maximum.reduceat(a, self.starts)

    def stats(self, p=None):
        key = ("stats", p)
        if key not in self.cache:
            init = hasattr(self, "U0")
            self.cache[key] = self.m._engine.unit_stats(self.m.U, self.m.V, self.U0 if init else None,
                                                        self.V0 if init else None, p)
        return self.cache[key]

    def native(self):
        if "native" not in self.cache:
            self.cache["native"] = self.m._engine.measures(self.m.U, self.m.V)
        return self.cache["native"]

    def spectral(self):
        if "spectral" not in self.cache:
            self.cache["spectral"] = spectral_norms(self.m)
        return self.cache["spectral"]

    def forward_stats(self):
        """Per-network margins (N, m) and the mean of ||y(x)||^2 over X (N,), one blocked forward."""
        if "forward" not in self.cache:
            self.cache["forward"] = _forward_stats(self.m, self.X, getattr(self, "y", None),
                                                   positive_int(self.opt["batch_size"], "batch_size"))
        return self.cache["forward"]

    def normalized(self, value):
        g = self.get("margin")
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(g > 0, value / np.where(g > 0, g, 1.0), np.nan)

    def labels(self):
        return self.y_raw if self.y is None else self.y

    def get(self, name):
        if name in self.cache:
            return self.cache[name]
        if name in REGISTRY:
            v = REGISTRY[name].fn(self)
        elif (found := _pattern_of(name)) is not None:
            mt, _, fn, _ = found
            v = fn(self, mt)
        else:
            v = self._path(name)
        self.cache[name] = np.asarray(v, dtype=np.float64)
        return self.cache[name]

    def _path(self, name):
        needs(name)                     # the unknown-measure and the p > 0 errors
        p = float(_PATH.match(name).group(1))
        if p == 1 or p == 2:
            return self.native()[f"path_l{int(p)}"]
        s = self.stats(p)
        with np.errstate(over="ignore", invalid="ignore"):
            out = self._sum(s[:, _UP] * s[:, _VP]) ** (1.0 / p)
        # |w|^p over- or underflows float64 for large p (|w| = 10, p = 400): those networks again
        # with each layer divided by its largest |w| first (a diverged network's NaN stays NaN)
        finite = np.isfinite(self._max(s[:, _UMAX] * s[:, _VMAX]))
        off = self.m.offsets
        for n in np.flatnonzero(finite & (~np.isfinite(out) | (out == 0))):
            out[n] = scaled_path_norm([self.m.U[off[n]:off[n + 1]], self.m.V[off[n]:off[n + 1]].T], p)
        return out


def scaled_path_norm(mats, p: float) -> float:
    """phi_p of the layers ``mats`` ((out, in) matrices, applied first to last) by the dynamic
    program over layers, each layer divided by its largest |w| before the p-th powers and the
    scales put back in logs: finite wherever phi_p is, where the direct sums of |w|^p over- or
    underflow float64 for large p (|w| = 100, p = 300). The fallback of path_l{p} here and of
    ``deep.path_norm``."""
    g = np.ones(mats[0].shape[1])
    log_scale = 0.0
    for W in mats:
        W = np.abs(np.asarray(W, np.float64))
        top = float(W.max()) if W.size else 0.0
        if top == 0:
            return 0.0
        if not math.isfinite(top):
            return float("nan") if math.isnan(top) else float("inf")
        log_scale += math.log(top)
        g = ((W / top) ** p) @ g
    total = float(g.sum())
    if not total > 0:
        return 0.0
    log_phi = log_scale + math.log(total) / p
    return math.exp(log_phi) if log_phi < math.log(np.finfo(np.float64).max) else float("inf")


# ----------------------------------------------------------------------------- the measures
def _native(name, doc):
    measure(name, doc=doc)(lambda ctx: ctx.native()[name])


_native("l2_penalty", "1/2 (‖U_n‖_F² + ‖V_n‖_F²), the weight-decay term")
_native("group_l1", "Σ_h ‖u_h‖ ‖v_h‖, the least l2_penalty over Theorem-1 rescalings")
_native("path_l1", "the l1 path norm φ_1")
_native("path_l2", "the l2 path norm φ_2")
_native("norm_U", "‖U_n‖_F")
_native("norm_V", "‖V_n‖_F")


@measure("fro_product", doc="‖U_n‖_F ‖V_n‖_F")
def _fro_product(ctx):
    return ctx.get("norm_U") * ctx.get("norm_V")


@measure("path_linf", doc="max_h ‖u_h‖_∞ ‖v_h‖_∞")
def _path_linf(ctx):
    s = ctx.stats()
    return ctx._max(s[:, _UMAX] * s[:, _VMAX])


def _spectral(name, doc):
    measure(name, doc=doc)(lambda ctx: ctx.spectral()[name])


_spectral("spectral_U", "‖U_n‖_2, the largest singular value")
_spectral("spectral_V", "‖V_n‖_2")


@measure("spectral_product", doc="‖U_n‖_2 ‖V_n‖_2")
def _spectral_product(ctx):
    return ctx.get("spectral_U") * ctx.get("spectral_V")


_spectral("spectral_end_to_end", "‖V_nᵀ U_n‖_2 of the end-to-end matrix")
_spectral("trace_norm", "the nuclear norm ‖V_nᵀ U_n‖_* (matrix factorization's regularizer)")


def _dist(name, col):
    @measure(name, needs={"init"}, group="initialization", doc=f"‖{name[-1]}_n − {name[-1]}0_n‖_F, distance "
             "from initialization")
    def fn(ctx):
        return np.sqrt(ctx._sum(ctx.stats()[:, col]))


_dist("dist_U", _DU2)
_dist("dist_V", _DV2)


@measure("margin", needs={"data"}, losses=("cross_entropy",), group="data",
         doc="the 5th percentile over the samples of y(x)[label] − max of the others (option percentile); "
         "+inf for a one-output model (no other class; its margin-normalized measures are then 0)")
def _margin(ctx):
    margins, _ = ctx.forward_stats()
    if margins is None:
        raise ValueError("y: margins need class labels (a cross-entropy model)")
    if np.shape(ctx.m.V)[1] == 1:
        # one output, no other class: every margin is +inf, and so is their percentile (numpy's
        # interpolation of inf - inf would make it nan); a diverged network with more outputs
        # keeps its nan
        return np.full(margins.shape[0], np.inf)
    return np.percentile(margins, float(ctx.opt["percentile"]), axis=1)


def _over_margin(name, of, doc):
    measure(name, needs={"data"}, losses=("cross_entropy",), group="data",
            doc=doc)(lambda ctx: ctx.normalized(ctx.get(of)))


_over_margin("fro_margin", "fro_product", "‖U‖_F ‖V‖_F / margin (NaN where the margin ≤ 0)")
_over_margin("path_l1_margin", "path_l1", "φ_1 / margin")
_over_margin("path_l2_margin", "path_l2", "φ_2 / margin")
_over_margin("spectral_margin", "spectral_product", "‖U‖_2 ‖V‖_2 / margin")


@measure("ddp_path", needs={"data"}, group="data",
         doc="√γ_net of data-dependent path normalization on X (option ddp_alpha, default 0.5)")
def _ddp_path(ctx):
    m, o = ctx.m, ctx.opt
    a = float(o["ddp_alpha"])
    if not 0 <= a <= 1:
        raise ValueError(f"ddp_alpha: expected a value in [0, 1], got {a!r}")
    n_samples = ctx.X.shape[0]
    z2, _ = m._engine.unit_moments(m.U, ctx.X, positive_int(o["batch_size"], "batch_size"))
    s = ctx.stats()
    _, out2 = ctx.forward_stats()
    g = (a * a * ctx.get("path_l2") ** 2 + a * (1 - a) * ctx._sum(z2 / n_samples * s[:, _V2])
         + (1 - a) * out2)
    return np.sqrt(g)


@measure("overparam_bound", needs={"init", "data"}, losses=("cross_entropy",), group="data",
         doc="the generalization bound of Neyshabur et al. (ICLR 2019) for two-layer ReLU networks")
def _overparam(ctx):
    m, o = ctx.m, ctx.opt
    gamma = ctx.get("margin")
    n_samples = ctx.X.shape[0]
    c = m.out_features
    _, a2_0 = m._engine.unit_moments(ctx.U0, ctx.X, positive_int(o["batch_size"], "batch_size"))
    init_term = np.sqrt(ctx._sum(a2_0)) / math.sqrt(n_samples)          # ||[U0 X]_+||_F / sqrt(m)
    data_l2 = float(np.sum(np.square(ctx.X, dtype=np.float64))) / n_samples  # ||X||_F^2 / m
    delta = float(o["delta"])
    H = np.asarray(m.widths, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        R = (3 * math.sqrt(2) * (math.sqrt(2 * c) + 1) * (ctx.get("norm_V") + 1)
             * (init_term + ctx.get("dist_U") * math.sqrt(data_l2) + 1) / gamma)
        cap = (R + 3 * np.sqrt(5 * H + np.log(np.maximum(1.0, gamma * math.sqrt(n_samples)) / delta))) ** 2
    return np.where(gamma > 0, np.sqrt(cap / n_samples), np.nan)


@measure("hessian_top", needs={"data"}, group="curvature",
         doc="the largest eigenvalue of the Hessian of the mean loss on X (Lanczos; options hessian_iters, "
             "hessian_tol, seed); squared loss: y as class labels (onto their one-hot code) or targets")
def _hessian_top(ctx):
    from .hessian import hessian_top
    m, o = ctx.m, ctx.opt
    y = ctx.labels()
    if m.loss != "cross_entropy" and np.ndim(y) == 1:
        if m.out_features == 1:                              # one output: y are its targets (as evaluate)
            y = to_numpy(y, "y").reshape(-1, 1)
        else:                                                # class labels: regress onto the one-hot code
            y = np.eye(m.out_features, dtype=ctx.X.dtype)[as_labels(y, "y", ctx.X.shape[0], m.out_features)]
    return hessian_top(m, ctx.X, y, iters=positive_int(o["hessian_iters"], "hessian_iters"),
                       tol=float(o["hessian_tol"]), seed=int(o["seed"]))


@measure("sharpness_expected", needs={"data"}, perturbed=True, group="perturbed",
         doc="E_ν[L(w + ν)] − L(w), relative Gaussian ν (options alpha, samples, seed)")
def _sharpness_expected(ctx):
    o = ctx.opt
    return sharpness_expected(ctx.m, ctx.X, ctx.labels(), alpha=o["alpha"], samples=o["samples"], seed=o["seed"],
                              batch_size=o["batch_size"])


@measure("sharpness_worst", needs={"data"}, perturbed=True, group="perturbed",
         doc="the worst loss increase in a box around w, by sign-gradient ascent (options alpha, ascent_steps)")
def _sharpness_worst(ctx):
    o = ctx.opt
    return sharpness_worst(ctx.m, ctx.X, ctx.labels(), alpha=o["alpha"], steps=o["ascent_steps"],
                           batch_size=o["batch_size"])


@measure("pac_bayes", needs={"data"}, perturbed=True, group="perturbed",
         doc="an estimate of McAllester's PAC-Bayes bound on the perturbed network's 0-1 error")
def _pac_bayes(ctx):
    o = ctx.opt
    return pac_bayes(ctx.m, ctx.X, ctx.labels(), alphas=o["pac_alphas"], samples=o["samples"], delta=o["delta"],
                     seed=o["seed"], batch_size=o["batch_size"])


# the groups, derived from the registry (one place)
NATIVE = ("l2_penalty", "group_l1", "path_l1", "path_l2", "norm_U", "norm_V")
PERTURBED = tuple(n for n, m in REGISTRY.items() if m.perturbed)
WEIGHT = tuple(n for n, m in REGISTRY.items() if not m.needs)
INIT = tuple(n for n, m in REGISTRY.items() if m.needs == {"init"})
DATA = tuple(n for n, m in REGISTRY.items() if m.needs == {"data"} and not m.perturbed and m.group not in NAMED_ONLY)
#: Curvature (a Lanczos run per call): recorded only when named, never by "all".
CURVATURE = tuple(n for n, m in REGISTRY.items() if m.group == "curvature")
INIT_DATA = tuple(n for n, m in REGISTRY.items() if m.needs == {"init", "data"})
#: Names ``names="all"`` may return (the perturbed ones only when named).
ALL = WEIGHT + INIT + DATA + INIT_DATA
#: What ``names=None`` returns: the native weight measures (cheap, always available).
DEFAULT = NATIVE


def _init_weights(model, init):
    if hasattr(init, "U") and hasattr(init, "widths"):          # the initial model
        if list(init.widths) != list(model.widths) or init.in_features != model.in_features \
                or init.out_features != model.out_features:
            raise ValueError("init: expected a model with the same widths, in_features and out_features")
        U0, V0 = init.U, init.V
    else:
        try:
            U0, V0 = init
        except (TypeError, ValueError):
            raise TypeError("init: expected the initial model or a pair (U0, V0)") from None
    U0 = as_float_array(U0, "init U0", model.dtype, 2, model.U.shape)
    V0 = as_float_array(V0, "init V0", model.dtype, 2, model.V.shape)
    return np.ascontiguousarray(U0), np.ascontiguousarray(V0)


def _forward_stats(model, X, y, block):
    """Per-sample margins (N, m) (None without labels) and mean_i ||y(x_i)||^2 (N,), in float64,
    from the model's outputs on blocks of X."""
    N, n = model.num_networks, X.shape[0]
    margins = None if y is None else np.empty((N, n))
    out2 = np.zeros(N)
    for b0 in range(0, n, block):
        out = model.forward(X[b0:b0 + block]).astype(np.float64)       # (N, b, k)
        out2 += np.einsum("nbk,nbk->n", out, out)
        if margins is not None:
            yb = y[b0:b0 + block]
            idx = np.arange(len(yb))
            true = out[:, idx, yb]
            out[:, idx, yb] = -np.inf
            margins[:, b0:b0 + len(yb)] = true - out.max(axis=2)
    return margins, out2 / n


def margins(model, X, y, batch_size: int = 512) -> np.ndarray:
    """Per-network, per-sample margins y(x_i)[y_i] - max_{j != y_i} y(x_i)[j]: shape (N, m)."""
    X = model._X(X)
    y = as_labels(y, "y", X.shape[0], model.out_features)
    return _forward_stats(model, X, y, positive_int(batch_size, "batch_size"))[0]


def spectral_norms(model) -> dict:
    """Per network: ``spectral_U`` = ||U_n||_2, ``spectral_V`` = ||V_n||_2, and of the end-to-end
    matrix V_n^T U_n (k x d) ``spectral_end_to_end`` (its largest singular value) and
    ``trace_norm`` (the sum of its singular values). Gram matrices in float64 (module docstring).
    A network with a NaN or inf weight (diverged) gets NaN, like the native measures."""
    N, off = model.num_networks, model.offsets
    out = {k: np.empty(N) for k in ("spectral_U", "spectral_V", "spectral_end_to_end", "trace_norm")}
    widths = np.asarray(model.widths)
    for H in np.unique(widths):
        nets = np.flatnonzero(widths == H)
        for name, W in (("spectral_U", model.U), ("spectral_V", model.V)):
            grams = np.empty((len(nets),) + ((W.shape[1],) * 2 if H >= W.shape[1] else (H, H)))
            for i, n in enumerate(nets):
                A = W[off[n]:off[n + 1]].astype(np.float64)
                grams[i] = A.T @ A if H >= W.shape[1] else A @ A.T
            ok = np.isfinite(grams).all(axis=(1, 2))
            top = np.full(len(nets), np.nan)
            if ok.any():
                top[ok] = np.linalg.eigvalsh(grams[ok])[:, -1]
            out[name][nets] = np.sqrt(np.maximum(top, 0.0))
        ends = np.empty((len(nets), model.out_features, model.in_features))
        for i, n in enumerate(nets):
            s = slice(off[n], off[n + 1])
            ends[i] = model.V[s].astype(np.float64).T @ model.U[s].astype(np.float64)
        ok = np.isfinite(ends).all(axis=(1, 2))
        sv = np.full((len(nets), min(ends.shape[1:])), np.nan)
        if ok.any():
            sv[ok] = np.linalg.svd(ends[ok], compute_uv=False)
        out["spectral_end_to_end"][nets] = sv[:, 0]
        out["trace_norm"][nets] = sv.sum(axis=1)
    return out


def names_available(init: bool = False, data: bool = False) -> list:
    """The names ``names='all'`` gives for the inputs at hand."""
    have = ({"init"} if init else set()) | ({"data"} if data else set())
    return [n for n, m in REGISTRY.items() if not m.perturbed and m.group not in NAMED_ONLY and m.needs <= have]


__all__ = ["compute", "needs", "losses", "UnknownMeasureError", "measure", "pattern", "markdown_table", "REGISTRY",
           "margins", "spectral_norms", "sharpness_expected", "sharpness_worst", "pac_bayes",
           "relative_noise", "names_available", "ALL", "DEFAULT", "DEFAULTS", "WEIGHT", "INIT", "DATA", "INIT_DATA",
           "PERTURBED", "NATIVE", "CURVATURE", "NAMED_ONLY"]

