"""Where the time of a long run goes: a process-wide table of named sections (seconds and
calls), off by default. ``pyireg reproduce ... --profile`` turns it on and prints the split
between the native training and evaluation kernels and everything else."""
from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict

_lock = threading.Lock()
_on = False
_seconds: dict = defaultdict(float)
_calls: dict = defaultdict(int)

#: sections that are time inside the native kernels (the engine calls themselves)
KERNELS = ("native training step", "native evaluation")


def enable(on: bool = True) -> None:
    global _on
    _on = on


def enabled() -> bool:
    return _on


def reset() -> None:
    with _lock:
        _seconds.clear()
        _calls.clear()


def add(name: str, seconds: float) -> None:
    with _lock:
        _seconds[name] += seconds
        _calls[name] += 1


def seconds(name: str) -> float:
    with _lock:
        return _seconds.get(name, 0.0)


@contextlib.contextmanager
def section(name: str):
    """Time the block under ``name`` when profiling is on (a flag test when it is off)."""
    if not _on:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        add(name, time.perf_counter() - t0)


def report(total: float) -> str:
    """A table of the sections against ``total`` wall seconds, and the share outside the kernels."""
    with _lock:
        rows = sorted(_seconds.items(), key=lambda kv: -kv[1])
        calls = dict(_calls)
    kern = sum(s for n, s in rows if n in KERNELS)
    lines = [f"{'section':44s} {'seconds':>9s} {'share':>7s} {'calls':>9s}"]
    for name, s in rows:
        lines.append(f"{name:44s} {s:9.1f} {100 * s / total:6.1f}% {calls[name]:9d}")
    lines.append("")
    lines.append(f"{'in the native kernels (training, evaluation)':44s} {kern:9.1f} {100 * kern / total:6.1f}%")
    lines.append(f"{'outside them (all the rest of the run)':44s} {total - kern:9.1f} "
                 f"{100 * (total - kern) / total:6.1f}%"
                 f"   (total {total:.1f} s; the run is {total / kern:.2f}x its kernel time)" if kern else "")
    return "\n".join(lines)
