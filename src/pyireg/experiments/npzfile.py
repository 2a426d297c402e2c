"""An uncompressed .npz (a zip archive of .npy members, what ``numpy.load`` reads) written
straight from the arrays' memory: one CRC-32 pass and one write per array, no copy.

Why not ``np.savez``: it copies every array into 16 MiB chunks (``tobytes``) and feeds them
through ``zipfile``'s streaming writer; on a sweep's epoch checkpoint (18 MB on Figure 2) that
was most of the commit's CPU time after the checksum. The bytes written here are a standard zip
(stored members, no compression, a fixed 1980-01-01 time stamp, so the file is a function of the
arrays alone), with ZIP64 fields only where a size or an offset needs them.
"""
from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import threading
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_LIMIT = 0xFFFFFFFF            # a zip field of 32 bits; at or above it the ZIP64 extra field holds the value
_DOS_DATE = (0 << 9) | (1 << 5) | 1      # 1980-01-01, the first date zip can represent
_DOS_TIME = 0
OVERLAP_BYTES = 1 << 20        # buffers from this size are checksummed on a helper thread
_POOL: ThreadPoolExecutor | None = None
_POOL_PID = 0
_POOL_LOCK = threading.Lock()


def helper_pool() -> ThreadPoolExecutor:
    """Two helper threads for checksums (zlib.crc32 and hashlib release the GIL on large
    buffers): a commit's CRC-32, SHA-256 and file writes then run side by side instead of one
    after the other. Only checksums run there; every file operation stays on the caller's thread."""
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or _POOL_PID != os.getpid():    # a forked child has none of the parent's threads
            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pyireg-checksum")
            _POOL_PID = os.getpid()
        return _POOL


def npy_header(a: np.ndarray) -> bytes:
    """The .npy header ``numpy.save`` writes for the C-contiguous array ``a`` (format 1.0, or
    2.0 when the header does not fit 1.0's 16-bit length)."""
    d = np.lib.format.header_data_from_array_1_0(a)
    bio = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(bio, d)
    except ValueError:
        bio = io.BytesIO()
        np.lib.format.write_array_header_2_0(bio, d)
    return bio.getvalue()


def _as_bytes(a: np.ndarray) -> memoryview:
    """The array's memory as bytes (no copy for a C-contiguous array)."""
    flat = a.reshape(-1)
    return memoryview(flat.view(np.uint8)) if flat.size else memoryview(b"")


def write_npz(f, arrays: dict, force_zip64: bool = False) -> int:
    """Write ``arrays`` ({name: array-like}) to the open binary file ``f`` (only ``write`` is
    used, in one sequential pass) as an uncompressed .npz; returns the bytes written.
    ``force_zip64`` writes ZIP64 fields for every member (the tests check that path on small
    files). Object arrays are refused (numpy.load would need pickles)."""
    members, offset, parts = [], 0, []
    for name, value in arrays.items():
        a = np.asarray(value)
        if not a.flags.c_contiguous:          # a copy only for a strided or Fortran-ordered array
            a = a.copy(order="C")              # (not ascontiguousarray: it makes a 0-d array 1-d)
        if a.dtype.hasobject:
            raise ValueError(f"arrays: {name!r} holds Python objects; a checkpoint holds numeric arrays only")
        head, data = npy_header(a), _as_bytes(a)
        parts.append((name, head, data))
    # every member's CRC-32 on a helper thread, in order, while earlier members are written
    crcs = [helper_pool().submit(zlib.crc32, data, zlib.crc32(head)) if data.nbytes >= OVERLAP_BYTES
            else zlib.crc32(data, zlib.crc32(head)) for _, head, data in parts]
    for (name, head, data), crc in zip(parts, crcs):
        crc = crc if isinstance(crc, int) else crc.result()
        size = len(head) + data.nbytes
        fname = (name + ".npy").encode()
        big = force_zip64 or size >= _LIMIT or offset >= _LIMIT
        if big:
            local = struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 45, 0, 0, 0, _DOS_TIME, _DOS_DATE, crc,
                                _LIMIT, _LIMIT, len(fname), 20)
            extra = struct.pack("<HHQQ", 1, 16, size, size)
        else:
            local = struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 0, _DOS_TIME, _DOS_DATE, crc,
                                size, size, len(fname), 0)
            extra = b""
        f.write(local + fname + extra + head)
        f.write(data)
        members.append((fname, crc, size, offset, big))
        offset += len(local) + len(fname) + len(extra) + size
    cd_start = offset
    central = bytearray()
    for fname, crc, size, at, big in members:
        if big:
            # every field that holds 0xFFFFFFFF is read from the ZIP64 extra field, in this order
            extra = struct.pack("<HHQQQ", 1, 24, size, size, at)
            fields = (_LIMIT, _LIMIT, _LIMIT)
        else:
            extra, fields = b"", (size, size, at)
        version = 45 if big else 20
        central += struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", version, 3, version, 0, 0, 0, _DOS_TIME,
                               _DOS_DATE, crc, fields[0], fields[1], len(fname), len(extra), 0, 0, 0,
                               0o100644 << 16, fields[2]) + fname + extra
    end = offset + len(central)
    n = len(members)
    if force_zip64 or n >= 0xFFFF or cd_start >= _LIMIT or len(central) >= _LIMIT:
        central += struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, len(central), cd_start)
        central += struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1)
        central += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, min(n, 0xFFFF), min(n, 0xFFFF),
                               min(end - cd_start, _LIMIT), min(cd_start, _LIMIT), 0)
    else:
        central += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(central), cd_start, 0)
    f.write(bytes(central))
    return offset + len(central)


