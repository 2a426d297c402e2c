"""Benchmarks of the packed native core against the PyTorch formulations of a width sweep.

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
from __future__ import annotations

import dataclasses
import gc
import json
import os
import platform
import signal
import subprocess
import sys
import time
from typing import Callable, Optional

import numpy as np

from .model import PackedMLP
from .optim import MomentumSGD

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
    loss_check: Optional[float] = None   # worst tolerance ratio of the first two steps' losses (<= 1 passes)
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
    """Run step(0..steps-1) after one warm-up step; stop early past max_seconds."""
    step(0)
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        step(done)
        done += 1
        if time.perf_counter() - t0 > max_seconds:
            break
    dt = time.perf_counter() - t0
    return dt * steps / done, done


# --------------------------------------------------------------------------- loss check
def reference_losses(model: PackedMLP, X, y, steps: int = 2, networks: Optional[int] = None):
    """The per-network losses of the first ``steps`` momentum-SGD steps on the first batch, by
    the PyTorch reference twin (one nn.Sequential per network, torch.optim.SGD) in float32 and
    in float64, from the model's weights: the ``ref_same`` and ``ref64`` of the tolerance rule.
    ``networks`` limits it to the first networks (they are independent of the others)."""
    import torch
    from . import reference as R
    n = model.num_networks if networks is None else min(networks, model.num_networks)
    off = model.offsets[: n + 1]
    U, V = model.U[: off[-1]], model.V[: off[-1]]
    out = []
    for dtype in (torch.float32, torch.float64):
        mods = R.modules_from_packed(U, V, off, model.activation, dtype=dtype)
        opt = R.make_sgd(mods, LR, MOMENTUM, WEIGHT_DECAY)
        out.append([R.step(mods, opt, X[:BATCH], y[:BATCH]) for _ in range(steps)])
    ref32 = [np.asarray(l, np.float32) for l in out[0]]     # float32 results, exactly
    return ref32, out[1]


def loss_check(name: str, losses, ref) -> float:
    """The worst tolerance ratio of ``losses`` (a list of per-step arrays) against ``ref`` (from
    reference_losses); raises if any step breaks the rule."""
    from .testing import tolerance_ratio
    ref32, ref64 = ref
    worst = 0.0
    for s, (got, r32, r64) in enumerate(zip(losses, ref32, ref64)):
        n = len(r64)
        r = tolerance_ratio(np.asarray(got)[:n], r32, r64)
        if not r <= 1.0:
            err = np.max(np.abs(np.asarray(got, np.float64)[:n] - r64))
            raise AssertionError(f"{name}: the losses of step {s + 1} break the tolerance rule against the "
                                 f"float64 twin (ratio {r:.2f}, max error {err:.3e})")
        worst = max(worst, r)
    return worst


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
class ForeachSGD:
    """torch.optim.SGD(momentum, dampening=0, weight_decay, nesterov=False) in foreach form, with
    per-network hyper-parameters: each parameter carries tensors of one value per row (unit),
    broadcast over the row. g = grad + wd * w; buf = g on the first step, else momentum * buf + g;
    w = w - lr * buf."""

    def __init__(self, params, lr, momentum, weight_decay):
        import torch
        self.params = list(params)
        self.neg_lr = [-t for t in lr]
        self.momentum = list(momentum)
        self.weight_decay = list(weight_decay)
        self.any_wd = any(bool(torch.any(t != 0)) for t in self.weight_decay)
        self.bufs = None

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    def step(self):
        import torch
        with torch.no_grad():
            grads = [p.grad for p in self.params]
            if self.any_wd:
                torch._foreach_addcmul_(grads, self.params, self.weight_decay)
            if self.bufs is None:
                self.bufs = [g.clone() for g in grads]
            else:
                torch._foreach_mul_(self.bufs, self.momentum)
                torch._foreach_add_(self.bufs, grads)
            torch._foreach_addcmul_(self.params, self.bufs, self.neg_lr)


def _per_network(value, n):
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).astype(np.float32)


class _TorchTrainer:
    """A PyTorch formulation of the sweep: ``step(xb, yb)`` does one momentum-SGD step of every
    network (one backward over the summed mean losses) and returns the losses before it, in the
    model's network order."""
    opt = None

    def losses(self, xb, yb):
        raise NotImplementedError

    def step(self, xb, yb):
        self.opt.zero_grad(set_to_none=True)
        losses = self.losses(xb, yb)
        losses.sum().backward()
        self.opt.step()
        return losses.detach()


class TorchLoop(_TorchTrainer):
    """One nn.Sequential per width, one backward over the summed losses, one foreach
    torch.optim.SGD over all parameters (one parameter group: the scalar hyper-parameters of
    the benchmark; per-network ones would need a group per network)."""

    def __init__(self, model: PackedMLP, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY):
        import torch
        self.mods = model.to_torch()
        self.opt = torch.optim.SGD([p for m in self.mods for p in m.parameters()], lr=lr, momentum=momentum,
                                   weight_decay=weight_decay, foreach=True)

    def losses(self, xb, yb):
        import torch
        ce = torch.nn.functional.cross_entropy
        return torch.stack([ce(m(xb), yb) for m in self.mods])


