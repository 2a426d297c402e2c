"""pyireg: width sweeps of two-layer ReLU networks and the theory of implicit regularization,
on a fused native core.

``import pyireg`` needs only numpy. The subpackages ``pyireg.data``, ``pyireg.theory``,
``pyireg.convex``, ``pyireg.plots``, ``pyireg.experiments``, ``pyireg.distributed`` and
``pyireg.cli`` are imported on first use (``pyireg.data.load(...)`` works after ``import
pyireg``), so their optional dependencies (pandas, matplotlib, scikit-learn, ray, ...) are only
needed by what uses them.
"""
import importlib as _importlib

from . import _env

_env.configure()        # before _core loads OpenMP: the thread bound and the wait policy

from . import _core, measures  # noqa: E402
from . import conditions  # noqa: E402,F401  (registers the thesis's C1-C3 in the measures registry)
from ._core import get_num_threads, max_num_threads, memory_limit  # noqa: E402
from ._version import __version__  # noqa: E402
from .cuda import build_config  # noqa: E402  (_core's keys plus cuda, cuda_archs, cuda_emulated)
from .experiments import load_results, summarize, sweep  # noqa: E402
from .model import PackedMLP  # noqa: E402
from .optim import DDPSGD, Adam, AdamW, MomentumSGD, NesterovSGD, Optimizer, PathSGD  # noqa: E402
from .schedule import PaperSchedule  # noqa: E402

__all__ = ["PackedMLP", "MomentumSGD", "NesterovSGD", "PathSGD", "DDPSGD", "Adam", "AdamW", "Optimizer",
           "PaperSchedule", "sweep", "summarize", "load_results", "measures",
           "build_config", "get_num_threads", "max_num_threads", "set_num_threads", "memory_limit",
           "set_memory_limit", "__version__", "_core"]

# the public submodules, imported on first use as attributes (pyireg.infinite after import pyireg)
def set_num_threads(n: int) -> None:
    """Set the threads of every native operation, process-wide (not per calling thread): an
    integer in [1, max_num_threads()]."""
    import numbers
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not -2**63 <= n <= 2**63 - 1:
        raise ValueError(f"num_threads: expected an integer in [1, {_core.max_num_threads()}], got {n!r}")
    _core.set_num_threads(int(n))       # checks the range


def set_memory_limit(bytes: int) -> None:  # noqa: A002 (the native function's argument name)
    """Limit the memory the engine may plan to use, in bytes; 0 restores the default (the
    machine's memory)."""
    import numbers
    if isinstance(bytes, bool) or not isinstance(bytes, numbers.Integral) or not -2**63 <= bytes <= 2**63 - 1:
        raise ValueError(f"bytes: expected a memory limit in bytes (an integer in [1, 2**63)), or 0 for the default, "
                         f"got {bytes!r}")
    _core.set_memory_limit(int(bytes))      # checks the sign


_SUBMODULES = ("data", "theory", "convex", "plots", "experiments", "distributed", "cli", "schedule", "bench", "testing",
               "reference", "conditions", "convergence", "deep", "hessian", "infinite", "interop", "kernel_contrast",
               "perturbations", "summary", "thesis_measures", "tutorial_plots", "optim", "bench_cuda", "torch")


def __getattr__(name):
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pyireg' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
