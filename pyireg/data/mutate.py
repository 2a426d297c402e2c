"""Censored (teacher) labels and label noise, as in Figure 2 of the paper."""
from __future__ import annotations

import numpy as np

from ..model import PackedMLP
from ..optim import MomentumSGD
from ..schedule import PaperSchedule


def censor(dataset, h0: int, *, epochs: int = 100, seed: int = 0, schedule: PaperSchedule | None = None,
           batch_size: int = 100):
    """Replace every label (train, validation and test) by the prediction of an ``h0``-unit
    network trained on all three splits together with the paper's protocol.

    The new data are exactly representable by a network of ``h0`` hidden units, so the
    approximation error is zero from that width on. ``info['censor']`` records h0, the teacher's
    training, and how many labels changed in each split.
    """
    if not isinstance(h0, (int, np.integer)) or h0 < 1:
        raise ValueError(f"h0: expected a positive integer, got {h0!r}")
    schedule = schedule or PaperSchedule()
    X = np.concatenate([dataset.X_train, dataset.X_val, dataset.X_test])
    y = np.concatenate([dataset.y_train, dataset.y_val, dataset.y_test])
    teacher = PackedMLP([int(h0)], X.shape[1], dataset.num_classes, seed=seed)
    opt = MomentumSGD(teacher, schedule.lr(0), schedule.momentum(0))
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        opt.lr, opt.momentum = schedule.lr(epoch), schedule.momentum(epoch)
        perm = rng.permutation(len(X))
        for i in range(0, len(X) - batch_size + 1, batch_size):
            b = perm[i:i + batch_size]
            opt.step(X[b], y[b])
    preds = np.concatenate([teacher.forward(X[i:i + 4096])[0].argmax(1) for i in range(0, len(X), 4096)])
    n1, n2 = len(dataset.y_train), len(dataset.y_train) + len(dataset.y_val)
    new = {"y_train": preds[:n1], "y_val": preds[n1:n2], "y_test": preds[n2:]}
    changed = {k: int(np.sum(new["y_" + k] != getattr(dataset, "y_" + k))) for k in ("train", "val", "test")}
    info = {"censor": {"h0": int(h0), "epochs": epochs, "seed": seed, "changed": changed,
                       "changed_total": sum(changed.values())}}
    return dataset.replace(info=info, **new)


def label_noise(dataset, fraction: float, seed: int = 0):
    """Change ``fraction`` of the training labels, chosen at random, to a different random class."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction: expected a value in [0, 1], got {fraction!r}")
    rng = np.random.default_rng(seed)
    y = dataset.y_train.copy()
    n = int(round(fraction * len(y)))
    idx = rng.choice(len(y), size=n, replace=False)
    shift = rng.integers(1, dataset.num_classes, size=n)   # never 0: always a different class
    y[idx] = (y[idx] + shift) % dataset.num_classes
    return dataset.replace(y_train=y, info={"label_noise": {"fraction": fraction, "seed": seed, "changed": n}})
