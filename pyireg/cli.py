"""The ``pyireg`` command line."""
from __future__ import annotations

import argparse
import sys


def _bench(args) -> int:
    from . import bench, _core
    if args.threads:
        _core.set_num_threads(args.threads)
        import torch
        torch.set_num_threads(args.threads)
    report = bench.run(args.workload, max_seconds=args.max_seconds)
    table = bench.format_table(report)
    print()
    print(table)
    if args.json:
        bench.save(report, args.json)
        print(f"\nsaved {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyireg", description=__doc__.strip() + " Implicit regularization in width sweeps.")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="benchmark the native core against PyTorch formulations",
                       description="Time width-sweep training and evaluation, native vs PyTorch, "
                                   "with useful GFLOP/s and ratios to the matmul peak measured in the same run.")
    b.add_argument("--workload", nargs="+", choices=["dense", "pow2", "eval"], default=["dense", "pow2", "eval"])
    b.add_argument("--max-seconds", type=float, default=30.0,
                   help="time budget per implementation; slower ones are timed on the first steps and extrapolated")
    b.add_argument("--threads", type=int, default=0, help="threads for pyireg and torch (default: all)")
    b.add_argument("--json", help="save the report to this JSON file")
    b.set_defaults(func=_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
