"""The command line's shared pieces: the parser classes (one-line usage errors, defaults in
the help), the argument types (each checks its value with a message saying what was expected)
and the checks of output paths made before anything runs."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..experiments._common import check_writable
from ..experiments._common import widths_arg as _widths  # noqa: F401  (the parser's type, re-exported)

DATASETS = ["mnist5k", "digits", "mnist1d", "mnist", "cifar10"]
EPOCHS = 60                      # the paper's; the default of sweep and reproduce alike
# module -> (pip package, pyireg extra) for the install hint of a missing optional dependency
_PACKAGES = {"pandas": ("pandas", "experiments"), "pyarrow": ("pyarrow", "experiments"),
             "matplotlib": ("matplotlib", "experiments"), "tqdm": ("tqdm", "experiments"),
             "mlxtend": ("mlxtend", "experiments"), "sklearn": ("scikit-learn", "experiments"),
             "mnist1d": ("mnist1d", "experiments"), "torch": ("torch", "torch"), "ray": ("ray", "ray")}

_EPILOG = """examples:
  pyireg sweep --widths pow2:1024 --reps 3 --weight-decay 0,1e-4 --out results/mine
  pyireg sweep --widths pow2:1024 --optimizer path_sgd --lr 0.02 --out results/path   (again with --resume after a kill)
  pyireg sweep --data mydata.csv --label-column label --widths 1:64 --out results/own
  pyireg sweep --widths pow2:4096 --reps 5 --ray --address HEAD:6379 --out /shared/results/big
  pyireg reproduce figure2 --resume
  pyireg reproduce pathsgd --widths 4,64,1024 --seed 0
  pyireg demo init-scale --quick
  pyireg plot results/mine
"""


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that the sweep stops the way Ctrl-C stops it."""


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (what, and where to read more), not the whole usage text."""

    def error(self, message):
        # the subcommand's usage in one line (its options are listed by --help), then the error
        positional = [a.metavar or a.dest for a in self._actions if not a.option_strings and a.dest != "help"]
        sys.stderr.write(f"usage: {self.prog} [OPTIONS]{''.join(' ' + str(p).upper() for p in positional)}\n")
        sys.stderr.write(f"{self.prog}: error: {message}; see '{self.prog} --help'\n")
        sys.exit(2)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show."""

    def _get_help_string(self, action):
        h = action.help or ""
        # by identity: a default of 0 equals False, and is a default to show (--warmup 0, --split-seed 0)
        if "%(default)" in h or any(action.default is v for v in (None, False, argparse.SUPPRESS)) \
                or not action.option_strings:
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
    from ..experiments.sweep import measure_names_for
    try:
        return list(measure_names_for([x.strip() for x in text.split(",") if x.strip()], None))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("measures: ").removeprefix("names: ")) from None


def _stop_when(text):
    """'zero-error' or 'loss:TOL', checked as the loop checks it (pyireg.experiments.stopping)."""
    from ..experiments.stopping import parse_stop_when
    try:
        parse_stop_when(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("stop_when: ")) from None
    return text


def add_stop_options(q) -> None:
    """--stop-when and --patience: the loop's per-network stopping rule (sweep and the figures)."""
    q.add_argument("--stop-when", type=_stop_when, default=None, metavar="RULE",
                   help="train each network to convergence, --epochs being the cap: 'zero-error' (training error 0) "
                        "or 'loss:TOL' (training loss at most TOL), held for --patience epochs; a converged network "
                        "is frozen, and the run ends when every network has converged (default: every network "
                        "trains every epoch)")
    q.add_argument("--patience", type=_positive, default=1, metavar="P",
                   help="epochs in a row the --stop-when criterion must hold")


def stop_rule(args):
    """The parsed rule of --stop-when / --patience (checked before anything is written)."""
    from ..experiments.stopping import parse_stop_when
    return parse_stop_when(args.stop_when, args.patience, what=("--stop-when", "--patience"))


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
    if not v >= 0 or not math.isfinite(v) or v >= 2 ** 63:
        raise argparse.ArgumentTypeError(f"expected a non-negative size below 8 EiB, got {text!r}")
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
        from .. import _core
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
    from ..experiments.store import check_output
    try:
        check_output(path, resume=True)
    except NotADirectoryError as e:
        raise NotADirectoryError(str(e).replace("out:", f"{what}:", 1)) from None
    return Path(path)


