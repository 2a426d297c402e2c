"""Small crafted data files that declare much more than they hold: each is refused with one line
naming the file, before anything of the declared size is allocated (peak memory measured in a
fresh interpreter), and a pickle cannot set attributes of what it may name."""
import gzip
import io
import json
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import pyireg.data as D
from pyireg.data import bounded

PROBE = """
import json, resource, sys
import pyireg.data as D
from pathlib import Path
kind, path = sys.argv[1], Path(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    if kind == "file":
        D.load_file(path)
    elif kind == "idx":
        D.bounded.read_idx(path)
    else:
        D.bounded.load_array_pickle(path)
    error = None
except Exception as e:
    error = f"{type(e).__name__}: {e}"
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"error": error, "grown_mb": grown}))
"""


def _probe(kind, path):
    """(error message, peak memory growth in MB) of reading ``path`` in a fresh interpreter."""
    r = subprocess.run([sys.executable, "-c", PROBE, kind, str(path)], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, f"the reader crashed (exit {r.returncode}): {r.stderr[-1500:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return out["error"], out["grown_mb"]


def _zeros_gzip(path, header: bytes, zeros: int):
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header)
        block = bytes(1 << 20)
        for _ in range(zeros >> 20):
            f.write(block)


def test_gzip_idx_is_read_no_further_than_its_header_says(tmp_path):
    """A gzip of about 150 KB holding 150 MB of zeros after a header of 10 images: at most the
    header's 7,840 bytes (and one more) are decompressed."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    _zeros_gzip(path, bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2, 150 << 20)
    error, grown = _probe("idx", path)
    assert error and str(path) in error and "holds more data" in error
    assert grown < 60, f"reading grew the process by {grown:.0f} MB"


def test_gzip_idx_declaring_more_than_it_can_hold_is_refused_before_allocating(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    _zeros_gzip(path, bytes([0, 0, 8, 3]) + (2 ** 31).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2, 0)
    with pytest.raises(ValueError, match="more than a gzip file of .* bytes can hold") as info:
        bounded.read_idx(path)
    assert str(path) in str(info.value)


def test_idx_dimensions_that_would_wrap_name_the_file(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 8, 4]) + (2 ** 32 - 1).to_bytes(4, "big") * 4 + b"\0" * 16)
    with pytest.raises(ValueError, match="header says") as info:
        bounded.read_idx(path)
    assert str(path) in str(info.value)


def test_npz_member_shapes_are_checked_against_each_other_before_reading(tmp_path):
    """X declares 200 MB of (well compressed) zeros, y ten labels: refused from the headers."""
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, X=np.zeros((50_000, 1000), np.float32), y=np.zeros(10, np.int64))
    assert path.stat().st_size < 2 << 20
    error, grown = _probe("file", path)
    assert error and str(path) in error and "50000 samples but y 10 labels" in error
    assert grown < 60, f"reading grew the process by {grown:.0f} MB"


def test_npz_header_declaring_1e12_elements_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "liar.npz"
    np.savez(path, X=np.zeros((4, 3)), y=np.zeros(4, np.int64))
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    # the same 12 values behind a header declaring 10^12 of them
    header = {"descr": "<f8", "fortran_order": False, "shape": (10 ** 6, 10 ** 6)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    members["X.npy"] = b"\x93NUMPY\x01\x00" + buf.getvalue()[8:] + np.zeros(12).tobytes()
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    with pytest.raises(ValueError) as info:
        D.load_file(path)
    assert str(path) in str(info.value) and "header declares shape (1000000, 1000000)" in str(info.value)


def test_wide_csv_is_refused_from_its_header_line(tmp_path):
    """A 1.7 MB CSV whose header declares 200,000 columns for one row."""
    path = tmp_path / "wide.csv"
    cols = 200_000
    path.write_text(",".join(f"c{i}" for i in range(cols - 1)) + ",label\n" + ",".join(["1"] * cols) + "\n")
    error, grown = _probe("file", path)
    assert error and str(path) in error and "200000 columns for 1 rows" in error
    assert grown < 60, f"reading grew the process by {grown:.0f} MB"


def test_duplicated_label_columns_are_refused(tmp_path):
    path = tmp_path / "twice.csv"
    path.write_text("a,label,label\n" + "".join(f"{i},{i % 2},{i % 3}\n" for i in range(20)))
    with pytest.raises(ValueError, match="2 columns are named 'label'") as info:
        D.load_file(path)
    assert str(path) in str(info.value)


def test_a_label_far_above_the_distinct_labels_warns():
    X = np.random.default_rng(0).standard_normal((40, 3))
    y = np.array([0, 1, 999] * 13 + [0])
    with pytest.warns(RuntimeWarning, match="labels go up to 999.*only 3 distinct"):
        D.from_arrays(X, y)


class _ObjectArray:
    """Pickles as numpy's own reduction of an array, with an object dtype and 2^26 entries."""

    def __reduce__(self):
        core = getattr(np, "_core", None) or np.core
        return (core.multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                (1, (2 ** 26,), np.dtype("O"), False, []))


