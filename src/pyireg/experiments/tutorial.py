"""The demonstrations of the implicit biases of gradient descent (Section 3 of the paper and the
tutorial): each writes a figure (PNG), a table (CSV) and its settings (NAME.json, with the run
record), and returns the table and its key numbers. ``pyireg demo NAME`` runs one (the command
table makes each setting an option); ``quick`` runs a tiny version (seconds; what the tests run).
"""
from __future__ import annotations

import inspect
import numbers
import time
from pathlib import Path

from . import deep_factorization, knobs, matrix_completion, min_norm, trace_norm, tutorial_extra

# name -> (function, what it shows, the settings of --quick)
DEMOS = {
    "min-norm": (min_norm.demo, "GD on underdetermined least squares finds the minimum-norm solution",
                 dict(n=8, p=30, iters=400, lams=(1.0, 1e-2, 1e-4))),
    "trace-norm": (trace_norm.demo, "weight decay on a linear network is trace-norm regularization (Eq. 3)",
                   dict(widths=(1, 2, 4), lams=(0.1, 1.0), n=40, d=5, k=4, rank=2, max_iters=3000)),
    "matrix-completion": (matrix_completion.demo,
                          "GD from small inits against the minimum nuclear-norm completion: near it with enough "
                          "observed entries, not equal in general",
                          dict(n=12, rank=2, observed_factors=(4,), init_scales=(0.3, 1e-4), widths=(2, 12),
                               iters=500, solver="CLARABEL")),
    "deep-matrix-factorization": (deep_factorization.demo,
                                  "matrix completion by GD on depth 1-4 linear factorizations: effective rank and "
                                  "nuclear norm against depth and the convex minimum",
                                  dict(n=8, rank=2, observed_factor=2.5, seeds=(0,), init_scale=0.1, max_steps=800)),
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
    # the tutorial's demos beyond the paper (quick: the settings their tests use)
    "edge-of-stability": (tutorial_extra.edge_of_stability_demo,
                          "full-batch GD: the sharpness rises to about 2 / lr and hovers there (at the "
                          "defaults lr 0.8 and 1.2; at lr 0.1 and 0.4 it is still rising after 1,000 steps)",
                          dict(widths=(16, 64), lrs=(0.1, 1.2), steps=400, every=50)),
    "spectral-bias": (tutorial_extra.spectral_bias_demo, "low frequencies of the target are learned first",
                      dict(widths=(64, 256), frequencies=(1, 3, 5, 9), epochs=300, every=10)),
    "langevin": (tutorial_extra.langevin_demo, "SGD against GD plus Gaussian noise of the same temperature lr / |B|",
                 dict(lrs=(0.05, 0.1), batch_sizes=(1, 4, 16), width=32, time=20.0)),
    "adam-weight-decay": (tutorial_extra.adam_weight_decay_demo,
                          "L2 penalty vs decoupled weight decay: the same for SGD, not for Adam",
                          dict(widths=(4, 16, 64), steps=100, every=20)),
}


def _check_overrides(name, overrides):
    """Unknown settings, and integer settings below what their default allows (an epoch count of 0,
    a width of 0), are refused before anything is written."""
    params = inspect.signature(DEMOS[name][0]).parameters
    known = set(params) - {"out", "_"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"overrides: {name} has no setting {', '.join(unknown)}; its settings: "
                         f"{', '.join(sorted(known))}")
    for key, value in overrides.items():
        default = params[key].default
        values = value if isinstance(value, (tuple, list)) else [value]
        defaults = default if isinstance(default, (tuple, list)) else [default]
        if all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1 for d in defaults) and defaults:
            if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in values):
                raise ValueError(f"{key}: expected positive integers, got {value!r}")


def run(name, out="results/demos", *, quick=False, threads=None, **overrides):
    """Run demonstration ``name``; writes ``out/NAME.png`` and ``out/NAME.csv``. Returns its
    DemoResult."""
    if name not in DEMOS:
        raise ValueError(f"name: expected one of {', '.join(DEMOS)}, got {name!r}")
    fn, _, small = DEMOS[name]
    _check_overrides(name, overrides)
    out = Path(out)          # made by the demonstration when it writes (after its data are loaded)
    kw = dict(small) if quick else {}
    kw.update(overrides)
    if threads is not None:
        kw["threads"] = threads
    t0 = time.perf_counter()
    result = fn(out, **kw)
    result.seconds = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(out / f"{name}.csv", index=False)
    from .record import run_record
    from .store import Disk, json_bytes
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}
    Disk().write_atomic(out / f"{name}.json", lambda f: f.write(json_bytes(
        {"demo": name, "quick": bool(quick), "settings": settings, "seconds": round(result.seconds, 3),
         "run": run_record()})))
    return result
