"""Censored (teacher) labels and label noise, as in Figure 2 of the paper."""
from __future__ import annotations

import numbers

import numpy as np

from ..model import PackedMLP
from ..optim import MomentumSGD
from ..schedule import PaperSchedule
from .core import Dataset


def _check_dataset(dataset, name="dataset"):
    if not isinstance(dataset, Dataset):
        raise TypeError(f"{name}: expected a pyireg.data.Dataset, got {type(dataset).__name__} "
                        "(make one with pyireg.data.from_arrays(X, y))")


def censor(dataset, h0: int, *, epochs: int = 100, seed: int = 0, schedule: PaperSchedule | None = None,
           batch_size: int = 100, return_teacher: bool = False):
    """Replace every label (train, validation and test) by the prediction of an ``h0``-unit
    network (the teacher) trained on all three splits together with the paper's protocol:
    ``epochs`` epochs of momentum SGD with ``schedule``, mini-batches of ``batch_size`` in the
    order ``np.random.default_rng(seed).permutation`` draws each epoch (the last batch of an
    epoch may be smaller), initialization ``PackedMLP([h0], d, k, seed=seed)``.

    The new data are exactly representable by a network of ``h0`` hidden units, so the
    approximation error is zero from that width on. ``info['censor']`` records h0, the teacher's
    training, and how many labels changed in each split. With ``return_teacher`` the trained
    teacher (a one-network PackedMLP) is returned too, as ``(dataset, teacher)``.
    """
    _check_dataset(dataset)
    if isinstance(h0, bool) or not isinstance(h0, numbers.Integral) or h0 < 1:
        raise ValueError(f"h0: expected a positive integer (the teacher's hidden units), got {h0!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
        raise ValueError(f"epochs: expected a non-negative integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    schedule = schedule or PaperSchedule()
    X = np.concatenate([dataset.X_train, dataset.X_val, dataset.X_test])
    y = np.concatenate([dataset.y_train, dataset.y_val, dataset.y_test])
    teacher = PackedMLP([int(h0)], X.shape[1], dataset.num_classes, seed=seed, dtype=dataset.dtype)
    opt = MomentumSGD(teacher, schedule.lr(0), schedule.momentum(0))
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        opt.lr, opt.momentum = schedule.lr(epoch), schedule.momentum(epoch)
        perm = rng.permutation(len(X))
        for i in range(0, len(X), batch_size):
            b = perm[i:i + batch_size]
            opt.step(X[b], y[b])
    preds = np.concatenate([teacher.forward(X[i:i + 4096])[0].argmax(1) for i in range(0, len(X), 4096)])
    n1, n2 = len(dataset.y_train), len(dataset.y_train) + len(dataset.y_val)
    new = {"y_train": preds[:n1], "y_val": preds[n1:n2], "y_test": preds[n2:]}
    changed = {k: int(np.sum(new["y_" + k] != getattr(dataset, "y_" + k))) for k in ("train", "val", "test")}
    info = {"censor": {"h0": int(h0), "epochs": int(epochs), "seed": int(seed), "changed": changed,
                       "changed_total": sum(changed.values())}}
    out = dataset.replace(info=info, **new)
    return (out, teacher) if return_teacher else out


def label_noise(dataset, fraction: float, seed: int = 0):
    """Change ``fraction`` of the training labels, chosen at random with ``seed``, each to a
    different class drawn at random (validation and test labels are kept)."""
    _check_dataset(dataset)
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction: expected a value in [0, 1], got {fraction!r}")
    rng = np.random.default_rng(seed)
    y = dataset.y_train.copy()
    n = int(round(fraction * len(y)))
    idx = rng.choice(len(y), size=n, replace=False)
    shift = rng.integers(1, dataset.num_classes, size=n)   # never 0: always a different class
    y[idx] = (y[idx] + shift) % dataset.num_classes
    return dataset.replace(y_train=y, info={"label_noise": {"fraction": float(fraction), "seed": seed, "changed": n}})
