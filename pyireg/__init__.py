"""pyireg: width sweeps of two-layer ReLU networks and the theory of implicit regularization,
on a fused native core."""
from . import _core
from ._core import build_config, get_num_threads, set_num_threads
from .experiments import load_results, summarize, sweep
from .model import PackedMLP
from .optim import MomentumSGD
from .schedule import PaperSchedule

__version__ = "0.1.0"
__all__ = ["PackedMLP", "MomentumSGD", "PaperSchedule", "sweep", "summarize", "load_results", "build_config",
           "get_num_threads", "set_num_threads", "_core"]
