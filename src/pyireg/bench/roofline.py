"""The roofline model of the packed training step (``pyireg bench --roofline``): each phase's
time from its FLOPs and the bytes it moves to or from memory, with the host's measured matmul
peak and stream bandwidth as inputs, and a prediction for more threads than this host has.

A phase takes max(FLOPs / (n P1 e), bytes / min(n b, W)) on n threads: P1 the matmul peak per
thread (the peak measured on this host's threads, divided by them), e the phase's share of
that peak (1 for the two GEMM-shaped products, ``segmented_efficiency`` for the block-diagonal
second layer and its backward), b the stream bandwidth of one core (measured), W the socket's
bandwidth (a parameter: a 2-core virtual machine cannot measure a socket). The step is the sum
of its phases (they run one after the other). docs/performance.md gives the model's assumptions.
"""
from __future__ import annotations

import time

import numpy as np

from .common import BATCH, WORKLOADS, D, K

SOCKET_BANDWIDTH = 200.0       # GB/s: a typical server socket's sustained stream bandwidth (set yours)
# the share of the peak the segmented phases reach: the tiled dV, dZ pass runs at 60-64% of the
# per-thread peak on Zen 4 (round 3); before the tiles it ran at 22% on the Xeon (round 2: 0.25)
SEGMENTED_EFFICIENCY = 0.6
PREDICT_THREADS = (16, 64)


def phases(widths, batch: int = BATCH, d: int = D, k: int = K) -> list[dict]:
    """The phases of one fused momentum-SGD step on a batch: name, FLOPs, bytes to or from
    memory, and kind ("gemm": at the matmul peak; "segmented": at a share of it). Bytes count
    the weights and the momentum buffers (float32), which do not fit a cache at sweep sizes;
    the batch, the activations of a group of units and the gradients stay in cache. When a pass
    runs by groups (Plan::by_groups: any sweep of many networks), the engine runs each group of
    whole networks (about 512 units) from its forward to its update on one thread, so the update
    finds the group's rows of U and V still in cache from the forward: it reads only the momentum
    buffers from memory and writes the weights and the buffers back, 12 bytes per weight, and
    the forward's 4 make one pass over memory per weight, 16 in all (the phase schedule, taken
    by one wide network or a few dominant ones, reads U and V a second time: 20)."""
    S = float(np.sum(widths))
    B = float(batch)
    return [
        {"phase": "forward product Z = X U^T", "kind": "gemm", "flops": 2 * B * S * d, "bytes": 4 * S * d},
        {"phase": "second layer A V (segmented) + loss", "kind": "segmented", "flops": 2 * B * S * k,
         "bytes": 4 * S * k},
        {"phase": "dV, dZ pass + V's momentum update", "kind": "segmented", "flops": 4 * B * S * k,
         "bytes": 12 * S * k},
        {"phase": "dU product dZ^T X + U's momentum update", "kind": "gemm", "flops": 2 * B * S * d,
         "bytes": 12 * S * d},
    ]


def predict(ph, threads: int, peak_per_thread: float, bandwidth_per_core: float,
            socket_bandwidth: float = SOCKET_BANDWIDTH, segmented_efficiency: float = SEGMENTED_EFFICIENCY) -> dict:
    """Seconds of each phase and of the step on ``threads`` threads (GFLOP/s and GB/s inputs)."""
    bw = min(threads * bandwidth_per_core, socket_bandwidth) * 1e9
    out = []
    for p in ph:
        e = 1.0 if p["kind"] == "gemm" else segmented_efficiency
        compute = p["flops"] / (threads * peak_per_thread * 1e9 * e)
        memory = p["bytes"] / bw
        out.append(dict(p, compute_s=compute, memory_s=memory, seconds=max(compute, memory),
                        bound="memory" if memory > compute else "compute"))
    return {"threads": threads, "bandwidth_gbs": bw / 1e9, "phases": out, "step_s": sum(p["seconds"] for p in out)}


def scaling_stop(ph, peak_per_thread, bandwidth_per_core, socket_bandwidth=SOCKET_BANDWIDTH,
                 segmented_efficiency=SEGMENTED_EFFICIENCY, gain: float = 1.1, most: int = 4096) -> int:
    """The thread count past which doubling the threads speeds the modelled step up by less than
    ``gain`` (10%): where the scaling stops."""
    n = 1
    while n < most:
        a = predict(ph, n, peak_per_thread, bandwidth_per_core, socket_bandwidth, segmented_efficiency)["step_s"]
        b = predict(ph, 2 * n, peak_per_thread, bandwidth_per_core, socket_bandwidth, segmented_efficiency)["step_s"]
        if a / b < gain:
            return n
        n *= 2
    return most


def stream_bandwidth(mib: int = 64, repeats: int = 5) -> dict:
    """GB/s of a stream triad a = b + 3 c (torch.add, one pass) on float32 arrays of ``mib`` MiB
    each, past the caches: on one thread (the bandwidth one core can draw) and on torch's
    threads. Bytes counted as STREAM counts them: two arrays read, one written."""
    import torch
    n = mib * (1 << 20) // 4
    b, c = torch.rand(n), torch.rand(n)
    a = torch.empty(n)
    threads = torch.get_num_threads()
    out = {}
    try:
        for label, nt in (("one_core_gbs", 1), ("all_threads_gbs", threads)):
            torch.set_num_threads(nt)
            torch.add(b, c, alpha=3.0, out=a)
            best = float("inf")
            for _ in range(repeats):
                t = time.perf_counter()
                torch.add(b, c, alpha=3.0, out=a)
                best = min(best, time.perf_counter() - t)
            out[label] = 3 * 4 * n / best / 1e9
    finally:
        torch.set_num_threads(threads)
    return dict(out, torch_threads=threads, array_mib=mib)


