"""Readers of untrusted data files that allocate only what the file really holds: every size is
taken from a header, checked against the file's size and the memory limit
(``pyireg.memory_limit()``) before anything of that size is allocated, and then read in blocks.

- ``read_idx``: an IDX file, plain or gzip; at most the header's size plus one byte (to detect
  extra data) is ever decompressed.
- ``npz_headers`` / ``read_npz_member``: the shape and dtype of each ``.npy`` member from its
  header, checked against the member's size, before any data is read.
- ``csv_shape``: the columns of a CSV's header line and its number of lines, streamed.
- ``load_array_pickle``: a restricted unpickler of numpy arrays and plain containers that reads
  at most the bytes the file has, refuses object dtypes and sets no attribute of anything
  (pickle's BUILD only restores the state of arrays and dtypes, checked first).

Every error is a ValueError (or MemoryError, for data that exist but would not fit) naming the
file.
"""
from __future__ import annotations

import csv
import gzip
import io
import math
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

_BLOCK = 1 << 22                 # bytes read or decompressed at a time
_GZIP_MAX_RATIO = 1032           # deflate's largest expansion: what a gzip of n bytes can hold


def memory_limit() -> int:
    from .. import _core
    return int(_core.memory_limit())


def check_fits(nbytes: int, path, what: str) -> None:
    """MemoryError naming the file when ``nbytes`` would not fit the memory limit."""
    limit = memory_limit()
    if nbytes > limit:
        raise MemoryError(f"{path}: {what} would take {nbytes / 2**30:.3g} GiB, more than the memory limit "
                          f"({limit / 2**30:.3g} GiB; pyireg.set_memory_limit)")


def _read_into(f, out: memoryview, path, what: str) -> None:
    """Fill ``out`` from the stream ``f`` in blocks; a short stream is a truncated file."""
    got, n = 0, len(out)
    while got < n:
        chunk = f.read(min(_BLOCK, n - got))
        if not chunk:
            raise ValueError(f"{path}: truncated: {what} declares {n} bytes of data, the file holds {got}")
        out[got:got + len(chunk)] = chunk
        got += len(chunk)


# ----------------------------------------------------------------------------- IDX (MNIST)
def read_idx(path: Path) -> np.ndarray:
    """An IDX array of unsigned bytes (magic 0x00000803 / 0x00000801 ...), plain or gzip."""
    gz = path.suffix == ".gz"
    try:
        size = path.stat().st_size
        with (gzip.open if gz else open)(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
                raise ValueError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
            ndim = head[3]
            raw = f.read(4 * ndim)
            if len(raw) < 4 * ndim:
                raise ValueError(f"{path}: truncated IDX header")
            dims = [int.from_bytes(raw[4 * i:4 * i + 4], "big") for i in range(ndim)]
            count = math.prod(dims)            # Python ints: never wraps
            body = 4 + 4 * ndim
            if gz and count > _GZIP_MAX_RATIO * size:
                raise ValueError(f"{path}: header says {dims} ({count} values), more than a gzip file of {size} "
                                 "bytes can hold; the file is corrupt")
            if not gz and count != size - body:
                raise ValueError(f"{path}: header says {dims} ({count} values) but the file holds {size - body}")
            check_fits(count, path, f"the IDX array {dims}")
            out = np.empty(count, dtype=np.uint8)
            _read_into(f, memoryview(out), path, f"the header {dims}")
            if gz and f.read(1):
                raise ValueError(f"{path}: header says {dims} ({count} values) but the file holds more data")
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None
    return out.reshape(dims)


# ----------------------------------------------------------------------------- .npz
def npz_headers(path: Path, zf: zipfile.ZipFile, names) -> dict:
    """{name: (shape, dtype, fortran_order)} of the members ``names`` present (``name.npy``),
    from their headers only; the data must be exactly what the header declares."""
    out = {}
    for name in names:
        member = name + ".npy"
        try:
            info = zf.getinfo(member)
        except KeyError:
            continue
        with zf.open(info) as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=10000)
                elif version in ((2, 0), (3, 0)):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=10000)
                else:
                    raise ValueError(f"npy format version {version}")
            except ValueError as e:
                raise ValueError(f"{path}: member {name}: not a readable .npy header ({e})") from None
            header = f.tell() if hasattr(f, "tell") else None
        if dtype.hasobject:
            raise ValueError(f"{path}: member {name} holds Python objects (a pickle), which are not loaded; save "
                             "plain numeric arrays (labels as integers or fixed-width strings)")
        if dtype.subdtype is not None or any(not isinstance(s, int) or s < 0 for s in shape):
            raise ValueError(f"{path}: member {name}: not a readable .npy header (shape {shape} of {dtype}: "
                             "expected non-negative sizes of a plain dtype)")
        nbytes = math.prod(shape) * dtype.itemsize
        # deflate expands at most 1032-fold; bzip2 and lzma far more (their sizes are bounded by
        # the memory check before reading)
        if info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) and \
                nbytes > _GZIP_MAX_RATIO * max(info.compress_size, 1) + 4096:
            raise ValueError(f"{path}: member {name}: header declares shape {shape} of {dtype} ({nbytes} bytes), "
                             f"more than its {info.compress_size} compressed bytes can hold; the file is corrupt")
        if header is not None and info.file_size != header + nbytes:
            raise ValueError(f"{path}: member {name}: header declares shape {shape} of {dtype} ({nbytes} bytes) but "
                             f"the member holds {max(0, info.file_size - header)} bytes of data")
        out[name] = (tuple(shape), dtype, fortran)
    return out


