"""pyireg: width sweeps of two-layer ReLU networks and the theory of implicit regularization,
on a fused native core."""
from . import _core, measures
from ._core import build_config, get_num_threads, max_num_threads, memory_limit, set_memory_limit, set_num_threads
from ._version import __version__
from .experiments import load_results, summarize, sweep
from .model import PackedMLP
from .optim import DDPSGD, MomentumSGD, Optimizer, PathSGD
from .schedule import PaperSchedule

__all__ = ["PackedMLP", "MomentumSGD", "PathSGD", "DDPSGD", "Optimizer", "PaperSchedule", "sweep", "summarize",
           "load_results", "measures",
           "build_config", "get_num_threads", "max_num_threads", "set_num_threads", "memory_limit",
           "set_memory_limit", "__version__", "_core"]
