"""The command table: every experiment that `pyireg reproduce NAME` and `pyireg demo NAME` run,
in one registry. Each entry's settings become options of its own subcommand, written and
checked like sweep's (``--epochs 20 --widths 8,64``), generated from the experiment function's
keyword arguments: a setting's type and range come from its default (an integer default of at
least 1 takes positive integers, a tuple of numbers takes a comma-separated list, ...), or from
the few names every command shares (widths, seeds, dataset, ...). So a new experiment is one
entry here, and its --help, its checks and its errors look like every other command's."""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import numbers
from typing import Callable

from .args import DATASETS, _Formatter, _list, _number, _positive, _seeds, _stop_when, _widths


@dataclasses.dataclass(frozen=True)
class Entry:
    """One experiment: ``function(out, **settings)`` (None for the paper's figures, whose options
    are written out in the parser), a one-line help, the settings of --quick, the default output
    directory, and the keyword arguments that are not settings."""
    name: str
    kind: str                       # "reproduce" or "demo"
    help: str
    function: Callable | None = None
    quick: dict = dataclasses.field(default_factory=dict)
    out: str = "results"
    skip: tuple = ("out", "progress", "threads", "seed", "figure")


def _demos() -> dict:
    from ..experiments import tutorial
    return {name: Entry(name, "demo", what, fn, quick, "results/demos")
            for name, (fn, what, quick) in tutorial.DEMOS.items()}


def _thesis() -> dict:
    from ..experiments import thesis
    return {
        "measures": Entry("measures", "reproduce", "the thesis's complexity measures against width, true and "
                          "random labels", thesis.reproduce_measures, out="results/thesis-measures"),
        "pathsgd": Entry("pathsgd", "reproduce", "the thesis's Path-SGD against SGD, from a standard and an "
                         "unbalanced initialization", thesis.reproduce_pathsgd, out="results/thesis-pathsgd"),
    }


def _paper() -> dict:
    from ..experiments import sgd_vs_cg
    return {"sgd-vs-cg": Entry("sgd-vs-cg", "reproduce", "Figure 1's protocol with momentum SGD and with batch "
                               "conjugate gradient side by side (same widths, data, seeds): comparison table and "
                               "figure", sgd_vs_cg.reproduce_sgd_vs_cg, quick=sgd_vs_cg.QUICK,
                               out="results/sgd-vs-cg", skip=("out", "progress", "threads", "seed", "figure", "quick"))}


FIGURES = {"figure1": "Figure 1: error vs width, no regularization, one repetition",
           "figure2": "Figure 2: 2,000 train / 2,000 validation images; original labels with and without weight "
                      "decay, censored labels, censored labels with 5% noise; 5 repetitions"}


def table() -> dict:
    """{"reproduce": {name: Entry}, "demo": {name: Entry}} (imported on first use)."""
    reproduce = {k: Entry(k, "reproduce", v, out=f"results/{k}-DATASET") for k, v in FIGURES.items()}
    reproduce.update(_paper())
    reproduce.update(_thesis())
    return {"reproduce": reproduce, "demo": _demos()}


# the settings every command shares: (type, metavar, help)
SHARED = {
    "widths": (_widths, "LIST", "widths: '1,2,4', '1:1024' or 'pow2:4096'"),
    "seeds": (_seeds, "LIST", "the seeds of the repetitions, e.g. 0,1,2"),
    "n_train": (_positive, "N", "training samples"),
    "n_val": (_positive, "N", "validation samples"),
    "n_test": (_positive, "N", "test samples"),
    "data_dir": (str, "DIR", "directory with the MNIST IDX files or the CIFAR-10 python batches"),
    "epochs": (_positive, "N", "epochs of training"),
    "cg_lr": (_number(0.0, lo_in=False), "X", "conjugate gradient's first trial step"),
    "batch_size": (_positive, "N", "mini-batch size"),
    "stop_when": (_stop_when, "RULE", "train each network to convergence: 'zero-error' or 'loss:TOL', held for "
                  "--patience epochs, the epochs being the cap"),
    "patience": (_positive, "P", "epochs in a row the --stop-when criterion must hold"),
    "cg_epochs": (_positive, "N", "conjugate gradient iterations, one full-batch step per epoch (100; 20 with "
                  "--quick)"),
}


