"""Benchmarks of the packed native core against the PyTorch formulations of a width sweep.

Every number in a report is measured in the same run: the machine's float32 matrix-multiply
peak (torch.mm on 2048^3, best of 10, measured before and after the workloads, the higher one
kept), each implementation's time for the same workload, and the ratios. Implementations are
timed in alternating rounds and each keeps its best, so that drift of a shared host hits them
alike. Useful work per sample (ARCHITECTURE.md): training 4Hd + 6Hk FLOPs, evaluation
2H(d + k). An implementation that would take longer than ``max_seconds`` is timed once, on the
first steps of the epoch, and extrapolated; the report says how many steps were timed.
"""
from __future__ import annotations

import dataclasses
import json
import platform
import time
from typing import Callable

import numpy as np

from .model import PackedMLP
from .optim import MomentumSGD

D, K, BATCH = 100, 10, 100

WORKLOADS = {
    "dense": dict(widths=list(range(1, 1025)), samples=1000, kind="train",
                  label="train, every width 1..1024, 1 epoch of 1,000 samples"),
    "pow2": dict(widths=[2 ** i for i in range(13)], samples=2000, kind="train",
                 label="train, widths 1,2,4..4096, 1 epoch of 2,000 samples"),
    "eval": dict(widths=list(range(1, 1025)), samples=10000, kind="eval",
                 label="evaluate, every width 1..1024, 10,000 samples"),
}


@dataclasses.dataclass
class Row:
    workload: str
    implementation: str
    seconds: float          # for the whole workload (extrapolated if steps_timed < steps)
    steps_timed: int
    steps: int
    gflops: float           # useful GFLOP/s
    speedup_vs_best_torch: float = float("nan")
    pct_of_peak: float = float("nan")
    note: str = ""


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


# --------------------------------------------------------------------------- implementations
def native_train(model: PackedMLP, X, y, max_seconds):
    opt = MomentumSGD(model, lr=0.1, momentum=0.5)
    steps = len(X) // BATCH
    first = {}

    def step(i):
        loss = opt.step(X[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH])
        first.setdefault("loss", loss)
    sec, done = _time_steps(step, steps, max_seconds)
    need = model.U.nbytes + model.V.nbytes + opt.bufU.nbytes + opt.bufV.nbytes + X.nbytes + y.nbytes
    first["note"] = (f"memory: weights+momentum+data {need / 1e6:.0f} MB, native scratch "
                     f"{model._engine.workspace_bytes / 1e6:.1f} MB ({1 + model._engine.workspace_bytes / need:.3f}x)")
    return sec, done, steps, first


def native_train_1thread(model: PackedMLP, X, y, max_seconds):
    """The native step on one thread: the denominator of the two-thread scaling."""
    from . import _core
    threads = _core.get_num_threads()
    _core.set_num_threads(1)
    try:
        return native_train(model, X, y, max_seconds)
    finally:
        _core.set_num_threads(threads)


def _torch_train(params, losses_fn, X, y, max_seconds):
    """Time one epoch of a PyTorch formulation: ``losses_fn(xb, yb)`` returns the (N,) mean
    losses of every network; one backward over their sum and one momentum-SGD step per batch."""
    import torch
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.5, foreach=True)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y).long()
    steps = len(X) // BATCH
    first = {}

    def step(i):
        opt.zero_grad(set_to_none=True)
        losses = losses_fn(Xt[i * BATCH:(i + 1) * BATCH], yt[i * BATCH:(i + 1) * BATCH])
        losses.sum().backward()
        opt.step()
        first.setdefault("loss", losses.detach().numpy().astype(np.float64))
    sec, done = _time_steps(step, steps, max_seconds)
    return sec, done, steps, first["loss"]


def torch_loop_train(model: PackedMLP, X, y, max_seconds):
    """One nn.Sequential per width, one backward over the summed losses, one foreach SGD."""
    import torch
    mods = model.to_torch()
    ce = torch.nn.functional.cross_entropy
    return _torch_train([p for m in mods for p in m.parameters()],
                        lambda xb, yb: torch.stack([ce(m(xb), yb) for m in mods]), X, y, max_seconds)


def torch_padded_train(model: PackedMLP, X, y, max_seconds):
    """All networks padded to the largest width: one batched matmul per layer, masks on the
    padding (a torch.func/vmap-style ensemble)."""
    import torch
    N, Hmax = model.num_networks, max(model.widths)
    mask = torch.zeros(N, Hmax, 1)
    Up, Vp = torch.zeros(N, Hmax, D), torch.zeros(N, Hmax, K)
    for n in range(N):
        a, b = model.offsets[n], model.offsets[n + 1]
        Up[n, : b - a] = torch.from_numpy(model.U[a:b])
        Vp[n, : b - a] = torch.from_numpy(model.V[a:b])
        mask[n, : b - a] = 1
    Up.requires_grad_(True)
    Vp.requires_grad_(True)

    def losses(xb, yb):
        A = torch.relu(torch.matmul(Up * mask, xb.T))             # N x Hmax x B
        logits = torch.bmm(A.transpose(1, 2), Vp * mask)          # N x B x K
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, K), yb.repeat(N), reduction="none").view(N, -1).mean(1)
    return _torch_train([Up, Vp], losses, X, y, max_seconds)


