"""Shared pieces of the benchmarks: the workloads and constants, useful FLOPs, the matmul peak,
the timing loop, the loss check against the float64 twin, and the width-bucket plans."""

import dataclasses
import time
from typing import Callable, Optional

import numpy as np

from ..model import PackedMLP

D, K, BATCH = 100, 10, 100
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.5, 0.0

WORKLOADS = {
    "dense": dict(widths=list(range(1, 1025)), samples=1000, kind="train",
                  label="train, every width 1..1024, 1 epoch of 1,000 samples"),
    "pow2": dict(widths=[2 ** i for i in range(13)], samples=2000, kind="train",
                 label="train, widths 1,2,4..4096, 1 epoch of 2,000 samples"),
    "eval": dict(widths=list(range(1, 1025)), samples=10000, kind="eval",
                 label="evaluate, every width 1..1024, 10,000 samples"),
}

BUCKET_COUNTS = (8, 16, 32, 64, 128, 256)
BUCKET_LAYOUTS = ("GEMM per bucket", "one GEMM")
TUNE_STEPS = 2
COMPILE_BUDGET = 120.0


@dataclasses.dataclass
class Row:
    workload: str
    implementation: str
    seconds: Optional[float]   # for the whole workload (extrapolated if steps_timed < steps); None: skipped
    steps_timed: int
    steps: int
    gflops: Optional[float]    # useful GFLOP/s
    speedup_vs_best_torch: Optional[float] = None
    pct_of_peak: Optional[float] = None
    note: str = ""
    loss_check: Optional[float] = None   # worst tolerance ratio of the first steps' losses (<= 1 passes)
    config: Optional[dict] = None        # what was tuned (bucket count, layout, padding)


