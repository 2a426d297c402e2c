"""Optimizers of a PackedMLP: each is an update rule of the native core, run fused into the
training step (``step``) or on given gradients (``apply_update``, the unfused oracle)."""
from ._base import Optimizer
from .adam import Adam, AdamW
from .ddp_sgd import DDPSGD
from .momentum_sgd import MomentumSGD
from .nesterov_sgd import NesterovSGD
from .path_sgd import PathSGD

__all__ = ["Optimizer", "MomentumSGD", "NesterovSGD", "PathSGD", "DDPSGD", "Adam", "AdamW"]
