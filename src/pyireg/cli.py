"""pyireg: width sweeps of two-layer ReLU networks and implicit regularization, on a fused
native core."""
from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path

from .experiments._common import check_writable, widths_arg as _widths

DATASETS = ["mnist5k", "digits", "mnist1d", "mnist", "cifar10"]
EPOCHS = 60                      # the paper's; the default of sweep and reproduce alike
# module -> (pip package, pyireg extra) for the install hint of a missing optional dependency
_PACKAGES = {"pandas": ("pandas", "experiments"), "pyarrow": ("pyarrow", "experiments"),
             "matplotlib": ("matplotlib", "experiments"), "tqdm": ("tqdm", "experiments"),
             "mlxtend": ("mlxtend", "experiments"), "sklearn": ("scikit-learn", "experiments"),
             "mnist1d": ("mnist1d", "experiments"), "torch": ("torch", "torch"), "ray": ("ray", "ray")}

_EPILOG = """examples:
  pyireg sweep --widths pow2:1024 --reps 3 --weight-decay 0,1e-4 --out results/mine
  pyireg sweep --data mydata.csv --label-column label --widths 1:64 --out results/own
  pyireg sweep --widths pow2:4096 --reps 5 --ray --address HEAD:6379 --out /shared/results/big
  pyireg reproduce figure2 --resume
  pyireg plot results/mine
"""


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that the sweep stops the way Ctrl-C stops it."""


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (what, and where to read more), not the whole usage text."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}; see '{self.prog} --help'\n")
        sys.exit(2)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show."""

    def _get_help_string(self, action):
        h = action.help or ""
        if "%(default)" in h or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return h
        return h + " (default: %(default)s)"


class _TopFormatter(argparse.RawDescriptionHelpFormatter, _Formatter):
    """The top-level help keeps the line breaks of its examples."""


# ----------------------------------------------------------------------------- argument types
def _number(lo=-math.inf, hi=math.inf, lo_in=True, hi_in=True, kind=float):
    """An argparse type: a number of ``kind`` in the interval, checked with a message saying it."""
    if hi == math.inf:
        span = f"{'>=' if lo_in else '>'} {lo:g}"
    elif kind is float:
        span = f"in {'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"
    else:
        span = f"in {lo:g}..{hi:g}"

    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'} "
                                             f"{span}, got {text!r}") from None
        ok = math.isfinite(v) and (v >= lo if lo_in else v > lo) and (v <= hi if hi_in else v < hi)
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'} {span}, "
                                             f"got {text}")
        return v
    parse.__name__ = "number"
    return parse


def _list(item, what):
    def parse(text):
        parts = [x.strip() for x in text.split(",") if x.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
        return [item(x) for x in parts]
    parse.__name__ = what
    return parse


def _measures(text):
    """'all' or comma-separated measure names, checked against pyireg.measures."""
    text = text.strip()
    if text == "all":
        return "all"
    from .experiments.sweep import _measure_names
    try:
        return list(_measure_names([x.strip() for x in text.split(",") if x.strip()]))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("measures: ").removeprefix("names: ")) from None


def _seeds(text):
    seeds = _list(_number(0, kind=int), "non-negative integers")(text)
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds (one repetition each), got {text}")
    return seeds


def _size(text):
    """'64G', '512M', '1.5T' or a number of bytes."""
    units = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in units else ""
    try:
        v = float(t[:len(t) - len(unit)]) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 64G or 512M, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative size, got {text!r}")
    return int(v)


_positive = _number(1, kind=int)
_fraction = _number(0.0, 1.0, True, False)


def _repetitions(args, default):
    """Seeds from --reps N (0..N-1) or --seeds LIST, or the default."""
    if args.reps is not None:
        return list(range(args.reps))
    return args.seeds if args.seeds is not None else list(default)


def _reps_text(seeds) -> str:
    note = f"; for {seeds[0]} repetitions use --reps {seeds[0]}" if len(seeds) == 1 and seeds[0] > 1 else ""
    return f"{len(seeds)} repetition{'s' if len(seeds) > 1 else ''} (seed{'s' if len(seeds) > 1 else ''} " \
           f"{','.join(map(str, seeds))}{note})"