def useful_flops(widths, samples, kind) -> float:
    S = float(np.sum(widths))
    per = (4 * D + 6 * K) if kind == "train" else 2 * (D + K)
    return per * S * samples


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best float32 GFLOP/s of torch.mm on n x n x n, measured now."""
    import torch
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best / 1e9


def _data(samples, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, D)).astype(np.float32)
    y = rng.integers(0, K, samples)
    return X, y


def _time_steps(step: Callable[[int], object], steps: int, max_seconds: float):
    """Run step(0..steps-1) after one warm-up step; stop early past max_seconds, but not before
    the steps the loss check compares (``check_batches``: the warm-up and two timed ones)."""
    step(0)
    t0 = time.perf_counter()
    done = 0
    least = len(check_batches(steps)) - 1
    while done < steps:
        step(done)
        done += 1
        if done >= least and time.perf_counter() - t0 > max_seconds:
            break
    dt = time.perf_counter() - t0
    return dt * steps / done, done


# --------------------------------------------------------------------------- loss check
def check_batches(batches: int) -> list:
    """The batches of the steps whose losses the loss check compares, in the order a timed run
    takes them (``_time_steps``: a warm-up step on batch 0, then batches 0, 1, ...): three steps
    when there are two batches. The third step's loss is the first that depends on the
    momentum (the first update's buffer is the gradient itself)."""
    return ([0] + list(range(max(1, batches))))[:3]


def reference_losses(model: PackedMLP, X, y, steps: Optional[int] = None, networks: Optional[int] = None,
                     batches=None):
    """The per-network losses of the first momentum-SGD steps, by the PyTorch reference twin
    (one nn.Sequential per network, torch.optim.SGD) in float32 and in float64, from the
    model's weights: the ``ref_same`` and ``ref64`` of the tolerance rule. The steps take
    ``batches`` (indices of batches of X); by default the batches a timed run starts with
    (``check_batches``), or, given ``steps``, that many steps on the first batch. ``networks``
    limits it to the first networks (they are independent of the others)."""
    from .. import reference as R
    if batches is None:
        batches = [0] * steps if steps is not None else check_batches(len(X) // BATCH)
    out = []
    for mods in _twins(model, networks):
        opt = R.make_sgd(mods, LR, MOMENTUM, WEIGHT_DECAY)
        out.append([R.step(mods, opt, X[b * BATCH:(b + 1) * BATCH], y[b * BATCH:(b + 1) * BATCH]) for b in batches])
    ref32 = [np.asarray(l, np.float32) for l in out[0]]     # float32 results, exactly
    return ref32, out[1]


def _twins(model: PackedMLP, networks: Optional[int]):
    """The model's first ``networks`` networks (all: None) as the reference twin's modules, in
    float32, then in float64 (made one set at a time: the float64 set of 1,024 networks is
    about 0.5 GB)."""
    import torch

    from .. import reference as R
    n = model.num_networks if networks is None else min(networks, model.num_networks)
    off = model.offsets[: n + 1]
    U, V = model.U[: off[-1]], model.V[: off[-1]]
    for dtype in (torch.float32, torch.float64):
        yield R.modules_from_packed(U, V, off, model.activation, dtype=dtype)


def loss_check(name: str, losses, ref) -> float:
    """The worst tolerance ratio of ``losses`` (a list of per-step arrays) against ``ref`` (from
    reference_losses); raises if any step breaks the rule."""
    ref32, ref64 = ref
    if len(losses) < len(ref64):
        raise AssertionError(f"{name}: {len(losses)} steps' losses recorded, the check compares {len(ref64)}")
    return max(_within_rule(name, f"the losses of step {s + 1}", got, r32, r64)
               for s, (got, r32, r64) in enumerate(zip(losses, ref32, ref64)))


def _within_rule(name: str, what: str, got, r32, r64) -> float:
    """The tolerance ratio of ``got`` (its first len(r64) networks) against the twins; raises
    when the rule is broken, naming ``what``."""
    from ..testing import tolerance_ratio
    n = len(r64)
    r = tolerance_ratio(np.asarray(got)[:n], r32, r64)
    if not r <= 1.0:
        err = np.max(np.abs(np.asarray(got, np.float64)[:n] - r64))
        raise AssertionError(f"{name}: {what} break the tolerance rule against the float64 twin (ratio {r:.2f}, "
                             f"max error {err:.3e})")
    return r


# networks whose evaluation the float64 twin recomputes (one nn.Sequential each, every sample)
EVAL_CHECK_NETWORKS = 64


def reference_eval_losses(model: PackedMLP, X, y, networks: int = EVAL_CHECK_NETWORKS):
    """The mean losses over (X, y) of the model's first ``networks`` networks by the PyTorch
    reference twin in float32 and in float64 (``ref_same``, ``ref64`` of the tolerance rule):
    the evaluation rows' check (error rates alone can hide a wrong network among many)."""
    from .. import reference as R
    out = [R.evaluate(mods, X, y)[1] for mods in _twins(model, networks)]
    return np.asarray(out[0], np.float32), np.asarray(out[1], np.float64)


def eval_loss_check(name: str, losses, ref) -> float:
    """The tolerance ratio of an evaluation's per-network mean losses (their first networks)
    against ``ref`` (reference_eval_losses); raises when the rule is broken."""
    return _within_rule(name, "the evaluated losses", losses, *ref)


# --------------------------------------------------------------------------- width buckets
def bucket_plan(widths, count: int):
    """The networks (indices into ``widths``) in at most ``count`` buckets of consecutive widths,
    the boundaries chosen to pad the fewest units: a bucket of n networks whose largest width
    is W computes n * W units. Networks of one width never straddle two buckets. Exact dynamic
    programming over the distinct widths, or, past 2,048 distinct widths, equal numbers of
    networks per bucket. Returns a list of index arrays, narrowest bucket first."""
    return bucket_plans(widths, [count])[count]


def bucket_plans(widths, counts):
    """bucket_plan for several counts at once (one pass of the dynamic programme)."""
    w = np.asarray(widths, dtype=np.int64)
    distinct, inverse, cnt = np.unique(w, return_inverse=True, return_counts=True)
    M = len(distinct)
    by_width = np.argsort(inverse, kind="stable")             # network indices, narrowest first
    starts = np.concatenate([[0], np.cumsum(cnt)])            # networks before distinct width j
    top = min(max(counts), M)
    plans = {}
    if M > 2048:
        for c in counts:
            plans[c] = [a for a in np.array_split(by_width, min(c, len(w))) if len(a)]
        return plans
    # f[j]: fewest computed units covering distinct widths [0, j) with b buckets;
    # cost[i, j]: a bucket of distinct widths [i, j) computes (starts[j] - starts[i]) * distinct[j - 1]
    C = starts.astype(np.float64)
    wmax = np.concatenate([[0.0], distinct.astype(np.float64)])
    cost = (C[None, :] - C[:, None]) * wmax[None, :]
    cost[np.tril_indices(M + 1)] = np.inf
    f = np.full(M + 1, np.inf)
    f[0] = 0.0
    choice = []
    cols = np.arange(M + 1)
    for _ in range(top):
        tot = f[:, None] + cost
        arg = np.argmin(tot, axis=0)
        f = tot[arg, cols]
        choice.append(arg)
    for c in counts:
        b, j, cuts = min(c, M), M, []
        while b > 0:
            i = int(choice[b - 1][j])
            cuts.append((i, j))
            j, b = i, b - 1
        plans[c] = [by_width[starts[i]:starts[j]] for i, j in reversed(cuts)]
    return plans


def padding_fraction(widths, groups) -> float:
    """Padded units over useful units."""
    w = np.asarray(widths)
    padded = sum(len(g) * int(w[g].max()) for g in groups)
    return padded / float(w.sum()) - 1.0


# --------------------------------------------------------------------------- torch formulations