def measured_step(widths, samples: int = 3 * BATCH) -> float:
    """Seconds of one native momentum-SGD step on ``widths`` (best of the steps of ``samples``
    samples, after one warm-up step), on pyireg's threads."""
    from ..model import PackedMLP
    from ..optim import MomentumSGD
    from .common import LR, MOMENTUM, _data
    model = PackedMLP(widths, D, K, seed=0)
    opt = MomentumSGD(model, lr=LR, momentum=MOMENTUM)
    X, y = _data(samples)
    opt.step(X[:BATCH], y[:BATCH])
    best = float("inf")
    for i in range(samples // BATCH):
        t = time.perf_counter()
        opt.step(X[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH])
        best = min(best, time.perf_counter() - t)
    return best


def run_roofline(workloads=("dense", "pow2"), predict_threads=PREDICT_THREADS,
                 socket_bandwidth: float = SOCKET_BANDWIDTH, segmented_efficiency: float = SEGMENTED_EFFICIENCY,
                 measure_steps: bool = True, peak_n: int = 2048, stream_mib: int = 64, log=print) -> dict:
    """Measure the matmul peak, the stream bandwidth per core and (``measure_steps``) one native
    step per workload on this host, and model each workload's step here and on
    ``predict_threads`` threads. ``workloads``: names of WORKLOADS (training ones) or (name,
    spec) pairs (bench.custom_workload)."""
    from .. import get_num_threads
    from .common import matmul_peak
    from .run import host_info
    peak = matmul_peak(peak_n)
    bw = stream_bandwidth(stream_mib)
    threads = int(get_num_threads())
    peak1 = peak / threads
    log(f"matmul peak {peak:.1f} GFLOP/s on {threads} threads ({peak1:.1f} per thread); stream triad "
        f"{bw['one_core_gbs']:.1f} GB/s on one core, {bw['all_threads_gbs']:.1f} on {bw['torch_threads']} threads")
    out = []
    for w in workloads:
        w, spec = (w, WORKLOADS[w]) if isinstance(w, str) else w
        ph = phases(spec["widths"])
        kw = dict(peak_per_thread=peak1, bandwidth_per_core=bw["one_core_gbs"], socket_bandwidth=socket_bandwidth,
                  segmented_efficiency=segmented_efficiency)
        models = [predict(ph, n, **kw) for n in [threads, *predict_threads]]
        step = measured_step(spec["widths"], min(spec["samples"], 3 * BATCH)) if measure_steps else None
        out.append({"workload": w, "label": spec["label"], "units": int(np.sum(spec["widths"])),
                    "models": models, "measured_step_s": step, "scaling_stops_at": scaling_stop(ph, **kw)})
    return {"host": host_info(peak), "matmul_peak_gflops": peak, "peak_per_thread_gflops": peak1,
            "stream": bw, "threads": threads, "socket_bandwidth_gbs": socket_bandwidth,
            "segmented_efficiency": segmented_efficiency, "workloads": out}


def format_roofline(report: dict) -> str:
    h = report["host"]
    s = report["stream"]
    lines = [f"host: {h['cpu']} ({h['cpu_count']} processors); pyireg SIMD target {h['simd']}, "
             f"{report['threads']} native threads",
             f"inputs measured in this run: matmul peak {report['matmul_peak_gflops']:.1f} GFLOP/s "
             f"({report['peak_per_thread_gflops']:.1f} per thread); stream triad {s['one_core_gbs']:.1f} GB/s per core "
             f"({s['all_threads_gbs']:.1f} on {s['torch_threads']} threads); assumed: socket bandwidth "
             f"{report['socket_bandwidth_gbs']:.0f} GB/s (--socket-bandwidth), segmented phases at "
             f"{100 * report['segmented_efficiency']:.0f}% of the peak (--segmented-efficiency)"]
    for w in report["workloads"]:
        threads = [m["threads"] for m in w["models"]]
        lines += ["", f"{w['label']} ({w['units']:,} units, batch {BATCH}): modelled ms per step",
                  "| phase | GFLOP | MB | " + " | ".join(f"{n} threads" for n in threads) + " |",
                  "| --- | ---: | ---: | " + " | ".join("---:" for _ in threads) + " |"]
        for i, p in enumerate(w["models"][0]["phases"]):
            cells = [f"{m['phases'][i]['seconds'] * 1e3:.2f} ({m['phases'][i]['bound']})" for m in w["models"]]
            lines.append(f"| {p['phase']} | {p['flops'] / 1e9:.2f} | {p['bytes'] / 1e6:.0f} | "
                         + " | ".join(cells) + " |")
        lines.append("| step (sum) | | | " + " | ".join(f"{m['step_s'] * 1e3:.2f}" for m in w["models"]) + " |")
        if w["measured_step_s"] is not None:
            m0 = w["models"][0]
            lines.append(f"measured here on {m0['threads']} threads: {w['measured_step_s'] * 1e3:.2f} ms per step "
                         f"(the model is {m0['step_s'] / w['measured_step_s']:.0%} of it)")
        sat = report["socket_bandwidth_gbs"] / s["one_core_gbs"]
        lines.append(f"scaling stops (doubling the threads gains under 10%) past {w['scaling_stops_at']} threads; "
                     f"bandwidth per core x threads reaches the socket's at {sat:.0f} threads")
    return "\n".join(lines)
