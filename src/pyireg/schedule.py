"""The training schedule of Figures 1 and 2 of the paper."""
from __future__ import annotations

import dataclasses
import math
import numbers

# (lowest, highest, lowest included, highest included) of each field
_RANGES = {"lr0": (0.0, math.inf, False, False), "lr_decay": (0.0, 1.0, False, True),
           "momentum0": (0.0, 1.0, True, False), "momentum_step": (0.0, 1.0, True, True),
           "momentum_max": (0.0, 1.0, True, False)}


def _interval(lo, hi, lo_in, hi_in) -> str:
    return f"{'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"


@dataclasses.dataclass(frozen=True)
class PaperSchedule:
    """lr(epoch) = lr0 * lr_decay**epoch; momentum(0) = momentum0, then
    momentum(t+1) = min(momentum_max, momentum(t) + momentum_step). Defaults are the paper's:
    0.1, x0.99 per epoch, momentum 0.5 -> 0.9 by 0.02.

    Ranges (checked): lr0 > 0, lr_decay in (0, 1], momentum0 and momentum_max in [0, 1) (a
    momentum of 1 or more makes the update grow without bound), momentum_step in [0, 1]."""
    lr0: float = 0.1
    lr_decay: float = 0.99
    momentum0: float = 0.5
    momentum_step: float = 0.02
    momentum_max: float = 0.9

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            lo, hi, lo_in, hi_in = _RANGES[f.name]
            ok = (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                  and (v >= lo if lo_in else v > lo) and (v <= hi if hi_in else v < hi))
            if not ok:
                raise ValueError(f"{f.name}: expected a number in {_interval(lo, hi, lo_in, hi_in)}, got {v!r}")

    def lr(self, epoch: int) -> float:
        return self.lr0 * self.lr_decay ** epoch

    def momentum(self, epoch: int) -> float:
        return min(self.momentum_max, self.momentum0 + self.momentum_step * epoch)
