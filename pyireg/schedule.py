"""The training schedule of Figures 1 and 2 of the paper."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class PaperSchedule:
    """lr(epoch) = lr0 * lr_decay**epoch; momentum(0) = momentum0, then
    momentum(t+1) = min(momentum_max, momentum(t) + momentum_step). Defaults are the paper's:
    0.1, x0.99 per epoch, momentum 0.5 -> 0.9 by 0.02."""
    lr0: float = 0.1
    lr_decay: float = 0.99
    momentum0: float = 0.5
    momentum_step: float = 0.02
    momentum_max: float = 0.9

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not v >= 0:
                raise ValueError(f"{f.name}: expected a non-negative number, got {v!r}")

    def lr(self, epoch: int) -> float:
        return self.lr0 * self.lr_decay ** epoch

    def momentum(self, epoch: int) -> float:
        return min(self.momentum_max, self.momentum0 + self.momentum_step * epoch)
