"""The process environment pyireg's OpenMP runtime reads once, when the native module loads:
the thread count from ``OMP_NUM_THREADS`` clamped to the documented bound, and a short spinning
wait (``GOMP_SPINCOUNT``) unless the user chose a wait (docs/reliability.md).

Run by ``pyireg/__init__`` before ``pyireg._core`` is imported. The native module clamps its
own starting thread count too (csrc/cpu/dispatch.cpp), which covers an OpenMP runtime that was
already loaded, with the user's values, by another library.
"""
from __future__ import annotations

import os
import warnings


# Whether pyireg chose the OpenMP wait for this process (the user set none). One libgomp serves
# the whole process (torch's wheel and pyireg load the same soname), so the choice holds for
# torch's operations too; ``pyireg bench`` times its rows in a child under libgomp's own default.
WAIT_BY_PYIREG = False
# The spin count pyireg chooses: threads spin this many iterations before they sleep. 0 (the
# passive policy) slowed torch's small operations 1.7-2.1x on idle cores; libgomp's default
# (300000) made a loaded run 1.6-2.3x slower than passive; 3000 about 1.0-1.3x, torch at its
# default speed (docs/reliability.md).
PYIREG_SPINCOUNT = 3000
# libgomp's own spin count when the user sets no wait policy (its documented default)
LIBGOMP_DEFAULT_SPINCOUNT = 300000


def processors() -> int:
    """The processors this process may run on (what OpenMP's omp_get_num_procs counts)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def configure(environ=os.environ) -> list[str]:
    """Clamp OMP_NUM_THREADS into [1, 4 x processors] and default GOMP_SPINCOUNT to
    PYIREG_SPINCOUNT. Returns the warnings issued (at most one)."""
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
        # long spins collapse on busy cores (a theorem1 run took 11x longer with two other
        # processes on the 2 cores); no spin at all slows torch's many short parallel regions
        environ["GOMP_SPINCOUNT"] = str(PYIREG_SPINCOUNT)
        if environ is os.environ:
            global WAIT_BY_PYIREG
            WAIT_BY_PYIREG = True
    for text in issued:
        warnings.warn(f"pyireg: {text}", RuntimeWarning, stacklevel=3)
    return issued