def _threads(args):
    if getattr(args, "threads", None):
        from . import _core
        _core.set_num_threads(args.threads)


def _check_file_target(path, what: str) -> Path:
    """A file about to be written: its folder must exist and be writable, and it must not be a
    folder; checked before a long run, by creating and removing a probe file."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what}: {path} is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"{what}: the folder {parent} does not exist; create it or choose another path")
    check_writable(parent, what, "path")
    return path


def _check_dir_target(path, what: str) -> Path:
    from .experiments.sweep import check_output
    try:
        check_output(path, resume=True)
    except NotADirectoryError as e:
        raise NotADirectoryError(str(e).replace("out:", f"{what}:", 1)) from None
    return Path(path)


# ----------------------------------------------------------------------------- commands
def cmd_bench(args) -> int:
    if getattr(args, "device", "cpu") == "cuda":        # the GPU benchmark: pyireg/bench_cuda.py
        from . import bench_cuda
        return bench_cuda.main(["--emulate"] if args.emulate else [])
    if args.json:
        _check_file_target(args.json, "--json")          # before minutes of timing, not after
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
                    raise ValueError("--widths: --workload custom needs its widths, e.g. --widths 1:64")
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


def _load_data(args):
    from . import data as D
    if args.data is not None:
        if args.label_column is not None and str(args.data).lower().endswith(".npz"):
            raise ValueError("--label-column: an .npz file holds its labels in the array y; the option is for "
                             ".csv and .parquet files")
        return D.load_file(args.data, label_column=args.label_column or "label", test_path=args.test_data,
                           n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, seed=args.split_seed,
                           standardize=not args.no_standardize, dtype=args.dtype)
    for opt in ("label_column", "test_data"):
        if getattr(args, opt) is not None:
            raise ValueError(f"--{opt.replace('_', '-')}: only with --data FILE")
    if args.no_standardize:
        raise ValueError("--no-standardize: only with --data FILE (the built-in data sets are always standardized)")
    return D.load(args.dataset or "mnist5k", data_dir=args.data_dir, n_train=args.n_train, n_val=args.n_val,
                  n_test=args.n_test, seed=args.split_seed, dtype=args.dtype)


def _executor(args):
    """The RayExecutor of --ray (--threads is then each worker's), or None for a local sweep."""
    if not args.ray:
        for opt in ("address", "workers", "pack_units"):
            if getattr(args, opt) is not None:
                raise ValueError(f"--{opt.replace('_', '-')}: only with --ray")
        return None
    from .distributed import RayExecutor
    return RayExecutor(address=args.address, workers=args.workers, threads_per_worker=args.threads,
                       pack_units=args.pack_units)


def cmd_sweep(args) -> int:
    from . import data as D
    from .experiments.sweep import check_memory, check_output, estimate_memory, sweep
    from .schedule import PaperSchedule
    seeds = _repetitions(args, [0])
    sched = PaperSchedule(args.lr, args.lr_decay, args.momentum, args.momentum_step, args.momentum_max)
    check_output(args.out, args.resume)
    executor = _executor(args)
    if executor is None:
        _threads(args)
    ds = _load_data(args)
    if args.batch_size > len(ds.y_train):
        raise ValueError(f"--batch-size: expected 1..{len(ds.y_train)} (the training set size), got {args.batch_size}")
    grid = len(args.weight_decay) * len(args.lr_scale)
    if executor is None:                # in packs, the sweep checks each machine's packs
        check_memory(estimate_memory(args.widths, ds.num_features, ds.num_classes, networks_per_width=grid,
                                     batch_size=args.batch_size, dtype=ds.dtype), args.max_memory)
    name = ds.info.get("name", "data")
    print(f"sweep {name} ({len(ds.y_train)} train / {len(ds.y_val)} validation / {len(ds.y_test)} test, "
          f"d={ds.num_features}, k={ds.num_classes}): {len(args.widths)} widths x {len(args.weight_decay)} weight "
          f"decay(s) x {len(args.lr_scale)} lr scale(s) = {len(args.widths) * grid} networks, {_reps_text(seeds)}, "
          f"{args.epochs} epochs -> {args.out}", flush=True)
    if args.censor:
        ds = D.censor(ds, args.censor, epochs=args.epochs)
        print(f"censored labels from an H0={args.censor} teacher: {ds.info['censor']['changed']} changed", flush=True)
    t0 = time.perf_counter()
    try:
        res = sweep(ds, args.widths, seeds=seeds, weight_decays=args.weight_decay, lr_scales=args.lr_scale,
                    epochs=args.epochs, batch_size=args.batch_size, drop_last=args.drop_last, schedule=sched,
                    init_std=args.init_std, label_noise=args.label_noise, resample_split=args.resample_split,
                    out=args.out, resume=args.resume, checkpoints=args.keep_checkpoints, progress=not args.quiet,
                    tag=name, max_memory=args.max_memory, executor=executor, measures=args.measures,
                    activation=args.activation, loss=args.loss)
    except (ValueError, MemoryError) as e:     # the executor's arguments are options here: name those
        for arg, opt in (("threads_per_worker", "--threads"), ("workers", "--workers"), ("address", "--address"),
                         ("pack_units", "--pack-units"), ("checkpoints", "--keep-checkpoints")):
            if executor is not None and str(e).startswith(arg + ":"):
                raise type(e)(opt + str(e)[len(arg):]) from None
        raise
    print(f"{len(res.history)} rows in {time.perf_counter() - t0:.1f} s -> {Path(args.out) / 'history.parquet'}")
    from .plots import results_table
    print(results_table(res))
    return 0


def cmd_reproduce(args) -> int:
    from .experiments import paper
    from .plots import plot_results, results_table
    if args.figure == "figure1":
        for opt, val in (("--weight-decay", args.weight_decay), ("--label-noise", args.label_noise)):
            if val is not None:
                raise ValueError(f"{opt}: figure1 is the paper's Figure 1, trained without explicit regularization "
                                 "or label noise; use figure2, or pyireg sweep for other settings")
    out = Path(args.out or f"results/{args.figure}-{args.dataset}")
    paper.check_outputs(out, args.figure, args.resume)
    _threads(args)
    kw = dict(dataset=args.dataset, data_dir=args.data_dir, widths=args.widths, epochs=args.epochs,
              seeds=_repetitions(args, paper.FIGURE1["seeds"] if args.figure == "figure1" else paper.FIGURE2["seeds"]),
              progress=not args.quiet, resume=args.resume, resample_split=args.resample_split,
              checkpoints=args.keep_checkpoints)
    from . import _profile
    _profile.reset()
    _profile.enable(args.profile)
    t0 = time.perf_counter()
    try:
        if args.figure == "figure1":
            paper.reproduce_figure1(out, **kw)
        else:
            paper.reproduce_figure2(out, weight_decays=args.weight_decay, noise=args.label_noise, **kw)
        with _profile.section("figure"):
            png = plot_results(out)
    finally:
        _profile.enable(False)
    total = time.perf_counter() - t0
    print(f"{args.figure} on {args.dataset}: {total:.1f} s; figure {png}")
    print(results_table(out))
    if args.profile:
        print()
        print(_profile.report(total))
    return 0


def cmd_demo(args) -> int:
    from .experiments import tutorial
    return tutorial.main(args.argv)


def cmd_plot(args) -> int:
    from .plots import plot_results, results_table
    if args.output:
        _check_file_target(args.output, "--output")
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
    out = _check_dir_target(args.out, "--out")
    _threads(args)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    table, traces = TD.theorem1_table(args.dataset, n=args.n, lams=args.lam, width=args.width, iters=args.iters)
    png = TD.plot_theorem1(traces, args.lam, out / "theorem1.png")
    _save_table(table, out / "theorem1.csv", time.perf_counter() - t0, f"figure {png}, ")
    return 0


def cmd_convex(args) -> int:
    from .experiments import theory_demo as TD
    out = _check_dir_target(args.out, "--out")
    _threads(args)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    table = TD.corollary1_table(args.dataset, n=args.n, widths=args.widths, lam=args.lam[0], iters=args.iters)
    _save_table(table, out / "corollary1.csv", time.perf_counter() - t0)
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    p = _Parser(prog="pyireg", description=__doc__.strip(), formatter_class=_TopFormatter, epilog=_EPILOG)
    p.add_argument("--version", action="version", version=f"pyireg {__version__}")
    p.add_argument("--traceback", action="store_true",
                   help="show the Python traceback of an error instead of a one-line message")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    mk = lambda name, **kw: sub.add_parser(name, formatter_class=_Formatter, **kw)

    b = mk("bench", help="benchmark the native core against PyTorch formulations",
           description="Time width-sweep training and evaluation, native vs PyTorch, with useful "
                       "GFLOP/s and ratios to the matmul peak measured in the same run.")
    b.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: every width 1..4096 on 50,000 samples on the GPU against torch on the same GPU")
    b.add_argument("--emulate", action="store_true", help="with --device cuda: a tiny run through the emulation")
    b.add_argument("--workload", nargs="+", choices=["dense", "pow2", "eval", "custom"], default=["dense", "pow2", "eval"],
                   help="workloads to time; custom: training on --widths and --samples")
    b.add_argument("--widths", type=_widths, default=None, help="widths of the custom workload: '1,2,4', '1:64' or 'pow2:4096'")
    b.add_argument("--samples", type=_positive, default=1000, help="samples of the custom workload (a multiple of 100)")
    b.add_argument("--implementations", nargs="+", metavar="NAME",
                   choices=["native-1thread", "module-fused", "module-losses", "module-autograd", "loop", "buckets",
                            "packed-index-add", "packed-embedding-bag", "packed-compiled"],
                   help="rows to run besides pyireg native (default: all): native-1thread, module-fused, "
                        "module-losses, module-autograd (pyireg.torch from a torch training loop), loop, buckets, "
                        "packed-index-add, packed-embedding-bag, packed-compiled")
    b.add_argument("--max-seconds", type=_number(0.0, lo_in=False), default=30.0,
                   help="time budget per implementation; slower ones are timed on the first steps and extrapolated")
    b.add_argument("--rounds", type=_positive, default=3,
                   help="alternating timing rounds; each implementation keeps its best")
    b.add_argument("--bucket-counts", type=_list(_positive, "positive integers"), default=[8, 16, 32, 64, 128, 256],
                   help="bucket counts tried for the torch width buckets")
    b.add_argument("--tune-steps", type=_positive, default=2,
                   help="steps timed per bucket count and layout when tuning (after one warm-up step)")
    b.add_argument("--compile-budget", type=_number(0.0, lo_in=False), default=120.0,
                   help="seconds torch.compile may take (in a fresh process) before its row is skipped")
    b.add_argument("--scaling", action="store_true",
                   help="instead of the workloads: time per step and peak memory against units and against samples, "
                        "pyireg native and --scaling-torch, one fresh process per point")
    b.add_argument("--scaling-repeats", type=_list(_positive, "positive integers"), default=[1, 4, 16, 64, 256, 1024],
                   help="repeats of the width mix 1..64 (2,080 units each) for the units sweep")
    b.add_argument("--scaling-samples", type=_list(_positive, "positive integers"),
                   default=[1000, 4000, 16000, 64000, 256000], help="samples of the samples sweep")
    b.add_argument("--scaling-fixed-repeats", type=_positive, default=64,
                   help="repeats of the width mix in the samples sweep (64: 133,120 units)")
    b.add_argument("--scaling-steps", type=_positive, default=5, help="steps timed per point, the best kept")
    b.add_argument("--scaling-torch", default="buckets",
                   choices=["loop", "buckets", "packed-index-add", "packed-embedding-bag", "packed-compiled"],
                   help="the torch row of the scaling sweep (buckets: the strongest torch row of the ladder)")
    b.add_argument("--threads", type=_positive, default=None, help="threads for pyireg and torch (default: all cores)")
    b.add_argument("--json", help="save the report to this JSON file (its folder is checked before the run)")
    b.set_defaults(func=cmd_bench)

    def common(q, reps_default="1"):
        q.add_argument("--threads", type=_positive, default=None, metavar="N",
                       help="native threads (default: all cores; with --ray, threads per worker, default 1)")
        q.add_argument("--quiet", action="store_true", help="no progress output")
        q.add_argument("--resume", action="store_true",
                       help="continue the run saved in the output directory (it must have the same settings)")
        q.add_argument("--keep-checkpoints", choices=["resume", "final", "all"], default="resume",
                       help="checkpoints kept: only what --resume needs, also each repetition's final weights, "
                            "or every epoch's")
        reps = q.add_mutually_exclusive_group()
        reps.add_argument("--reps", type=_positive, default=None, metavar="N",
                          help=f"number of repetitions, with seeds 0..N-1 (default: {reps_default})")
        reps.add_argument("--seeds", type=_seeds, default=None, metavar="LIST",
                          help="the seeds of the repetitions, e.g. 0,1,2 (one repetition per seed; "
                               "'--seeds 5' is the one repetition of seed 5)")
        q.add_argument("--resample-split", action="store_true",
                       help="draw the training/validation split again for each repetition (the test split is kept)")
        q.add_argument("--data-dir", metavar="DIR", help="directory with the MNIST IDX files or the CIFAR-10 python batches "
                                          "(or set PYIREG_DATA)")

    s = mk("sweep", help="train a grid of widths x weight decays x repetitions and record every epoch",
           description="A width sweep with the paper's protocol. Results go to OUT/history.parquet after every "
                       "epoch, committed atomically with a checkpoint: an interrupted sweep (Ctrl-C, kill, full "
                       "disk) continues with --resume to exactly the numbers of an uninterrupted run.")
    data = s.add_argument_group("data")
    src = data.add_mutually_exclusive_group()
    src.add_argument("--dataset", choices=DATASETS, default=None,       # None: --data can tell it was not given
                     help="a built-in data set: mnist5k (embedded), digits, mnist1d, or mnist / cifar10 from "
                          "--data-dir (default: mnist5k)")
    src.add_argument("--data", metavar="FILE",
                     help="your own data: .npz (arrays X, y, optionally X_test, y_test), or .csv / .parquet with "
                          "one row per sample and a label column")
    data.add_argument("--label-column", default=None, metavar="NAME",
                      help="the label column of a .csv / .parquet --data file (default: label)")
    data.add_argument("--test-data", metavar="FILE", help="a separate test file of the same kind as --data")
    data.add_argument("--no-standardize", action="store_true",
                      help="keep the features of --data as they are (by default each is standardized with the "
                           "training split's mean and standard deviation)")
    data.add_argument("--n-train", type=_positive, metavar="N", help="training samples (default: the data set's split, or "
                                                        "what remains after validation and test for --data)")
    data.add_argument("--n-val", type=_positive, metavar="N", help="validation samples (default: the data set's split; "
                                                      "20%% for --data)")
    data.add_argument("--n-test", type=_positive, metavar="N", help="test samples (default: the data set's split; 20%% for "
                                                       "--data, or all of --test-data)")
    data.add_argument("--split-seed", type=_number(0, kind=int), default=0, metavar="SEED", help="seed of the shuffle before splitting")
    data.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="model and data dtype")
    grid = s.add_argument_group("grid")
    grid.add_argument("--widths", type=_widths, default="pow2:1024", metavar="LIST", help="'1,2,4', '1:1024' or 'pow2:4096'")
    grid.add_argument("--weight-decay", type=_list(_number(0.0), "non-negative numbers"), default="0", metavar="LIST",
                      help="weight decays, e.g. 0,1e-4,1e-3")
    grid.add_argument("--lr-scale", type=_list(_number(0.0, lo_in=False), "positive numbers"), default="1", metavar="LIST",
                      help="multipliers of the learning rate")
    proto = s.add_argument_group("protocol")
    proto.add_argument("--epochs", type=_positive, default=EPOCHS, help="epochs of training, as in the paper")
    proto.add_argument("--batch-size", type=_positive, default=100, help="mini-batch size")
    proto.add_argument("--drop-last", action="store_true",
                       help="skip the last, smaller batch of an epoch (by default every sample is used)")
    proto.add_argument("--lr", type=_number(0.0, lo_in=False), default=0.1, help="initial step size")
    proto.add_argument("--lr-decay", type=_number(0.0, 1.0, False, True), default=0.99,
                       help="step size factor per epoch, in (0, 1]")
    proto.add_argument("--momentum", type=_number(0.0, 1.0, True, False), default=0.5, help="initial momentum, in [0, 1)")
    proto.add_argument("--momentum-step", type=_number(0.0, 1.0), default=0.02, help="momentum increase per epoch")
    proto.add_argument("--momentum-max", type=_number(0.0, 1.0, True, False), default=0.9,
                       help="momentum ceiling, in [0, 1)")
    proto.add_argument("--init-std", type=_number(0.0, lo_in=False), default=None,
                       help="Gaussian init std of both layers (default: 1/sqrt(fan_in) per layer)")
    lab = s.add_argument_group("labels")
    lab.add_argument("--censor", type=_positive, default=None, metavar="H0",
                     help="replace the labels by the predictions of an H0-unit teacher trained on all the data")
    lab.add_argument("--label-noise", type=_fraction, default=0.0, metavar="FRACTION",
                     help="fraction of training labels changed at random, drawn anew for each repetition")
    outg = s.add_argument_group("output")
    outg.add_argument("--out", required=True, metavar="DIR", help="output directory (checked before anything runs)")
    outg.add_argument("--max-memory", type=_size, default=None, metavar="SIZE",
                      help="memory the sweep may use, e.g. 64G (default: what is available; 0: no check); with "
                           "--ray, the packs trained at once on one machine")
    common(outg)
    dist = s.add_argument_group("distributed (Ray)", "The grid is cut into packs of networks of similar cost, each "
                                "trained by one Ray task; the history is the same, bit for bit, as without --ray. "
                                "--threads is then each worker's; --resume skips the finished packs.")
    dist.add_argument("--ray", action="store_true",
                      help="train the packs as Ray tasks: on an embedded local Ray sized to this machine (started "
                           "and stopped here), or the cluster at --address or $RAY_ADDRESS; needs pyireg[ray]")
    dist.add_argument("--address", default=None, metavar="ADDRESS",
                      help="a running Ray cluster: its head's HOST:6379, or 'auto' on a node of it; --out must then be "
                           "a directory every node (and this machine) reaches at the same path (NFS or another shared "
                           "file system)")
    dist.add_argument("--workers", type=_positive, default=None, metavar="N",
                      help="packs trained at once (default: the cluster's CPUs / --threads)")
    dist.add_argument("--pack-units", type=_positive, default=None, metavar="UNITS",
                      help="hidden units per pack (default: about 4 packs per worker, at least 2048 units)")
    s.add_argument("--activation", choices=["relu", "linear"], default="relu",
                   help="the hidden units' activation; linear: the matrix-factorization model of Section 3")
    s.add_argument("--loss", choices=["cross_entropy", "squared"], default="cross_entropy",
                   help="squared: 1/2 the squared distance of the outputs to the label's one-hot code")
    s.add_argument("--measures", type=_measures, default=None, metavar="LIST",
                   help="complexity measures recorded every epoch as history columns: 'all' or names such as "
                        "path_l2,spectral_product,margin (see pyireg.measures)")
    s.set_defaults(func=cmd_sweep)

    r = mk("reproduce", help="run Figure 1 or 2 of the paper, or the thesis's measures / Path-SGD experiments",
           description="Figure 1: error vs width, no regularization, one repetition. Figure 2: 2,000 train / 2,000 "
                       "validation images; original labels with and without weight decay, censored labels, "
                       "censored labels with 5% noise; 5 repetitions. measures, pathsgd: the thesis's "
                       "experiments ('pyireg reproduce measures --help' lists their own options).")
    r.add_argument("figure", choices=["figure1", "figure2", "measures", "pathsgd"], help="which experiment")
    r.add_argument("--dataset", choices=DATASETS, default="mnist5k",
                   help="mnist5k (embedded), digits, mnist1d, or mnist / cifar10 from --data-dir")
    r.add_argument("--widths", type=_widths, default="pow2:2048", metavar="LIST", help="'1,2,4', '1:1024' or 'pow2:4096'")
    r.add_argument("--epochs", type=_positive, default=EPOCHS, help="epochs of training, as in the paper")
    r.add_argument("--weight-decay", type=_list(_number(0.0), "non-negative numbers"), default=None, metavar="LIST",
                   help="figure2 only: the weight decays chosen from by validation (default: 0,1e-5,1e-4,1e-3,1e-2)")
    r.add_argument("--label-noise", type=_fraction, default=None, metavar="FRACTION",
                   help="figure2 only: the label noise of its bottom row (default: 0.05)")
    r.add_argument("--out", metavar="DIR", help="output directory (default: results/FIGURE-DATASET)")
    r.add_argument("--profile", action="store_true",
                   help="print where the time went: the native training and evaluation kernels against the rest")
    common(r, reps_default="1 for figure1, 5 for figure2")
    r.set_defaults(func=cmd_reproduce)

    t = mk("theorem1", help="verify Theorem 1: weight decay (4) vs unit norm + group-l1 (5)",
           description="Solve objectives (4) and (5) on real data (k = 2 and k = 10, several lambdas, "
                       "one packed model per objective), print the comparison table, plot the objectives.")
    t.add_argument("--dataset", choices=["mnist5k", "digits", "mnist1d"], default="mnist5k", help="data set")
    t.add_argument("--n", type=_positive, default=300, help="training samples")
    t.add_argument("--lam", type=_list(_number(0.0, lo_in=False), "positive numbers"), default="1e-3,1e-2,3e-2",
                   help="regularization strengths")
    t.add_argument("--width", type=_positive, default=128, help="hidden units")
    t.add_argument("--iters", type=_positive, default=2000, help="iterations of each solver")
    t.add_argument("--threads", type=_positive, default=None, help="native threads (default: all cores)")
    t.add_argument("--out", default="results/theorem1", help="output directory")
    t.set_defaults(func=cmd_theorem1)

    c = mk("convex", help="Corollary 1: weight-decay networks vs the convex neural net",
           description="Train weight-decay networks of widths below and above n, then solve the convex "
                       "neural net over their normalized units plus random units; compare the optima "
                       "and report support sizes.")
    c.add_argument("--dataset", choices=["mnist5k", "digits", "mnist1d"], default="mnist5k", help="data set")
    c.add_argument("--n", type=_positive, default=60, help="training samples")
    c.add_argument("--widths", type=_widths, default="30,120,480", help="widths of the weight-decay networks")
    c.add_argument("--lam", type=_list(_number(0.0, lo_in=False), "positive numbers"), default="3e-3",
                   help="regularization strength (the first value is used)")
    c.add_argument("--iters", type=_positive, default=4000, help="iterations of the solvers")
    c.add_argument("--threads", type=_positive, default=None, help="native threads (default: all cores)")
    c.add_argument("--out", default="results/convex", help="output directory")
    c.set_defaults(func=cmd_convex)

    pl = mk("plot", help="plot a saved sweep or figure directory",
            description="Plot RESULTS (a directory written by sweep or reproduce) as a PNG and print a table; an "
                        "unfinished sweep is plotted and labelled as such.")
    pl.add_argument("results", help="a sweep or figure directory")
    pl.add_argument("--output", help="PNG path (default: inside RESULTS)")
    pl.set_defaults(func=cmd_plot)

    dm = mk("demo", add_help=False, help="the implicit biases of gradient descent: min-norm, trace-norm, "
                                        "matrix-completion, init-scale, learning-rate, batch-size, early-stopping",
            description="One demonstration of the tutorial or of Section 3 of the paper; "
                        "'pyireg demo --help' lists the options.")
    dm.add_argument("argv", nargs=argparse.REMAINDER, help="NAME [--out DIR] [--quick] [--threads N] [--set KEY=VALUE]")
    dm.set_defaults(func=cmd_demo)
    return p


