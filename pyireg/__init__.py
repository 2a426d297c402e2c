"""pyireg: width sweeps of two-layer ReLU networks and the theory of implicit regularization,
on a fused native core.

``import pyireg`` needs only numpy. The subpackages ``pyireg.data``, ``pyireg.theory``,
``pyireg.convex``, ``pyireg.plots``, ``pyireg.experiments`` and ``pyireg.cli`` are imported on
first use (``pyireg.data.load(...)`` works after ``import pyireg``), so their optional
dependencies (pandas, matplotlib, scikit-learn, ...) are only needed by what uses them.
"""
import importlib as _importlib

from . import _core
from ._core import build_config, get_num_threads, set_num_threads
from .experiments import load_results, summarize, sweep
from .model import PackedMLP
from .optim import MomentumSGD
from .schedule import PaperSchedule

__version__ = "0.1.0"
__all__ = ["PackedMLP", "MomentumSGD", "PaperSchedule", "sweep", "summarize", "load_results", "build_config",
           "get_num_threads", "set_num_threads", "_core"]

_SUBMODULES = ("data", "theory", "convex", "plots", "experiments", "cli", "schedule", "bench", "testing", "reference")


def __getattr__(name):
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pyireg' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
