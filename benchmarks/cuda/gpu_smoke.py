"""A small complete run of the CUDA engine, for compute-sanitizer (run_gpu_check.sh) and, with
--emulate, for the emulation on any machine: every operation once on a mixed layout, results
against the float64 twins under the tolerance rule, no NaN left in any output.

    python benchmarks/cuda/gpu_smoke.py [--emulate] [--planted-oob]

Operations: forward, backward, loss_and_grad, evaluate, step (momentum SGD, Path-SGD, DDP-SGD),
apply_update (bit for bit the fused step), ddp_scale, balance and normalize_units (against the
CPU engine), measures and unit_moments (finite).

--planted-oob launches the self-test kernel that reads one element past its input, which
compute-sanitizer's memcheck must report (and an ASan build of the emulation; plain runs do not
see it). Exit status 0 when every check passes.
"""
import argparse
import sys

import numpy as np
import torch

import pyireg.cuda as pc
from pyireg import reference as ref
from pyireg.testing import assert_tolerance


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emulate", action="store_true", help="run on the emulated device (pyireg._cuda_emu)")
    ap.add_argument("--planted-oob", action="store_true", help="run the planted one-past-the-end read only")
    a = ap.parse_args(argv)
    if not a.emulate and not pc.is_available():
        print(f"gpu_smoke: {pc.status()}")
        return 2
    mod = pc._emu() if a.emulate else pc._native()
    dev = "cpu" if a.emulate else "cuda"
    if a.planted_oob:
        x = np.ones(100, np.float32)
        mod.selftest("oob_read", x, 25, 4)
        print("gpu_smoke: planted out-of-bounds read launched")
        return 0
    widths, d, k, B = [1, 2, 7, 33, 130], 9, 11, 13
    off = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    N, S = len(widths), int(off[-1])
    rng = np.random.default_rng(0)
    U = (rng.standard_normal((S, d)) / 3).astype(np.float32)
    V = (rng.standard_normal((S, k)) / 3).astype(np.float32)
    X = rng.standard_normal((B, d)).astype(np.float32)
    y = rng.integers(0, k, B)
    t = {n: torch.from_numpy(v).to(dev) for n, v in {"U": U, "V": V, "X": X}.items()}
    lab = torch.from_numpy(y.astype(np.int32)).to(dev)
    e = mod.Engine32(off, d, k, "relu", "cross_entropy", False)
    stream = 0 if a.emulate else torch.cuda.current_stream().cuda_stream

    def ws(op, block=0):
        if a.emulate:
            return None, 0, 0
        n = e.workspace_bytes(op, B, block)
        w = torch.empty(max(n, 1), dtype=torch.uint8, device=dev)
        return w, w.data_ptr(), n

    def p(x):
        return 0 if x is None else x.data_ptr()

    ctx = pc.emulate() if a.emulate else torch.no_grad()
    with ctx:
        out = torch.empty((N, B, k), device=dev)
        w = ws("forward")
        e.forward(p(t["U"]), p(t["V"]), p(t["X"]), B, p(out), w[1], w[2], stream)
        G = torch.from_numpy(rng.standard_normal((N, B, k)).astype(np.float32)).to(dev)
        gU, gV, gX = torch.empty_like(t["U"]), torch.empty_like(t["V"]), torch.empty_like(t["X"])
        w = ws("backward")
        e.backward(p(t["U"]), p(t["V"]), p(t["X"]), B, p(G), p(gU), p(gV), p(gX), w[1], w[2], stream)
        loss = torch.empty(N, dtype=torch.float64, device=dev)
        lU, lV = torch.empty_like(t["U"]), torch.empty_like(t["V"])
        w = ws("loss_and_grad")
        e.loss_and_grad(p(t["U"]), p(t["V"]), p(t["X"]), B, "cross_entropy", p(lab), 0, 0, p(loss), p(lU), p(lV),
                        w[1], w[2], stream)
        ev, err = torch.empty(N, dtype=torch.float64, device=dev), torch.empty(N, dtype=torch.int64, device=dev)
        w = ws("evaluate", 5)
        e.evaluate(p(t["U"]), p(t["V"]), p(t["X"]), B, "cross_entropy", p(lab), 0, 0, 5, p(ev), p(err), w[1], w[2],
                   stream)
        hyper = [torch.full((N,), v, device=dev) for v in (0.1, 0.9, 1e-3)]
        for rule in ("momentum_sgd", "path_sgd", "ddp_sgd"):
            Us, Vs = t["U"].clone(), t["V"].clone()
            sU, sV = torch.rand_like(Us), torch.rand_like(Vs)
            mom = torch.zeros(N, device=dev) if rule == "ddp_sgd" else hyper[1]
            sl = torch.empty(N, dtype=torch.float64, device=dev)
            w = ws("step")
            e.step(p(Us), p(Vs), p(t["X"]), B, "cross_entropy", p(lab), 0, 0, rule, p(sU), p(sV), p(hyper[0]), p(mom),
                   p(hyper[2]), p(sl), w[1], w[2], stream)
            for name, v in (("U", Us), ("V", Vs), ("loss", sl)):
                if not bool(torch.isfinite(v).all()):
                    print(f"gpu_smoke: FAIL {rule} left non-finite values in {name}")
                    return 1
        # the operations off the training step, each once: the unfused update from loss_and_grad's
        # gradients (equal bit for bit to the fused step), DDP-SGD's scaling, the rescalings,
        # the norm measures and the data moments
        Uf, Vf, Ua, Va = t["U"].clone(), t["V"].clone(), t["U"].clone(), t["V"].clone()
        bufs = [torch.zeros_like(x) for x in (Uf, Vf, Ua, Va)]
        fl = torch.empty(N, dtype=torch.float64, device=dev)     # held: the call takes its address only
        w = ws("step")
        e.step(p(Uf), p(Vf), p(t["X"]), B, "cross_entropy", p(lab), 0, 0, "momentum_sgd", p(bufs[0]), p(bufs[1]),
               p(hyper[0]), p(hyper[1]), p(hyper[2]), p(fl), w[1], w[2], stream)
        w = ws("apply_update")
        e.apply_update(p(Ua), p(Va), p(lU), p(lV), "momentum_sgd", p(bufs[2]), p(bufs[3]), p(hyper[0]), p(hyper[1]),
                       p(hyper[2]), w[1], w[2], stream)
        alpha = torch.full((N,), 0.5, device=dev)
        kU, kV = torch.empty_like(t["U"]), torch.empty_like(t["V"])
        w = ws("ddp_scale")
        e.ddp_scale(p(t["U"]), p(t["V"]), p(t["X"]), B, p(alpha), p(kU), p(kV), w[1], w[2], stream)
        rescaled = {}
        for how in ("balance", "normalize_units"):
            Ur, Vr = t["U"].clone(), t["V"].clone()
            zero = torch.full((1,), -1, dtype=torch.int64, device=dev)
            w = ws("rescale")
            e.rescale(how, p(Ur), p(Vr), p(zero), w[1], w[2], stream)
            rescaled[how] = (Ur, Vr, zero)
        meas = torch.empty((6, N), dtype=torch.float64, device=dev)
        e.measures(p(t["U"]), p(t["V"]), p(meas), stream)
        z2, a2 = (torch.empty(S, dtype=torch.float64, device=dev) for _ in range(2))
        w = ws("unit_moments", 5)
        e.unit_moments(p(t["U"]), p(t["X"]), B, 5, p(z2), p(a2), w[1], w[2], stream)
    if not a.emulate:
        torch.cuda.synchronize()
    m32 = ref.modules_from_packed(U, V, off, dtype=torch.float32)
    m64 = ref.modules_from_packed(U, V, off, dtype=torch.float64)
    X64, G64 = X.astype(np.float64), G.cpu().double().numpy()
    assert_tolerance(out.cpu().numpy(), ref.forward(m32, X).numpy(), ref.forward(m64, X64).numpy(), "forward")
    for name, got, r32, r64 in zip(("gU", "gV", "gX"), (gU, gV, gX), ref.backward(m32, X, G.cpu().numpy()),
                                   ref.backward(m64, X64, G64)):
        assert_tolerance(got.cpu().numpy(), r32, r64, name)
    l32, u32, v32 = ref.loss_and_grad(m32, X, y)
    l64, u64, v64 = ref.loss_and_grad(m64, X64, y)
    for name, got, r32, r64 in (("loss", loss, l32, l64), ("gU", lU, u32, u64), ("gV", lV, v32, v64)):
        assert_tolerance(got.cpu().numpy(), r32, r64, name)
    e32, _ = ref.evaluate(m64, X64, y)
    if not np.array_equal(err.cpu().numpy(), np.round(e32 * B).astype(np.int64)):
        print("gpu_smoke: FAIL evaluate's error counts differ from the twin's")
        return 1
    if not (torch.equal(Ua, Uf) and torch.equal(Va, Vf)):
        print("gpu_smoke: FAIL loss_and_grad + apply_update differs from the fused step")
        return 1
    # the rest against the CPU engine (pyireg.PackedMLP), under the tolerance rule
    import pyireg
    cpu = pyireg.PackedMLP.from_weights(widths, U, V)
    for how, (Ur, Vr, zero) in rescaled.items():
        c = cpu.copy()
        zc = getattr(c, how)()
        zc = zc if isinstance(zc, (int, np.integer)) else int(np.sum(zc))
        if int(zero.item()) != zc:
            print(f"gpu_smoke: FAIL {how} counted {int(zero.item())} zero units, the CPU {zc}")
            return 1
        c64 = pyireg.PackedMLP.from_weights(widths, U.astype(np.float64), V.astype(np.float64))
        getattr(c64, how)()
        assert_tolerance(Ur.cpu().numpy(), c.U, c64.U, f"{how} U")
        assert_tolerance(Vr.cpu().numpy(), c.V, c64.V, f"{how} V")
    for name, got in zip(("kU", "kV", "measures", "z2", "a2"), (kU, kV, meas, z2, a2)):
        if not bool(torch.isfinite(got).all()):
            print(f"gpu_smoke: FAIL {name} holds non-finite values")
            return 1
    print(f"gpu_smoke: ok on {'the emulated device' if a.emulate else torch.cuda.get_device_name()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
