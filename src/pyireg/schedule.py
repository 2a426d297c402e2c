"""Learning-rate and momentum schedules, one value per epoch: the paper's (Figures 1 and 2), and
the presets constant, step, cosine, cyclic and warmup, recorded in a sweep's config.json."""
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


# ----------------------------------------------------------------------------- presets
# Any object with lr(epoch) and momentum(epoch) is a schedule; these presets serialize to a
# sweep's config.json (schedule_to_json) and come back from it (schedule_from_json).
def _check(name, v, lo, hi, lo_in=True, hi_in=True):
    ok = (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
          and (v >= lo if lo_in else v > lo) and (v <= hi if hi_in else v < hi))
    if not ok:
        raise ValueError(f"{name}: expected a number in {_interval(lo, hi, lo_in, hi_in)}, got {v!r}")


def _check_count(name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")


class _ConstantMomentum:
    """Presets with one momentum for every epoch (``momentum0``) and a positive ``lr0``."""

    def _check_rate_and_momentum(self):
        _check("lr0", self.lr0, 0.0, math.inf, False, False)
        _check("momentum0", self.momentum0, 0.0, 1.0, True, False)

    def momentum(self, epoch: int) -> float:
        return self.momentum0


@dataclasses.dataclass(frozen=True)
class ConstantSchedule(_ConstantMomentum):
    """lr(epoch) = lr0, momentum(epoch) = momentum0."""
    lr0: float = 0.1
    momentum0: float = 0.0

    def __post_init__(self):
        self._check_rate_and_momentum()

    def lr(self, epoch: int) -> float:
        return self.lr0


@dataclasses.dataclass(frozen=True)
class StepSchedule(_ConstantMomentum):
    """lr(epoch) = lr0 * gamma ** (epoch // step): the rate drops by ``gamma`` every ``step``
    epochs; constant momentum."""
    lr0: float = 0.1
    step: int = 20
    gamma: float = 0.1
    momentum0: float = 0.9

    def __post_init__(self):
        self._check_rate_and_momentum()
        _check_count("step", self.step)
        _check("gamma", self.gamma, 0.0, 1.0, False, True)

    def lr(self, epoch: int) -> float:
        return self.lr0 * self.gamma ** (epoch // self.step)


@dataclasses.dataclass(frozen=True)
class CosineSchedule(_ConstantMomentum):
    """lr(epoch) = lr_min + (lr0 - lr_min) (1 + cos(pi epoch / epochs)) / 2, from lr0 at epoch 0
    towards lr_min at ``epochs`` (and lr_min after); constant momentum."""
    lr0: float = 0.1
    epochs: int = 60
    lr_min: float = 0.0
    momentum0: float = 0.9

    def __post_init__(self):
        self._check_rate_and_momentum()
        _check_count("epochs", self.epochs)
        _check("lr_min", self.lr_min, 0.0, self.lr0, True, True)

    def lr(self, epoch: int) -> float:
        t = min(epoch, self.epochs) / self.epochs
        return self.lr_min + (self.lr0 - self.lr_min) * (1 + math.cos(math.pi * t)) / 2


_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


@dataclasses.dataclass(frozen=True)
class CyclicSchedule:
    """A cyclic learning rate (Smith, 2017) with the formulas of
    ``torch.optim.lr_scheduler.CyclicLR``, stepped once per epoch: ``lr(epoch)`` is the rate
    CyclicLR gives after ``epoch`` calls of ``scheduler.step()`` (its ``last_epoch = epoch``), so
    epoch 0 trains at ``base_lr``, the rate reaches ``max_lr`` after ``step_size_up`` epochs and
    comes back down over ``step_size_down`` (default: ``step_size_up``).

    With x = 1 + epoch / T - cycle, cycle = floor(1 + epoch / T), T = up + down, r = up / T:
    s = x / r while x <= r, else (x - 1) / (r - 1); lr = base_lr + (max_lr - base_lr) s f, where
    f = 1 (mode "triangular"), 1 / 2^(cycle - 1) ("triangular2") or gamma^epoch ("exp_range").
    With ``cycle_momentum`` the momentum moves the other way, max_momentum - (max_momentum -
    base_momentum) s f (as CyclicLR does); without it the momentum is ``max_momentum``."""
    base_lr: float = 0.01
    max_lr: float = 0.1
    step_size_up: int = 10
    step_size_down: int | None = None
    mode: str = "triangular"
    gamma: float = 1.0
    base_momentum: float = 0.8
    max_momentum: float = 0.9
    cycle_momentum: bool = True

    def __post_init__(self):
        _check("max_lr", self.max_lr, 0.0, math.inf, False, False)
        _check("base_lr", self.base_lr, 0.0, self.max_lr, True, True)
        _check_count("step_size_up", self.step_size_up)
        if self.step_size_down is not None:
            _check_count("step_size_down", self.step_size_down)
        if self.mode not in _CYCLIC_MODES:
            raise ValueError(f"mode: expected one of {', '.join(_CYCLIC_MODES)}, got {self.mode!r}")
        _check("gamma", self.gamma, 0.0, 1.0, False, True)
        _check("max_momentum", self.max_momentum, 0.0, 1.0, True, False)
        _check("base_momentum", self.base_momentum, 0.0, self.max_momentum, True, True)
        if not isinstance(self.cycle_momentum, bool):
            raise ValueError(f"cycle_momentum: expected True or False, got {self.cycle_momentum!r}")

    def _position(self, epoch: int):
        """(s, f) of the docstring: where in its cycle the epoch is, and the amplitude factor."""
        up = float(self.step_size_up)
        total = up + float(self.step_size_up if self.step_size_down is None else self.step_size_down)
        ratio = up / total
        cycle = math.floor(1 + epoch / total)
        x = 1.0 + epoch / total - cycle
        s = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        if self.mode == "triangular":
            f = 1.0
        elif self.mode == "triangular2":
            f = 1 / (2.0 ** (cycle - 1))
        else:
            f = self.gamma ** epoch
        return s, f

    def lr(self, epoch: int) -> float:
        s, f = self._position(epoch)
        return self.base_lr + (self.max_lr - self.base_lr) * s * f

    def momentum(self, epoch: int) -> float:
        if not self.cycle_momentum:
            return self.max_momentum
        s, f = self._position(epoch)
        return self.max_momentum - (self.max_momentum - self.base_momentum) * s * f


@dataclasses.dataclass(frozen=True)
class WarmupSchedule:
    """``base``'s rates scaled by (epoch + 1) / warmup for the first ``warmup`` epochs (a linear
    warmup), ``base``'s momentum."""
    base: object = dataclasses.field(default_factory=PaperSchedule)
    warmup: int = 5

    def __post_init__(self):
        _check_count("warmup", self.warmup)
        check_schedule(self.base, "base")

    def lr(self, epoch: int) -> float:
        return self.base.lr(epoch) * min(1.0, (epoch + 1) / self.warmup)

    def momentum(self, epoch: int) -> float:
        return self.base.momentum(epoch)


@dataclasses.dataclass(frozen=True)
class TabulatedSchedule:
    """The rates and momenta of epochs 0, 1, ... as lists (the last value holds after them):
    how a schedule of another class is recorded in config.json and restored."""
    lrs: tuple
    momenta: tuple

    def lr(self, epoch: int) -> float:
        return float(self.lrs[min(epoch, len(self.lrs) - 1)])

    def momentum(self, epoch: int) -> float:
        return float(self.momenta[min(epoch, len(self.momenta) - 1)])


PRESETS = {"paper": PaperSchedule, "constant": ConstantSchedule, "step": StepSchedule, "cosine": CosineSchedule,
           "cyclic": CyclicSchedule, "warmup": WarmupSchedule, "tabulated": TabulatedSchedule}


def check_schedule(schedule, name: str = "schedule"):
    """Refuse an object without lr(epoch) and momentum(epoch)."""
    if not (callable(getattr(schedule, "lr", None)) and callable(getattr(schedule, "momentum", None))):
        raise TypeError(f"{name}: expected a schedule (an object with lr(epoch) and momentum(epoch), such as "
                        f"PaperSchedule()), got {type(schedule).__name__}")
    return schedule


def schedule_to_json(schedule, epochs: int) -> dict:
    """A preset as {"kind": name, its fields}; any other schedule as its values for ``epochs``
    epochs (kind "tabulated"), so that config.json always says what the run used."""
    for kind, cls in PRESETS.items():
        if type(schedule) is cls:
            body = {}
            for f in dataclasses.fields(schedule):
                v = getattr(schedule, f.name)
                body[f.name] = (schedule_to_json(v, epochs) if f.name == "base"
                                else list(v) if isinstance(v, tuple) else v)
            return {"kind": kind, **body}
    lrs, moms = [], []
    for e in range(max(1, int(epochs))):
        lr, m = float(schedule.lr(e)), float(schedule.momentum(e))
        if not (math.isfinite(lr) and lr >= 0 and math.isfinite(m) and 0 <= m < 1):
            raise ValueError(f"schedule: epoch {e} gives lr {lr!r} and momentum {m!r}; expected lr >= 0 and "
                             "momentum in [0, 1)")
        lrs.append(lr)
        moms.append(m)
    return {"kind": "tabulated", "lrs": lrs, "momenta": moms}


def schedule_from_json(body: dict):
    """The schedule config.json records (see schedule_to_json)."""
    if not isinstance(body, dict) or body.get("kind") not in PRESETS:
        raise ValueError(f"schedule: expected a recorded schedule with a kind of {', '.join(PRESETS)}, got {body!r}")
    fields = {k: v for k, v in body.items() if k != "kind"}
    if "base" in fields:
        fields["base"] = schedule_from_json(fields["base"])
    for k in ("lrs", "momenta"):
        if k in fields:
            fields[k] = tuple(fields[k])
    try:
        return PRESETS[body["kind"]](**fields)
    except TypeError as e:
        raise ValueError(f"schedule: {e}") from None
