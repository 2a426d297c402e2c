"""The thesis's conditions and margin bounds as plain float64 numpy functions of a feed-forward
ReLU network's weights (a list of (out, in) matrices, bias-free, last layer linear) and data:
C1 (the condition number 1/mu of the layer Jacobians), C2 (the fraction of ReLU activations that
flip under a weight perturbation of given relative size), C3 (each unit's incoming norm over its
layer's mean), Lemma 1's margin PAC-Bayes bound and the spectrally-normalized margin bound, with
their terms reported separately. ``packed_weights`` adapts a PackedMLP's network n (two layers).

Sources: Neyshabur's thesis, Figures 3-5 (C1-C3; from Neyshabur, Bhojanapalli, McAllester &
Srebro, "Exploring generalization in deep learning", 2017) and Lemma 1 with the spectral bound
(Neyshabur, Bhojanapalli & Srebro, "A PAC-Bayesian approach to spectrally-normalized margin
bounds", 2018). The seed summary states the figures' captions only; each docstring says exactly
which formula is computed.
"""
from __future__ import annotations

import math

import numpy as np

from ._validate import as_labels, positive_int


def _weights(weights):
    Ws = [np.asarray(W, np.float64) for W in weights]
    if not Ws or any(W.ndim != 2 for W in Ws):
        raise ValueError("weights: expected a non-empty list of 2-d (out, in) matrices")
    for i in range(1, len(Ws)):
        if Ws[i].shape[1] != Ws[i - 1].shape[0]:
            raise ValueError(f"weights: layer {i} takes {Ws[i].shape[1]} inputs but layer {i - 1} "
                             f"gives {Ws[i - 1].shape[0]}")
    return Ws


def _inputs(Ws, X, y=None):
    """X (m, d) for the first layer, finite, as float64; with y, its integer labels in [0, k)."""
    X = np.asarray(X, np.float64)
    if X.ndim != 2 or X.shape[1] != Ws[0].shape[1]:
        raise ValueError(f"X: expected a 2-d batch (m, {Ws[0].shape[1]}) for the first layer, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X: contains NaN or inf")
    if y is None:
        return X
    return X, as_labels(y, "y", X.shape[0], Ws[-1].shape[0])


def _bound_args(m, gamma, delta) -> None:
    if m < 2 or not gamma > 0 or not math.isfinite(gamma) or not 0 < delta < 1:
        raise ValueError(f"X, gamma, delta: expected m >= 2 samples, a finite gamma > 0 and 0 < delta < 1, got m = "
                         f"{m}, gamma = {gamma!r}, delta = {delta!r}")


def packed_weights(model, n: int):
    """Network n of a PackedMLP as the layer list [U_n (H, d), V_n^T (k, H)]."""
    U, V = model.network(n)
    return [U.astype(np.float64), V.T.astype(np.float64)]


def preactivations(weights, X):
    """z_1 .. z_L for the batch X (B, d): z_i = W_i h_{i-1}, h_0 = x, h_i = relu(z_i); z_L is the output."""
    Ws = _weights(weights)
    h = np.asarray(X, np.float64)
    zs = []
    for i, W in enumerate(Ws):
        z = h @ W.T
        zs.append(z)
        h = np.maximum(z, 0) if i < len(Ws) - 1 else z
    return zs


def forward(weights, X):
    return preactivations(weights, X)[-1]


# ---------------------------------------------------------------------------- C1
def condition_ratios(weights, x):
    """For one input x: {(a, c, b): ||J^{c+1,b}|| ||J^{a,c}|| / ||J^{a,b}||} over 1 <= a <= c < b <= L,
    where J^{a,b} = d z_b / d h_{a-1} = W_b D_{b-1} W_{b-1} ... D_a W_a (D_i = diag(z_i > 0)) is
    the Jacobian from layer a's input to layer b's pre-activation and ||.|| the spectral norm.
    Since J^{a,b} = J^{c+1,b} D_c J^{a,c}, every ratio is >= 1; a ratio whose denominator is 0 is
    inf."""
    Ws = _weights(weights)
    L = len(Ws)
    zs = preactivations(Ws, np.asarray(x, np.float64)[None, :])
    D = [(z[0] > 0).astype(np.float64) for z in zs]
    J = {}
    for a in range(1, L + 1):
        M = Ws[a - 1]
        J[a, a] = M
        for b in range(a + 1, L + 1):
            M = Ws[b - 1] @ (D[b - 2][:, None] * M)
            J[a, b] = M
    norm = {key: np.linalg.norm(M, 2) for key, M in J.items()}
    out = {}
    for a in range(1, L + 1):
        for b in range(a + 1, L + 1):
            for c in range(a, b):
                num = norm[c + 1, b] * norm[a, c]
                out[a, c, b] = num / norm[a, b] if norm[a, b] > 0 else math.inf
    return out


