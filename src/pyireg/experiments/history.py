"""The history of a sweep (``history.parquet``): its columns, its Parquet bytes with pyireg's
metadata, the checksum of its values (``rows_sha256``), and the checks of a history read back
against that checksum and against the sweep's configuration. :mod:`.store` commits it; nothing
here writes a file."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np

from .refusals import SweepStateError, refuse_links

METRICS = ["train_error", "train_loss", "val_error", "val_loss", "test_error", "test_loss"]
# the history's columns, in order (recorded measures follow them)
COLUMNS = (["repetition", "network", "width", "weight_decay", "lr_scale", "epoch", "lr", "momentum"] + METRICS
           + ["norm_U", "norm_V", "balance_drift", "diverged", "at_chance", "train_seconds"])

# no dictionary encoding of the history: on its float columns it tripled the write time (31 against
# 8 ms for 9,000 rows, a mid-run Figure 2 history, loaded host) and the file was larger, not smaller
PARQUET_OPTIONS = {"use_dictionary": False}


def rows_sha256(frame, nan: float = np.nan) -> str:
    """SHA-256 of a history's values: every column's name, dtype and values in order (what a
    Parquet round trip preserves exactly), so an edited value is caught whatever rewrote it.
    Every NaN counts as ``nan``: a round trip through Arrow keeps a NaN's being NaN, not its
    sign or payload (the kernels' NaN of a diverged network has the sign bit set; Arrow reads it
    back as numpy's positive NaN)."""
    h = hashlib.sha256()
    h.update(str(len(frame)).encode())
    for name in frame.columns:
        col = frame[name].to_numpy()
        h.update(f"\0{name}\0{col.dtype.str}\0".encode())
        if col.dtype == object:
            h.update(json.dumps([str(v) for v in col]).encode())
        else:
            if col.dtype.kind == "f":
                col = np.where(np.isnan(col), col.dtype.type(nan), col)
            h.update(np.ascontiguousarray(col).tobytes())
    return h.hexdigest()


def _has_nan(frame) -> bool:
    return any(frame[c].dtype.kind == "f" and bool(np.isnan(frame[c].to_numpy()).any()) for c in frame.columns)


# How pyireg up to 0.2.0 hashed the NaN of a diverged network: as its bits (x86's default NaN,
# sign bit set). A history written then with such NaN verifies against this hash.
_LEGACY_NAN = float(np.copysign(np.nan, -1.0))


def parquet_bytes(frame, meta: dict) -> memoryview:
    """``frame`` as a Parquet file in memory, with ``meta`` (JSON) under the metadata key pyireg,
    the SHA-256 of its values added as ``rows_sha256``."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    meta = dict(meta, rows_sha256=rows_sha256(frame))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"pyireg": json.dumps(meta).encode()})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, **PARQUET_OPTIONS)
    return memoryview(buf.getvalue())


def read_parquet(path: Path, what: str = "out", advice: str = "restore it from a backup, or start in another "
                 "directory", legacy: bool = False):
    """(DataFrame, its pyireg metadata or None) of a Parquet file of a sweep, the rows checked
    against the metadata's checksum when it has one. Errors name the file and what to do.
    ``legacy``: also read a history of format 1 (before checksums) as it is (load_results)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    refuse_links([path], what)
    with contextlib.suppress(OSError):
        if not stat.S_ISREG(os.stat(path).st_mode):     # a FIFO would block the reader
            raise SweepStateError(f"{what}: {path} is not a regular file; {advice}")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise SweepStateError(f"{what}: {path} is corrupt ({type(e).__name__}: {e}); {advice}") from None
    raw = (table.schema.metadata or {}).get(b"pyireg")
    meta = None
    if raw is not None:
        with contextlib.suppress(ValueError, RecursionError):
            meta = json.loads(raw.decode())
    frame = table.to_pandas()
    if isinstance(meta, dict):
        want = meta.get("rows_sha256")
        if want is None and legacy and meta.get("format") == 1:
            return frame, meta                           # written before checksums: nothing to verify
        if want is None:
            raise SweepStateError(f"{what}: {path} carries no checksum of its rows (written by an older pyireg, or "
                                  f"rewritten by another program); {advice}")
        if want != rows_sha256(frame) and not (_has_nan(frame) and want == rows_sha256(frame, nan=_LEGACY_NAN)):
            raise SweepStateError(f"{what}: {path} was changed after it was written (its values do not match the "
                                  f"checksum recorded with them); {advice}")
    return frame, meta


def read_history(path: Path, what: str = "out", legacy: bool = False):
    """(history, metadata) of ``history.parquet``, verified (see read_parquet)."""
    return read_parquet(path, what, "the finished epochs it held cannot be trusted: restore it from a backup, "
                        "or start in another directory", legacy)


def check_history(hist, done, cfg, path) -> None:
    """The rows of a history against the configuration and the epochs done per seed."""
    seeds, epochs, N = cfg["seeds"], cfg["epochs"], cfg["num_networks"]

    def bad(why):
        return SweepStateError(f"out: {path} is inconsistent ({why}); restore the sweep's own history, "
                               "or start in another directory")
    stop = ["converged_epoch"] if cfg.get("stop_when") else []      # the stopping rule's column
    missing = (set(COLUMNS) | set(cfg.get("measures", [])) | set(stop)) - set(hist.columns)
    if missing:
        raise bad(f"columns {sorted(missing)} are missing")
    if set(done) - set(seeds) or set(hist["repetition"].unique().tolist()) - set(done):
        raise bad("it holds repetitions this sweep does not have")
    pattern = [done.get(s, 0) for s in seeds]
    # repetitions run in order: complete ones, at most one partial, then untouched ones
    j = next((i for i, v in enumerate(pattern) if v < epochs), len(pattern))
    if any(v > epochs for v in pattern) or any(v != 0 for v in pattern[j + 1:]):
        raise bad(f"epochs done per seed {dict(zip(seeds, pattern))} is not a state an uninterrupted run passes")
    counts = hist.groupby("repetition").size().to_dict()
    widths = np.asarray(cfg["grid_widths"])
    first = 0 if cfg.get("record_epoch0") else 1        # epoch 0: the initialization, when recorded
    for s in seeds:
        E = done.get(s, 0)
        R = E - first + 1 if E else 0
        if counts.get(s, 0) != N * R:
            raise bad(f"seed {s} has {counts.get(s, 0)} rows, expected {N} networks x {R} epochs")
        if E:
            h = hist[hist["repetition"] == s]
            ep = h["epoch"].to_numpy().reshape(R, N)
            net = h["network"].to_numpy().reshape(R, N)
            if not ((ep == np.arange(first, E + 1)[:, None]).all() and (net == np.arange(N)).all()
                    and (h["width"].to_numpy().reshape(R, N) == widths).all()):
                raise bad(f"the rows of seed {s} are not epochs {first}..{E} of networks 0..{N - 1} of this grid")