class TorchBuckets(_TorchTrainer):
    """Width buckets: each bucket of n networks padded to its largest width W and trained as one
    batched ensemble. The padded units have zero weights and a zero learning rate: their
    activations are relu(0) = 0, so they add exactly zero to the logits, and they stay zero
    (``padding_is_zero`` checks it).

    layout "GEMM per bucket": each bucket's U (n W x d) and V (n W x k) are separate tensors and
    its first layer is one GEMM; "one GEMM": all buckets' units in one U and one V, the first
    layer one GEMM over all of them, split into buckets for the second layer."""

    def __init__(self, model: PackedMLP, groups, layout="GEMM per bucket", lr=LR, momentum=MOMENTUM,
                 weight_decay=WEIGHT_DECAY):
        import torch
        if layout not in BUCKET_LAYOUTS:
            raise ValueError(f"layout: expected one of {BUCKET_LAYOUTS}, got {layout!r}")
        N, d, k = model.num_networks, model.in_features, model.out_features
        widths = np.asarray(model.widths)
        self.layout, self.k = layout, k
        self.shapes = [(len(g), int(widths[g].max())) for g in groups]
        self.rows = [n * W for n, W in self.shapes]
        order = np.concatenate(groups)
        if sorted(order.tolist()) != list(range(N)):
            raise ValueError("groups: expected every network exactly once")
        self.inverse = torch.from_numpy(np.argsort(order))
        # row of every network's first unit in the padded layout, then of every unit
        slot = np.concatenate([np.repeat([W], n) for n, W in self.shapes])
        first_row = np.concatenate([[0], np.cumsum(slot)[:-1]])
        net_first = np.empty(N, np.int64)
        net_first[order] = first_row
        unit_net = model.network_of_unit()
        dest = torch.from_numpy(net_first[unit_net] + np.arange(model.num_units) - model.offsets[unit_net])
        R = int(sum(self.rows))
        U, V = torch.zeros(R, d), torch.zeros(R, k)
        U[dest] = torch.from_numpy(model.U)
        V[dest] = torch.from_numpy(model.V)
        hyper = []
        for value in (lr, momentum, weight_decay):
            t = torch.zeros(R, 1)                    # padding rows: zero learning rate
            t[dest, 0] = torch.from_numpy(_per_network(value, N)[unit_net])
            hyper.append(t)
        self.real = torch.zeros(R, dtype=torch.bool)
        self.real[dest] = True
        if layout == "one GEMM":
            self.U, self.V = [U.requires_grad_(True)], [V.requires_grad_(True)]
            hyper = [[t] for t in hyper]
        else:
            self.U = [u.clone().requires_grad_(True) for u in U.split(self.rows)]
            self.V = [v.clone().requires_grad_(True) for v in V.split(self.rows)]
            hyper = [list(t.split(self.rows)) for t in hyper]
        self.opt = ForeachSGD(self.U + self.V, *(h + h for h in hyper))
        self.padding = R / float(model.num_units) - 1.0

    def losses(self, xb, yb):
        import torch
        B, k, xT = len(xb), self.k, xb.T
        if self.layout == "one GEMM":
            A = torch.relu(self.U[0] @ xT).split(self.rows)        # units x batch, per bucket
            Vs = self.V[0].split(self.rows)
        else:
            A = [torch.relu(u @ xT) for u in self.U]
            Vs = self.V
        logits = torch.cat([torch.bmm(a.view(n, W, B).transpose(1, 2), v.view(n, W, k))
                            for a, v, (n, W) in zip(A, Vs, self.shapes)])          # N x B x k, bucket order
        losses = torch.nn.functional.cross_entropy(
            logits.view(-1, k), yb.repeat(len(self.inverse)), reduction="none").view(-1, B).mean(1)
        return losses[self.inverse]

    def padding_is_zero(self) -> bool:
        import torch
        with torch.no_grad():
            U, V = torch.cat([u.detach() for u in self.U]), torch.cat([v.detach() for v in self.V])
            return bool((U[~self.real] == 0).all() and (V[~self.real] == 0).all())


def _packed_index_add(U, V, net, N: int, xb, yb):
    """The packed formulation: one GEMM, then logits[n] = sum over n's units of a_h v_h^T."""
    import torch
    At = torch.relu(U @ xb.T)                                        # S x B
    contrib = At.unsqueeze(2) * V.unsqueeze(1)                       # S x B x k
    logits = torch.zeros(N, len(xb), V.shape[1], dtype=U.dtype).index_add(0, net, contrib)
    return torch.nn.functional.cross_entropy(
        logits.view(-1, V.shape[1]), yb.repeat(N), reduction="none").view(N, -1).mean(1)


_COMPILED = {}


def _compiled_index_add():
    import torch
    if "index_add" not in _COMPILED:
        _COMPILED["index_add"] = torch.compile(_packed_index_add, dynamic=False)
    return _COMPILED["index_add"]


