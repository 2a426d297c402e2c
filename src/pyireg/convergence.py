"""Training "to convergence" (paper, Section 2), per network: a stopping rule the training loop
calls once per epoch. A network has converged when its criterion (zero training error, or a
training loss at most a tolerance) has held for ``patience`` consecutive epochs; the epochs
given to the loop are the cap. Pure functions on small arrays: the state is three (N,) arrays
that can go into a checkpoint as they are."""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class StopState:
    """streak: consecutive epochs the criterion has held (up to now); converged_epoch: the first
    epoch of the streak that reached ``patience`` (-1 while not converged); done: converged."""
    streak: np.ndarray
    converged_epoch: np.ndarray
    done: np.ndarray

    def as_dict(self) -> dict:
        return {"streak": self.streak.copy(), "converged_epoch": self.converged_epoch.copy(), "done": self.done.copy()}

    @classmethod
    def from_dict(cls, d: dict) -> StopState:
        s = cls(np.asarray(d["streak"], np.int64).copy(), np.asarray(d["converged_epoch"], np.int64).copy(),
                np.asarray(d["done"], bool).copy())
        if not s.streak.shape == s.converged_epoch.shape == s.done.shape or s.streak.ndim != 1:
            raise ValueError("state: expected three arrays of one shape (N,)")
        return s


def start(num_networks: int) -> StopState:
    """The state before the first epoch."""
    if isinstance(num_networks, bool) or not isinstance(num_networks, (int, np.integer)) or num_networks < 1:
        raise ValueError(f"num_networks: expected a positive integer, got {num_networks!r}")
    n = int(num_networks)
    return StopState(np.zeros(n, np.int64), np.full(n, -1, np.int64), np.zeros(n, bool))


def criterion(train_error, train_loss=None, *, loss_tol=None) -> np.ndarray:
    """Per network: zero training error, or (with ``loss_tol``) a training loss <= loss_tol,
    whatever the error (a loss tolerance asks for a small loss, which zero error alone does not
    give)."""
    err = np.asarray(train_error, np.float64)
    if loss_tol is None:
        return err == 0
    if not loss_tol >= 0:
        raise ValueError(f"loss_tol: expected a non-negative number, got {loss_tol!r}")
    if train_loss is None:
        raise ValueError("train_loss: needed with loss_tol")
    loss = np.asarray(train_loss, np.float64)
    if loss.shape != err.shape:
        raise ValueError(f"train_loss: expected shape {err.shape}, got {loss.shape}")
    return loss <= loss_tol


def update(state: StopState, epoch: int, train_error, train_loss=None, *, loss_tol=None,
           patience: int = 1) -> StopState:
    """The state after ``epoch`` (1-based) given that epoch's per-network training error (and
    loss). A network that has converged stays converged (its epoch is kept)."""
    if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 1:
        raise ValueError(f"patience: expected a positive integer, got {patience!r}")
    met = criterion(train_error, train_loss, loss_tol=loss_tol)
    if met.shape != state.streak.shape:
        raise ValueError(f"train_error: expected shape {state.streak.shape} (one per network), got {met.shape}")
    streak = np.where(met, state.streak + 1, 0)
    newly = ~state.done & (streak >= patience)
    conv = np.where(newly, int(epoch) - patience + 1, state.converged_epoch)
    return StopState(streak, conv, state.done | newly)


def should_stop(state: StopState, epoch: int, max_epochs: int) -> bool:
    """True when every network has converged or the cap is reached."""
    return bool(state.done.all()) or int(epoch) >= int(max_epochs)
