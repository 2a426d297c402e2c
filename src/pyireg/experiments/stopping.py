"""Training "to convergence" inside the one training loop: the per-network stopping rule's
syntax and checks, its state (kept in checkpoints), and the freeze of a converged network.

A rule is ``stop_when="zero-error"`` (training error 0) or ``stop_when="loss:TOL"`` (training
loss at most TOL), held for ``patience`` consecutive epochs (the criterion itself and the
streak bookkeeping are :mod:`pyireg.convergence`). After the epoch at which a network's streak
reaches ``patience`` it is frozen: its lr is 0 and, after every later epoch, its rows of U and V
and of every optimizer state array are written back to their values at the freeze, so neither
its weights nor its optimizer state change again. A network's arithmetic never depends on its
neighbours in the packed model, so the others train bit for bit as they would without it.
"""
from __future__ import annotations

import math

import numpy as np

from .. import convergence as C

STOP_COLUMNS = ("converged_epoch",)     # history columns of a run with a stopping rule
STOP_SYNTAX = "'zero-error' or 'loss:TOL' (training loss at most TOL, a number >= 0)"


def parse_stop_when(stop_when, patience=1, what=("stop_when", "patience")) -> tuple | None:
    """(criterion, tol, patience) of a rule, checked; None when ``stop_when`` is None.
    ``what``: the names errors give the two arguments (the command line's options)."""
    if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 1:
        raise ValueError(f"{what[1]}: expected a positive integer (epochs the criterion must hold), got {patience!r}")
    if stop_when is None:
        if patience != 1:
            raise ValueError(f"{what[1]}: only with a stopping rule ({what[0]} {STOP_SYNTAX})")
        return None
    if not isinstance(stop_when, str):
        raise ValueError(f"{what[0]}: expected {STOP_SYNTAX}, got {stop_when!r}")
    text = stop_when.strip()
    if text == "zero-error":
        return ("zero-error", None, int(patience))
    if text.startswith("loss:"):
        try:
            tol = float(text[5:])
        except ValueError:
            tol = math.nan
        if math.isfinite(tol) and tol >= 0:
            return ("loss", tol, int(patience))
    raise ValueError(f"{what[0]}: expected {STOP_SYNTAX}, got {stop_when!r}")


def rule_text(rule) -> str | None:
    """The canonical text of a parsed rule (what config.json records as stop_when)."""
    if rule is None:
        return None
    return "zero-error" if rule[0] == "zero-error" else f"loss:{rule[1]!r}"


def rule_to_json(rule):
    return None if rule is None else {"stop_when": rule_text(rule), "patience": int(rule[2])}


def rule_from_json(value):
    return None if value is None else parse_stop_when(value["stop_when"], int(value["patience"]))


class Stopper:
    """The stopping state of the networks of one packed model (indices ``len(n)``)."""

    def __init__(self, rule, num_networks: int):
        self.rule = rule
        self.state = C.start(num_networks)

    @property
    def frozen(self) -> np.ndarray:
        return self.state.done

    def all_done(self) -> bool:
        return bool(self.state.done.all())

    def update(self, epoch: int, train_error, train_loss) -> None:
        crit, tol, patience = self.rule
        self.state = C.update(self.state, epoch, train_error, train_loss if crit == "loss" else None,
                              loss_tol=tol if crit == "loss" else None, patience=patience)

    # checkpoint members: the streaks and converged epochs (done is converged_epoch >= 0)
    @staticmethod
    def members(num_networks: int) -> dict:
        return {"stop_streak": ((num_networks,), np.dtype(np.int64)),
                "stop_converged_epoch": ((num_networks,), np.dtype(np.int64))}

    def arrays(self) -> dict:
        return {"stop_streak": self.state.streak.copy(), "stop_converged_epoch": self.state.converged_epoch.copy()}

    def load(self, arrays: dict) -> None:
        conv = np.asarray(arrays["stop_converged_epoch"], np.int64)
        self.state = C.StopState.from_dict({"streak": arrays["stop_streak"], "converged_epoch": conv,
                                            "done": conv >= 0})


# ----------------------------------------------------------------------------- the freeze
def unit_mask(model, frozen: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(frozen, bool), model.widths)


def snapshot(model, opt, entry, frozen: np.ndarray):
    """A function that writes the frozen networks' weights and optimizer state back to their
    values now (``entry``: the optimizer's registry entry). None when nothing is frozen."""
    if not frozen.any():
        return None
    units = unit_mask(model, frozen)
    N = model.num_networks
    saved = {"U": model.U[units], "V": model.V[units]}
    for name in entry.state:
        saved[name] = getattr(opt, name)[units]
    for name in entry.net_state:
        saved[name] = getattr(opt, name)[frozen]
    saved["diverged"] = opt.diverged[frozen]
    extra = entry.freeze(opt, frozen, units) if entry.freeze is not None else None

    def restore():
        model.U[units] = saved["U"]
        model.V[units] = saved["V"]
        for name in entry.state:
            getattr(opt, name)[units] = saved[name]
        for name in entry.net_state:
            arr = getattr(opt, name)
            if arr.shape != (N,):
                raise RuntimeError(f"{entry.name}: per-network state {name} has shape {arr.shape}")
            arr[frozen] = saved[name]
        opt.diverged[frozen] = saved["diverged"]
        if extra is not None:
            extra()
    return restore


CG_NET_ARRAYS = ("alpha", "slope", "gnorm2", "since_restart", "objective", "failed", "failures", "stalled",
                 "accepted", "line_search_trials")


def cg_freeze(opt, frozen, units):
    """Conjugate gradient's freeze: its directions, previous gradients and per-network arrays
    (attributes, not the arrays of a checkpoint, so that the gradient it caches for the next
    iteration stays valid: the frozen rows of the weights do not change)."""
    saved = {n: np.array(getattr(opt, n))[frozen] for n in CG_NET_ARRAYS}
    dU, dV = opt.dU[units], opt.dV[units]
    prev = None if opt._gU is None else (opt._gU[units], opt._gV[units])

    def restore():
        for n, v in saved.items():
            a = np.array(getattr(opt, n))      # a fresh array: the optimizer may share the old one
            a[frozen] = v
            setattr(opt, n, a)
        opt.dU[units], opt.dV[units] = dU, dV
        if prev is not None and opt._gU is not None:
            gU, gV = opt._gU.copy(), opt._gV.copy()
            gU[units], gV[units] = prev
            opt._gU, opt._gV = gU, gV
    return restore
