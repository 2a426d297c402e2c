"""The commands: each checks its arguments and its output paths, then runs."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .args import (
    _check_dir_target,
    _check_file_target,
    _repetitions,
    _reps_text,
    _threads,
    stop_rule,
)
from .table import given


def cmd_bench(args) -> int:
    if args.device == "cuda":                            # the GPU benchmark: pyireg/bench_cuda.py
        from .. import bench_cuda
        return bench_cuda.main(["--emulate"] if args.emulate else [])
    if args.emulate:
        raise ValueError("--emulate: only with --device cuda")
    for opt in ("socket_bandwidth", "segmented_efficiency", "predict_threads"):
        if getattr(args, opt) is not None and not args.roofline:
            raise ValueError(f"--{opt.replace('_', '-')}: only with --roofline")
    if args.roofline and args.scaling:
        raise ValueError("--roofline: not with --scaling (each is its own run)")
    if not (args.roofline or args.scaling) and "custom" in args.workload and not args.widths:
        raise ValueError("--widths: --workload custom needs its widths, e.g. --widths 1:64")
    if args.json:
        _check_file_target(args.json, "--json")          # before minutes of timing, not after
    from .. import _core, _env
    if args.simd is not None and not _core.simd_available(args.simd):
        raise ValueError(f"--simd: '{args.simd}' is not available on this CPU/build")
    if _env.WAIT_BY_PYIREG and getattr(args, "_argv", None) is not None:
        # pyireg chose the OpenMP wait of this process, torch's operations included (under the
        # passive wait torch's rows ran up to 2.7x slower). The timings run in a child under
        # libgomp's own default (a GOMP_SPINCOUNT pyireg leaves alone), every row alike.
        import subprocess
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        env["GOMP_SPINCOUNT"] = str(_env.LIBGOMP_DEFAULT_SPINCOUNT)
        return subprocess.run([sys.executable, "-m", "pyireg", *args._argv], env=env).returncode
    before = _core.build_config()["simd_active"]
    if args.simd is not None:
        _core.set_simd(args.simd)
    try:
        return _bench(args)
    finally:
        _core.set_simd(before)


def _bench(args) -> int:
    from .. import bench
    _threads(args)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    if args.roofline:
        report = {"roofline": bench.run_roofline(
            workloads=("dense", "pow2"), predict_threads=tuple(args.predict_threads or bench.PREDICT_THREADS),
            socket_bandwidth=args.socket_bandwidth or bench.SOCKET_BANDWIDTH,
            segmented_efficiency=args.segmented_efficiency or bench.SEGMENTED_EFFICIENCY)}
        print()
        print(bench.format_roofline(report["roofline"]))
    elif args.scaling:
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
    from .. import data as D
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
    from ..distributed import RayExecutor
    return RayExecutor(address=args.address, workers=args.workers, threads_per_worker=args.threads,
                       pack_units=args.pack_units)


# the momentum flags' defaults (the parser leaves them None when not given)
MOMENTUM_DEFAULTS = {"momentum": 0.5, "momentum_step": 0.02, "momentum_max": 0.9}


def _schedule(args):
    """--schedule and its numbers: paper (the defaults of --lr, --lr-decay, --momentum*), step,
    cosine, constant, cyclic, each with --warmup epochs optionally."""
    from ..schedule import (
        ConstantSchedule,
        CosineSchedule,
        CyclicSchedule,
        PaperSchedule,
        StepSchedule,
        WarmupSchedule,
    )
    given = [f for f in MOMENTUM_DEFAULTS if getattr(args, f, None) is not None]
    from ..experiments.training import OPTIMIZERS
    optimizer = getattr(args, "optimizer", None)
    if given and optimizer in OPTIMIZERS and not OPTIMIZERS[optimizer].momentum:
        raise ValueError(f"--{given[0].replace('_', '-')}: --optimizer {optimizer} takes no momentum; leave it out")
    for f, default in MOMENTUM_DEFAULTS.items():
        if getattr(args, f, None) is None:
            setattr(args, f, default)
    cyclic_opts = ("max_lr", "cycle_up", "cycle_down", "cycle_mode", "cycle_gamma")
    if args.schedule != "cyclic":
        for opt in cyclic_opts:
            if getattr(args, opt, None) is not None:
                raise ValueError(f"--{opt.replace('_', '-')}: only with --schedule cyclic")
    if args.schedule == "cyclic":
        if args.max_lr is None:
            raise ValueError("--max-lr: --schedule cyclic needs the top of its cycle, e.g. --max-lr 0.5")
        if args.cycle_gamma is not None and args.cycle_mode != "exp_range":
            raise ValueError("--cycle-gamma: only with --cycle-mode exp_range")
        names = {"base_lr": "--lr", "max_lr": "--max-lr", "base_momentum": "--momentum",
                 "max_momentum": "--momentum-max"}
        try:
            sched = CyclicSchedule(args.lr, args.max_lr, args.cycle_up or 10, args.cycle_down,
                                   args.cycle_mode or "triangular", args.cycle_gamma or 1.0, args.momentum,
                                   args.momentum_max)
        except ValueError as e:
            field, _, rest = str(e).partition(":")
            raise ValueError(f"{names.get(field, field)}:{rest}") from None
    elif args.schedule == "paper":
        sched = PaperSchedule(args.lr, args.lr_decay, args.momentum, args.momentum_step, args.momentum_max)
    elif args.schedule == "step":
        sched = StepSchedule(args.lr, args.step_every, args.step_gamma, args.momentum)
    elif args.schedule == "cosine":
        sched = CosineSchedule(args.lr, args.epochs, 0.0, args.momentum)
    else:
        sched = ConstantSchedule(args.lr, args.momentum)
    return WarmupSchedule(sched, args.warmup) if args.warmup else sched


def cmd_sweep(args) -> int:
    from ..experiments.resources import check_memory, estimate_memory
    from ..experiments.store import check_kind, check_output
    from ..experiments.sweep import measure_names_for, sweep
    from ..experiments.training import check_device, check_optimizer
    seeds = _repetitions(args, [0])
    stop_rule(args)
    sched = _schedule(args)
    if args.epochs < 1:
        raise ValueError(f"--epochs: expected a positive integer, got {args.epochs}")
    if args.init is not None and args.init_std is not None:
        raise ValueError(f"--init: give --init or --init-std, not both (got --init {args.init})")
    try:
        measure_names_for(args.measures, args.loss)     # a margin with the squared loss: refused here
    except ValueError as e:
        raise ValueError("--" + str(e)) from None
    from ..experiments.training import OPTIMIZERS
    opt_args = {}
    for arg in ("alpha", "beta1", "beta2", "eps", "max_ls"):   # each optimizer's own arguments (the registry's)
        if getattr(args, arg) is None:
            continue
        if arg not in dict(OPTIMIZERS[args.optimizer].args):
            takers = [n for n, e in OPTIMIZERS.items() if arg in dict(e.args)]
            raise ValueError(f"--{arg.replace('_', '-')}: only with --optimizer {' or '.join(takers)}")
        opt_args[arg] = getattr(args, arg)
    try:
        check_optimizer(args.optimizer, opt_args)
    except ValueError as e:
        raise ValueError("--" + str(e).split("optimizer_args: ", 1)[-1]) from None
    check_device(args.device)
    check_kind(args.out, "sweep")
    check_output(args.out, args.resume)
    executor = _executor(args)
    if executor is None:
        _threads(args)
    ds = _load_data(args)
    n_train = len(ds.y_train)
    if OPTIMIZERS[args.optimizer].full_batch:     # one step on the whole training set per epoch
        if args.batch_size is not None and args.batch_size != n_train:
            raise ValueError(f"--batch-size: --optimizer {args.optimizer} takes the whole training set at each "
                             f"step; leave --batch-size out or pass {n_train} (the training set size), got "
                             f"{args.batch_size}")
        args.batch_size = n_train
    elif args.batch_size is None:
        args.batch_size = 100
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
          f"{args.epochs} epoch{'s' if args.epochs != 1 else ''} -> {args.out}", flush=True)
    if args.resume and not (Path(args.out) / "config.json").exists():
        print(f"--resume: nothing saved in {args.out} yet; starting a new sweep there", flush=True)
    if args.censor:
        from ..experiments.teacher import censor, censor_entire
        if args.data is None:           # a built-in data set: the teacher sees all of it, as in the paper
            ds = censor_entire(args.dataset or "mnist5k", args.censor, n_train=args.n_train, n_val=args.n_val,
                               n_test=args.n_test, split_seed=args.split_seed, data_dir=args.data_dir,
                               dtype=args.dtype, epochs=args.epochs)
        else:
            ds = censor(ds, args.censor, epochs=args.epochs)
        print(f"censored labels from an H0={args.censor} teacher: {ds.info['censor']['changed']} changed", flush=True)
    t0 = time.perf_counter()
    try:
        res = sweep(ds, args.widths, seeds=seeds, weight_decays=args.weight_decay, lr_scales=args.lr_scale,
                    epochs=args.epochs, batch_size=args.batch_size, drop_last=args.drop_last, schedule=sched,
                    init_std=args.init_std, init=args.init, label_noise=args.label_noise,
                    resample_split=args.resample_split,
                    out=args.out, resume=args.resume, checkpoints=args.keep_checkpoints,
                    checkpoint_every=args.checkpoint_every, progress=not args.quiet,
                    tag=name, max_memory=args.max_memory, executor=executor, measures=args.measures,
                    activation=args.activation, loss=args.loss, optimizer=args.optimizer, optimizer_args=opt_args,
                    device=args.device, init_transform=None if args.unbalanced is None else "unbalanced",
                    init_transform_args=None if args.unbalanced is None else {"factor": args.unbalanced},
                    stop_when=args.stop_when, patience=args.patience)
    except (ValueError, MemoryError) as e:     # the executor's arguments are options here: name those
        for arg, opt in (("threads_per_worker", "--threads"), ("workers", "--workers"), ("address", "--address"),
                         ("pack_units", "--pack-units"), ("checkpoints", "--keep-checkpoints"),
                         ("checkpoint_every", "--checkpoint-every")):
            if executor is not None and str(e).startswith(arg + ":"):
                raise type(e)(opt + str(e)[len(arg):]) from None
        raise
    print(f"{len(res.history)} rows in {time.perf_counter() - t0:.1f} s -> {Path(args.out) / 'history.parquet'}")
    if not args.quiet:
        from ..plots import results_table
        print(results_table(res))
    return 0


def cmd_reproduce(args) -> int:
    from ..experiments import paper
    from ..experiments.results import load_source
    from ..plots import plot_results, results_table
    if args.figure == "figure1":
        for opt, val in (("--weight-decay", args.weight_decay), ("--label-noise", args.label_noise),
                         ("--teacher-data", args.teacher_data)):
            if val is not None:
                raise ValueError(f"{opt}: figure1 is the paper's Figure 1, trained without explicit regularization "
                                 "or label noise; use figure2, or pyireg sweep for other settings")
    stop_rule(args)
    out = Path(args.out or f"results/{args.figure}-{args.dataset}")
    paper.check_outputs(out, args.figure, args.resume)
    _threads(args)
    kw = dict(dataset=args.dataset, data_dir=args.data_dir, widths=args.widths, epochs=args.epochs,
              seeds=_repetitions(args, paper.FIGURE1["seeds"] if args.figure == "figure1" else paper.FIGURE2["seeds"]),
              progress=not args.quiet, resume=args.resume, resample_split=args.resample_split,
              checkpoints=args.keep_checkpoints, checkpoint_every=args.checkpoint_every,
              stop_when=args.stop_when, patience=args.patience)
    from .. import _profile
    _profile.reset()
    _profile.enable(args.profile)
    t0 = time.perf_counter()
    try:
        if args.figure == "figure1":
            paper.reproduce_figure1(out, **kw)
        else:
            paper.reproduce_figure2(out, weight_decays=args.weight_decay, noise=args.label_noise,
                                    teacher_data=args.teacher_data or "entire", **kw)
        with _profile.section("figure"):
            rows, meta = load_source(out)
            png = plot_results(rows, out / f"{meta.get('figure', 'sweep')}.png", meta=meta)
    finally:
        _profile.enable(False)
    total = time.perf_counter() - t0
    print(f"{args.figure} on {args.dataset}: {total:.1f} s; figure {png}")
    if not args.quiet:
        print(results_table(rows, meta=meta))
    if args.profile:
        print()
        print(_profile.report(total))
    return 0


def cmd_experiment(args) -> int:
    """A thesis experiment or a demonstration of the command table: its settings from the
    options given, its output directory checked before anything runs."""
    entry = args.entry
    kw = given(args, entry)
    out = _check_dir_target(args.out or entry.out, "--out")
    if args.figure if entry.kind == "reproduce" else False:
        from ..plots import check_figure_suffix
        _check_file_target(args.figure, "--figure")
        check_figure_suffix(args.figure, "--figure")
    _threads(args)
    t0 = time.perf_counter()
    if entry.kind == "demo":
        from ..experiments import tutorial
        from ..experiments._common import markdown_table
        result = tutorial.run(entry.name, out, quick=args.quick, threads=args.threads, **kw)
        if not args.quiet:
            print(markdown_table(result.table))
            print()
            for line in result.summary:
                print("- " + line)
        print(f"\nwrote {result.figure} and {out / (entry.name + '.csv')} in {result.seconds:.1f} s")
        return 0
    if entry.name == "sgd-vs-cg":
        from ..experiments import sgd_vs_cg
        from ..experiments._common import markdown_table
        from ..experiments.stopping import parse_stop_when
        parse_stop_when(kw.get("stop_when"), kw.get("patience", 1), what=("--stop-when", "--patience"))
        table, lines, png, head = sgd_vs_cg.reproduce_sgd_vs_cg(out, seed=args.seed, figure=args.figure,
                                                                quick=args.quick, progress=not args.quiet, **kw)
        if not args.quiet:
            print(head + "\n")
            print(markdown_table(table))
            print()
        for line in lines:
            print("- " + line)
        print(f"\nsgd-vs-cg: {time.perf_counter() - t0:.1f} s -> {out} (comparison.csv, comparison.md, {png.name})")
        return 0
    from ..experiments import thesis
    if entry.name == "measures":
        _, summary = thesis.reproduce_measures(out, seed=args.seed, figure=args.figure, progress=not args.quiet, **kw)
        if not args.quiet:
            print(summary.to_string(index=False))
    else:
        res, inv, _ = thesis.reproduce_pathsgd(out, seed=args.seed, figure=args.figure, progress=not args.quiet, **kw)
        if not args.quiet:
            print(thesis.pathsgd_table(res).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
            print("test-error gap between the two initializations:", inv)
    print(f"{entry.name}: {time.perf_counter() - t0:.1f} s -> {out}")
    return 0


def cmd_plot(args) -> int:
    from ..plots import plot_results, results_table
    if args.output:
        _check_file_target(args.output, "--output")
    from ..experiments.results import load_source
    rows, meta = load_source(args.results)
    try:
        png = plot_results(rows, args.output or Path(args.results) / f"{meta.get('figure', 'sweep')}.png",
                           meta=meta)
    except (ValueError, OSError) as e:            # the file's checks, named as the option
        if str(e).startswith("out_file:"):
            raise type(e)("--output" + str(e)[len("out_file"):]) from None
        raise
    print(f"wrote {png}")
    print(results_table(rows, meta=meta))
    return 0


def _save_table(table, path: Path, seconds: float, extra: str = "") -> None:
    import pandas as pd
    table.to_csv(path, index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    print(f"\n{seconds:.1f} s; {extra}table {path}")


def cmd_theorem1(args) -> int:
    from ..experiments import theory_demo as TD
    k = args.out_features
    if k == 1 and args.loss == "cross_entropy":
        raise ValueError("--loss: --out-features 1 has one output: use squared or logistic (labels +-1)")
    if k != 1 and args.loss in ("squared", "logistic"):
        raise ValueError(f"--loss: {args.loss} is for --out-features 1 (scalar v_h); k >= 2 uses cross_entropy")
    size = dict(TD.QUICK) if args.quick else dict(n=300, width=64 if k == 1 else 128, iters=500 if k == 1 else 2000)
    for key in size:
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    out = _check_dir_target(args.out, "--out")
    _threads(args)
    t0 = time.perf_counter()
    # the folder is made once the tables are computed: a data error leaves nothing behind
    if k == 1:
        losses = (args.loss,) if args.loss else ("squared", "logistic")
        table = TD.theorem1_scalar_table(args.dataset, lams=args.lam, losses=losses, **size)
        out.mkdir(parents=True, exist_ok=True)
        png = TD.plot_theorem1_scalar(table, out / "theorem1.png")
    else:
        table, traces = TD.theorem1_table(args.dataset, lams=args.lam, out_features=k, **size)
        out.mkdir(parents=True, exist_ok=True)
        png = TD.plot_theorem1(traces, args.lam, out / "theorem1.png")
    _save_table(table, out / "theorem1.csv", time.perf_counter() - t0, f"figure {png}, ")
    return 0


def cmd_convex(args) -> int:
    from ..experiments import theory_demo as TD
    out = _check_dir_target(args.out, "--out")
    _threads(args)
    t0 = time.perf_counter()
    table = TD.corollary1_table(args.dataset, n=args.n, widths=args.widths, lam=args.lam[0], iters=args.iters)
    out.mkdir(parents=True, exist_ok=True)                 # after the table: a data error leaves nothing
    _save_table(table, out / "corollary1.csv", time.perf_counter() - t0)
    return 0


def cmd_data_fetch(args) -> int:
    from ..data import fetch as F
    if args.idx_dir is not None and not Path(args.idx_dir).expanduser().is_dir():
        raise FileNotFoundError(f"--idx-dir: {args.idx_dir} is not a directory")
    if args.cache_dir is not None:
        cache = Path(args.cache_dir).expanduser()
        if cache.exists() and not cache.is_dir():
            raise NotADirectoryError(f"--cache-dir: {args.cache_dir} is a file; expected a directory (made if missing)")
    path = F.fetch(args.name, cache_dir=args.cache_dir, idx_dir=args.idx_dir)
    print(path)
    return 0
