"""pyireg under load: ``pyireg theorem1`` (many short parallel regions) timed on idle cores and
with busy-loop processes on every core, under OpenMP wait policies: passive (no spin), a spin
count (pyireg's default GOMP_SPINCOUNT=3000) and active (libgomp's long default spin).

    python benchmarks/loaded_vs_idle.py [--iters 300] [--busy N] [--reps 1] [--policies passive,active,spin30000]

A policy is ``passive`` or ``active`` (``OMP_WAIT_POLICY``) or ``spinN`` (``GOMP_SPINCOUNT=N``
alone: libgomp spins N iterations, then sleeps; its own default is 300000).

Each run is a fresh ``python -m pyireg theorem1`` process; the busy loops are plain Python
processes spinning on arithmetic (``--busy``, default: one per core). The numbers are wall
seconds of that one process and mean something only on a machine nobody else is using: say
what else ran when you report them.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time


def _spin(stop):
    x = 0
    while not stop.is_set():
        for i in range(100_000):
            x = (x * 31 + i) % 1_000_003


def policy_env(policy: str) -> dict:
    """The process environment of one policy: passive, active or spinN."""
    env = dict(os.environ)
    env.pop("GOMP_SPINCOUNT", None)
    env.pop("OMP_WAIT_POLICY", None)
    if policy.startswith("spin") and policy[4:].isdigit():
        env["GOMP_SPINCOUNT"] = policy[4:]
    elif policy in ("passive", "active"):
        env["OMP_WAIT_POLICY"] = policy.upper()
    else:
        raise SystemExit(f"--policies: {policy!r} is not passive, active or spinN")
    return env


def run_once(policy: str, iters: int, out: str) -> float:
    env = policy_env(policy)
    cmd = [sys.executable, "-m", "pyireg", "theorem1", "--iters", str(iters), "--out", out]
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=300, help="iterations of each solver (theorem1 --iters)")
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 1, help="busy-loop processes when loaded")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--policies", default="passive,spin3000,active")
    args = ap.parse_args()
    policies = args.policies.split(",")
    for policy in policies:
        policy_env(policy)                                 # checked before anything runs
    with tempfile.TemporaryDirectory() as out:
        run_once("passive", 20, out)                       # warm the data and imports
        rows = []
        for load in ("idle", "loaded"):
            stop = mp.Event()
            spinners = [mp.Process(target=_spin, args=(stop,), daemon=True)
                        for _ in range(args.busy if load == "loaded" else 0)]
            for p in spinners:
                p.start()
            try:
                for _ in range(args.reps):
                    for policy in policies:                # alternating, so drifts hit both alike
                        rows.append((load, policy, run_once(policy, args.iters, out)))
            finally:
                stop.set()
                for p in spinners:
                    p.join(10)
    print(f"pyireg theorem1 --iters {args.iters}, {os.cpu_count()} CPUs, {args.busy} busy loops when loaded")
    print(f"{'load':8} {'policy':11} {'seconds':>8}")
    for load, policy, s in rows:
        print(f"{load:8} {policy:11} {s:8.2f}")


if __name__ == "__main__":
    main()