def c1(weights, X) -> dict:
    """C1, the condition number 1/mu of the network on the inputs X: the largest of
    ``condition_ratios`` over the samples and the triples a <= c < b (mu is the largest number with
    ||J^{a,b}|| >= mu ||J^{c+1,b}|| ||J^{a,c}|| everywhere on X). Returns the max over all triples
    ("inv_mu"), the max over the inner triples a < c < b - 1 and over the edge triples c = a or
    c = b - 1 (Figure 4's split), and every ratio (array) for a histogram."""
    X = np.atleast_2d(np.asarray(X, np.float64))
    every, inner, edge = [], [], []
    for x in X:
        for (a, c, b), r in condition_ratios(weights, x).items():
            every.append(r)
            (edge if c in (a, b - 1) else inner).append(r)
    mx = lambda v: float(max(v)) if v else float("nan")
    return {"inv_mu": mx(every), "inv_mu_inner": mx(inner), "inv_mu_edge": mx(edge), "ratios": np.array(every)}


# ---------------------------------------------------------------------------- C2
def c2(weights, X, magnitudes, *, draws: int = 5, seed: int = 0) -> np.ndarray:
    """C2 (Figure 5): for each relative magnitude eps, the fraction of hidden ReLU activations
    (samples x hidden units of every hidden layer) whose on/off state differs between the network
    and a perturbed copy with W_i + U_i, U_i Gaussian rescaled so that ||U_i||_F = eps ||W_i||_F,
    averaged over ``draws`` perturbations. Returns an array of the magnitudes' length."""
    Ws = _weights(weights)
    X = _inputs(Ws, X)
    draws = positive_int(draws, "draws")
    base = [z > 0 for z in preactivations(Ws, X)[:-1]]
    total = sum(b.size for b in base)
    rng = np.random.default_rng(seed)
    out = []
    for eps in np.asarray(magnitudes, np.float64).reshape(-1):
        flips = 0.0
        for _ in range(draws):
            P = []
            for W in Ws:
                G = rng.standard_normal(W.shape)
                P.append(W + G * (eps * np.linalg.norm(W) / max(np.linalg.norm(G), 1e-300)))
            pert = [z > 0 for z in preactivations(P, X)[:-1]]
            flips += sum(int((p != b).sum()) for p, b in zip(pert, base))
        out.append(flips / (draws * total) if total else 0.0)
    return np.array(out)


# ---------------------------------------------------------------------------- C3
def c3(weights) -> list:
    """C3: for each hidden layer i (all but the last), the ratio ||W_i[h, :]|| / mean_h' ||W_i[h', :]||
    of each hidden unit's incoming norm to its layer's mean (one array per hidden layer)."""
    Ws = _weights(weights)
    out = []
    for W in Ws[:-1]:
        n = np.sqrt((W ** 2).sum(1))
        out.append(n / n.mean() if n.mean() > 0 else np.full_like(n, np.nan))
    return out


# ---------------------------------------------------------------------------- margin bounds
def margins(weights, X, y) -> np.ndarray:
    """f(x)[y] - max_{j != y} f(x)[j] per sample."""
    Ws = _weights(weights)
    return _margins(Ws, *_inputs(Ws, X, y))


def _margins(Ws, X, y) -> np.ndarray:
    """margins of checked layers, samples and labels."""
    out = forward(Ws, X)
    idx = np.arange(len(y))
    true = out[idx, y]
    other = out.copy()
    other[idx, y] = -np.inf
    return true - other.max(1)