# ----------------------------------------------------------------------------- errors
def _error_line(e: BaseException) -> str:
    """One line saying what went wrong and what to do, for the errors a person can fix."""
    if isinstance(e, ImportError):
        mod = (getattr(e, "name", None) or "").split(".")[0]
        pkg, extra = _PACKAGES.get(mod, (mod, "experiments"))
        if mod:
            return (f"this needs the Python package '{pkg}' (module '{mod}' is not installed): "
                    f"pip install \"pyireg[{extra}]\" (or pip install {pkg})")
        return f"{e}; install the extras: pip install \"pyireg[experiments]\""
    if isinstance(e, OSError):
        if len(e.args) >= 2 and isinstance(e.args[0], int):
            msg = str(e.args[1]) + (f": {e.filename}" if e.filename and str(e.filename) not in str(e.args[1]) else "")
        else:
            msg = str(e)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return (f"disk full ({msg}); free some space, then rerun the same command with --resume "
                    "(finished epochs are kept)")
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and not msg.startswith(("out:", "--")):
            return f"cannot write ({msg}); choose another output path or fix its permissions"
        return msg
    if isinstance(e, MemoryError):
        return str(e) or "out of memory; use fewer or narrower widths"
    return str(e)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    prog = "pyireg"
    print(f"{prog}: warning: {message}", file=sys.stderr)


