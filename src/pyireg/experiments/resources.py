"""What a sweep costs and how it is going: the memory estimate and check made before anything
is allocated, and the progress display (a tqdm bar in a terminal or notebook, plain lines in a
log)."""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import data as D

PROGRESS_INTERVAL = 30.0      # seconds between plain progress lines when stderr is not a terminal


def available_memory() -> int | None:
    """Bytes of memory this process can still use: the smaller of the system's available memory
    and the cgroup (container) limit minus its usage; None where neither can be read."""
    found = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    for limit, usage, stat, cache in (
            ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat",
             "inactive_file"),
            ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes",
             "/sys/fs/cgroup/memory/memory.stat", "total_inactive_file")):
        with contextlib.suppress(OSError, ValueError):
            lim = Path(limit).read_text().strip()
            if lim != "max" and int(lim) < 2 ** 60:
                used = int(Path(usage).read_text().strip())
                with contextlib.suppress(OSError, ValueError):   # page cache the kernel can drop is free
                    fields = dict(line.split() for line in Path(stat).read_text().splitlines() if " " in line)
                    used -= int(fields.get(cache, 0))
                found.append(int(lim) - used)
    if not found and hasattr(os, "sysconf"):
        with contextlib.suppress(ValueError, OSError):
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return max(0, min(found)) if found else None


def estimate_memory(widths: Sequence[int], num_features: int, num_classes: int, *, networks_per_width: int = 1,
                    batch_size: int = 100, eval_batch: int = 512, dtype="float32", num_samples: int = 0) -> dict:
    """Bytes a sweep needs at its peak, by part, and their ``total``: weights and momentum
    buffers (2 x S x (d + k) values for S hidden units in all), the float64 draw that
    initializes the widest network, per-unit bookkeeping (float64 vectors of length S),
    activation scratch of the native kernels (a group of 512 units or one network, whichever is
    larger; one per native thread when a step runs by groups, which together stay within 1.05 x
    the units), the copy an epoch commit takes when it runs in the background (checkpoints up to
    256 MiB, experiments/committer.py), and the data (num_samples x d). ``networks_per_width``:
    weight decays x lr scales."""
    item = D.as_dtype(dtype).itemsize
    d, k = int(num_features), int(num_classes)
    S = int(sum(int(w) for w in widths)) * int(networks_per_width)
    N = len(widths) * int(networks_per_width)
    from .._core import get_num_threads
    from .committer import BACKGROUND_BYTES
    one = min(S, 512 + max(int(w) for w in widths))
    group = max(one, min(math.ceil(1.05 * S), get_num_threads() * one))
    weights = 2 * S * (d + k) * item
    parts = {
        "weights and momentum": weights,
        "background commit copy": weights if weights <= BACKGROUND_BYTES else 0,
        "initialization (widest network, float64)": 2 * max(int(w) for w in widths) * (d + k) * 8,
        "per-unit bookkeeping": 4 * S * 8,
        "kernel scratch": (4 * max(batch_size, eval_batch) * group + N * max(batch_size, eval_batch) * k) * item,
        "data": int(num_samples) * d * item,
    }
    parts["total"] = sum(parts.values())
    parts["hidden_units"] = S
    return parts


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.3g} PiB"


def check_memory(estimate: dict, max_memory=None) -> None:
    """Raise MemoryError, with the estimate, when ``estimate['total']`` exceeds ``max_memory``
    (bytes; default: :func:`available_memory`; 0 skips the check)."""
    if max_memory == 0:
        return
    limit = available_memory() if max_memory is None else max_memory
    if limit is None or estimate["total"] <= limit:
        return
    parts = ", ".join(f"{k} {fmt_bytes(v)}" for k, v in estimate.items() if k not in ("total", "hidden_units") and v)
    raise MemoryError(f"widths: this sweep needs about {fmt_bytes(estimate['total'])} ({estimate['hidden_units']:,} "
                      f"hidden units in all: {parts}) but {fmt_bytes(limit)} "
                      f"{'are available' if max_memory is None else 'is the limit (max_memory, --max-memory)'}; use "
                      "fewer or narrower widths, fewer weight decays or lr scales, or run them as separate sweeps"
                      + ("" if max_memory is None else "; or raise the limit (0: no check)"))


class Progress:
    """A tqdm bar when stderr is a terminal; otherwise a plain line per epoch, at most one every
    PROGRESS_INTERVAL seconds (and always the first and the last), so logs stay readable."""

    def __init__(self, total, enabled, desc):
        self.total, self.desc, self.enabled = total, desc, bool(enabled)
        self.count, self.bar, self.last_line = 0, None, -math.inf
        self.t0 = time.perf_counter()
        self.started = 0
        if self.enabled and (isatty(sys.stderr) or in_notebook()):
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="epoch", leave=False)

    def skip(self, n):
        self.count += n
        self.started += n
        if self.bar is not None:
            self.bar.update(n)

    def epoch(self, rep, rep_index, reps, epoch, epochs, val_error, widths):
        self.count += 1
        if not self.enabled:
            return
        j = int(np.argmin(val_error))
        best = f"{val_error[j]:.4f} (H={int(widths[j])})"
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"rep {rep} epoch {epoch}: best val error {best}")
            return
        now = time.perf_counter()
        if self.count - self.started == 1 or self.count == self.total or now - self.last_line >= PROGRESS_INTERVAL:
            self.last_line = now
            rate = (now - self.t0) / max(1, self.count - self.started)
            left = rate * (self.total - self.count)
            print(f"{self.desc}: rep {rep_index + 1}/{reps} (seed {rep}) epoch {epoch}/{epochs}: best val error "
                  f"{best}; {rate:.2f} s/epoch, about {fmt_time(left)} left", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def in_notebook() -> bool:
    """Whether this runs under a Jupyter kernel (tqdm.auto then draws a notebook widget)."""
    shell = sys.modules.get("IPython")
    try:
        ip = shell.get_ipython() if shell is not None else None
    except Exception:       # an IPython without a running shell
        return False
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"

