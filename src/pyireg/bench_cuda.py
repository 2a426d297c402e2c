"""The CUDA benchmark: one epoch of every width 1..W (default 4096) trained together, d = 100,
k = 10, batch 100, momentum SGD, on a CUDA device: pyireg's CUDA engine against the PyTorch
formulations a skilled user would write on the same GPU (a per-width loop; a packed GEMM with
index_add, eager and under torch.compile), each with its useful TFLOP/s (4Hd + 6Hk per sample
and width) and the percentage of the fp32 matmul peak measured in the same run. A Markdown table
is printed last. pyireg's row and the packed torch rows start from the same weights, and each row
names its first step's summed loss and its distance from the first row's (the loss check); the
per-width loop (torch's own initialization) says when it was timed on its first steps only and
extrapolated; the packed rows are skipped with a line when their (S, B, K) intermediates would
not fit the free GPU memory; pyireg's row takes one untimed step first, on copies.

    python -m pyireg.bench_cuda [--max-width 4096] [--samples 50000] [--emulate]

``--emulate`` runs a tiny version through the emulation on the CPU (pyireg.cuda.emulate): it
checks the plumbing only; its times mean nothing and are labelled so.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import cuda as pc

D, K, BATCH = 100, 10, 100


def _sync(dev):
    import torch
    if dev == "cuda":
        torch.cuda.synchronize()


def matmul_peak(dev, n=8192, repeats=5) -> float:
    """fp32 GFLOP/s of torch.mm (TF32 off) on the device."""
    import torch
    if dev != "cuda":
        return float("nan")
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    torch.mm(a, b)
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    _sync(dev)
    torch.backends.cuda.matmul.allow_tf32 = prev
    return 2 * n ** 3 * repeats / (time.perf_counter() - t0) / 1e9


def _data(samples, dev, seed=0):
    import torch
    g = torch.Generator().manual_seed(seed)
    return torch.randn(samples, D, generator=g).to(dev), torch.randint(0, K, (samples,), generator=g).to(dev)


def _weights(widths, dev):
    """The initial U, V of every row that trains the packed model (the same draw for each)."""
    import torch
    g = torch.Generator().manual_seed(1)
    S = int(sum(widths))
    return (torch.randn(S, D, generator=g) * 0.1).to(dev), (torch.randn(S, K, generator=g) * 0.1).to(dev)


def pyireg_epoch(widths, X, y, dev):
    """Seconds of one epoch, and the summed per-network losses of its first step (the loss
    check against the packed torch row). One untimed step on copies first (the engine's first
    launches, cuBLAS's initialization and lazy module loading)."""
    import torch
    mod = pc._emu() if dev == "cpu" else pc._native()
    off = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    N = len(widths)
    e = mod.Engine32(off, D, K, "relu", "cross_entropy", False)
    U, V = _weights(widths, dev)
    sU, sV = torch.zeros_like(U), torch.zeros_like(V)
    lr, mom, wd = (torch.full((N,), v, device=dev) for v in (0.01, 0.9, 0.0))
    loss = torch.empty(N, dtype=torch.float64, device=dev)
    lab = y.to(torch.int32)
    nb = e.workspace_bytes("step", BATCH)
    ws = torch.empty(max(nb, 1), dtype=torch.uint8, device=dev) if dev == "cuda" else None
    stream = torch.cuda.current_stream().cuda_stream if dev == "cuda" else 0

    def step(U, V, sU, sV, b0):
        e.step(U.data_ptr(), V.data_ptr(), X[b0].data_ptr(), BATCH, "cross_entropy", lab[b0].data_ptr(), 0, 0,
               "momentum_sgd", sU.data_ptr(), sV.data_ptr(), lr.data_ptr(), mom.data_ptr(), wd.data_ptr(),
               loss.data_ptr(), 0 if ws is None else ws.data_ptr(), nb if ws is not None else 0, stream)
    step(U.clone(), V.clone(), sU.clone(), sV.clone(), 0)            # warm-up, untimed, on copies
    _sync(dev)
    t0 = time.perf_counter()
    first = None
    for b0 in range(0, X.shape[0] - BATCH + 1, BATCH):
        step(U, V, sU, sV, b0)
        if first is None:
            first = loss.sum()          # a device scalar: read after the timing
    _sync(dev)
    return time.perf_counter() - t0, float(first)


def _packed_model(widths, dev):
    import torch
    net = torch.repeat_interleave(torch.arange(len(widths), device=dev), torch.tensor(widths, device=dev))
    U, V = _weights(widths, dev)
    return U.requires_grad_(), V.requires_grad_(), net


def _packed_step(U, V, net, N, xb, yb):
    import torch
    import torch.nn.functional as F
    A = torch.relu(xb @ U.T)                                            # B x S
    out = torch.zeros(N, xb.shape[0], K, device=xb.device).index_add(0, net, A.T.unsqueeze(2) * V.unsqueeze(1))
    return F.cross_entropy(out.reshape(-1, K), yb.repeat(N), reduction="sum") / xb.shape[0]


def _packed_bytes(widths) -> int:
    """The packed formulation's largest intermediates: the (S, B, K) products and their
    gradient (33.6 GB each at widths 1..4096)."""
    return 2 * 4 * int(sum(widths)) * BATCH * K


def torch_packed_epoch(widths, X, y, dev, compiled=False):
    """Seconds of one epoch and its first step's loss (the sum over networks of the mean loss)."""
    import torch
    if dev == "cuda":
        free = torch.cuda.mem_get_info()[0]
        if _packed_bytes(widths) > free:
            raise MemoryError(f"needs about {_packed_bytes(widths) / 1e9:.1f} GB, {free / 1e9:.1f} GB free")
    U, V, net = _packed_model(widths, dev)
    opt = torch.optim.SGD([U, V], lr=0.01, momentum=0.9)
    f = torch.compile(_packed_step) if compiled else _packed_step
    f(U, V, net, len(widths), X[:BATCH], y[:BATCH]).backward()   # warm-up (compilation); no step taken
    U.grad = V.grad = None
    _sync(dev)
    t0 = time.perf_counter()
    first = None
    for b0 in range(0, X.shape[0] - BATCH + 1, BATCH):
        opt.zero_grad(set_to_none=True)
        out = f(U, V, net, len(widths), X[b0:b0 + BATCH], y[b0:b0 + BATCH])
        out.backward()
        opt.step()
        if first is None:
            first = out.detach()
    _sync(dev)
    return time.perf_counter() - t0, float(first)


def torch_loop_epoch(widths, X, y, dev, max_seconds=60.0):
    """Per-width loop; stops after max_seconds and extrapolates from the batches done."""
    import torch
    import torch.nn.functional as F
    nets = [torch.nn.Sequential(torch.nn.Linear(D, h, bias=False), torch.nn.ReLU(), torch.nn.Linear(h, K, bias=False))
            .to(dev) for h in widths]
    opt = torch.optim.SGD([p for m in nets for p in m.parameters()], lr=0.01, momentum=0.9)
    batches = X.shape[0] // BATCH
    _sync(dev)
    t0 = time.perf_counter()
    done = 0
    for i in range(batches):
        xb, yb = X[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]
        opt.zero_grad(set_to_none=True)
        sum(F.cross_entropy(m(xb), yb) for m in nets).backward()
        opt.step()
        done += 1
        if time.perf_counter() - t0 > max_seconds:
            break
    _sync(dev)
    return (time.perf_counter() - t0) * batches / done, None, (done, batches)


def run(max_width=4096, samples=50000, emulate=False, compiled=True) -> list:
    dev = "cpu" if emulate else "cuda"
    if not emulate and not pc.is_available():
        raise RuntimeError(f"bench --device cuda: {pc.status()}")
    widths = list(range(1, max_width + 1))
    X, y = _data(samples, dev)
    flops = sum(4 * h * D + 6 * h * K for h in widths) * (samples // BATCH * BATCH)
    peak = matmul_peak(dev)
    rows = []
    ctx = pc.emulate() if emulate else None
    if ctx:
        ctx.__enter__()
    try:
        impls = [("pyireg CUDA engine", lambda: pyireg_epoch(widths, X, y, dev)),
                 ("torch packed GEMM + index_add", lambda: torch_packed_epoch(widths, X, y, dev))]
        if compiled and not emulate:
            impls.append(("torch packed, torch.compile", lambda: torch_packed_epoch(widths, X, y, dev, True)))
        impls.append(("torch per-width loop", lambda: torch_loop_epoch(widths, X, y, dev)))
        ref = None          # the first step's summed loss of the first row that has one (the same weights)
        for name, f in impls:
            try:
                s, first, *part = f()
                note = ""
                if part and part[0][0] < part[0][1]:
                    note = f" (extrapolated from {part[0][0]} of {part[0][1]} steps)"
                if first is not None:
                    ref = first if ref is None else ref
                    note += f" (first-step loss {first:.6g}, {abs(first - ref) / abs(ref):.1e} from the first row's)"
                rows.append((name + note, s, flops / s / 1e12))
            except Exception as exc:  # noqa: BLE001  one formulation failing (memory, compile) must not hide the others
                rows.append((name + f" (failed: {type(exc).__name__}: {str(exc)[:60]})", float("nan"), float("nan")))
    finally:
        if ctx:
            ctx.__exit__(None, None, None)
    return [(n, s, t, 100 * t * 1e3 / peak if not np.isnan(peak) else float("nan")) for n, s, t in rows], peak


def format_table(rows, peak, emulate, max_width, samples) -> str:
    head = (f"CUDA benchmark: widths 1..{max_width}, {samples} samples, d={D}, k={K}, batch {BATCH}; "
            + ("EMULATED on the CPU: times are meaningless" if emulate else f"fp32 matmul peak {peak:.0f} GFLOP/s"))
    best = min((s for n, s, _, _ in rows[1:] if not np.isnan(s)), default=float("nan"))
    lines = [head, "", "| implementation | s / epoch | useful TFLOP/s | % of fp32 peak | vs fastest torch |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for n, s, t, pct in rows:
        lines.append(f"| {n} | {s:.3f} | {t:.3f} | {pct:.1f} | {best / s:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="pyireg's CUDA engine against PyTorch formulations on one GPU")
    ap.add_argument("--max-width", type=int, default=4096)
    ap.add_argument("--samples", type=int, default=50000)
    ap.add_argument("--emulate", action="store_true", help="a tiny run through the emulation (plumbing only)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile formulation")
    a = ap.parse_args(argv)
    if a.emulate:
        a.max_width, a.samples = min(a.max_width, 8), min(a.samples, 2 * BATCH)
    if a.max_width < 1 or a.samples < BATCH:
        ap.error(f"--max-width must be >= 1 and --samples >= {BATCH}")
    try:
        rows, peak = run(a.max_width, a.samples, a.emulate, not a.no_compile)
    except RuntimeError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(format_table(rows, peak, a.emulate, a.max_width, a.samples))
    return 0 if all(not np.isnan(s) for _, s, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