def test_cifar_pickle_of_an_object_array_is_refused_before_allocating(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _ObjectArray(), b"labels": [0]}, protocol=2))
    assert path.stat().st_size < 400
    error, grown = _probe("pickle", path)
    assert error and str(path) in error and "refusing" in error and "dtype" in error
    assert grown < 60, f"reading grew the process by {grown:.0f} MB"


def test_cifar_pickle_cannot_set_attributes_of_an_allowed_global(tmp_path):
    """GLOBAL _codecs.encode, then BUILD with a slot state: pickle's BUILD would setattr
    __defaults__ on the function the unpickler hands out for it."""
    path = tmp_path / "data_batch_1"
    payload = (b"\x80\x02c_codecs\nencode\nN}X\x0c\x00\x00\x00__defaults__X\x04\x00\x00\x00utf8\x85s\x86b.")
    path.write_bytes(payload)
    before = bounded._latin1_encode.__defaults__
    with pytest.raises(ValueError, match="attributes are never set") as info:
        bounded.load_array_pickle(path)
    assert str(path) in str(info.value)
    assert bounded._latin1_encode.__defaults__ == before


def test_cifar_pickle_declaring_more_bytes_than_it_has_is_truncated(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"\x80\x04\x8e" + (2 ** 40).to_bytes(8, "little") + b"abc")     # BINBYTES8 of 1 TiB
    with pytest.raises(ValueError, match="truncated") as info:
        bounded.load_array_pickle(path)
    assert str(path) in str(info.value)


def test_a_fifo_is_not_read(tmp_path):
    import os
    path = tmp_path / "pipe.csv"
    os.mkfifo(path)
    with pytest.raises(ValueError, match="not a regular file") as info:
        D.load_file(path)
    assert str(path) in str(info.value)


def test_real_formats_still_read(tmp_path):
    """The bounded readers read what the plain ones did: IDX plain and gzip, npz (also
    Fortran-ordered and compressed), protocol-2 and protocol-5 pickles of arrays."""
    imgs = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    raw = bytes([0, 0, 8, 3]) + b"".join(int(s).to_bytes(4, "big") for s in imgs.shape) + imgs.tobytes()
    (tmp_path / "a-idx3-ubyte").write_bytes(raw)
    with gzip.open(tmp_path / "a-idx3-ubyte.gz", "wb") as f:
        f.write(raw)
    for p in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        np.testing.assert_array_equal(bounded.read_idx(tmp_path / p), imgs)
    X = np.asfortranarray(np.random.default_rng(1).standard_normal((30, 4)))
    y = np.arange(30) % 3
    np.savez_compressed(tmp_path / "f.npz", X=X, y=y)
    with zipfile.ZipFile(tmp_path / "f.npz") as zf:
        heads = bounded.npz_headers(tmp_path / "f.npz", zf, ("X", "y"))
        np.testing.assert_array_equal(bounded.read_npz_member(tmp_path / "f.npz", zf, "X", heads["X"]), X)
    for protocol in (2, 5):
        obj = {b"data": np.arange(12, dtype=np.uint8).reshape(3, 4), b"labels": [1, 2, 3], b"x": np.float64(2.5)}
        (tmp_path / "p").write_bytes(pickle.dumps(obj, protocol=protocol))
        back = bounded.load_array_pickle(tmp_path / "p")
        np.testing.assert_array_equal(back[b"data"], obj[b"data"])
        assert back[b"labels"] == [1, 2, 3] and back[b"x"] == 2.5