def margin_pac_bayes(weights, X, y, gamma: float, sigma: float, *, delta: float = 0.01, prior=None,
                     draws: int = 20, seed: int = 0) -> dict:
    """Lemma 1 (margin PAC-Bayes). With prior P = N(prior, sigma^2 I) (``prior``: initial weights
    or zero) and the perturbation u ~ N(0, sigma^2 I): if P_u[max_x ||f_{w+u}(x) - f_w(x)||_inf < gamma/4]
    > 1/2, then with probability >= 1 - delta over the m training samples

        L_0(f_w) <= L_gamma(f_w) + 4 sqrt((KL(w + u || P) + ln(6 m / delta)) / (m - 1)),

    KL = ||w - prior||^2 / (2 sigma^2), L_gamma the fraction of training margins <= gamma. The
    condition is checked on X only (the lemma wants every x), with ``draws`` perturbations: its
    estimated probability is reported as ``condition_prob``. Terms are returned separately."""
    Ws = _weights(weights)
    X, y = _inputs(Ws, X, y)
    m = len(X)
    _bound_args(m, gamma, delta)
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma: expected a finite scale > 0, got {sigma!r}")
    draws = positive_int(draws, "draws")
    P = [np.zeros_like(W) for W in Ws] if prior is None else _weights(prior)
    if [Q.shape for Q in P] != [W.shape for W in Ws]:
        raise ValueError(f"prior: expected layers shaped like the weights {[W.shape for W in Ws]}, got "
                         f"{[Q.shape for Q in P]}")
    kl = sum(float(((W - Q) ** 2).sum()) for W, Q in zip(Ws, P)) / (2 * sigma ** 2)
    margin_loss = float((_margins(Ws, X, y) <= gamma).mean())
    log_term = math.log(6 * m / delta)
    rng = np.random.default_rng(seed)
    f0 = forward(Ws, X)
    ok = 0
    for _ in range(draws):
        d = np.abs(forward([W + sigma * rng.standard_normal(W.shape) for W in Ws], X) - f0).max()
        ok += d < gamma / 4
    complexity = 4 * math.sqrt((kl + log_term) / (m - 1))
    return {"margin_loss": margin_loss, "kl": kl, "log_term": log_term, "complexity": complexity,
            "bound": margin_loss + complexity, "condition_prob": ok / draws}


def spectral_bound(weights, X, y, gamma: float, *, delta: float = 0.01) -> dict:
    """The spectrally-normalized margin bound (Neyshabur, Bhojanapalli & Srebro 2018, Theorem 1) as
    its proof instantiates Lemma 1, for a depth-d ReLU net with widths <= h and inputs of norm <= B:
    the weights rescaled so that every layer has spectral norm beta = (prod_i ||W_i||_2)^(1/d) (the
    function is unchanged), prior N(0, sigma^2 I) with

        sigma = gamma / (42 d B beta^(d-1) sqrt(h ln(4 h d))),
        KL = sum_i ||W_i||_F^2 / (2 sigma^2)
           = 42^2 d^2 B^2 h ln(4hd) prod_i ||W_i||_2^2 sum_i ||W_i||_F^2 / ||W_i||_2^2 / (2 gamma^2),

    and bound = L_gamma + 4 sqrt((KL + ln(6 m / delta)) / (m - 1)). The proof's union bound over a
    grid of beta (a few more log terms) is not added: this is the bound for beta fixed in advance.
    Returns every term separately."""
    Ws = _weights(weights)
    X, y = _inputs(Ws, X, y)
    m, d = len(X), len(Ws)
    _bound_args(m, gamma, delta)
    spec = np.array([np.linalg.norm(W, 2) for W in Ws])
    frob2 = np.array([float((W ** 2).sum()) for W in Ws])
    h = max(max(W.shape) for W in Ws)
    B = float(np.sqrt((X ** 2).sum(1)).max())
    prod2 = float(np.prod(spec ** 2))
    ratio = float((frob2 / spec ** 2).sum())
    kl = 42 ** 2 * d ** 2 * B ** 2 * h * math.log(4 * h * d) * prod2 * ratio / (2 * gamma ** 2)
    margin_loss = float((_margins(Ws, X, y) <= gamma).mean())
    log_term = math.log(6 * m / delta)
    complexity = 4 * math.sqrt((kl + log_term) / (m - 1))
    return {"margin_loss": margin_loss, "spectral_product": prod2, "frobenius_ratio_sum": ratio, "input_norm": B,
            "width": h, "depth": d, "kl": kl, "log_term": log_term, "complexity": complexity,
            "bound": margin_loss + complexity}