class TorchPacked(_TorchTrainer):
    """The packed model in PyTorch: U (S x d) and V (S x k) as in pyireg, no padding, one GEMM
    for the first layer; the block-diagonal second layer as a segmented sum, by ``index_add``
    (eager or under torch.compile) or by ``embedding_bag``. Per-network hyper-parameters as
    per-unit tensors in a foreach momentum SGD."""

    def __init__(self, model: PackedMLP, second="index_add", compiled=False, lr=LR, momentum=MOMENTUM,
                 weight_decay=WEIGHT_DECAY):
        import torch
        if second not in ("index_add", "embedding_bag"):
            raise ValueError(f"second: expected 'index_add' or 'embedding_bag', got {second!r}")
        if compiled and second != "index_add":
            raise ValueError("compiled: only the index_add formulation")
        self.second, self.N, self.S = second, model.num_networks, model.num_units
        self.U = torch.from_numpy(model.U.copy()).requires_grad_(True)
        self.V = torch.from_numpy(model.V.copy()).requires_grad_(True)
        unit_net = model.network_of_unit()
        self.net = torch.from_numpy(unit_net)
        self.unit_start = torch.from_numpy(model.offsets[:-1].astype(np.int32))
        self.fn = _compiled_index_add() if compiled else _packed_index_add
        self._bags = {}
        hyper = [torch.from_numpy(_per_network(v, self.N)[unit_net]).unsqueeze(1) for v in (lr, momentum, weight_decay)]
        self.opt = ForeachSGD([self.U, self.V], *([h, h] for h in hyper))

    def _bag(self, B):
        """embedding_bag's indices (every unit, for every sample) and offsets (one bag per
        sample and network), int32, made once per batch size."""
        import torch
        if B not in self._bags:
            idx = torch.arange(self.S, dtype=torch.int32).repeat(B)
            offs = (torch.arange(B, dtype=torch.int32).unsqueeze(1) * self.S + self.unit_start).reshape(-1)
            self._bags[B] = (idx, offs)
        return self._bags[B]

    def losses(self, xb, yb):
        import torch
        if self.second == "index_add":
            return self.fn(self.U, self.V, self.net, self.N, xb, yb)
        B = len(xb)
        A = torch.relu(xb @ self.U.T)                                  # B x S
        idx, offs = self._bag(B)
        logits = torch.nn.functional.embedding_bag(idx, self.V, offs, mode="sum",
                                                   per_sample_weights=A.reshape(-1))   # (B N) x k
        return torch.nn.functional.cross_entropy(
            logits, yb.repeat_interleave(self.N), reduction="none").view(B, self.N).mean(0)


