"""ConjugateGradient: full-batch nonlinear conjugate gradient (Polak-Ribiere+, with restarts) on
every network of a PackedMLP, each network with its own direction, step and line search; the
trial steps of all networks are evaluated together in one packed pass (paper, Section 2:
"batch conjugate gradient descent")."""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array, per_network
from ..model import PackedMLP

_STATE_ARRAYS = ("dU", "dV", "alpha", "slope", "gnorm2", "since_restart", "objective")


def _same_values(kept, X, y, weights) -> bool:
    """Whether X, y and weights still hold the values copied in ``kept``."""
    return all((a is None) == (b is None) and (a is None or np.array_equal(a, b))
               for a, b in zip(kept, (X, y, weights)))


class ConjugateGradient:
    """Nonlinear conjugate gradient with a monotone backtracking line search, per network.

    Each network n minimizes its own full-batch objective

        F_n(w) = mean loss of network n on (X, y) + weight_decay[n] / 2 * ||w||^2

    (w: both layers of network n). One ``step(X, y)`` is one iteration for every network:

    1. g = grad F_n at w (the native ``loss_and_grad``, plus weight_decay * w).
    2. Direction (Polak-Ribiere+): beta = max(0, <g, g - g_prev> / <g_prev, g_prev>),
       d = -g + beta * d_prev. The direction is restarted (d = -g) on the first iteration, every
       ``restart`` iterations, after a failed line search, and whenever d is not a descent
       direction (<g, d> >= 0).
    3. Line search (safeguarded, aiming at the strong Wolfe conditions CG wants). The first
       trial step is ``lr[n]`` on a network's first search, the last tried step after a failed
       search, and otherwise alpha_prev * slope_prev / slope (Nocedal & Wright, Eq. 3.60) capped
       at ``max_growth`` * alpha_prev. Each trial alpha yields phi(alpha) = F_n(w + alpha d) and,
       from the same native pass, phi'(alpha) = <grad F_n(w + alpha d), d>. A trial satisfies
       Armijo when phi(alpha) <= phi(0) + c1 * alpha * phi'(0); the search stops at a trial that
       also satisfies |phi'(alpha)| <= c2 |phi'(0)|. Otherwise the minimum is bracketed: a trial
       that fails Armijo or has phi'(alpha) >= 0 becomes the upper end, one that passes Armijo
       with phi'(alpha) < 0 the lower end; the next trial is the minimizer of the quadratic
       through phi(lo), phi'(lo), phi(hi), kept in the middle 80% of [lo, hi] (bisection when
       the fit fails), or ``max_growth`` times the step while no upper end is known. After
       ``max_ls[n]`` trials, at the Wolfe point, or ``refine[n]`` trials after the first Armijo
       trial (which bounds the packed passes spent near a minimum, where the curvature condition
       is hard to meet in floating point), the network takes the Armijo trial with the lowest phi;
       when no trial passed Armijo the search failed and the weights stay as they are (restart,
       next search from the last, shortest trial).

    An accepted step satisfies Armijo with phi'(0) < 0 and c1 > 0, so F_n(new) <= F_n(old) as
    computed, and a failed search leaves w unchanged: **each network's objective never
    increases**. The objective is always evaluated by the same native routine on the same data
    (the kernels are deterministic and a network's result does not depend on its neighbours),
    so the value at the start of the next iteration is bit for bit the accepted trial's value.

    All networks' trials are evaluated in one packed pass: a second PackedMLP of the same layout
    (built with ``PackedMLP.from_weights(..., copy=False)`` on the trial buffers) holds
    w + alpha_n d for every network n at once; the native pass also yields the gradient at the
    trial point, which becomes the next iteration's gradient when the next ``step`` sees the same
    X and y objects holding the same values, and unchanged weights (otherwise it is recomputed).
    To see an in-place change of X, a copy of the batch is kept between steps (one copy, in
    reused buffers); ``reuse_gradient=False`` keeps none and always recomputes.

    Hyper-parameters are scalars or per-network arrays: ``lr`` (first trial step, >= 0; a
    network with lr 0 does not move, as with the other optimizers),
    ``weight_decay`` (>= 0), ``max_ls`` (int >= 1), ``c1`` in (0, 1), ``c2`` in (c1, 1),
    ``max_growth`` > 1, ``refine`` (int >= 0), ``max_failures`` (int >= 1: after that many consecutive
    failed searches a network is ``stalled`` and stops searching until ``reset_state``, as is a
    network at objective 0) and ``restart`` (int >= 1, iterations between forced restarts).

    ``step`` returns the objective F_n *before* the iteration (float64, shape (N,)), like the
    other optimizers; ``objective`` holds it after. ``state_dict()`` / ``load_state_dict()``
    hold every array of the state (directions, steps, counters) for a resume.

    Like the other optimizers of the training loop, ``diverged`` (N,) marks the networks whose
    objective became non-finite (NaN or inf), ``steps`` counts the iterations, and ``momentum``
    reads as zeros (conjugate gradient has none; only 0 may be set).
    """

    def __init__(self, model: PackedMLP, lr=1.0, *, weight_decay=0.0, max_ls=20, c1=1e-4, c2=0.1,
                 max_growth=10.0, restart=100, refine=3, max_failures=10,
                 reuse_gradient: bool = True):
        if not isinstance(model, PackedMLP):
            raise TypeError(f"model: expected a PackedMLP, got {type(model).__name__}")
        self._model = model
        N = model.num_networks
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_ls = max_ls
        self.restart = restart
        self.c1 = per_network(c1, "c1", N, np.float64, low=0.0, high=1.0, high_open=True)
        if (self.c1 <= 0).any():
            raise ValueError("c1: expected values in (0, 1) (the Armijo constant must be positive)")
        self.c2 = per_network(c2, "c2", N, np.float64, low=0.0, high=1.0, high_open=True)
        if (self.c2 <= self.c1).any():
            raise ValueError("c2: expected values in (c1, 1) (the curvature constant must exceed c1)")
        self.max_growth = per_network(max_growth, "max_growth", N, np.float64, low=1.0)
        if (self.max_growth <= 1).any():
            raise ValueError("max_growth: expected values > 1")
        self.refine = refine
        self.max_failures = max_failures
        self.reuse_gradient = bool(reuse_gradient)
        self.dU = np.zeros(model.U.shape, np.float64)
        self.dV = np.zeros(model.V.shape, np.float64)
        self._tU = np.zeros(model.U.shape, model.dtype)
        self._tV = np.zeros(model.V.shape, model.dtype)
        self._trial = PackedMLP.from_weights(model.widths, self._tU, self._tV, activation=model.activation,
                                             loss=model.loss, dtype=model.dtype, copy=False)
        self.reset_state()

    # ------------------------------------------------------------------ hyper-parameters
    @property
    def model(self) -> PackedMLP:
        return self._model

    def _ints(self, value, name, low=1):
        N = self._model.num_networks
        a = np.asarray(value)
        if a.shape == ():
            a = np.full(N, a)
        if a.shape != (N,) or a.dtype.kind not in "iu" or (a < low).any():
            raise ValueError(f"{name}: expected an integer >= {low} or an array of {N} of them, got {value!r}")
        return a.astype(np.int64)

    lr = property(lambda self: self._lr, lambda self, v: setattr(
        self, "_lr", per_network(v, "lr", self._model.num_networks, np.float64, low=0.0)))

    @property
    def momentum(self) -> np.ndarray:
        return np.zeros(self._model.num_networks)

    @momentum.setter
    def momentum(self, value) -> None:
        if np.any(np.asarray(value) != 0):
            raise ValueError("momentum: conjugate gradient has no momentum; expected 0")
    weight_decay = property(lambda self: self._wd, lambda self, v: setattr(
        self, "_wd", per_network(v, "weight_decay", self._model.num_networks, np.float64, low=0.0)))
    max_ls = property(lambda self: self._max_ls, lambda self, v: setattr(self, "_max_ls", self._ints(v, "max_ls")))
    refine = property(lambda self: self._refine, lambda self, v: setattr(self, "_refine", self._ints(v, "refine", 0)))
    max_failures = property(lambda self: self._max_failures,
                            lambda self, v: setattr(self, "_max_failures", self._ints(v, "max_failures")))
    restart = property(lambda self: self._restart,
                       lambda self, v: setattr(self, "_restart", self._ints(v, "restart")))

    # ------------------------------------------------------------------ state
    def reset_state(self) -> None:
        """Forget the directions and steps (every network restarts from steepest descent)."""
        with self._model._lock.write():
            self._reset_state()

    def _reset_state(self) -> None:
        N = self._model.num_networks
        self.dU[...] = 0
        self.dV[...] = 0
        self.alpha = np.zeros(N)           # last accepted step (0: none yet, or the last search failed)
        self.slope = np.zeros(N)           # <g, d> of the last iteration
        self.gnorm2 = np.zeros(N)          # <g, g> of the last iteration (PR+'s denominator)
        self.since_restart = np.zeros(N, np.int64)
        self.objective = np.full(N, np.nan)
        self.failed = np.zeros(N, dtype=bool)    # the last line search found no decrease
        self.accepted = np.zeros(N, dtype=bool)  # the last iteration moved the network
        self.line_search_trials = np.zeros(N, np.int64)
        self.failures = np.zeros(N, np.int64)     # consecutive failed searches
        self.stalled = np.zeros(N, dtype=bool)    # stopped searching (see max_failures)
        self.diverged = np.zeros(N, dtype=bool)   # the objective became non-finite
        self.steps = 0
        self._gU = self._gV = None        # the previous gradient (float64), for PR+
        self._cache = None                # (X, y, loss, gU, gV) at the current weights
        self._kept = []                   # the buffers of the batch's kept values (see _keep)

    def state_dict(self) -> dict:
        """Every array of the state (copies) and the iteration count; with the model's weights
        this is everything a resume needs (the cached gradient is recomputed)."""
        out = {k: np.array(getattr(self, k)) for k in _STATE_ARRAYS}
        out["failed"] = self.failed.copy()
        out["failures"] = self.failures.copy()
        out["steps"] = self.steps
        out["has_prev"] = self._gU is not None
        if self._gU is not None:
            out["gU_prev"], out["gV_prev"] = self._gU.copy(), self._gV.copy()
        return out

    def load_state_dict(self, state: dict) -> None:
        with self._model._lock.write():      # the state and the weights change together
            self._load_state_dict(state)

    def _load_state_dict(self, state: dict) -> None:
        m = self._model
        N = m.num_networks
        shapes = {"dU": m.U.shape, "dV": m.V.shape, "alpha": (N,), "slope": (N,), "gnorm2": (N,),
                  "since_restart": (N,), "objective": (N,)}
        for k, shp in shapes.items():
            if k not in state:
                raise ValueError(f"state: missing {k!r}")
            a = np.asarray(state[k])
            if a.shape != shp:
                raise ValueError(f"state[{k!r}]: expected shape {shp}, got {a.shape}")
        self._reset_state()
        self.dU[...] = state["dU"]
        self.dV[...] = state["dV"]
        for k in ("alpha", "slope", "gnorm2", "objective"):
            setattr(self, k, np.asarray(state[k], np.float64).copy())
        self.since_restart = np.asarray(state["since_restart"], np.int64).copy()
        self.failed = np.asarray(state.get("failed", np.zeros(N, bool)), bool).copy()
        self.failures = np.asarray(state.get("failures", np.zeros(N, np.int64)), np.int64).copy()
        self.stalled = (self.failures >= self._max_failures) | (self.objective <= 0)
        self.steps = int(state.get("steps", 0))
        if state.get("has_prev", False):
            self._gU = as_float_array(state["gU_prev"], "gU_prev", np.float64, 2, m.U.shape).copy()
            self._gV = as_float_array(state["gV_prev"], "gV_prev", np.float64, 2, m.V.shape).copy()

    # ------------------------------------------------------------------ the iteration
    def _per_net(self, A, B=None) -> np.ndarray:
        rows = (A * A).sum(1) if B is None else (A * B).sum(1)
        return np.add.reduceat(rows, self._model.offsets[:-1])

    def _objective_and_grad(self, model, X, y, w):
        loss, gU, gV = model.loss_and_grad(X, y, w)
        U, V = model.U.astype(np.float64), model.V.astype(np.float64)
        F = loss + 0.5 * self._wd * (self._per_net(U) + self._per_net(V))
        wd = np.repeat(self._wd, self._model.widths)[:, None]
        return F, gU.astype(np.float64) + wd * U, gV.astype(np.float64) + wd * V

    def step(self, X, y, weights=None) -> np.ndarray:
        """One full-batch iteration for every network; returns the objective before it (N,).
        Holds the model's writer lock throughout, like every optimizer's step."""
        with self._model._lock.write():
            return self._step(X, y, weights)

    def _keep(self, X, y, weights) -> tuple:
        """Copies of the batch's values, for the next step to compare with (an in-place change of
        X is seen): one copy of the batch held between steps, in buffers reused from step to step
        (``reuse_gradient=False`` keeps none, and evaluates every step's gradient afresh)."""
        kept = []
        for i, a in enumerate((X, y, weights)):
            if a is None:
                kept.append(None)
                continue
            a = np.asarray(a)
            buf = self._kept[i] if i < len(self._kept) else None
            if buf is None or buf.shape != a.shape or buf.dtype != a.dtype:
                buf = np.empty_like(a, order="C")
            np.copyto(buf, a)
            kept.append(buf)
        self._kept = kept
        return tuple(kept)

    def _step(self, X, y, weights) -> np.ndarray:
        m = self._model
        c = self._cache
        # the gradient of the last step's accepted point is reused when the batch, the weights and
        # the weight decay (part of the objective) are the same arrays with the same values (an
        # in-place change of X or of weight_decay is seen)
        if (self.reuse_gradient and c is not None and c[0] is X and c[1] is y and c[2] is weights
                and _same_values(c[7], X, y, weights) and np.array_equal(c[5], m.U)
                and np.array_equal(c[6], m.V) and np.array_equal(c[8], self._wd)):
            F, gU, gV = c[3], c[4][0], c[4][1]
        else:
            F, gU, gV = self._objective_and_grad(m, X, y, weights)
        self._cache = None
        w = m.widths
        rep = lambda a: np.repeat(a, w)[:, None]

        gg = self._per_net(gU) + self._per_net(gV)
        if self._gU is None:
            beta = np.zeros(m.num_networks)
        else:
            num = self._per_net(gU, gU - self._gU) + self._per_net(gV, gV - self._gV)
            with np.errstate(divide="ignore", invalid="ignore"):
                beta = np.where(self.gnorm2 > 0, np.maximum(0.0, num / self.gnorm2), 0.0)
        restart = (self.since_restart % self._restart == 0) | self.failed | (self.steps == 0) | ~np.isfinite(beta)
        beta = np.where(restart, 0.0, beta)
        self.dU *= rep(beta)
        self.dU -= gU
        self.dV *= rep(beta)
        self.dV -= gV
        slope = self._per_net(gU, self.dU) + self._per_net(gV, self.dV)
        not_descent = ~(slope < 0)
        if not_descent.any():                        # fall back to steepest descent there
            r = rep(not_descent)
            self.dU = np.where(r, -gU, self.dU)
            self.dV = np.where(r, -gV, self.dV)
            slope = np.where(not_descent, -gg, slope)
            restart |= not_descent

        # first trial step: lr on a network's first search; after a failed search, the last
        # (shrunk) step; otherwise Nocedal & Wright's alpha_prev * slope_prev / slope, capped
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            guess = np.minimum(self.alpha * self.slope / slope, self.max_growth * self.alpha)
        alpha = np.where(self.failed, self.alpha, np.where((self.alpha > 0) & (self.slope < 0), guess, self._lr))
        alpha = np.where(np.isfinite(alpha) & (alpha > 0), alpha, self._lr)

        # networks with a zero gradient (or a non-finite objective) do not search
        N = m.num_networks
        # nor do stalled networks: objective 0 (its least value), or max_failures consecutive
        # failed searches (no decrease the dtype can represent): they would hold every packed
        # trial pass to max_ls for nothing
        searching = (slope < 0) & np.isfinite(F) & np.isfinite(slope) & (F > 0) & ~self.stalled & (self._lr > 0)
        done = ~searching
        have = np.zeros(N, dtype=bool)
        best_a, best_F = np.zeros(N), F.copy()
        lo, F_lo, d_lo = np.zeros(N), F.copy(), slope.copy()
        hi, F_hi = np.full(N, np.inf), np.full(N, np.inf)
        nU, nV = gU.copy(), gV.copy()                 # the gradient at the new point
        trials = np.zeros(N, np.int64)
        first_ok = np.full(N, -1, np.int64)            # the trial that first passed Armijo
        U64, V64 = m.U.astype(np.float64), m.V.astype(np.float64)
        for _ in range(int(self._max_ls.max())):
            active = ~done & (trials < self._max_ls)
            if not active.any():
                break
            a = rep(np.where(active, alpha, 0.0))
            self._tU[...] = U64 + a * self.dU
            self._tV[...] = V64 + a * self.dV
            Ft, tgU, tgV = self._objective_and_grad(self._trial, X, y, weights)
            dFt = self._per_net(tgU, self.dU) + self._per_net(tgV, self.dV)
            trials += active
            finite = np.isfinite(Ft) & np.isfinite(dFt)
            armijo = active & finite & (Ft <= F + self.c1 * alpha * slope)
            better = armijo & (~have | (Ft < best_F))
            if better.any():
                r = np.repeat(better, w)
                m.U[r] = self._tU[r]
                m.V[r] = self._tV[r]
                nU[r], nV[r] = tgU[r], tgV[r]
                best_a = np.where(better, alpha, best_a)
                best_F = np.where(better, Ft, best_F)
                have |= better
            wolfe = armijo & (np.abs(dFt) <= self.c2 * np.abs(slope))
            done |= wolfe
            first_ok = np.where(have & (first_ok < 0), trials, first_ok)
            done |= have & (trials - first_ok >= self._refine)
            go = active & ~wolfe
            upper = go & (~armijo | (dFt >= 0))
            lower = go & armijo & (dFt < 0)
            hi = np.where(upper, alpha, hi)
            F_hi = np.where(upper, np.where(finite, Ft, np.inf), F_hi)
            lo = np.where(lower, alpha, lo)
            F_lo = np.where(lower, Ft, F_lo)
            d_lo = np.where(lower, dFt, d_lo)
            h = hi - lo
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                curv = F_hi - F_lo - d_lo * h
                quad = lo - d_lo * h * h / (2 * curv)
                ok_fit = np.isfinite(quad) & (curv > 0)
                inner = np.clip(np.where(ok_fit, quad, lo + 0.5 * h), lo + 0.1 * h, hi - 0.1 * h)
            alpha = np.where(go, np.where(np.isfinite(hi), inner, alpha * self.max_growth), alpha)

        accepted = have
        failed = searching & ~have
        self.failed = failed
        self.failures = np.where(failed, self.failures + 1, np.where(accepted, 0, self.failures))
        self.accepted = accepted
        self.alpha = np.where(accepted, best_a, np.where(failed, alpha, 0.0))   # failed: start short
        self.slope = np.where(accepted, slope, 0.0)
        F_new = np.where(accepted, best_F, F)
        self.gnorm2 = gg
        self._gU, self._gV = gU, gV
        self.since_restart = np.where(restart, 1, self.since_restart + 1)
        self.line_search_trials = trials
        self.objective = F_new
        self.diverged |= ~np.isfinite(F) | ~np.isfinite(F_new)
        self.steps += 1
        self.stalled = (self.failures >= self._max_failures) | (F_new <= 0)
        if self.reuse_gradient:
            self._cache = (X, y, weights, F_new.copy(), (nU, nV), m.U.copy(), m.V.copy(), self._keep(X, y, weights),
                           self._wd.copy())
        return F

