"""Data sets from your own files (``load_file``): ``.npz`` archives and ``.csv`` / ``.parquet``
tables. Every size is checked before it is allocated (``bounded``): npz members by their
headers, checked against each other and the memory limit before any data is read; tables by
their header line or schema and their row count. Errors name the file."""
from __future__ import annotations

import lzma
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .bounded import check_fits, csv_shape, npz_headers, read_npz_member
from .core import Dataset, from_arrays

# a CSV with more columns than rows is parsed one Python object per column (gigabytes for a
# few MB of header): such files are refused beyond this many columns (save them as .npz)
WIDE_CSV_COLUMNS = 10_000


def load_file(path, *, label_column: str = "label", test_path=None, **kw) -> Dataset:
    """A :class:`Dataset` from a file: ``.npz`` (arrays ``X`` and ``y``, optionally ``X_test``
    and ``y_test``), or ``.csv`` / ``.parquet`` (one row per sample: the column ``label_column``
    holds the labels, every other column is a numeric feature). ``test_path`` names an optional
    separate test file of the same kind. Other keyword arguments go to :func:`from_arrays`
    (split sizes, seed, standardize, dtype). Errors name the file."""
    path = Path(path)
    X, y, Xt, yt = _read_table(path, label_column)
    if test_path is not None:
        if Xt is not None:
            raise ValueError(f"test_path: {path} already holds X_test and y_test")
        Xt, yt, extra, _ = _read_table(Path(test_path), label_column)
        if extra is not None:
            raise ValueError(f"test_path: {test_path} holds its own X_test; give a file with X and y only")
    kw.setdefault("name", path.stem)
    try:
        ds = from_arrays(X, y, X_test=Xt, y_test=yt, **kw)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{path}: {e}") from None
    ds.info["source"] = f"file {path.name}" + (f", test file {Path(test_path).name}" if test_path else "")
    return ds


def _read_table(path: Path, label_column: str):
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file (a directory, FIFO or device is not read)")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path)
    if suffix in (".csv", ".parquet", ".pq"):
        _check_table(path, suffix, label_column)
        import pandas as pd
        try:
            df = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
        except Exception as e:     # parser errors of pandas / pyarrow have many types
            raise ValueError(f"{path}: not a readable {suffix[1:]} file ({type(e).__name__}: {e})") from None
        if len(df) == 0:
            raise ValueError(f"{path}: holds no rows of data (only a header); expected one row per sample")
        if label_column not in df.columns:
            cols = ", ".join(map(str, df.columns[:8])) + (", ..." if len(df.columns) > 8 else "")
            raise ValueError(f"{path}: no label column {label_column!r} (columns: {cols}); name it with "
                             "label_column= (--label-column)")
        y = df[label_column]
        if y.isna().any():
            raise ValueError(f"{path}: column {label_column!r} has {int(y.isna().sum())} missing labels "
                             f"(first at row {int(np.flatnonzero(y.isna().to_numpy())[0])})")
        feats = df.drop(columns=[label_column])
        if feats.shape[1] == 0:
            raise ValueError(f"{path}: no feature columns besides {label_column!r}")
        bad = [str(c) for c in feats.columns if not pd.api.types.is_numeric_dtype(feats[c])]
        if bad:
            raise ValueError(f"{path}: feature column(s) {', '.join(bad[:5])} are not numeric; drop them or "
                             "encode them as numbers")
        if feats.isna().any().any():
            c = feats.columns[feats.isna().any().to_numpy()][0]
            raise ValueError(f"{path}: feature column {c!r} has missing values")
        yv = y.to_numpy()
        if yv.dtype.kind not in "biuf":
            yv = y.astype(str).to_numpy().astype(str)
        return feats.to_numpy(dtype=np.float64), yv, None, None
    raise ValueError(f"{path}: expected a .npz, .csv or .parquet file, got {suffix or 'no suffix'}")