def _type_of(name, default):
    """(argparse type or None for a flag, metavar) of a setting from its default."""
    if isinstance(default, bool):
        return None, None
    if isinstance(default, numbers.Integral):
        return _number(1 if default >= 1 else 0, kind=int), "N"
    if isinstance(default, numbers.Real):
        return (_number(0.0, lo_in=False) if default > 0 else _number(0.0)), "X"
    if isinstance(default, (tuple, list)) and default and all(isinstance(v, numbers.Real) for v in default):
        ints = all(isinstance(v, numbers.Integral) for v in default)
        lo = min(default)
        item = _number(1 if ints and lo >= 1 else 0, kind=int) if ints else \
            (_number(0.0, lo_in=False) if lo > 0 else _number(0.0))
        what = ("positive" if lo > 0 else "non-negative") + (" integers" if ints else " numbers")
        return _list(item, what), "LIST"
    return str, "TEXT"


def settings(entry: Entry) -> list:
    """[(keyword, option, type, metavar, default, help)] of an experiment's settings."""
    out = []
    for p in inspect.signature(entry.function).parameters.values():
        keyword = p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        if not keyword or p.name in entry.skip or p.default is p.empty:
            continue
        if p.name in SHARED:
            typ, metavar, text = SHARED[p.name]
        elif p.name == "dataset":
            typ, metavar, text = None, None, "data set"
        else:
            typ, metavar = _type_of(p.name, p.default)
            text = p.name.replace("_", " ")
        shown = ",".join(map(str, p.default)) if isinstance(p.default, (tuple, list)) else p.default
        out.append((p.name, "--" + p.name.replace("_", "-"), typ, metavar, p.default,
                    f"{text} (default: {shown if shown is not None else 'the experiment chooses'})".replace("%", "%%")))
    return out


def add_entry_parser(sub, entry: Entry):
    """The subcommand of one experiment, its options generated from its settings. Each option's
    default is None, so that only the options given override the experiment's (or --quick's)."""
    q = sub.add_parser(entry.name, help=entry.help.replace("%", "%%"), description=entry.help,
                       formatter_class=_Formatter)
    # --seeds or --seed, not both (--seed used to win); no group where neither exists (an empty
    # group fails argparse's usage line, so --help crashed for 8 of the 12 demos)
    has_seeds = any(name == "seeds" for name, *_ in settings(entry))
    seeds = q.add_mutually_exclusive_group() if has_seeds or entry.kind != "demo" else q
    for name, option, typ, metavar, default, text in settings(entry):
        where = seeds if name == "seeds" else q
        if name == "dataset":
            q.add_argument(option, choices=DATASETS, default=None, help=text)
        elif typ is None:
            q.add_argument(option, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            where.add_argument(option, type=typ, metavar=metavar, default=None, help=text)
    q.add_argument("--out", metavar="DIR", default=None, help=f"output directory (default: {entry.out})")
    q.add_argument("--threads", type=_positive, default=None, metavar="N", help="native threads")
    q.add_argument("--quiet", action="store_true", help="no progress output; no table")
    if entry.kind == "demo" or entry.quick:
        q.add_argument("--quick", action="store_true", help="a tiny version that runs in seconds")
    if entry.kind != "demo":
        seeds.add_argument("--seed", type=_number(0, kind=int), default=None, metavar="SEED",
                       help="one repetition with this seed (default: the experiment's seeds)")
        q.add_argument("--figure", default=None, metavar="PNG", help="figure path (default: inside --out)")
    q.set_defaults(entry=entry)
    return q


def given(args, entry: Entry) -> dict:
    """The settings given on the command line."""
    kw = {}
    for name, *_ in settings(entry):
        v = getattr(args, name, None)
        if v is not None:
            kw[name] = tuple(v) if isinstance(v, list) and name not in ("widths", "seeds") else v
    return kw
