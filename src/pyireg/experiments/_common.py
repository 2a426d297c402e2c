"""What the demonstrations share: a thread-count context, figures and tables written to a
directory, the Frobenius norms of a network's weights, and the command line's widths option."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np

from .. import _core


@contextlib.contextmanager
def num_threads(n):
    """Run a block with ``n`` native threads (``None``: leave the setting alone), then restore
    the previous count. The linear demonstrations use one thread: a step of their small models
    is a few hundred microseconds of work, less than what splitting it across threads costs on
    a busy machine."""
    if n is None:
        yield
        return
    old = _core.get_num_threads()
    _core.set_num_threads(int(n))
    try:
        yield
    finally:
        _core.set_num_threads(old)


@dataclasses.dataclass
class DemoResult:
    """What a demonstration produced: its table (a DataFrame), the figure written, and the key
    numbers as sentences (printed by the command and quoted in the README)."""
    name: str
    table: "pd.DataFrame"   # noqa: F821
    figure: Path
    summary: list
    seconds: float = float("nan")


def pyplot():
    """matplotlib's pyplot on the file-only backend (the demos never open a window)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def markdown_table(df, floatfmt="{:.4g}") -> str:
    """A DataFrame as a Markdown table (without needing the tabulate package)."""
    cols = [str(c) for c in df.columns]

    def cell(v):
        if isinstance(v, (float, np.floating)):
            return floatfmt.format(v) if np.isfinite(v) else str(v)
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def network_sq_norms(model) -> np.ndarray:
    """Per network ||U_n||_F^2 + ||V_n||_F^2 (float64)."""
    m = model.measures()
    return np.asarray(m["norm_U"], np.float64) ** 2 + np.asarray(m["norm_V"], np.float64) ** 2


def distance_per_network(model, U0, V0) -> np.ndarray:
    """Per network ||(U_n, V_n) - (U0_n, V0_n)||_F (float64), summed in unit order."""
    dU = ((model.U.astype(np.float64) - U0) ** 2).sum(1)
    dV = ((model.V.astype(np.float64) - V0) ** 2).sum(1)
    return np.sqrt(np.add.reduceat(dU + dV, model.offsets[:-1]))


# the most widths a FIRST:LAST range gives (ten million networks: far past any sweep's memory)
MAX_RANGE = 10_000_000


def widths_arg(text: str):
    """The widths of a command-line option: '1,2,4' (these), '1:1024' (every width from 1 to
    1024) or 'pow2:4096' (1, 2, 4, ..., 4096); argparse.ArgumentTypeError otherwise."""
    text = text.strip()
    bad = argparse.ArgumentTypeError(f"expected widths like '1,2,4', '1:1024' or 'pow2:4096', got {text!r}")
    try:
        if text.startswith("pow2:"):
            top = int(text[5:])
            if top < 1 or top & (top - 1):
                lo = 1 << max(0, top.bit_length() - 1)
                raise argparse.ArgumentTypeError(
                    f"pow2:{top}: {top} is not a power of two; the sweep would stop at {lo} "
                    f"(write pow2:{lo} or pow2:{lo * 2})" if top >= 1 else f"pow2:{top}: expected a power of two")
            return [2 ** i for i in range(top.bit_length())]
        if ":" in text:
            a, b = (int(x) for x in text.split(":"))
            if not 1 <= a <= b:
                raise argparse.ArgumentTypeError(f"{text}: expected FIRST:LAST with 1 <= FIRST <= LAST")
            if b - a + 1 > MAX_RANGE:          # refused before the list is made (1:10^9 took minutes)
                raise argparse.ArgumentTypeError(f"{text}: {b - a + 1:,} widths; a range holds at most "
                                                 f"{MAX_RANGE:,}")
            return list(range(a, b + 1))
        ws = [int(x) for x in text.split(",")]     # an empty item ('1,', '1,,2') is a ValueError
    except ValueError:
        raise bad from None
    if not ws or min(ws) < 1:
        raise argparse.ArgumentTypeError(f"expected positive widths, got {text!r}")
    return ws


def check_writable(folder, what: str, instead: str) -> None:
    """Raise an OSError naming ``what`` (and to choose another ``instead``) unless a file can be
    created in the existing directory ``folder``: tried with a temporary file, removed again,
    before any long run writes there."""
    try:
        fd, name = tempfile.mkstemp(prefix=".pyireg-write-test-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise type(e)(e.errno, f"{what}: cannot write in {folder} ({e.strerror}); choose another {instead}") from None
