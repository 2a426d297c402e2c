"""pyireg: width sweeps of two-layer ReLU networks and implicit regularization, on a fused
native core."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DATASETS = ["mnist5k", "digits", "mnist1d", "mnist", "cifar10"]


def _widths(text: str):
    """'1,2,4' or '1:1024' (every width) or 'pow2:4096' (1, 2, 4, ..., 4096)."""
    text = text.strip()
    try:
        if text.startswith("pow2:"):
            top = int(text[5:])
            return [2 ** i for i in range(top.bit_length()) if 2 ** i <= top]
        if ":" in text:
            a, b = (int(x) for x in text.split(":"))
            return list(range(a, b + 1))
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like '1,2,4', '1:1024' or 'pow2:4096', got {text!r}") from None


def _floats(text: str):
    try:
        return [float(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str):
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _threads(args):
    if getattr(args, "threads", 0):
        from . import _core
        _core.set_num_threads(args.threads)


def cmd_bench(args) -> int:
    from . import bench
    _threads(args)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    if args.scaling:
        report = {"scaling": bench.run_scaling(
            repeats=args.scaling_repeats, samples=args.scaling_samples, fixed_repeats=args.scaling_fixed_repeats,
            steps=args.scaling_steps, torch_impl=bench.IMPL_KEYS[args.scaling_torch],
            bucket_counts=args.bucket_counts, tune_steps=args.tune_steps)}
        print()
        print(bench.format_scaling(report["scaling"]))
    else:
        workloads = []
        for w in args.workload:
            if w == "custom":
                if not args.widths:
                    raise SystemExit("pyireg bench: --workload custom needs --widths")
                workloads.append(("custom", bench.custom_workload(args.widths, args.samples)))
            else:
                workloads.append(w)
        impls = [bench.IMPL_KEYS[k] for k in args.implementations] if args.implementations else None
        report = bench.run(workloads, max_seconds=args.max_seconds, rounds=args.rounds, implementations=impls,
                           bucket_counts=args.bucket_counts, tune_steps=args.tune_steps,
                           compile_budget=args.compile_budget)
        print()
        print(bench.format_table(report))
    if args.json:
        bench.save(report, args.json)
        print(f"\nsaved {args.json}")
    return 0


def cmd_sweep(args) -> int:
    from . import data as D
    from .experiments import sweep
    from .schedule import PaperSchedule
    _threads(args)
    ds = D.load(args.dataset, data_dir=args.data_dir, n_train=args.n_train, n_val=args.n_val,
                n_test=args.n_test, seed=args.split_seed)
    if args.censor:
        ds = D.censor(ds, args.censor, epochs=args.epochs)
        print(f"censored labels from an H0={args.censor} teacher: {ds.info['censor']['changed']} changed")
    if args.label_noise:
        ds = D.label_noise(ds, args.label_noise, seed=args.split_seed)
    sched = PaperSchedule(args.lr, args.lr_decay, args.momentum, args.momentum_step, args.momentum_max)
    t0 = time.perf_counter()
    res = sweep(ds, args.widths, seeds=args.seeds, weight_decays=args.weight_decay, lr_scales=args.lr_scale,
                epochs=args.epochs, batch_size=args.batch_size, schedule=sched, init_std=args.init_std,
                out=args.out, resume=args.resume, progress=not args.quiet, tag=ds.info["name"])
    print(f"{len(res.history)} rows in {time.perf_counter() - t0:.1f} s -> {args.out}/history.parquet")
    from .plots import results_table
    print(results_table(args.out))
    return 0


def cmd_reproduce(args) -> int:
    from .experiments import paper
    from .plots import plot_results, results_table
    _threads(args)
    out = Path(args.out or f"results/{args.figure}-{args.dataset}")
    kw = dict(dataset=args.dataset, data_dir=args.data_dir, widths=args.widths, epochs=args.epochs,
              seeds=args.seeds, progress=not args.quiet, resume=args.resume)
    t0 = time.perf_counter()
    if args.figure == "figure1":
        paper.reproduce_figure1(out, **kw)
    else:
        paper.reproduce_figure2(out, weight_decays=args.weight_decay, **kw)
    png = plot_results(out)
    print(f"{args.figure} on {args.dataset}: {time.perf_counter() - t0:.1f} s; figure {png}")
    print(results_table(out))
    return 0


def cmd_plot(args) -> int:
    from .plots import plot_results, results_table
    png = plot_results(args.results, args.output)
    print(f"wrote {png}")
    print(results_table(args.results))
    return 0


def _save_table(table, path: Path, seconds: float, extra: str = "") -> None:
    import pandas as pd
    table.to_csv(path, index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    print(f"\n{seconds:.1f} s; {extra}table {path}")


def cmd_theorem1(args) -> int:
    from .experiments import theory_demo as TD
    _threads(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    table, traces = TD.theorem1_table(args.dataset, n=args.n, lams=args.lam, width=args.width, iters=args.iters)
    png = TD.plot_theorem1(traces, args.lam, out / "theorem1.png")
    _save_table(table, out / "theorem1.csv", time.perf_counter() - t0, f"figure {png}, ")
    return 0


def cmd_convex(args) -> int:
    from .experiments import theory_demo as TD
    _threads(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    table = TD.corollary1_table(args.dataset, n=args.n, widths=args.widths, lam=args.lam[0], iters=args.iters)
    _save_table(table, out / "corollary1.csv", time.perf_counter() - t0)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyireg", description=__doc__.strip())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("bench", help="benchmark the native core against PyTorch formulations",
                       description="Time width-sweep training and evaluation, native vs PyTorch, with useful "
                                   "GFLOP/s and ratios to the matmul peak measured in the same run.")
    b.add_argument("--workload", nargs="+", choices=["dense", "pow2", "eval", "custom"], default=["dense", "pow2", "eval"],
                   help="custom: training on --widths and --samples")
    b.add_argument("--widths", type=_widths, default=None, help="widths of the custom workload: '1,2,4', '1:64' or 'pow2:4096'")
    b.add_argument("--samples", type=int, default=1000, help="samples of the custom workload (a multiple of 100)")
    b.add_argument("--implementations", nargs="+", metavar="NAME",
                   choices=["native-1thread", "module-fused", "module-losses", "module-autograd", "loop", "buckets",
                            "packed-index-add", "packed-embedding-bag", "packed-compiled"],
                   help="rows to run besides pyireg native (default: all): native-1thread, module-fused, "
                        "module-losses, module-autograd (pyireg.torch from a torch training loop), loop, buckets, "
                        "packed-index-add, packed-embedding-bag, packed-compiled")
    b.add_argument("--max-seconds", type=float, default=30.0,
                   help="time budget per implementation; slower ones are timed on the first steps and extrapolated")
    b.add_argument("--rounds", type=int, default=3,
                   help="alternating timing rounds; each implementation keeps its best (default 3)")
    b.add_argument("--bucket-counts", type=_ints, default=[8, 16, 32, 64, 128, 256],
                   help="bucket counts tried for the torch width buckets (default 8,16,32,64,128,256)")
    b.add_argument("--tune-steps", type=int, default=2,
                   help="steps timed per bucket count and layout when tuning (after one warm-up step; default 2)")
    b.add_argument("--compile-budget", type=float, default=120.0,
                   help="seconds torch.compile may take (in a fresh process) before its row is skipped (default 120)")
    b.add_argument("--scaling", action="store_true",
                   help="instead of the workloads: time per step and peak memory against units and against samples, "
                        "pyireg native and --scaling-torch, one fresh process per point")
    b.add_argument("--scaling-repeats", type=_ints, default=[1, 4, 16, 64, 256, 1024],
                   help="repeats of the width mix 1..64 (2,080 units each) for the units sweep (default 1,4,16,64,256,1024)")
    b.add_argument("--scaling-samples", type=_ints, default=[1000, 4000, 16000, 64000, 256000],
                   help="samples of the samples sweep (default 1000,4000,16000,64000,256000)")
    b.add_argument("--scaling-fixed-repeats", type=int, default=64,
                   help="repeats of the width mix in the samples sweep (default 64: 133,120 units)")
    b.add_argument("--scaling-steps", type=int, default=5, help="steps timed per point, the best kept (default 5)")
    b.add_argument("--scaling-torch", default="buckets",
                   choices=["loop", "buckets", "packed-index-add", "packed-embedding-bag", "packed-compiled"],
                   help="the torch row of the scaling sweep (default buckets, the strongest torch row of the ladder)")
    b.add_argument("--threads", type=int, default=0, help="threads for pyireg and torch (default: all)")
    b.add_argument("--json", help="save the report to this JSON file")
    b.set_defaults(func=cmd_bench)

    def data_args(q, default="mnist5k"):
        q.add_argument("--dataset", choices=DATASETS, default=default,
                       help="mnist5k (default, embedded), digits, mnist1d, or mnist / cifar10 from --data-dir")
        q.add_argument("--data-dir", help="directory with the MNIST IDX files or the CIFAR-10 python batches")
        q.add_argument("--threads", type=int, default=0, help="native threads (default: all cores)")
        q.add_argument("--quiet", action="store_true", help="no progress bar")
        q.add_argument("--resume", action="store_true", help="continue an interrupted run in the output directory")

    s = sub.add_parser("sweep", help="train a grid of widths x weight decays x seeds and record every epoch",
                       description="A width sweep with the paper's protocol; results go to OUT/history.parquet "
                                   "after every epoch (with a checkpoint: --resume continues an interrupted sweep).")
    data_args(s)
    s.add_argument("--widths", type=_widths, default=_widths("pow2:1024"), help="'1,2,4', '1:1024' or 'pow2:4096'")
    s.add_argument("--seeds", type=_ints, default=[0], help="repetitions, e.g. 0,1,2,3,4")
    s.add_argument("--weight-decay", type=_floats, default=[0.0], help="weight decays, e.g. 0,1e-4,1e-3")
    s.add_argument("--lr-scale", type=_floats, default=[1.0], help="multipliers of the learning rate")
    s.add_argument("--epochs", type=int, default=40)
    s.add_argument("--batch-size", type=int, default=100)
    s.add_argument("--lr", type=float, default=0.1, help="initial step size")
    s.add_argument("--lr-decay", type=float, default=0.99, help="step size factor per epoch")
    s.add_argument("--momentum", type=float, default=0.5, help="initial momentum")
    s.add_argument("--momentum-step", type=float, default=0.02, help="momentum increase per epoch")
    s.add_argument("--momentum-max", type=float, default=0.9)
    s.add_argument("--init-std", type=float, default=None, help="Gaussian init std of both layers (default 1/sqrt(fan_in))")
    s.add_argument("--n-train", type=int), s.add_argument("--n-val", type=int), s.add_argument("--n-test", type=int)
    s.add_argument("--split-seed", type=int, default=0)
    s.add_argument("--censor", type=int, default=0, metavar="H0", help="replace labels by an H0-unit teacher's")
    s.add_argument("--label-noise", type=float, default=0.0, help="fraction of training labels changed at random")
    s.add_argument("--out", required=True, help="output directory")
    s.set_defaults(func=cmd_sweep)

    r = sub.add_parser("reproduce", help="run Figure 1 or Figure 2 of the paper and plot it",
                       description="Figure 1: error vs width, no regularization. Figure 2: 2,000 train / 2,000 "
                                   "validation images; original labels with and without weight decay, censored "
                                   "labels, censored labels with 5%% noise; 5 repetitions.")
    r.add_argument("figure", choices=["figure1", "figure2"])
    data_args(r)
    r.add_argument("--widths", type=_widths, default=None, help="default: 1, 2, 4, ..., 2048")
    r.add_argument("--epochs", type=int, default=None, help="default: 60")
    r.add_argument("--seeds", type=_ints, default=None, help="repetitions (figure2 default: 0,1,2,3,4)")
    r.add_argument("--weight-decay", type=_floats, default=None, help="figure2 grid (default 0,1e-5,1e-4,1e-3,1e-2)")
    r.add_argument("--out", help="output directory (default results/FIGURE-DATASET)")
    r.set_defaults(func=cmd_reproduce)

    t = sub.add_parser("theorem1", help="verify Theorem 1: weight decay (4) vs unit norm + group-l1 (5)",
                       description="Solve objectives (4) and (5) on real data (k = 2 and k = 10, several lambdas, "
                                   "one packed model per objective), print the comparison table, plot the objectives.")
    t.add_argument("--dataset", choices=["mnist5k", "digits", "mnist1d"], default="mnist5k")
    t.add_argument("--n", type=int, default=300, help="training samples")
    t.add_argument("--lam", type=_floats, default=[1e-3, 1e-2, 3e-2])
    t.add_argument("--width", type=int, default=128)
    t.add_argument("--iters", type=int, default=2000)
    t.add_argument("--threads", type=int, default=0)
    t.add_argument("--out", default="results/theorem1")
    t.set_defaults(func=cmd_theorem1)

    c = sub.add_parser("convex", help="Corollary 1: weight-decay networks vs the convex neural net",
                       description="Train weight-decay networks of widths below and above n, then solve the convex "
                                   "neural net over their normalized units plus random units; compare the optima "
                                   "and report support sizes.")
    c.add_argument("--dataset", choices=["mnist5k", "digits", "mnist1d"], default="mnist5k")
    c.add_argument("--n", type=int, default=60)
    c.add_argument("--widths", type=_widths, default=[30, 120, 480])
    c.add_argument("--lam", type=_floats, default=[3e-3])
    c.add_argument("--iters", type=int, default=4000)
    c.add_argument("--threads", type=int, default=0)
    c.add_argument("--out", default="results/convex")
    c.set_defaults(func=cmd_convex)

    pl = sub.add_parser("plot", help="plot a saved sweep or figure directory",
                        description="Plot RESULTS (a directory written by sweep or reproduce) as a PNG and print a table.")
    pl.add_argument("results")
    pl.add_argument("--output", help="PNG path (default inside RESULTS)")
    pl.set_defaults(func=cmd_plot)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted: every finished epoch is saved; rerun with --resume to continue", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as e:
        print(f"pyireg {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
