"""pyireg from PyTorch: the native core as custom operators with autograd (``torch.ops.pyireg.*``),
an ``nn.Module`` (``PackedMLP``) and ``torch.optim.Optimizer``s (``PackedSGD``, and ``PackedOptimizer``
for every native update rule).

Imported on request (``import pyireg.torch``); ``import pyireg`` does not import torch. Needs
torch >= 2.4 (``torch.library.custom_op``).
"""
import torch as _torch

if not hasattr(_torch.library, "custom_op") or not hasattr(_torch.library, "register_autograd"):
    raise ImportError(f"pyireg.torch: needs torch >= 2.4 (torch.library.custom_op), found torch {_torch.__version__}")

from ._ops import (clear_engine_cache, engine_cache_info, packed_apply_update, packed_backward, packed_ddp_scale,
                   packed_forward, packed_loss, packed_step, set_engine_cache_size)
from .module import PackedMLP
from .optim import PackedSGD
from .packed_optimizer import PackedOptimizer

__all__ = ["PackedMLP", "PackedSGD", "PackedOptimizer", "packed_forward", "packed_backward", "packed_loss",
           "packed_step", "packed_apply_update", "packed_ddp_scale", "engine_cache_info", "set_engine_cache_size",
           "clear_engine_cache"]