# --------------------------------------------------------------------------- tuning, compiling
def tune_buckets(model: PackedMLP, X, y, counts=BUCKET_COUNTS, layouts=BUCKET_LAYOUTS, steps=TUNE_STEPS,
                 log=None) -> dict:
    """Time every bucket count and layout on the first ``steps`` steps (after one warm-up step;
    the best step counts) and keep the fastest. Returns its config with the trials."""
    import torch
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y).long()
    plans = bucket_plans(model.widths, counts)
    t0 = time.perf_counter()
    trials, seen = [], set()
    for c in counts:
        key = tuple(len(g) for g in plans[c])
        if key in seen:             # a count past the number of distinct widths gives the same plan
            continue
        seen.add(key)
        for layout in layouts:
            tr = TorchBuckets(model, plans[c], layout)
            best = float("inf")
            for i in range(steps + 1):
                b = i % max(1, len(X) // BATCH)
                t = time.perf_counter()
                tr.step(Xt[b * BATCH:(b + 1) * BATCH], yt[b * BATCH:(b + 1) * BATCH])
                if i:
                    best = min(best, time.perf_counter() - t)
            trials.append(dict(count=len(plans[c]), layout=layout, padding=tr.padding, step_seconds=best))
            if log:
                log(f"    buckets {len(plans[c]):4d}, {layout:15s}: padding {100 * tr.padding:5.2f}%, "
                    f"{best * 1e3:8.1f} ms per step")
            del tr
    best = min(trials, key=lambda t: t["step_seconds"])
    return dict(count=best["count"], layout=best["layout"], padding=best["padding"],
                requested_counts=list(counts), tune_steps=steps, tune_seconds=time.perf_counter() - t0,
                trials=trials)


def _run_child(payload: dict, timeout: Optional[float]):
    """Run ``_child_main(payload)`` in a fresh Python process (its own process group, killed
    whole past the timeout). Returns (result dict or None, seconds, error text or None)."""
    # the payload goes through stdin: a sweep of 65,536 widths is too long for a command line
    code = "import sys, json; from pyireg.bench import _child_main; _child_main(json.loads(sys.stdin.read()))"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(json.dumps(payload), timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, time.perf_counter() - t0, f"did not finish within {timeout:.0f} s"
    sec = time.perf_counter() - t0
    if proc.returncode != 0:
        lines = [l for l in err.strip().splitlines() if l.strip()]
        return None, sec, (lines[-1] if lines else f"exit status {proc.returncode}")
    result = next((json.loads(l[len("RESULT "):]) for l in out.splitlines() if l.startswith("RESULT ")), None)
    return result, sec, None if result is not None else "no result"


def _child_main(payload: dict) -> None:
    import torch
    from . import _core
    torch.set_num_threads(payload["torch_threads"])
    _core.set_num_threads(payload["native_threads"])
    what = payload["what"]
    if what == "compile":
        # compile the packed index_add step for this workload's shapes (fills the inductor cache)
        model = PackedMLP(payload["widths"], D, K, seed=0)
        X, y = _data(BATCH)
        tr = TorchPacked(model, "index_add", compiled=True)
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y).long()
        t = time.perf_counter()
        tr.step(Xt[:BATCH], yt[:BATCH])        # compiles the forward and the backward
        result = dict(seconds=time.perf_counter() - t)
    elif what == "tune":
        model = PackedMLP(payload["widths"], D, K, seed=0)
        X, y = _data(payload["samples"])
        result = tune_buckets(model, X, y, payload["counts"], payload["layouts"], payload["steps"])
    elif what == "scaling":
        result = _scaling_point(payload)
    else:
        raise ValueError(what)
    print("RESULT " + json.dumps(result), flush=True)


def _child_payload(**kw):
    import torch
    from . import _core
    return dict(torch_threads=torch.get_num_threads(), native_threads=_core.get_num_threads(), **kw)


def compile_probe(widths, budget: float = COMPILE_BUDGET):
    """Compile the packed index_add step for these widths in a fresh process, within ``budget``
    seconds for the whole process (start and imports included). Returns (seconds of the compile
    and its first step, None) or (None, reason). The compiled code lands in inductor's
    cache, from which this process then loads it."""
    result, sec, err = _run_child(_child_payload(what="compile", widths=list(widths)), budget)
    if err:
        return None, f"torch.compile in a fresh process: {err}"
    return result["seconds"], None


# --------------------------------------------------------------------------- timed implementations
def native_train(model: PackedMLP, X, y, max_seconds, ctx=None):
    opt = MomentumSGD(model, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    steps = len(X) // BATCH
    losses = []

    def step(i):
        loss = opt.step(X[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH])
        if len(losses) < 2:
            losses.append(np.array(loss))
    sec, done = _time_steps(step, steps, max_seconds)
    need = model.U.nbytes + model.V.nbytes + opt.bufU.nbytes + opt.bufV.nbytes + X.nbytes + y.nbytes
    note = (f"memory: weights+momentum+data {need / 1e6:.0f} MB, native scratch "
            f"{model._engine.workspace_bytes / 1e6:.1f} MB ({1 + model._engine.workspace_bytes / need:.3f}x)")
    return sec, done, steps, losses, note


def native_train_1thread(model: PackedMLP, X, y, max_seconds, ctx=None):
    """The native step on one thread: the denominator of the two-thread scaling."""
    from . import _core
    threads = _core.get_num_threads()
    _core.set_num_threads(1)
    try:
        return native_train(model, X, y, max_seconds)
    finally:
        _core.set_num_threads(threads)


def _torch_train(trainer: _TorchTrainer, X, y, max_seconds):
    """Time one epoch of a PyTorch formulation."""
    import torch
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y).long()
    steps = len(X) // BATCH
    losses = []

    def step(i):
        loss = trainer.step(Xt[i * BATCH:(i + 1) * BATCH], yt[i * BATCH:(i + 1) * BATCH])
        if len(losses) < 2:
            losses.append(loss.numpy().copy())
    sec, done = _time_steps(step, steps, max_seconds)
    return sec, done, steps, losses


def torch_loop_train(model, X, y, max_seconds, ctx=None):
    return (*_torch_train(TorchLoop(model), X, y, max_seconds), "")


def torch_buckets_train(model, X, y, max_seconds, ctx):
    cfg = ctx["buckets"]
    tr = TorchBuckets(model, bucket_plan(model.widths, cfg["count"]), cfg["layout"])
    out = _torch_train(tr, X, y, max_seconds)
    if not tr.padding_is_zero():
        raise AssertionError("torch width buckets: a padded unit changed")
    return (*out, f"{cfg['count']} buckets ({cfg['layout']}), padding {100 * cfg['padding']:.1f}% of the units; "
                  f"tuned over counts {','.join(map(str, cfg['requested_counts']))} in "
                  f"{cfg['tune_seconds']:.1f} s, not counted")


def torch_packed_train(model, X, y, max_seconds, ctx=None):
    return (*_torch_train(TorchPacked(model, "index_add"), X, y, max_seconds), "")


def torch_packed_bag_train(model, X, y, max_seconds, ctx=None):
    return (*_torch_train(TorchPacked(model, "embedding_bag"), X, y, max_seconds), "")


def torch_packed_compiled_train(model, X, y, max_seconds, ctx):
    out = _torch_train(TorchPacked(model, "index_add", compiled=True), X, y, max_seconds)
    return (*out, f"compiled in {ctx['compile_seconds']:.0f} s in a fresh process (budget "
                  f"{ctx['compile_budget']:.0f} s), loaded from the cache here; not counted")


class ModuleTrainer(_TorchTrainer):
    """A torch training loop around ``pyireg.torch.PackedMLP`` (built on the model's own arrays,
    no copy) and ``pyireg.torch.PackedSGD``, as a PyTorch user would write it:

    * ``"autograd"``: ``out = module(X)`` (the forward op), the per-network mean of
      ``F.cross_entropy`` in torch, one backward over the summed losses (the backward op), then
      ``optimizer.step()`` (the native update on the gradients);
    * ``"losses"``: ``module.losses(X, y)`` (loss and gradients in one native pass), backward
      over the summed losses (which only passes the gradients on), ``optimizer.step()``;
    * ``"fused"``: ``module.train_step(X, y, optimizer)``, the fused native step."""

    def __init__(self, model: PackedMLP, path: str = "autograd", lr=LR, momentum=MOMENTUM,
                 weight_decay=WEIGHT_DECAY):
        from .torch import PackedMLP as TorchPackedMLP, PackedSGD
        if path not in MODULE_PATHS:
            raise ValueError(f"path: expected one of {MODULE_PATHS}, got {path!r}")
        self.path = path
        self.module = TorchPackedMLP.from_numpy(model)
        self.opt = PackedSGD(self.module, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def losses(self, xb, yb):
        import torch
        if self.path == "losses":
            return self.module.losses(xb, yb)
        out = self.module(xb)
        N, B, k = out.shape
        return torch.nn.functional.cross_entropy(out.reshape(-1, k), yb.repeat(N), reduction="none").view(N, B).mean(1)

    def step(self, xb, yb):
        if self.path == "fused":
            return self.module.train_step(xb, yb, self.opt)
        return super().step(xb, yb)


MODULE_PATHS = ("autograd", "losses", "fused")


def _module_train(path):
    def train(model, X, y, max_seconds, ctx=None):
        return (*_torch_train(ModuleTrainer(model, path), X, y, max_seconds), "")
    train.__name__ = f"module_{path}_train"
    return train


def native_eval(model, X, y, max_seconds, ctx=None):
    first = {}

    def step(_):
        first.setdefault("err", model.evaluate(X, y, batch_size=256)[0])
    sec, done = _time_steps(step, 1, max_seconds)
    return sec, done, 1, first["err"], ""


def torch_loop_eval(model, X, y, max_seconds, ctx=None):
    import torch
    mods = model.to_torch()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y).long()
    first = {}

    def step(_):
        with torch.no_grad():
            err = np.array([(m(Xt).argmax(1) != yt).double().mean().item() for m in mods])
        first.setdefault("err", err)
    sec, done = _time_steps(step, 1, max_seconds)
    return sec, done, 1, first["err"], ""


BUCKETS = "torch width buckets"
COMPILED = "torch packed (GEMM + index_add), torch.compile"
MODULE_AUTOGRAD = "pyireg.torch module: forward, F.cross_entropy, backward, PackedSGD"
MODULE_LOSSES = "pyireg.torch module: losses(), backward, PackedSGD"
MODULE_FUSED = "pyireg.torch module: train_step (fused)"
# the targets of the torch rows (issue 10), as ratios of times to pyireg native in the same run
MODULE_TARGETS = {MODULE_AUTOGRAD: 1.3, MODULE_LOSSES: 1.3, MODULE_FUSED: 1.05}
TRAIN_IMPLS = {"pyireg native": native_train, "pyireg native, 1 thread": native_train_1thread,
               MODULE_FUSED: _module_train("fused"), MODULE_LOSSES: _module_train("losses"),
               MODULE_AUTOGRAD: _module_train("autograd"),
               "torch loop over widths": torch_loop_train,
               BUCKETS: torch_buckets_train,
               "torch packed (GEMM + index_add)": torch_packed_train,
               "torch packed (GEMM + embedding_bag)": torch_packed_bag_train,
               COMPILED: torch_packed_compiled_train}
EVAL_IMPLS = {"pyireg native": native_eval, "torch loop over widths": torch_loop_eval}
# short names for the command line
IMPL_KEYS = {"native": "pyireg native", "native-1thread": "pyireg native, 1 thread",
             "module-fused": MODULE_FUSED, "module-losses": MODULE_LOSSES, "module-autograd": MODULE_AUTOGRAD,
             "loop": "torch loop over widths", "buckets": BUCKETS,
             "packed-index-add": "torch packed (GEMM + index_add)",
             "packed-embedding-bag": "torch packed (GEMM + embedding_bag)", "packed-compiled": COMPILED}
TORCH_TRAINERS = {"torch loop over widths": lambda m, cfg: TorchLoop(m),
                  BUCKETS: lambda m, cfg: TorchBuckets(m, bucket_plan(m.widths, cfg["count"]), cfg["layout"]),
                  "torch packed (GEMM + index_add)": lambda m, cfg: TorchPacked(m, "index_add"),
                  "torch packed (GEMM + embedding_bag)": lambda m, cfg: TorchPacked(m, "embedding_bag"),
                  COMPILED: lambda m, cfg: TorchPacked(m, "index_add", compiled=True)}


def custom_workload(widths, samples: int, label: Optional[str] = None) -> dict:
    """A training workload of any widths (``run(workloads=[("name", custom_workload(...))])``)."""
    widths = [int(w) for w in widths]
    if samples < BATCH or samples % BATCH:
        raise ValueError(f"samples: expected a positive multiple of {BATCH}, got {samples}")
    return dict(widths=widths, samples=int(samples), kind="train",
                label=label or f"train, {len(widths):,} networks ({sum(widths):,} units), 1 epoch of {samples:,} samples")


def run(workloads=("dense", "pow2", "eval"), max_seconds: float = 30.0, implementations=None,
        log=print, rounds: int = 3, bucket_counts=BUCKET_COUNTS, tune_steps: int = TUNE_STEPS,
        compile_budget: float = COMPILE_BUDGET, peak_n: int = 2048) -> dict:
    """Run the benchmark; returns a dict with the machine, the measured peak and the rows.
    ``workloads``: names of WORKLOADS or (name, spec) pairs (see custom_workload);
    ``implementations``: names to run besides "pyireg native" (default: all)."""
    import torch
    peak = matmul_peak(peak_n)
    log(f"float32 matmul peak (torch.mm {peak_n}^3, {torch.get_num_threads()} threads): {peak:.1f} GFLOP/s")
    rows, labels = [], {}
    for w in workloads:
        w, spec = (w, WORKLOADS[w]) if isinstance(w, str) else w
        labels[w] = spec["label"]
        X, y = _data(spec["samples"])
        impls = {name: fn for name, fn in (TRAIN_IMPLS if spec["kind"] == "train" else EVAL_IMPLS).items()
                 if not implementations or name in implementations or name == "pyireg native"}
        flops = useful_flops(spec["widths"], spec["samples"], spec["kind"])
        best, ctx, results = {}, {}, {}
        if spec["kind"] == "train":
            t = time.perf_counter()
            ref = reference_losses(PackedMLP(spec["widths"], D, K, seed=0), X, y)
            log(f"  {w}: reference losses (float32 and float64 twins, 2 steps) in {time.perf_counter() - t:.1f} s")
        if BUCKETS in impls:
            log(f"  {w}: tuning the width buckets on {tune_steps} steps each")
            ctx["buckets"] = tune_buckets(PackedMLP(spec["widths"], D, K, seed=0), X, y, bucket_counts,
                                          steps=tune_steps, log=log)
        if COMPILED in impls:
            sec, why = compile_probe(spec["widths"], compile_budget)
            ctx.update(compile_seconds=sec, compile_budget=compile_budget)
            if why:
                del impls[COMPILED]
                best[COMPILED] = Row(w, COMPILED, None, 0, spec["samples"] // BATCH, None,
                                     note=f"skipped: {why} (budget {compile_budget:.0f} s)")
                log(f"  {w:6s} {COMPILED:48s} skipped: {why}")
            else:
                log(f"  {w}: torch.compile in a fresh process took {sec:.1f} s")
        # rounds alternate between the implementations, so that drift of this shared host hits
        # all of them; each keeps its best round. One that cannot finish the workload within
        # max_seconds is timed once (on its first steps) and extrapolated.
        for rnd in range(rounds):
            for name, fn in impls.items():
                if rnd and best[name].steps_timed < best[name].steps:
                    continue
                model = PackedMLP(spec["widths"], D, K, seed=0)
                sec, done, steps, check, note = fn(model, X, y, max_seconds, ctx)
                del model
                if spec["kind"] == "train":
                    ratio = loss_check(f"{w}: {name}", check, ref)
                else:
                    results[name] = check
                    ratio = None
                if name not in best or sec < best[name].seconds:
                    best[name] = Row(w, name, sec, done, steps, flops / sec / 1e9, note=note, loss_check=ratio,
                                     config=dict(ctx["buckets"]) if name == BUCKETS else None)
                log(f"  {w:6s} {name:48s} {sec:9.3f} s  ({done}/{steps} steps timed)  {flops / sec / 1e9:7.1f} GFLOP/s"
                    + (f"  loss check {ratio:.2f}" if ratio is not None else ""))
                gc.collect()
        if spec["kind"] != "train":
            _check_agreement(w, results)
        rows.extend(best[name] for name in (TRAIN_IMPLS if spec["kind"] == "train" else EVAL_IMPLS) if name in best)
        timed = [r for r in rows if r.workload == w and r.seconds is not None]
        torch_rows = [r.seconds for r in timed if not r.implementation.startswith("pyireg")]
        best_torch = min(torch_rows) if torch_rows else None
        one = [r for r in timed if r.implementation == "pyireg native, 1 thread"]
        if one:
            native = next(r for r in timed if r.implementation == "pyireg native")
            one[0].note = f"2 threads are {one[0].seconds / native.seconds:.2f}x faster than 1"
        native = next((r for r in timed if r.implementation == "pyireg native"), None)
        for r in timed:
            if native is not None and r.implementation in MODULE_TARGETS:
                r.note = (f"{r.seconds / native.seconds:.2f}x the time of pyireg native (target <= "
                          f"{MODULE_TARGETS[r.implementation]})")
        for r in timed:
            r.speedup_vs_best_torch = best_torch / r.seconds if best_torch else None
    # the peak is measured before and after the workloads; the higher one is the reference
    peak = max(peak, matmul_peak(peak_n))
    log(f"float32 matmul peak, best of the measurements before and after: {peak:.1f} GFLOP/s")
    for r in rows:
        if r.gflops is not None:
            r.pct_of_peak = 100.0 * r.gflops / peak
    return {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "matmul_peak_gflops": peak, "rounds": rounds,
            "max_seconds": max_seconds, "labels": labels,
            "rows": [dataclasses.asdict(r) for r in rows]}


def _check_agreement(workload, results):
    """Evaluation: every implementation started from the same weights; their error rates must
    agree (up to argmax ties), or the timing compares different computations."""
    ref = results["pyireg native"]
    for name, val in results.items():
        if not np.mean(np.abs(np.asarray(val) - ref)) < 1e-3:
            raise AssertionError(f"{workload}: {name} disagrees with pyireg native")


# --------------------------------------------------------------------------- scaling (issue 16, item 4)
SCALING_MIX = list(range(1, 65))            # 64 networks, 2,080 units: repeated R times
SCALING_REPEATS = (1, 4, 16, 64, 256, 1024)  # 2,080 .. 2,129,920 units
SCALING_SAMPLES = (1000, 4000, 16000, 64000, 256000)
SCALING_FIXED_REPEATS = 64                  # the model of the samples sweep (133,120 units)
SCALING_STEPS = 5
MEMORY_METHOD = ("peak resident set size of a fresh process per point (VmHWM, reset through /proc/self/clear_refs "
                 "once the data, the model and the optimizer exist) minus its resident set size before the data "
                 "were made (after two steps of a two-network model, which start the libraries' thread pools and "
                 "buffers): data, weights, optimizer state and everything the steps allocate, native or torch")


def _rss_kb(field="VmRSS"):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _stepper(impl: str, model: PackedMLP, X, y, config=None):
    """(step(xb, yb) -> losses as numpy, batches) for pyireg native or a torch row."""
    import torch
    if impl == "pyireg native":
        opt = MomentumSGD(model, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        step = lambda xb, yb: np.array(opt.step(xb, yb))
    else:
        trainer = TORCH_TRAINERS[impl](model, config)
        step = lambda xb, yb: trainer.step(xb, yb).numpy().copy()
        X, y = torch.from_numpy(X), torch.from_numpy(y).long()
    return step, [(X[b * BATCH:(b + 1) * BATCH], y[b * BATCH:(b + 1) * BATCH]) for b in range(len(X) // BATCH)]


def _scaling_point(p: dict) -> dict:
    """One point, in its own process: build, step ``steps`` times after two steps on the first
    batch (which check the losses), and report the best time per step and the memory
    (MEMORY_METHOD)."""
    widths = p["mix"] * p["repeats"]
    # initialize the libraries (thread pools, BLAS buffers) on a two-network model first, so that
    # their fixed cost is not counted as the point's memory
    step, batches = _stepper(p["impl"], PackedMLP([1, 2], D, K, seed=1), *_data(BATCH, seed=1), p.get("config"))
    step(*batches[0]), step(*batches[0])
    del step, batches
    gc.collect()
    base = _rss_kb()
    X, y = _data(p["samples"])
    t = time.perf_counter()
    model = PackedMLP(widths, D, K, seed=0)
    ideal = 2 * (model.U.nbytes + model.V.nbytes) + X.nbytes + y.nbytes
    step, batches = _stepper(p["impl"], model, X, y, p.get("config"))
    if p["impl"] != "pyireg native":
        del model                      # the torch formulation holds its own copy of the weights
    gc.collect()
    setup_s = time.perf_counter() - t
    setup_peak = _rss_kb("VmHWM") - base
    setup = _rss_kb() - base
    reset = _reset_peak()
    n0 = len(p["mix"])
    losses = [step(*batches[0])[:n0].tolist(), step(*batches[0])[:n0].tolist()]   # 2 steps on batch 0
    times = []
    for i in range(p["steps"]):
        xb, yb = batches[(i + 1) % len(batches)]
        t = time.perf_counter()
        step(xb, yb)
        times.append(time.perf_counter() - t)
    peak = _rss_kb("VmHWM") - base
    return dict(step_seconds=min(times), step_seconds_median=float(np.median(times)), setup_seconds=setup_s,
                peak_mb=peak / 1024, setup_mb=setup / 1024, setup_peak_mb=setup_peak / 1024,
                ideal_mb=ideal / 2 ** 20, peak_reset=reset, losses=losses)


def run_scaling(repeats=SCALING_REPEATS, samples=SCALING_SAMPLES, fixed_repeats=SCALING_FIXED_REPEATS,
                fixed_samples: int = 1000, steps: int = SCALING_STEPS, torch_impl: str = BUCKETS,
                bucket_counts=BUCKET_COUNTS, tune_steps: int = TUNE_STEPS, mix=SCALING_MIX, log=print) -> dict:
    """Time per training step and peak memory against total units (``mix`` repeated ``repeats``
    times, ``fixed_samples`` samples) and against samples (``mix`` repeated ``fixed_repeats``
    times), for pyireg native and ``torch_impl``; each point in a fresh process. The torch
    row's bucket count is tuned per model in another fresh process first."""
    import torch
    if torch_impl not in TORCH_TRAINERS:
        raise ValueError(f"torch_impl: expected one of {sorted(TORCH_TRAINERS)}, got {torch_impl!r}")
    mix = [int(w) for w in mix]
    points = [("units", r, fixed_samples) for r in repeats] + [("samples", fixed_repeats, s) for s in samples]
    refs, tuned, out = {}, {}, []
    for sweep, R, n in points:
        if n < BATCH or n % BATCH:
            raise ValueError(f"samples: expected a positive multiple of {BATCH}, got {n}")
        if n not in refs:
            X, y = _data(n)
            refs[n] = reference_losses(PackedMLP(mix, D, K, seed=0), X, y)
        for impl in ("pyireg native", torch_impl):
            cfg = None
            if impl == BUCKETS:
                if R not in tuned:
                    res, sec, err = _run_child(_child_payload(what="tune", widths=mix * R, samples=max(n, 1000),
                                                              counts=list(bucket_counts), layouts=list(BUCKET_LAYOUTS),
                                                              steps=tune_steps), None)
                    if err:
                        raise RuntimeError(f"tuning the buckets for {R} repeats: {err}")
                    tuned[R] = {k: v for k, v in res.items() if k != "trials"}
                cfg = tuned[R]
            res, sec, err = _run_child(_child_payload(what="scaling", impl=impl, mix=mix, repeats=R, samples=n,
                                                      steps=steps, config=cfg), None)
            if err:
                raise RuntimeError(f"scaling point {impl}, {R} repeats, {n} samples: {err}")
            ratio = loss_check(f"scaling {impl}, {R} repeats, {n} samples", [np.asarray(l) for l in res.pop("losses")],
                               refs[n])
            row = dict(sweep=sweep, implementation=impl, networks=len(mix) * R, units=sum(mix) * R, samples=n,
                       steps_timed=steps, epoch_seconds=res["step_seconds"] * (n // BATCH),
                       gflops=useful_flops(mix * R, BATCH, "train") / res["step_seconds"] / 1e9,
                       loss_check=ratio, config=cfg, **res)
            out.append(row)
            if impl != "pyireg native":
                out[-2]["speedup_vs_torch"] = row["step_seconds"] / out[-2]["step_seconds"]
            log(f"  {sweep:7s} {row['networks']:7,d} networks {row['units']:10,d} units {n:7,d} samples  {impl:24s} "
                f"{res['step_seconds'] * 1e3:9.1f} ms/step  peak {res['peak_mb']:9.1f} MiB "
                f"(weights+momentum+data {res['ideal_mb']:.1f} MiB)")
    return {"mix": mix, "memory_method": MEMORY_METHOD, "torch_threads": torch.get_num_threads(), "rows": out}


# --------------------------------------------------------------------------- reports
def _fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def format_table(report: dict) -> str:
    lines = [f"float32 matmul peak measured in this run: {report['matmul_peak_gflops']:.1f} GFLOP/s "
             f"(torch {report['torch']}, {report['torch_threads']} threads)", "",
             "| workload | implementation | seconds | steps timed | useful GFLOP/s | % of matmul peak | vs strongest torch | loss check | notes |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    labels = report.get("labels", {})
    for r in report["rows"]:
        label = labels.get(r["workload"]) or WORKLOADS[r["workload"]]["label"]
        lines.append(f"| {label} | {r['implementation']} | {_fmt(r['seconds'], '.3f', 'skipped')} | "
                     f"{r['steps_timed']}/{r['steps']} | {_fmt(r['gflops'], '.1f')} | "
                     f"{_fmt(r['pct_of_peak'], '.0f')}{'' if r['pct_of_peak'] is None else '%'} | "
                     f"{_fmt(r['speedup_vs_best_torch'], '.2f')}{'' if r['speedup_vs_best_torch'] is None else 'x'} | "
                     f"{_fmt(r.get('loss_check'), '.2f')} | {r.get('note', '')} |")
    return "\n".join(lines)


def format_scaling(report: dict) -> str:
    lines = [f"width mix: {len(report['mix'])} networks of widths {report['mix'][0]}..{report['mix'][-1]}, repeated; "
             f"batch {BATCH}, d = {D}, k = {K}", f"memory: {report['memory_method']}", "",
             "| sweep | networks | units | samples | implementation | ms per step (best) | epoch s | useful GFLOP/s | "
             "vs torch | peak MiB | weights+momentum+data MiB | peak / that | notes |",
             "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in report["rows"]:
        cfg = r.get("config")
        note = f"{cfg['count']} buckets ({cfg['layout']}), padding {100 * cfg['padding']:.1f}%" if cfg else ""
        if not r.get("peak_reset", True):
            note += "; peak includes setup"
        lines.append(f"| {r['sweep']} | {r['networks']:,} | {r['units']:,} | {r['samples']:,} | {r['implementation']} | "
                     f"{r['step_seconds'] * 1e3:.1f} | {r['epoch_seconds']:.3f} | {r['gflops']:.1f} | "
                     f"{_fmt(r.get('speedup_vs_torch'), '.2f')}{'x' if r.get('speedup_vs_torch') else ''} | "
                     f"{r['peak_mb']:.0f} | {r['ideal_mb']:.0f} | {r['peak_mb'] / r['ideal_mb']:.2f}x | {note} |")
    return "\n".join(lines)


def save(report: dict, path) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
