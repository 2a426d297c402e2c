"""Optimizers of a PackedMLP: each is an update rule of the native core, run fused into the
training step (``step``) or on given gradients (``apply_update``, the unfused oracle)."""
from ._base import Optimizer
from .momentum_sgd import MomentumSGD

__all__ = ["Optimizer", "MomentumSGD"]
