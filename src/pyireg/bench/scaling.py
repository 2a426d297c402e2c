"""The scaling benchmark: time and peak memory of a training step against the model size and
the number of samples, each point in a fresh process."""

import gc
import json
import time

import numpy as np

from ..model import PackedMLP
from ..optim import MomentumSGD
from .common import (
    BATCH,
    BUCKET_COUNTS,
    BUCKET_LAYOUTS,
    LR,
    MOMENTUM,
    TUNE_STEPS,
    WEIGHT_DECAY,
    WORKLOADS,
    D,
    K,
    _data,
    check_batches,
    loss_check,
    reference_losses,
    useful_flops,
)
from .run import BUCKETS, TORCH_TRAINERS, _child_payload, _run_child, format_host, host_info

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
    # the steps the loss check compares: batch 0 twice, then batch 1 (its loss sees the momentum)
    losses = [step(*batches[b])[:n0].tolist() for b in check_batches(len(batches))]
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
            res, sec, err = _run_child(_child_payload(what="call", entry="pyireg.bench.scaling:_scaling_point",
                                                      impl=impl, mix=mix, repeats=R, samples=n,
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
    return {"mix": mix, "memory_method": MEMORY_METHOD, "torch_threads": torch.get_num_threads(), "host": host_info(),
            "rows": out}


# --------------------------------------------------------------------------- reports
def _fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def format_table(report: dict) -> str:
    lines = [format_host(report), "",
             "| workload | implementation | seconds | steps timed | useful GFLOP/s | % of matmul peak "
             "| vs strongest torch | loss check | notes |",
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
    h = report.get("host") or {}
    lines = [f"host: {h.get('cpu', '?')} ({h.get('cpu_count', '?')} processors); pyireg SIMD target "
             f"{h.get('simd', '?')}, {h.get('native_threads', '?')} native threads; torch {h.get('torch', '?')}, "
             f"{report.get('torch_threads', '?')} threads",
             f"width mix: {len(report['mix'])} networks of widths {report['mix'][0]}..{report['mix'][-1]}, repeated; "
             f"batch {BATCH}, d = {D}, k = {K}", f"memory: {report['memory_method']}", "",
             "| sweep | networks | units | samples | implementation | ms per step (best) | epoch s (best step x steps) "
             "| useful GFLOP/s | vs torch | peak MiB | weights+momentum+data MiB | peak / that | notes |",
             "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in report["rows"]:
        cfg = r.get("config")
        note = f"{cfg['count']} buckets ({cfg['layout']}), padding {100 * cfg['padding']:.1f}%" if cfg else ""
        if not r.get("peak_reset", True):
            note += "; peak includes setup"
        lines.append(f"| {r['sweep']} | {r['networks']:,} | {r['units']:,} | {r['samples']:,} | "
                     f"{r['implementation']} | "
                     f"{r['step_seconds'] * 1e3:.1f} | {r['epoch_seconds']:.3f} | {r['gflops']:.1f} | "
                     f"{_fmt(r.get('speedup_vs_torch'), '.2f')}{'x' if r.get('speedup_vs_torch') else ''} | "
                     f"{r['peak_mb']:.0f} | {r['ideal_mb']:.0f} | {r['peak_mb'] / r['ideal_mb']:.2f}x | {note} |")
    return "\n".join(lines)


def save(report: dict, path) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=2)

