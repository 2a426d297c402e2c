"""Label noise, as in Figure 2 of the paper (the censoring teacher trains a network: it is an
experiment step, :mod:`pyireg.experiments.teacher`)."""
from __future__ import annotations

import numbers

import numpy as np

from .core import Dataset


def _check_dataset(dataset, name="dataset"):
    if not isinstance(dataset, Dataset):
        raise TypeError(f"{name}: expected a pyireg.data.Dataset, got {type(dataset).__name__} "
                        "(make one with pyireg.data.from_arrays(X, y))")


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
