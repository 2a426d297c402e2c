"""One command per demonstration of the implicit biases of gradient descent (Section 3 of the
paper and the tutorial): each writes a figure (PNG) and a table (CSV) and prints the table
and its key numbers.

    python -m pyireg.experiments.tutorial NAME [--out DIR] [--quick] [--threads N] [--set KEY=VALUE ...]

NAME is one of min-norm, trace-norm, matrix-completion, init-scale, learning-rate, batch-size,
early-stopping. ``--quick`` runs a tiny version (seconds; what the tests run).
"""
from __future__ import annotations

import argparse
import ast
import inspect
import sys
import time
from pathlib import Path

from . import knobs, matrix_completion, min_norm, trace_norm
from ._common import markdown_table

# name -> (function, what it shows, the settings of --quick)
DEMOS = {
    "min-norm": (min_norm.demo, "GD on underdetermined least squares finds the minimum-norm solution",
                 dict(n=8, p=30, iters=400, lams=(1.0, 1e-2, 1e-4))),
    "trace-norm": (trace_norm.demo, "weight decay on a linear network is trace-norm regularization (Eq. 3)",
                   dict(widths=(1, 2, 4), lams=(0.1, 1.0), n=40, d=5, k=4, rank=2, max_iters=3000)),
    "matrix-completion": (matrix_completion.demo, "GD from a small init finds the minimum nuclear-norm completion",
                          dict(n=12, rank=2, observed_factors=(4,), init_scales=(0.3, 1e-4), widths=(2, 12),
                               iters=500, solver="CLARABEL")),
    "init-scale": (knobs.init_scale_demo, "initialization scale: lazy vs rich training of ReLU networks",
                   dict(widths=(8, 32), scales=(0.3, 1.0), seeds=(0,), epochs=2, n_train=200, n_val=100, n_test=100)),
    "learning-rate": (knobs.learning_rate_demo, "learning-rate scale of SGD on ReLU networks",
                      dict(widths=(8, 32), lrs=(0.01, 0.1), seeds=(0,), epochs=2, n_train=200, n_val=100,
                           n_test=100)),
    "batch-size": (knobs.batch_size_demo, "batch size and lr / batch size as the noise scale of SGD",
                   dict(batch_sizes=(20, 50), ratios=(1e-3, 3e-3), width=16, seeds=(0,), time_budget=0.6,
                        n_train=200, n_val=100, n_test=100)),
    "early-stopping": (knobs.early_stopping_demo, "early stopping vs training to the end, with label noise",
                       dict(widths=(8, 32), noise_levels=(0.0, 0.2), seeds=(0,), epochs=3, n_train=200, n_val=100,
                            n_test=100)),
}


def _check_overrides(name, overrides):
    known = set(inspect.signature(DEMOS[name][0]).parameters) - {"out", "_"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"overrides: {name} has no setting {', '.join(unknown)}; its settings: "
                         f"{', '.join(sorted(known))}")


def run(name, out="results/demos", *, quick=False, threads=None, **overrides):
    """Run demonstration ``name``; writes ``out/NAME.png`` and ``out/NAME.csv``. Returns its
    DemoResult."""
    if name not in DEMOS:
        raise ValueError(f"name: expected one of {', '.join(DEMOS)}, got {name!r}")
    fn, _, small = DEMOS[name]
    _check_overrides(name, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kw = dict(small) if quick else {}
    kw.update(overrides)
    if threads is not None:
        kw["threads"] = threads
    t0 = time.perf_counter()
    result = fn(out, **kw)
    result.seconds = time.perf_counter() - t0
    result.table.to_csv(out / f"{name}.csv", index=False)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="pyireg demo", description="Demonstrations of the implicit biases of gradient descent: "
        + "; ".join(f"{k}: {v[1]}" for k, v in DEMOS.items()))
    parser.add_argument("name", choices=list(DEMOS), help="which demonstration")
    parser.add_argument("--out", default="results/demos", help="directory for NAME.png and NAME.csv (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a tiny version that runs in seconds")
    parser.add_argument("--threads", type=int, default=None,
                        help="native threads (default: 1 for the linear demos, the current setting for the others)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting of the demonstration, e.g. --set epochs=20 --set 'widths=(8, 64)' "
                             "(a Python literal; repeatable)")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            parser.error(f"--set: expected KEY=VALUE, got {item!r}")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parser.error(f"--set {key}: expected a Python literal (number, string, tuple), got {value!r}")
    try:
        _check_overrides(args.name, overrides)
    except ValueError as e:
        parser.error(str(e))
    result = run(args.name, args.out, quick=args.quick, threads=args.threads, **overrides)
    print(markdown_table(result.table))
    print()
    for line in result.summary:
        print("- " + line)
    print(f"\nwrote {result.figure} and {Path(args.out) / (args.name + '.csv')} in {result.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