class _Refused(Exception):
    """Why a checkpoint is refused (read_npz turns it into the caller's error)."""


def read_npz(path, expected: dict, sha256: str | None, fail) -> dict:
    """The arrays of the .npz ``path``, checked before anything large is read: the archive's
    members by name (exactly ``expected``'s) and by their declared sizes, then the file's
    SHA-256 against ``sha256`` (when given), then each member's header (shape, dtype) against
    ``expected`` ({name: (shape, dtype)}). ``fail(why)`` makes the exception raised, ``why``
    saying what is wrong with the file ("is not a regular file", ...)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise _Refused("is not a regular file")
        with open(path, "rb") as f:
            try:
                zf = zipfile.ZipFile(f)
            except (zipfile.BadZipFile, ValueError, EOFError):
                raise _Refused("is not a checkpoint archive (not a .npz file: truncated, or other bytes)") from None
            with zf:
                infos = {i.filename: i for i in zf.infolist()}
                names = {n[:-4] for n in infos if n.endswith(".npy")}
                if set(infos) != {n + ".npy" for n in names} or names != set(expected):
                    extra = sorted(set(infos) - {n + ".npy" for n in expected})
                    lack = sorted(set(expected) - names)
                    raise _Refused("holds other members than a checkpoint of this sweep"
                                   + (f" (unexpected: {', '.join(extra[:4])})" if extra else "")
                                   + (f" (missing: {', '.join(lack[:4])})" if lack else ""))
                limit = 0
                for name, (shape, dtype) in expected.items():
                    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
                    size = infos[name + ".npy"].file_size
                    if size > nbytes + 4096:
                        raise _Refused(f"declares a member {name} of {size:,} bytes, expected about {nbytes:,}")
                    limit += size + 512
                if st.st_size > limit + 65536:
                    raise _Refused(f"is {st.st_size:,} bytes, more than its members declare")
                if sha256 is not None:
                    f.seek(0)
                    h = hashlib.sha256()
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                    if h.hexdigest() != sha256:
                        raise _Refused("was changed after it was committed (its SHA-256 differs from the one "
                                       "history.parquet records)")
                out = {}
                for name, (shape, dtype) in expected.items():
                    with zf.open(name + ".npy") as m:
                        version = np.lib.format.read_magic(m)
                        if version == (1, 0):
                            hshape, fortran, hdtype = np.lib.format.read_array_header_1_0(m)
                        else:
                            hshape, fortran, hdtype = np.lib.format.read_array_header_2_0(m)
                        if tuple(hshape) != tuple(shape) or hdtype != np.dtype(dtype) or fortran:
                            raise _Refused(f"holds {name} of shape {tuple(hshape)} {hdtype}, expected {tuple(shape)} "
                                           f"{np.dtype(dtype)}")
                        n = int(np.prod(shape, dtype=np.int64))
                        buf = m.read(n * hdtype.itemsize)
                        if len(buf) != n * hdtype.itemsize:
                            raise _Refused(f"is truncated (member {name})")
                        out[name] = np.frombuffer(buf, dtype=hdtype).reshape(shape).copy()
                return out
    except _Refused as e:
        raise fail(str(e)) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as e:
        raise fail(f"is corrupt ({type(e).__name__}: {e})") from None
