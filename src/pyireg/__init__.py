"""pyireg: width sweeps of two-layer ReLU networks and the theory of implicit regularization,
on a fused native core.

``import pyireg`` needs only numpy. The subpackages ``pyireg.data``, ``pyireg.theory``,
``pyireg.convex``, ``pyireg.plots``, ``pyireg.experiments``, ``pyireg.distributed`` and
``pyireg.cli`` are imported on first use (``pyireg.data.load(...)`` works after ``import
pyireg``), so their optional dependencies (pandas, matplotlib, scikit-learn, ray, ...) are only
needed by what uses them.
"""
import importlib as _importlib

from . import _core, measures
from ._core import get_num_threads, max_num_threads, memory_limit, set_memory_limit, set_num_threads
from ._version import __version__
from .cuda import build_config  # _core's build_config plus the CUDA keys (cuda, cuda_archs, cuda_emulated)
from .experiments import load_results, summarize, sweep
from .model import PackedMLP
from .optim import DDPSGD, MomentumSGD, Optimizer, PathSGD
from .schedule import PaperSchedule

__all__ = ["PackedMLP", "MomentumSGD", "PathSGD", "DDPSGD", "Optimizer", "PaperSchedule", "sweep", "summarize",
           "load_results", "measures",
           "build_config", "get_num_threads", "max_num_threads", "set_num_threads", "memory_limit",
           "set_memory_limit", "__version__", "_core"]

_SUBMODULES = ("data", "theory", "convex", "plots", "experiments", "distributed", "cli", "schedule", "bench", "testing",
               "reference")


def __getattr__(name):
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pyireg' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
