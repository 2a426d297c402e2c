"""Benchmarks of the packed native core (``pyireg bench``; the package re-exports its modules:
common, torch_impls, run, scaling) against the PyTorch formulations of a width sweep.

Every number in a report is measured in the same run: the machine's float32 matrix-multiply
peak (torch.mm on 2048^3, best of 10, measured before and after the workloads, the higher one
kept), each implementation's time for the same workload, and the ratios. Implementations are
timed in alternating rounds and each keeps its best, so that drift of a shared host hits them
alike. Useful work per sample: training 4Hd + 6Hk FLOPs (forward 2Hd + 2Hk; backward 2Hd for
U's gradient and 4Hk for V's and the activations'), evaluation 2H(d + k); padding is never
counted. An implementation that would take longer than ``max_seconds`` is timed once, on the
first steps of the epoch, and extrapolated; the report says how many steps were timed.

The PyTorch rows form a ladder of what a skilled user would write for a width sweep:

* ``torch loop over widths``: one ``nn.Sequential`` per network, one backward over the summed
  losses, one foreach ``torch.optim.SGD`` step.
* ``torch width buckets``: the networks sorted by width and cut into buckets of consecutive
  widths (boundaries chosen to pad the fewest units), each bucket padded to its largest width
  and trained as one batched ensemble: a first-layer GEMM, ``torch.bmm`` for the second layer,
  one backward, a foreach momentum SGD with per-network hyper-parameters. The bucket count
  and the layout of the first layer (one GEMM per bucket, or one GEMM over all buckets) are
  tuned per workload on the first steps; tuning is not counted in the row's time.
* ``torch packed (GEMM + index_add)``: no padding; one GEMM, then the block-diagonal second
  layer as a product over (unit, sample, class) summed into networks by ``index_add``.
* ``torch packed (GEMM + embedding_bag)``: the same segmented sum done by
  ``F.embedding_bag(mode="sum", per_sample_weights=...)``, which never materializes the
  (unit, sample, class) product in the forward pass.
* ``torch packed (GEMM + index_add), torch.compile``: the index_add formulation compiled
  (inductor, static shapes). Compilation is first done in a fresh process under a time budget;
  past the budget the row is reported as skipped, not timed.

Three rows train with pyireg from PyTorch (``pyireg.torch``, issue 10): the ``PackedMLP`` module in a
torch training loop, through autograd (the forward op, torch's cross-entropy, backward,
``PackedSGD``), through the fused loss op (``module.losses``, backward, ``PackedSGD``), and through
the fused step (``module.train_step``). Their notes give their time over pyireg native's in the
same run, against the issue's targets (1.3 for the autograd paths, 1.05 for the fused one).

Every row starts from the same weights, and the run fails unless the losses of its first two
steps (both on the first batch: the second checks the gradient and the update) meet the
tolerance rule of ``pyireg.testing`` against the float64 reference twin, like pyireg's own.
"""
from .common import *  # noqa: F403
from .common import _data, _time_steps  # noqa: F401
from .run import *  # noqa: F403
from .run import _child_main, _run_child  # noqa: F401
from .roofline import *  # noqa: F403
from .scaling import *  # noqa: F403
from .torch_impls import *  # noqa: F403
