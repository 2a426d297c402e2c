"""The process environment pyireg's OpenMP runtime reads once, when the native module loads:
the thread count from ``OMP_NUM_THREADS`` clamped to the documented bound, and a passive wait
policy unless the user chose one (docs/reliability.md).

Run by ``pyireg/__init__`` before ``pyireg._core`` is imported. The native module clamps its
own starting thread count too (csrc/cpu/dispatch.cpp), which covers an OpenMP runtime that was
already loaded, with the user's values, by another library.
"""
from __future__ import annotations

import os
import warnings


# Whether pyireg chose the passive wait policy for this process (the user set none): it holds
# for torch's OpenMP runtime too when torch loads after pyireg, which ``pyireg bench`` avoids for
# its timings (they run in a child with OpenMP's own default wait).
PASSIVE_BY_PYIREG = False
# libgomp's own spin count when the user sets no wait policy (its documented default)
LIBGOMP_DEFAULT_SPINCOUNT = 300000


def processors() -> int:
    """The processors this process may run on (what OpenMP's omp_get_num_procs counts)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def configure(environ=os.environ) -> list[str]:
    """Clamp OMP_NUM_THREADS into [1, 4 x processors] and default OMP_WAIT_POLICY to PASSIVE.
    Returns the warnings issued (at most one)."""
    issued = []
    raw = environ.get("OMP_NUM_THREADS")
    if raw is not None and raw.strip():
        hi = 4 * processors()
        head, sep, rest = raw.strip().partition(",")
        try:
            n = int(head)
        except ValueError:
            n = None
        if n is None:
            del environ["OMP_NUM_THREADS"]
            issued.append(f"OMP_NUM_THREADS={raw!r} is not a positive integer; ignored (pyireg uses one "
                          f"thread per processor, {processors()})")
        elif not 1 <= n <= hi:
            clamped = min(max(n, 1), hi)
            environ["OMP_NUM_THREADS"] = str(clamped) + sep + rest
            issued.append(f"OMP_NUM_THREADS={head} is outside [1, {hi}] (4 x the {hi // 4} processors); "
                          f"clamped to {clamped}")
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        # spinning threads collapse on busy cores (a theorem1 run took 11x longer with two other
        # processes on the 2 cores); passive waits cost little when the cores are idle
        environ["OMP_WAIT_POLICY"] = "PASSIVE"
        if environ is os.environ:
            global PASSIVE_BY_PYIREG
            PASSIVE_BY_PYIREG = True
    for text in issued:
        warnings.warn(f"pyireg: {text}", RuntimeWarning, stacklevel=3)
    return issued