THESIS_EXPERIMENTS = ("measures", "pathsgd")


def _thesis_command(argv):
    """For 'pyireg [--traceback] reproduce measures|pathsgd ...': (traceback?, the experiment's
    own arguments); None otherwise. The thesis's experiments read their own options."""
    i = 0
    while i < len(argv) and argv[i] == "--traceback":
        i += 1
    if len(argv) >= i + 2 and argv[i] == "reproduce" and argv[i + 1] in THESIS_EXPERIMENTS:
        return i > 0, argv[i + 1:]
    return None


def cmd_thesis(args) -> int:
    from .experiments import thesis
    return thesis.main(args.argv, experiments=THESIS_EXPERIMENTS)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    thesis_argv = _thesis_command(argv)
    if thesis_argv is not None:
        args = argparse.Namespace(command="reproduce", traceback=thesis_argv[0], argv=thesis_argv[1],
                                  func=cmd_thesis)
    else:
        parser = build_parser()
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            if args.command != "demo":   # the demo parser reads its own options (pyireg demo --help)
                parser.error(f"unrecognized arguments: {' '.join(unknown)}")
            args.argv = unknown + args.argv
    from .distributed.runner import PackError
    from .experiments.sweep import SweepStateError
    ordinary = (ValueError, TypeError, OSError, ImportError, MemoryError, SweepStateError, PackError)
    from .experiments.sweep import ChanceWarning
    old_term = signal.getsignal(signal.SIGTERM)
    terminated = []                              # remembered: Ray turns the exception into KeyboardInterrupt

    def on_term(signum, frame):
        terminated.append(signum)
        raise _Terminated

    in_main = __import__("threading").current_thread() is __import__("threading").main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, on_term)
    try:
        with warnings.catch_warnings():          # the command line shows its warnings as one line each
            warnings.simplefilter("always", ChanceWarning)
            warnings.showwarning = _show_warning
            return args.func(args)
    except KeyboardInterrupt as e:
        term = isinstance(e, _Terminated) or bool(terminated)
        print(f"\npyireg {args.command}: {'terminated' if term else 'interrupted'}: every finished "
              f"{'pack' if getattr(args, 'ray', False) else 'epoch'} is saved; rerun the same command with --resume "
              "to continue", file=sys.stderr)
        return 128 + signal.SIGTERM if term else 130
    except BrokenPipeError:                      # output piped into head, less, ...: stop quietly
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except ordinary as e:
        if args.traceback:
            raise
        print(f"pyireg {args.command}: error: {_error_line(e)}", file=sys.stderr)
        return 2
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, old_term)


if __name__ == "__main__":
    sys.exit(main())