def read_npz_member(path: Path, zf: zipfile.ZipFile, name: str, header) -> np.ndarray:
    """Member ``name`` read in blocks into an array allocated once from its checked header."""
    shape, dtype, fortran = header
    with zf.open(name + ".npy") as f:
        version = np.lib.format.read_magic(f)
        (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(
            f, max_header_size=10000)
        out = np.empty(math.prod(shape), dtype=dtype)
        _read_into(f, memoryview(out).cast("B"), path, f"member {name}")
    return out.reshape(shape[::-1]).T if fortran else out.reshape(shape)


# ----------------------------------------------------------------------------- CSV
def csv_shape(path: Path):
    """(header fields, data lines) of a CSV, reading its header line and counting newlines in
    blocks (a line count bounds the rows from above: quoted fields may hold newlines)."""
    first, in_header, lines, last = bytearray(), True, 0, b""
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            last = block[-1:]
            if in_header:
                cut = block.find(b"\n")
                if cut < 0:
                    first += block
                    continue
                first += block[:cut]
                in_header = False
                lines += block.count(b"\n", cut + 1)
            else:
                lines += block.count(b"\n")
    rows = 0 if in_header else lines + (last != b"\n")
    text = bytes(first).decode("utf-8", errors="replace").rstrip("\r")
    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        fields = []
    return fields, rows


# ----------------------------------------------------------------------------- pickles (CIFAR-10)
class Refused(pickle.UnpicklingError):
    """Something the restricted unpickler does not build."""


class Truncated(pickle.UnpicklingError):
    """A pickle that declares more bytes than its file has left."""


class _BoundedFile(io.RawIOBase):
    """A file whose reads never ask for more than it has left: a pickle opcode declaring a
    length beyond the end is a truncated or hostile file, refused before a buffer of that size
    is made."""

    def __init__(self, f, size: int):
        self._f, self._left = f, size

    def read(self, n=-1):
        if n is None or n < 0:
            n = self._left
        if n > self._left:
            raise Truncated(f"truncated: an item declares {n} bytes but only {self._left} remain in the file")
        data = self._f.read(n)
        self._left -= len(data)
        return data

    def readinto(self, b):
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def readline(self, limit=-1):
        line = self._f.readline(min(self._left, 1 << 20) if limit is None or limit < 0 else min(limit, self._left))
        self._left -= len(line)
        return line

    def readable(self):
        return True


def _latin1_encode(text, encoding="latin1"):
    """What protocol-2 pickles of bytes call (``_codecs.encode(str, 'latin1')``), allowing only
    that encoding."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise Refused(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _plain_dtype(dt) -> np.dtype:
    if not isinstance(dt, np.dtype) or dt.hasobject:
        raise Refused(f"refusing an array of dtype {dt!r}: only plain numbers are read")
    return dt


def _dtype(obj, align=False, copy=False):
    dt = np.dtype(obj, align=bool(align), copy=bool(copy))
    return _plain_dtype(dt)


def _shape(shape) -> tuple:
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise Refused(f"refusing an array shape {shape!r}")
    return shape


class _NdarrayType:
    """What the name numpy.ndarray unpickles to: only an argument of ``_reconstruct`` (calling
    numpy.ndarray itself would allocate an array of any shape)."""


_NDARRAY = _NdarrayType()


def _reconstruct(subtype, shape, typecode):
    """numpy's pickles start an array as ``_reconstruct(ndarray, (0,), b'b')`` (empty) and fill
    it with BUILD; anything else is refused (it would allocate before any data is seen)."""
    if subtype is not _NDARRAY or shape != (0,):
        raise Refused(f"refusing _reconstruct({type(subtype).__name__}, {shape!r}): only numpy arrays are read")
    return np.ndarray((0,), dtype=np.uint8)


def _np_core():
    core = getattr(np, "_core", None)
    return core if core is not None else np.core


def _scalar(dtype, data=None):
    scalar = _np_core().multiarray.scalar
    return scalar(_plain_dtype(dtype), data) if data is not None else scalar(_plain_dtype(dtype))


def _frombuffer(buf, dtype, shape, order):
    fb = _np_core().numeric._frombuffer
    dt, shp = _plain_dtype(dtype), _shape(tuple(shape))
    if len(memoryview(buf).cast("B")) != math.prod(shp) * dt.itemsize:
        raise Refused(f"refusing an array of shape {shp}: its buffer has another size")
    return fb(buf, dt, shp, order)


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _ArrayUnpickler(pickle._Unpickler):
    """Builds only numpy arrays, numpy scalars and plain containers (dict, list, tuple, str,
    bytes, numbers): what a CIFAR-10 python batch holds. Any other global (a function or class,
    the way pickles run code) is refused before it is looked up; BUILD restores only the state
    of an array (checked: plain dtype, data of exactly the declared size) or of a dtype."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise Refused(f"refusing to load {module}.{name}: only arrays and plain containers are read") from None

    def load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is np.ndarray:
            if not (isinstance(state, tuple) and len(state) == 5):
                raise Refused("refusing an array state of an unknown form")
            _, shape, dtype, _, data = state
            shape, dtype = _shape(shape), _plain_dtype(dtype)
            if not isinstance(data, (bytes, bytearray)) or len(data) != math.prod(shape) * dtype.itemsize:
                raise Refused(f"refusing an array of shape {shape} and dtype {dtype}: its data has another size")
            inst.__setstate__(state)
        elif type(inst) is np.dtype or isinstance(inst, np.dtype):
            if not isinstance(state, tuple):
                raise Refused("refusing a dtype state of an unknown form")
            inst.__setstate__(state)
            _plain_dtype(inst)
        else:
            raise Refused(f"refusing to set the state of {type(inst).__name__}: attributes are never set")

    dispatch[pickle.BUILD[0]] = load_build


def load_array_pickle(path: Path):
    """The object in a pickle of arrays and containers, read with the restricted unpickler."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            return _ArrayUnpickler(_BoundedFile(f, size), encoding="bytes").load()
    except Refused as e:
        raise ValueError(f"{path}: not read ({e}); a CIFAR-10 python batch holds only arrays and lists") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError, RecursionError, OSError) as e:
        raise ValueError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None
