"""Which devices the ``pyireg::*`` operators run on: a registry of kernel sets by device type.

A kernel set (``_kernels_cpu.CpuKernels`` is the model) turns tensors of its device into engine
arguments and calls the engine: ``forward``, ``backward``, ``loss``, ``step``, ``apply_update`` and
``scale_rows``. The operators (``_ops``) and the eager fast path look the set up by the weights'
device type on every call, so a backend added later (``_kernels_cuda``) registers its set here
and the operators, their autograd and the module run on its tensors with no other change.
"""
import threading

_LOCK = threading.Lock()
_KERNELS: dict = {}


def register_kernels(device_type: str, kernels) -> None:
    """Run the operators on tensors of ``device_type`` ("cpu", "cuda") with ``kernels``."""
    with _LOCK:
        _KERNELS[device_type] = kernels


def has_kernels(device_type: str) -> bool:
    return device_type in _KERNELS


def kernels_for(device, name: str = "U"):
    """The kernel set of a device (a torch.device or a type name); RuntimeError naming the
    argument when none is registered."""
    kind = device if isinstance(device, str) else device.type
    k = _KERNELS.get(kind)
    if k is None:
        raise RuntimeError(f"{name}: pyireg has no kernels for {kind} tensors (registered: "
                           f"{', '.join(sorted(_KERNELS)) or 'none'})")
    return k