def _read_npz(path: Path):
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise ValueError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as zf:
            keys = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
            if not {"X", "y"} <= keys:
                raise ValueError(f"{path}: expected arrays named X and y (and optionally X_test, y_test), "
                                 f"found {', '.join(sorted(keys)) or 'none'}")
            heads = npz_headers(path, zf, ("X", "y", "X_test", "y_test"))
            if ("X_test" in heads) != ("y_test" in heads):
                raise ValueError(f"{path}: holds only one of X_test and y_test")
            _check_npz_shapes(path, heads)
            # the arrays, then their float64 conversion (as_features): about twice their size
            total = sum(int(np.prod(s, dtype=object)) * max(dt.itemsize, 8) for s, dt, _ in heads.values())
            check_fits(2 * total, path, "reading and converting its arrays")
            arrays = {k: read_npz_member(path, zf, k, h) for k, h in heads.items()}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, KeyError, RuntimeError, zlib.error,
            lzma.LZMAError, NotImplementedError) as e:      # a damaged member, an unsupported compression
        raise ValueError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    return arrays["X"], arrays["y"], arrays.get("X_test"), arrays.get("y_test")


def _check_npz_shapes(path: Path, heads: dict) -> None:
    """Samples of X and y (and of X_test and y_test) agree, X_test has X's features: checked
    from the headers, before any data is read."""
    for xs, ys in (("X", "y"), ("X_test", "y_test")):
        if xs not in heads:
            continue
        X, y = heads[xs][0], heads[ys][0]
        if len(X) < 2:
            raise ValueError(f"{path}: {xs} has shape {X}, expected (samples, features)")
        if len(y) not in (1, 2) or (len(y) == 2 and y[1] != 1):
            raise ValueError(f"{path}: {ys} has shape {y}, expected one label per sample")
        if X[0] != y[0]:
            raise ValueError(f"{path}: {xs} holds {X[0]} samples but {ys} {y[0]} labels")
    for name, (_, dt, _) in heads.items():
        features = name.startswith("X")
        if dt.kind not in ("biuf" if features else "biufUS"):      # labels may be strings (mapped to 0..k-1)
            raise ValueError(f"{path}: {name} holds {dt} values, expected {'numbers' if features else 'labels'}")
    if "X_test" in heads and heads["X_test"][0][1:] != heads["X"][0][1:]:
        raise ValueError(f"{path}: X_test has samples of shape {heads['X_test'][0][1:]}, X of {heads['X'][0][1:]}")


def _check_table(path: Path, suffix: str, label_column: str) -> None:
    """Columns, label columns and size of a table from its header line (CSV) or schema
    (Parquet), before it is parsed."""
    if suffix == ".csv":
        columns, rows = csv_shape(path)
    else:
        try:
            import pyarrow.parquet as pq
            meta = pq.ParquetFile(path).metadata
        except Exception as e:     # pyarrow's errors have many types
            raise ValueError(f"{path}: not a readable {suffix[1:]} file ({type(e).__name__}: {e})") from None
        columns = [meta.schema.column(i).name for i in range(meta.num_columns)]
        rows = meta.num_rows
    count = sum(str(c) == label_column for c in columns)
    if count > 1:
        raise ValueError(f"{path}: {count} columns are named {label_column!r}; expected one label column "
                         "(a second would silently become a feature); rename or drop the others")
    if suffix == ".csv" and len(columns) > max(rows, WIDE_CSV_COLUMNS):
        raise ValueError(f"{path}: the header declares {len(columns)} columns for {rows} rows of data; a CSV this "
                         f"wide (more columns than rows, and over {WIDE_CSV_COLUMNS}) is not parsed: save it as "
                         ".npz (arrays X and y)")
    # pandas' parse, the float64 features and the Dataset's copy: a few times the cells
    check_fits(4 * 8 * max(rows, 1) * max(len(columns), 1), path, f"parsing {rows} rows x {len(columns)} columns")
