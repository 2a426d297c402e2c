"""Running the benchmark: fresh child processes for compiling and tuning, the timed
implementations (native, torch, the pyireg.torch module), and the report of one run."""

import dataclasses
import gc
import json
import os
import platform
import signal
import subprocess
import sys
import time
from typing import Optional

import numpy as np

from ..model import PackedMLP
from ..optim import MomentumSGD
from .common import (
    BATCH,
    BUCKET_COUNTS,
    COMPILE_BUDGET,
    LR,
    MOMENTUM,
    TUNE_STEPS,
    WEIGHT_DECAY,
    WORKLOADS,
    D,
    K,
    Row,
    _data,
    _time_steps,
    bucket_plan,
    eval_loss_check,
    loss_check,
    matmul_peak,
    reference_eval_losses,
    reference_losses,
    useful_flops,
)
from .torch_impls import (
    TorchBuckets,
    TorchLoop,
    TorchPacked,
    _TorchTrainer,
    tune_buckets,
)


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

    from .. import _core
    torch.set_num_threads(payload["torch_threads"])
    _core.set_num_threads(payload["native_threads"])
    if payload.get("simd"):
        _core.set_simd(payload["simd"])           # the parent's target (pyireg bench --simd)
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
    elif what == "call":
        # a point of another module of the benchmark (the scaling sweep), named by the payload:
        # this module does not import the modules that import it
        import importlib
        module, _, name = payload["entry"].partition(":")
        result = getattr(importlib.import_module(module), name)(payload)
    else:
        raise ValueError(what)
    print("RESULT " + json.dumps(result), flush=True)


def _child_payload(**kw):
    import torch

    from .. import _core
    return dict(torch_threads=torch.get_num_threads(), native_threads=_core.get_num_threads(),
                simd=_core.build_config()["simd_active"], **kw)


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
        if len(losses) < 3:
            losses.append(np.array(loss))
    sec, done = _time_steps(step, steps, max_seconds)
    need = model.U.nbytes + model.V.nbytes + opt.bufU.nbytes + opt.bufV.nbytes + X.nbytes + y.nbytes
    note = (f"memory: weights+momentum+data {need / 1e6:.0f} MB, native scratch "
            f"{model._engine.workspace_bytes / 1e6:.1f} MB ({1 + model._engine.workspace_bytes / need:.3f}x)")
    return sec, done, steps, losses, note


def native_train_1thread(model: PackedMLP, X, y, max_seconds, ctx=None):
    """The native step on one thread: the denominator of the two-thread scaling."""
    from .. import _core
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
        if len(losses) < 3:
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
        from ..torch import PackedMLP as TorchPackedMLP
        from ..torch import PackedSGD
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
        first.setdefault("out", model.evaluate(X, y, batch_size=256))
    sec, done = _time_steps(step, 1, max_seconds)
    return sec, done, 1, first["out"], ""


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
    return sec, done, 1, (first["err"], None), ""


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
                label=label or f"train, {len(widths):,} networks ({sum(widths):,} units), "
                               f"1 epoch of {samples:,} samples")


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
        best, ctx, results, eval_ref = {}, {}, {}, None
        if spec["kind"] == "train":
            t = time.perf_counter()
            ref = reference_losses(PackedMLP(spec["widths"], D, K, seed=0), X, y)
            log(f"  {w}: reference losses (float32 and float64 twins, {len(ref[1])} steps) in "
                f"{time.perf_counter() - t:.1f} s")
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
                else:                        # (error rates, mean losses or None)
                    results[name] = check[0]
                    ratio = None
                    if check[1] is not None:
                        if eval_ref is None:
                            eval_ref = reference_eval_losses(PackedMLP(spec["widths"], D, K, seed=0), X, y)
                        ratio = eval_loss_check(f"{w}: {name}", check[1], eval_ref)
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
            from .. import get_num_threads
            one[0].note = f"{get_num_threads()} threads are {one[0].seconds / native.seconds:.2f}x faster than 1"
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
    strongest = {}
    for w in labels:
        torch_rows = [r for r in rows if r.workload == w and r.seconds is not None
                      and not r.implementation.startswith("pyireg")]
        if torch_rows:
            r = min(torch_rows, key=lambda r: r.seconds)
            strongest[w] = {"implementation": r.implementation, "seconds": r.seconds, "gflops": r.gflops,
                            "pct_of_peak": r.pct_of_peak}
    return {"machine": platform.processor() or platform.machine(), "host": host_info(peak),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "matmul_peak_gflops": peak,
            "strongest_torch": strongest, "rounds": rounds, "max_seconds": max_seconds, "labels": labels,
            "rows": [dataclasses.asdict(r) for r in rows]}


def host_info(peak: Optional[float] = None) -> dict:
    """Where a benchmark ran: the CPU model, its processors, the SIMD target the engine chose,
    pyireg's and torch's thread counts, and the matmul peak measured in the same run."""
    import torch

    from .. import build_config, get_num_threads
    from ..experiments.record import cpu_model
    cfg = build_config()
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "simd": cfg.get("simd_active"),
            "prefetch_ahead": cfg.get("prefetch_ahead"), "l2_cache_bytes": cfg.get("l2_cache_bytes"),
            "native_threads": int(get_num_threads()), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "platform": platform.platform(), "matmul_peak_gflops": peak,
            "openmp_wait": _openmp_wait()}


def _openmp_wait() -> str:
    """The OpenMP wait of this process (pyireg's and torch's runtimes alike)."""
    if os.environ.get("OMP_WAIT_POLICY"):
        return f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"
    if os.environ.get("GOMP_SPINCOUNT"):
        return f"GOMP_SPINCOUNT={os.environ['GOMP_SPINCOUNT']}"
    return "the OpenMP runtime's default"


def _ahead(h: dict) -> str:
    """The forward's prefetch of the next chunk (on hosts with at least 1 MiB of L2 per core),
    when the report says."""
    flag, l2 = h.get("prefetch_ahead"), h.get("l2_cache_bytes")
    if flag is None:
        return ""
    size = f" (L2 {l2 // 1024} KiB per core)" if l2 else ""
    return (", next-chunk prefetch on" if flag else ", next-chunk prefetch off") + size


def format_host(report: dict) -> str:
    """The header of a report: the host, and what was measured on it in the same run (the
    matmul peak, the strongest PyTorch formulation of each workload)."""
    h = report.get("host") or {}
    lines = [f"host: {h.get('cpu', report.get('machine', '?'))} ({h.get('cpu_count', '?')} processors); pyireg "
             f"SIMD target {h.get('simd', '?')}{_ahead(h)}, {h.get('native_threads', '?')} native threads; torch "
             f"{report.get('torch', '?')}, {report.get('torch_threads', '?')} threads; OpenMP wait: "
             f"{h.get('openmp_wait', 'not recorded')}",
             f"float32 matmul peak measured in this run: {report['matmul_peak_gflops']:.1f} GFLOP/s"]
    for w, r in (report.get("strongest_torch") or {}).items():
        lines.append(f"strongest torch formulation measured in this run, {w}: {r['implementation']} "
                     f"({r['seconds']:.3f} s, {r['gflops']:.1f} GFLOP/s, {r['pct_of_peak']:.0f}% of the peak)")
    return "\n".join(lines)


def _check_agreement(workload, results):
    """Evaluation: every implementation started from the same weights; their error rates must
    agree (up to argmax ties), or the timing compares different computations."""
    ref = results["pyireg native"]
    for name, val in results.items():
        if not np.mean(np.abs(np.asarray(val) - ref)) < 1e-3:
            raise AssertionError(f"{workload}: {name} disagrees with pyireg native")


