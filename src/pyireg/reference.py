"""Plain-PyTorch twins of every public operation of the native core, written the obvious way:
one ``nn.Sequential`` per network, ``F.cross_entropy`` or the squared loss written with torch
ops, autograd and ``torch.optim.SGD``. One function per engine operation, with the same name:
forward, backward, loss_and_grad, step, evaluate, balance, normalize_units, measures,
unit_balance. The complexity measures of ``pyireg.measures`` have first-principles twins
(path norms summed over explicit paths, margins from a plain forward, spectral norms by SVD,
the DDP measure node by node, perturbed copies evaluated one by one), and the optimizers
Path-SGD and DDP-SGD hand-written twins on autograd's gradients (``PathSGDTwin``,
``DDPSGDTwin``; DDP's scaling also from autograd's Hessian, ``ddp_kappa_autograd``).

Used by the tests and benchmarks to check the fast path; never used by it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .interop import make_network, modules_from_packed, packed_from_modules  # noqa: F401  (twins' inputs)


def squared_loss(out, target, weights=None):
    """Mean over the batch of 1/2 sum_j w_bj (out_bj - y_bj)^2 (the engine's squared loss)."""
    r = (out - target) ** 2
    if weights is not None:
        r = r * weights
    return 0.5 * r.sum(1).mean()


def _loss(out, y, loss, weights=None):
    if loss == "cross_entropy":
        return F.cross_entropy(out, y)
    return squared_loss(out, y.to(out.dtype), None if weights is None else weights.to(out.dtype))


def _in_twin_dtype(values, modules) -> np.ndarray:
    """Per-network values as an array in the twins' own precision: a float32 twin's losses are
    float32 numbers, and the tolerance rule reads its floor from the reference's dtype."""
    dt = modules[0][0].weight.dtype if len(modules) else torch.float64
    return np.array(values, dtype=np.float32 if dt == torch.float32 else np.float64)


def _targets(y, loss):
    return torch.as_tensor(y, dtype=torch.long) if loss == "cross_entropy" else torch.as_tensor(np.asarray(y))


def forward(modules, X) -> torch.Tensor:
    """Logits (N, B, k)."""
    X = torch.as_tensor(X)
    with torch.no_grad():
        return torch.stack([m(X.to(m[0].weight.dtype)) for m in modules])


def backward(modules, X, grad_out):
    """Gradients of sum_n <grad_out[n], out[n]> by autograd: (gU, gV, gX), gX summed over networks."""
    X = torch.as_tensor(X).clone().requires_grad_(True)
    G = torch.as_tensor(np.asarray(grad_out))
    gU, gV = [], []
    total = 0
    for n, m in enumerate(modules):
        m.zero_grad(set_to_none=True)
        total = total + (m(X.to(m[0].weight.dtype)) * G[n].to(m[0].weight.dtype)).sum()
    total.backward()
    for m in modules:
        gU.append(m[0].weight.grad.clone())
        gV.append(m[2].weight.grad.T.clone())
    return torch.cat(gU).numpy(), torch.cat(gV).numpy(), X.grad.numpy()


def loss_and_grad(modules, X, y, weights=None, loss="cross_entropy"):
    """Per-network mean loss, and the gradients concatenated unit-major like (U, V)."""
    X, y = torch.as_tensor(X), _targets(y, loss)
    w = None if weights is None else torch.as_tensor(np.asarray(weights))
    losses, gU, gV = [], [], []
    for m in modules:
        m.zero_grad(set_to_none=True)
        loss_n = _loss(m(X.to(m[0].weight.dtype)), y, loss, w)
        loss_n.backward()
        losses.append(loss_n.item())
        gU.append(m[0].weight.grad.clone())
        gV.append(m[2].weight.grad.T.clone())
    return _in_twin_dtype(losses, modules), torch.cat(gU).cpu().numpy(), torch.cat(gV).cpu().numpy()


def make_sgd(modules, lr, momentum, weight_decay) -> torch.optim.SGD:
    """One torch.optim.SGD with a parameter group per network (per-network hyper-parameters)."""
    n = len(modules)
    lr, momentum, weight_decay = (np.broadcast_to(np.asarray(v, dtype=np.float64), (n,))
                                  for v in (lr, momentum, weight_decay))
    groups = [{"params": list(m.parameters()), "lr": float(lr[i]), "momentum": float(momentum[i]),
               "weight_decay": float(weight_decay[i])} for i, m in enumerate(modules)]
    return torch.optim.SGD(groups, lr=float(lr[0]), dampening=0.0, nesterov=False)


def step(modules, opt: torch.optim.Optimizer, X, y, weights=None, loss="cross_entropy") -> np.ndarray:
    """One step of every network on (X, y); returns the per-network losses before the step."""
    X, y = torch.as_tensor(X), _targets(y, loss)
    w = None if weights is None else torch.as_tensor(np.asarray(weights))
    opt.zero_grad(set_to_none=True)
    losses = [_loss(m(X.to(m[0].weight.dtype)), y, loss, w) for m in modules]
    torch.stack(losses).sum().backward()
    opt.step()
    return _in_twin_dtype([float(l.detach()) for l in losses], modules)


def set_hyper(opt: torch.optim.SGD, lr=None, momentum=None, weight_decay=None) -> None:
    n = len(opt.param_groups)
    for key, val in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        if val is None:
            continue
        val = np.broadcast_to(np.asarray(val, dtype=np.float64), (n,))
        for g, v in zip(opt.param_groups, val):
            g[key] = float(v)


def evaluate(modules, X, y, weights=None, loss="cross_entropy"):
    """Per-network error rate (squared loss: largest output not at the largest target) and mean
    loss over (X, y)."""
    X, y = torch.as_tensor(X), _targets(y, loss)
    w = None if weights is None else torch.as_tensor(np.asarray(weights))
    err, losses = [], []
    with torch.no_grad():
        for m in modules:
            out = m(X.to(m[0].weight.dtype))
            truth = y if loss == "cross_entropy" else y.argmax(1)
            err.append((out.argmax(1) != truth).double().mean().item())
            losses.append(_loss(out, y, loss, w).item())
    return np.array(err), _in_twin_dtype(losses, modules)


def packed_weights(modules):
    """The (U, V) of a list of modules, unit-major, as numpy arrays."""
    U, V, _, _ = packed_from_modules(modules)
    return U, V


# ----------------------------------------------------------------------------- Theorem 1
def _norms(U, V):
    U, V = torch.as_tensor(np.asarray(U)).double(), torch.as_tensor(np.asarray(V)).double()
    return U, V, U.norm(dim=1), V.norm(dim=1)


def balance(U, V):
    """(U, V) with every unit rescaled to ||u_h|| = ||v_h||; zero units (u_h = 0 or v_h = 0) zeroed."""
    U, V, nu, nv = _norms(U, V)
    live = (nu > 0) & (nv > 0)
    s = torch.where(live, torch.sqrt(nv / torch.where(live, nu, 1.0)), torch.zeros_like(nu))
    inv = torch.where(live, 1.0 / torch.where(live, s, 1.0), torch.zeros_like(nu))
    return (U * s[:, None]).numpy(), (V * inv[:, None]).numpy()


def normalize_units(U, V):
    """(U, V) with ||u_h|| = 1 and the scale moved into v_h; units with u_h = 0 get v_h = 0."""
    U, V, nu, _ = _norms(U, V)
    live = nu > 0
    inv = torch.where(live, 1.0 / torch.where(live, nu, 1.0), torch.zeros_like(nu))
    return (U * inv[:, None]).numpy(), (V * torch.where(live, nu, 0.0)[:, None]).numpy()


def measures(U, V, offsets):
    """Per-network l2_penalty, group_l1, path_l1, path_l2, from the path weights themselves."""
    U, V = torch.as_tensor(np.asarray(U)).double(), torch.as_tensor(np.asarray(V)).double()
    out = {k: [] for k in ("l2_penalty", "group_l1", "path_l1", "path_l2", "norm_U", "norm_V")}
    for n in range(len(offsets) - 1):
        u, v = U[offsets[n]:offsets[n + 1]], V[offsets[n]:offsets[n + 1]]
        paths = u[:, :, None] * v[:, None, :]            # H x d x k: weight of every path
        out["l2_penalty"].append(0.5 * (u.pow(2).sum() + v.pow(2).sum()).item())
        out["group_l1"].append((u.norm(dim=1) * v.norm(dim=1)).sum().item())
        out["path_l1"].append(paths.abs().sum().item())
        out["path_l2"].append(paths.pow(2).sum().sqrt().item())
        out["norm_U"].append(u.norm().item())
        out["norm_V"].append(v.norm().item())
    return {k: np.array(v) for k, v in out.items()}


def unit_balance(U, V):
    U, V, nu, nv = _norms(U, V)
    return (nu ** 2 - nv ** 2).numpy()


# ----------------------------------------------------------------------------- complexity measures
def _segments(U, V, offsets, dtype=torch.float64):
    U, V = torch.as_tensor(np.asarray(U)).to(dtype), torch.as_tensor(np.asarray(V)).to(dtype)
    return [(U[offsets[n]:offsets[n + 1]], V[offsets[n]:offsets[n + 1]]) for n in range(len(offsets) - 1)]


def path_norm(U, V, offsets, p, dtype=torch.float64) -> np.ndarray:
    """phi_p per network by summing over every explicit input -> hidden -> output path:
    (sum_{h,i,j} |U[h,i] V[h,j]|^p)^(1/p); p = inf: the largest path weight."""
    out = []
    for u, v in _segments(U, V, offsets, dtype):
        paths = (u[:, :, None] * v[:, None, :]).abs()          # H x d x k, one entry per path
        out.append(paths.max().item() if p == float("inf") else paths.pow(p).sum().pow(1.0 / p).item())
    return np.array(out)


def spectral(U, V, offsets, dtype=torch.float64) -> dict:
    """Per network by SVD: ||U_n||_2, ||V_n||_2, ||V_n^T U_n||_2 and the nuclear norm of V_n^T U_n."""
    out = {k: [] for k in ("spectral_U", "spectral_V", "spectral_end_to_end", "trace_norm")}
    for u, v in _segments(U, V, offsets, dtype):
        out["spectral_U"].append(torch.linalg.svdvals(u)[0].item())
        out["spectral_V"].append(torch.linalg.svdvals(v)[0].item())
        s = torch.linalg.svdvals(v.T @ u)
        out["spectral_end_to_end"].append(s[0].item())
        out["trace_norm"].append(s.sum().item())
    return {k: np.array(v) for k, v in out.items()}


def margins(modules, X, y) -> np.ndarray:
    """Per-sample margins out[y_i] - max_{j != y_i} out[j] from a plain forward: (N, m)."""
    y = torch.as_tensor(np.asarray(y), dtype=torch.long)
    out = forward(modules, X)                                    # N x m x k
    true = out.gather(2, y[None, :, None].expand(out.shape[0], -1, 1)).squeeze(2)
    other = out.scatter(2, y[None, :, None].expand(out.shape[0], -1, 1), float("-inf")).amax(2)
    return (true - other).double().numpy()


def ddp_path(modules, X, alpha) -> np.ndarray:
    """sqrt(gamma_net) per network, node by node: gamma = 1 at the inputs,
    gamma_v^2 = alpha sum_u gamma_u^2 w_uv^2 + (1 - alpha) E[(sum_u w_uv h_u)^2]."""
    out = []
    with torch.no_grad():
        for m in modules:
            X_ = torch.as_tensor(np.asarray(X)).to(m[0].weight.dtype)
            W1, W2 = m[0].weight, m[2].weight                   # H x d, k x H
            Z = X_ @ W1.T
            g_hidden = alpha * (W1 ** 2).sum(1) + (1 - alpha) * (Z ** 2).mean(0)          # H
            A = m[1](Z)
            g_out = alpha * (W2 ** 2 * g_hidden[None, :]).sum(1) + (1 - alpha) * ((A @ W2.T) ** 2).mean(0)
            out.append(g_out.sum().sqrt().item())
    return np.array(out)


def gamma_net(W1, W2, X, alpha, activation="relu"):
    """The DDP measure gamma_net of one network (a differentiable torch expression)."""
    Z = X @ W1.T
    A = torch.relu(Z) if activation == "relu" else Z
    g_hidden = alpha * (W1 ** 2).sum(1) + (1 - alpha) * (Z ** 2).mean(0)
    return (alpha * (W2 ** 2 * g_hidden[None, :]).sum(1) + (1 - alpha) * ((A @ W2.T) ** 2).mean(0)).sum()


def ddp_kappa_autograd(u, v, X, alpha, activation="relu"):
    """kappa_e = 1/2 d^2 gamma_net / dw_e^2 of every weight of one network, from autograd's
    Hessian (float64; for small networks): (kappa_U (H x d), kappa_V (H x k))."""
    u = torch.as_tensor(np.asarray(u), dtype=torch.float64)
    v = torch.as_tensor(np.asarray(v), dtype=torch.float64)
    X = torch.as_tensor(np.asarray(X), dtype=torch.float64)
    H, d = u.shape
    k = v.shape[1]

    def f(theta):
        return gamma_net(theta[:H * d].reshape(H, d), theta[H * d:].reshape(H, k).T, X, alpha, activation)

    hess = torch.autograd.functional.hessian(f, torch.cat([u.reshape(-1), v.reshape(-1)]))
    diag = 0.5 * torch.diagonal(hess)
    return diag[:H * d].reshape(H, d).numpy(), diag[H * d:].reshape(H, k).numpy()


def ddp_kappa(U, V, X, alpha, activation="relu", dtype=torch.float64):
    """The closed form of kappa for a packed model (per-unit alpha array of length S), in torch."""
    U, V = torch.as_tensor(np.asarray(U)).to(dtype), torch.as_tensor(np.asarray(V)).to(dtype)
    X = torch.as_tensor(np.asarray(X)).to(dtype)
    a = torch.as_tensor(np.asarray(alpha)).to(dtype)[:, None]
    Z = X @ U.T                                                   # B x S
    act = torch.relu(Z) if activation == "relu" else Z
    mask = (Z > 0).to(dtype) if activation == "relu" else torch.ones_like(Z)
    M = (X ** 2).mean(0)[None, :]                                 # 1 x d
    Q = mask.T @ (X ** 2) / X.shape[0]                            # S x d
    kU = (V ** 2).sum(1, keepdim=True) * (a * a + a * (1 - a) * M + (1 - a) * Q)
    kV = a * a * (U ** 2).sum(1, keepdim=True) + a * (1 - a) * (Z ** 2).mean(0)[:, None] \
        + (1 - a) * (act ** 2).mean(0)[:, None]
    return kU.numpy(), kV.expand(-1, V.shape[1]).numpy()


def overparam_bound(U, V, U0, offsets, X, y, percentile=5.0, delta=0.01, activation="relu"):
    """The over-parametrization bound (pyireg.measures) composed from plain torch quantities."""
    import math
    Xt = torch.as_tensor(np.asarray(X), dtype=torch.float64)
    mods = modules_from_packed(np.asarray(U, np.float64), np.asarray(V, np.float64), offsets, activation,
                               dtype=torch.float64)
    gam = np.percentile(margins(mods, Xt.numpy(), y), percentile, axis=1)
    m, c = Xt.shape[0], np.asarray(V).shape[1]
    out = []
    for n, ((u, v), (u0, _)) in enumerate(zip(_segments(U, V, offsets), _segments(U0, V, offsets))):
        pre = Xt @ u0.T
        post = (torch.relu(pre) if activation == "relu" else pre).norm().item() / math.sqrt(m)
        R = (3 * math.sqrt(2) * (math.sqrt(2 * c) + 1) * (v.norm().item() + 1)
             * (post + (u - u0).norm().item() * Xt.norm().item() / math.sqrt(m) + 1) / gam[n])
        cap = (R + 3 * math.sqrt(5 * u.shape[0] + math.log(max(1.0, gam[n] * math.sqrt(m)) / delta))) ** 2
        out.append(math.sqrt(cap / m) if gam[n] > 0 else float("nan"))
    return np.array(out)


def perturbed_losses(U, V, offsets, nuU, nuV, X, y, activation="relu", dtype=torch.float64):
    """Mean loss and error of every perturbed copy (copy c: weights + rows c*S.. of nu) of every
    network by plain torch: arrays (copies, N)."""
    S = np.asarray(U).shape[0]
    count = nuU.shape[0] // S
    losses, errs = [], []
    for c in range(count):
        Uc = np.asarray(U, np.float64) + nuU[c * S:(c + 1) * S]
        Vc = np.asarray(V, np.float64) + nuV[c * S:(c + 1) * S]
        if dtype == torch.float32:
            Uc, Vc = Uc.astype(np.float32), Vc.astype(np.float32)
        mods = modules_from_packed(Uc, Vc, offsets, activation, dtype=dtype)
        e, l = evaluate(mods, np.asarray(X), y)
        losses.append(l)
        errs.append(e)
    return np.array(errs), np.array(losses)


# ----------------------------------------------------------------------------- Path-SGD, DDP-SGD
def _inverse(kappa):
    return torch.where(kappa > 0, 1.0 / torch.where(kappa > 0, kappa, torch.ones_like(kappa)),
                       torch.zeros_like(kappa))


class PathSGDTwin:
    """Path-SGD written by hand on autograd's gradients, per network (per-network lr, momentum,
    weight decay): kappa_U(h) = ||v_h||^2, kappa_V(h) = ||u_h||^2 from the weights before the step;
    g = (grad + wd w) / kappa (0 where kappa = 0); buf = m buf + g; w -= lr buf."""

    def __init__(self, modules, lr, momentum=0.0, weight_decay=0.0):
        n = len(modules)
        self.modules = modules
        self.lr, self.momentum, self.wd = (np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy()
                                           for v in (lr, momentum, weight_decay))
        self.buf = [[torch.zeros_like(m[0].weight), torch.zeros_like(m[2].weight)] for m in modules]

    def step(self, X, y, loss="cross_entropy"):
        X, y = torch.as_tensor(X), _targets(y, loss)
        losses = []
        for n, m in enumerate(self.modules):
            m.zero_grad(set_to_none=True)
            l = _loss(m(X.to(m[0].weight.dtype)), y, loss)
            l.backward()
            losses.append(l.item())
            W1, W2 = m[0].weight, m[2].weight                      # H x d, k x H
            with torch.no_grad():
                q1 = _inverse((W2 ** 2).sum(0))[:, None]           # 1 / ||v_h||^2, per row of W1
                q2 = _inverse((W1 ** 2).sum(1))[None, :]           # 1 / ||u_h||^2, per column of W2
                dt = W1.dtype
                lr, mo, wd = (torch.tensor(float(a[n]), dtype=dt) for a in (self.lr, self.momentum, self.wd))
                g1 = (W1.grad + wd * W1) * q1
                g2 = (W2.grad + wd * W2) * q2
                self.buf[n][0] = mo * self.buf[n][0] + g1
                self.buf[n][1] = mo * self.buf[n][1] + g2
                W1 -= lr * self.buf[n][0]
                W2 -= lr * self.buf[n][1]
        return _in_twin_dtype(losses, self.modules)


class DDPSGDTwin:
    """DDP-SGD by hand: kappa from the batch and the weights before the step (``ddp_kappa``), then
    w -= lr (grad + wd w) / kappa per network."""

    def __init__(self, modules, lr, alpha, weight_decay=0.0):
        n = len(modules)
        self.modules = modules
        self.lr, self.alpha, self.wd = (np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy()
                                        for v in (lr, alpha, weight_decay))

    def step(self, X, y, loss="cross_entropy"):
        Xt, yt = torch.as_tensor(X), _targets(y, loss)
        losses = []
        for n, m in enumerate(self.modules):
            W1, W2 = m[0].weight, m[2].weight
            act = "relu" if isinstance(m[1], torch.nn.ReLU) else "linear"
            kU, kV = ddp_kappa(W1.detach(), W2.detach().T, Xt, np.full(W1.shape[0], self.alpha[n]), act, W1.dtype)
            m.zero_grad(set_to_none=True)
            l = _loss(m(Xt.to(W1.dtype)), yt, loss)
            l.backward()
            losses.append(l.item())
            with torch.no_grad():
                dt = W1.dtype
                lr, wd = torch.tensor(float(self.lr[n]), dtype=dt), torch.tensor(float(self.wd[n]), dtype=dt)
                W1 -= lr * (W1.grad + wd * W1) * _inverse(torch.as_tensor(kU))
                W2 -= lr * (W2.grad + wd * W2) * _inverse(torch.as_tensor(kV)).T
        return _in_twin_dtype(losses, self.modules)


class ConjugateGradientTwin:
    """Polak-Ribiere+ nonlinear conjugate gradient for ONE network in float64, written plainly on
    torch autograd and scalars: the objective mean loss + wd/2 ||w||^2, the same restarts (first
    iteration, every ``restart`` iterations, after a failed search, on a non-descent direction)
    and the same safeguarded line search (Armijo, strong-Wolfe stop, quadratic interpolation in
    the bracket, growth without one, the best Armijo trial, the ``refine`` cap) as
    ``pyireg.optim.ConjugateGradient`` (without its stalling rule, ``max_failures``)."""

    def __init__(self, U, V, lr=1.0, weight_decay=0.0, max_ls=20, c1=1e-4, c2=0.1, max_growth=10.0,
                 restart=100, refine=3, activation="relu", loss="cross_entropy"):
        self.refine = refine
        self.w = [torch.tensor(np.asarray(U, np.float64)), torch.tensor(np.asarray(V, np.float64))]
        self.lr, self.wd, self.max_ls, self.c1, self.c2 = lr, weight_decay, max_ls, c1, c2
        self.max_growth, self.restart, self.act, self.loss = max_growth, restart, activation, loss
        self.d = None
        self.g_prev = None
        self.alpha, self.slope, self.failed, self.since, self.k = 0.0, 0.0, False, 0, 0

    def _f_g(self, w, X, y):
        w = [p.clone().requires_grad_(True) for p in w]
        Z = X @ w[0].T
        A = torch.relu(Z) if self.act == "relu" else Z
        f = _loss(A @ w[1], y, self.loss) + 0.5 * self.wd * sum((p * p).sum() for p in w)
        g = torch.autograd.grad(f, w)
        return f.item(), [t.detach() for t in g]

    def step(self, X, y):
        X = torch.as_tensor(np.asarray(X, np.float64))
        y = _targets(y, self.loss)
        f, g = self._f_g(self.w, X, y)
        dot = lambda a, b: sum(float((p * q).sum()) for p, q in zip(a, b))
        gg = dot(g, g)
        restart = self.k == 0 or self.failed or self.since % self.restart == 0
        beta = 0.0
        if not restart and self.gg_prev > 0:
            beta = max(0.0, dot(g, [a - b for a, b in zip(g, self.g_prev)]) / self.gg_prev)
        d = [-a for a in g] if restart else [-a + beta * b for a, b in zip(g, self.d)]
        slope = dot(g, d)
        if not slope < 0:
            d, slope, restart = [-a for a in g], -gg, True
        if self.failed:
            alpha = self.alpha
        elif self.alpha > 0 and self.slope < 0:
            alpha = min(self.alpha * self.slope / slope, self.max_growth * self.alpha)
        else:
            alpha = self.lr
        best = None                      # (phi, alpha, weights)
        lo, f_lo, d_lo, hi, f_hi = 0.0, f, slope, np.inf, np.inf
        first_ok = None
        for k in range(1, (self.max_ls if slope < 0 else 0) + 1):
            trial = [p + alpha * q for p, q in zip(self.w, d)]
            ft, gt = self._f_g(trial, X, y)
            dft = dot(gt, d)
            armijo = np.isfinite(ft) and np.isfinite(dft) and ft <= f + self.c1 * alpha * slope
            if armijo and (best is None or ft < best[0]):
                best = (ft, alpha, trial)
            if armijo and abs(dft) <= self.c2 * abs(slope):
                break
            if best is not None and first_ok is None:
                first_ok = k
            if best is not None and k - first_ok >= self.refine:
                break
            if not armijo or dft >= 0:
                hi, f_hi = alpha, (ft if np.isfinite(ft) and np.isfinite(dft) else np.inf)
            else:
                lo, f_lo, d_lo = alpha, ft, dft
            if np.isfinite(hi):
                h = hi - lo
                curv = f_hi - f_lo - d_lo * h
                quad = lo - d_lo * h * h / (2 * curv) if curv > 0 and np.isfinite(curv) else np.nan
                alpha = float(np.clip(quad if np.isfinite(quad) else lo + 0.5 * h, lo + 0.1 * h, hi - 0.1 * h))
            else:
                alpha = alpha * self.max_growth
        self.failed = slope < 0 and best is None
        if best is not None:
            self.w = best[2]
        self.alpha = best[1] if best is not None else (alpha if self.failed else 0.0)
        self.slope = slope if best is not None else 0.0
        self.g_prev, self.gg_prev, self.d = g, gg, d
        self.since = 1 if restart else self.since + 1
        self.k += 1
        return f