def torch_packed_train(model: PackedMLP, X, y, max_seconds):
    """The packed formulation in PyTorch: one GEMM for the first layer, index_add for the
    block-diagonal second layer."""
    import torch
    U = torch.from_numpy(model.U.copy()).requires_grad_(True)
    V = torch.from_numpy(model.V.copy()).requires_grad_(True)
    net = torch.from_numpy(model.network_of_unit())
    N = model.num_networks

    def losses(xb, yb):
        A = torch.relu(xb @ U.T)                                   # B x S
        contrib = A.unsqueeze(2) * V.unsqueeze(0)                  # B x S x K
        logits = torch.zeros(len(xb), N, K).index_add(1, net, contrib)
        return torch.nn.functional.cross_entropy(
            logits.permute(0, 2, 1), yb.unsqueeze(1).expand(-1, N), reduction="none").mean(0)
    return _torch_train([U, V], losses, X, y, max_seconds)


def native_eval(model, X, y, max_seconds):
    first = {}

    def step(_):
        first.setdefault("err", model.evaluate(X, y, batch_size=256)[0])
    sec, done = _time_steps(step, 1, max_seconds)
    return sec, done, 1, first["err"]


def torch_loop_eval(model, X, y, max_seconds):
    import torch
    mods = model.to_torch()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y).long()
    first = {}

    def step(_):
        with torch.no_grad():
            err = np.array([(m(Xt).argmax(1) != yt).double().mean().item() for m in mods])
        first.setdefault("err", err)
    sec, done = _time_steps(step, 1, max_seconds)
    return sec, done, 1, first["err"]


TRAIN_IMPLS = {"pyireg native": native_train, "pyireg native, 1 thread": native_train_1thread,
               "torch loop over widths": torch_loop_train,
               "torch padded ensemble": torch_padded_train, "torch packed (GEMM + index_add)": torch_packed_train}
EVAL_IMPLS = {"pyireg native": native_eval, "torch loop over widths": torch_loop_eval}


def run(workloads=("dense", "pow2", "eval"), max_seconds: float = 30.0, implementations=None,
        log=print, rounds: int = 3) -> dict:
    """Run the benchmark; returns a dict with the machine, the measured peak and the rows."""
    import torch
    peak = matmul_peak()
    log(f"float32 matmul peak (torch.mm 2048^3, {torch.get_num_threads()} threads): {peak:.1f} GFLOP/s")
    rows = []
    for w in workloads:
        spec = WORKLOADS[w]
        X, y = _data(spec["samples"])
        impls = TRAIN_IMPLS if spec["kind"] == "train" else EVAL_IMPLS
        flops = useful_flops(spec["widths"], spec["samples"], spec["kind"])
        results, best = {}, {}
        # rounds alternate between the implementations, so that drift of this shared host hits
        # all of them; each keeps its best round. One that cannot finish the workload within
        # max_seconds is timed once (on its first steps) and extrapolated.
        for rnd in range(rounds):
            for name, fn in impls.items():
                if implementations and name not in implementations and name != "pyireg native":
                    continue
                if rnd and best[name].steps_timed < best[name].steps:
                    continue
                model = PackedMLP(spec["widths"], D, K, seed=0)
                sec, done, steps, check = fn(model, X, y, max_seconds)
                note = check.pop("note", "") if isinstance(check, dict) else ""
                results[name] = check["loss"] if isinstance(check, dict) else check
                if name not in best or sec < best[name].seconds:
                    best[name] = Row(w, name, sec, done, steps, flops / sec / 1e9, note=note)
                log(f"  {w:6s} {name:34s} {sec:9.3f} s  ({done}/{steps} steps timed)  {flops / sec / 1e9:7.1f} GFLOP/s")
        rows.extend(best.values())
        _check_agreement(w, results)
        best_torch = min(r.seconds for r in rows if r.workload == w and not r.implementation.startswith("pyireg"))
        one = [r for r in rows if r.workload == w and r.implementation == "pyireg native, 1 thread"]
        if one:
            native = next(r for r in rows if r.workload == w and r.implementation == "pyireg native")
            one[0].note = f"2 threads are {one[0].seconds / native.seconds:.2f}x faster than 1"
        for r in rows:
            if r.workload == w:
                r.speedup_vs_best_torch = best_torch / r.seconds
    # the peak is measured before and after the workloads; the higher one is the reference
    peak = max(peak, matmul_peak())
    log(f"float32 matmul peak, best of the measurements before and after: {peak:.1f} GFLOP/s")
    for r in rows:
        r.pct_of_peak = 100.0 * r.gflops / peak
    return {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "matmul_peak_gflops": peak, "rounds": rounds,
            "rows": [dataclasses.asdict(r) for r in rows]}


def _check_agreement(workload, results):
    """Every implementation started from the same weights: their first-step losses (or error
    rates) must agree, or the timing compares different computations."""
    ref = results["pyireg native"]
    for name, val in results.items():
        if workload == "eval":
            ok = np.mean(np.abs(np.asarray(val) - ref)) < 1e-3
        else:
            ok = np.allclose(val, ref, rtol=1e-4, atol=1e-5)
        if not ok:
            raise AssertionError(f"{workload}: {name} disagrees with pyireg native")


def format_table(report: dict) -> str:
    lines = [f"float32 matmul peak measured in this run: {report['matmul_peak_gflops']:.1f} GFLOP/s "
             f"(torch {report['torch']}, {report['torch_threads']} threads)", "",
             "| workload | implementation | seconds | steps timed | useful GFLOP/s | % of matmul peak | speed-up vs best torch | notes |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in report["rows"]:
        lines.append(f"| {WORKLOADS[r['workload']]['label']} | {r['implementation']} | {r['seconds']:.3f} | "
                     f"{r['steps_timed']}/{r['steps']} | {r['gflops']:.1f} | {r['pct_of_peak']:.0f}% | "
                     f"{r['speedup_vs_best_torch']:.2f}x | {r.get('note', '')} |")
    return "\n".join(lines)


def save(report: dict, path) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
