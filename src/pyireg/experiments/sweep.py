"""Width sweeps: widths x weight decays (x lr scales) trained together in one packed model per
repetition, with train / validation / test error, loss and weight norms recorded every epoch.
This module checks a sweep's arguments (everything, before the first file is written) and
orchestrates it; the parts live beside it: :mod:`.store` (the directory, its atomic commits,
checksums and resume), :mod:`.training` (the run spec and THE training loop), :mod:`.results`
(reading results) and :mod:`.resources` (memory and progress).

``balance_drift`` is sum_h |b_h(t) - b_h(0)| / sum_h (||u_h(0)||^2 + ||v_h(0)||^2) with
b_h = ||u_h||^2 - ||v_h||^2: gradient flow conserves every b_h exactly, so this measures how far
SGD's finite steps (and weight decay) moved the per-unit balance, by width and learning rate.
``at_chance`` marks a network whose training loss is ln k (to 1e-4 relative): its outputs are
constant, almost always because every hidden unit is inactive on every sample, and it will not
learn again; the sweep warns (``ChanceWarning``) and names the likely cause.

A sweep with an executor (``executor="ray"``, ...) trains in packs instead and commits pack by
pack (``packs.json``, ``packs/``); :mod:`.packed` describes its files.
"""
from __future__ import annotations

import json
import math
import numbers
import uuid
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import _profile
from .. import data as D
from ..schedule import PaperSchedule, check_schedule, schedule_to_json
from . import store
from .committer import EpochCommitter
from .resources import Progress, check_memory, estimate_memory
from .results import SweepResult
from .history import COLUMNS
from .refusals import SweepStateError
from .store import (
    CHECKPOINT_POLICIES,
    FORMAT,
    SweepDir,
    check_kind,
    check_output,
)
from .training import (
    TrainSpec,
    check_device,
    check_init_transform,
    check_optimizer,
    checkpoint_state,
    empty_history,
    init_pair,
    restore_state,
    train_networks,
)

__all__ = ["sweep", "ChanceWarning", "SweepStateError", "SweepResult"]


class ChanceWarning(UserWarning):
    """Some networks ended a sweep at chance (training loss ln k, constant outputs) or diverged."""


# ----------------------------------------------------------------------------- checks before any output
def _int_list(values, name, lo):
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name}: expected a sequence of integers, got {type(values).__name__}")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
            raise ValueError(f"{name}: expected integers >= {lo}, got {v!r} at index {i}")
        out.append(int(v))
    if not out:
        raise ValueError(f"{name}: expected at least one value, got an empty sequence")
    return out


def _float_list(values, name, positive):
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name}: expected a sequence of numbers, got {type(values).__name__}")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
                or (v <= 0 if positive else v < 0):
            raise ValueError(f"{name}: expected {'positive' if positive else 'non-negative'} finite numbers, "
                             f"got {v!r} at index {i}")
        out.append(float(v))
    if not out:
        raise ValueError(f"{name}: expected at least one value, got an empty sequence")
    return out


def _pos_int(v, name):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    return int(v)


def _check_init_std(init_std, N):
    def one(v, name):
        a = np.asarray(v, dtype=np.float64) if not isinstance(v, (str, bytes)) else None
        if a is None or a.ndim > 1 or (a.ndim == 1 and a.shape != (N,)) or not np.isfinite(a).all() or (a <= 0).any():
            raise ValueError(f"{name}: expected a positive number or {N} positive numbers (one per network), "
                             f"got {v!r}")
        return a.tolist()
    if init_std is None:
        return None
    if isinstance(init_std, tuple):
        if len(init_std) != 2:
            raise ValueError(f"init_std: expected a number, one per network, or a pair (std_u, std_v), "
                             f"got {init_std!r}")
        return [one(init_std[0], "init_std[0]"), one(init_std[1], "init_std[1]")]
    return one(init_std, "init_std")



def _as_dataset(dataset):
    if isinstance(dataset, D.Dataset):
        return dataset
    if isinstance(dataset, tuple) and len(dataset) == 2:
        return D.from_arrays(*dataset)
    raise TypeError(f"dataset: expected a pyireg.data.Dataset or a pair (X, y), got {type(dataset).__name__}"
                    + (f" of length {len(dataset)}" if isinstance(dataset, tuple) else ""))


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda v: v.item() if isinstance(v, np.generic) else
                                 v.tolist() if isinstance(v, np.ndarray) else str(v)))



def sweep(dataset, widths: Sequence[int], *, seeds: Sequence[int] = (0,), weight_decays: Sequence[float] = (0.0,),
          lr_scales: Sequence[float] = (1.0,), epochs: int = 60, batch_size: int = 100, drop_last: bool = False,
          schedule=None, init_std=None, init=None, dtype=None, label_noise: float = 0.0,
          resample_split: bool = False, out=None, resume: bool = False, checkpoints: str = "resume",
          checkpoint_every: int | None = None, progress: bool = True, tag: str = "", eval_batch: int = 512,
          max_memory=None,
          on_epoch: Callable[[int, int], None] | None = None, executor=None, measures=None,
          activation: str = "relu", loss: str = "cross_entropy", optimizer: str = "momentum_sgd",
          optimizer_args: dict | None = None, init_transform: str | None = None, init_transform_args=None,
          device: str = "cpu", record_epoch0: bool = False, stop_when: str | None = None, patience: int = 1,
          run: dict | None = None) -> SweepResult:
    """Train every combination of width x weight decay x lr scale for ``epochs`` epochs of the
    paper's protocol, once per seed in ``seeds`` (a repetition: its own initialization and data
    order), and record every epoch.

    Parameters
    ----------
    dataset : pyireg.data.Dataset, or a pair (X, y) made into one by pyireg.data.from_arrays
        (20% validation, 20% test, standardized, float32).
    widths, weight_decays, lr_scales : the grid; lr_scales multiply the schedule's lr.
    seeds : one repetition per seed (distinct non-negative integers); ``range(5)`` for five.
    epochs, batch_size, schedule : the protocol (defaults: the paper's 60 epochs, batch 100,
        PaperSchedule()). A schedule is any object with ``lr(epoch)`` and ``momentum(epoch)``;
        the presets of :mod:`pyireg.schedule` (paper, constant, step, cosine, cyclic, warmup) are
        recorded by their fields, any other by its values per epoch. Every epoch uses every
        training sample: the last batch is smaller when batch_size does not divide the training
        set, unless ``drop_last`` (the batch policy of :mod:`.training`).
    optimizer, optimizer_args : "momentum_sgd" (the paper's), "path_sgd" or "ddp_sgd" (with
        ``{"alpha": a}``), or any name registered with
        :func:`pyireg.experiments.training.register_optimizer`. The schedule's lr (x lr scale)
        drives each; its momentum is ignored by optimizers without momentum (ddp_sgd).
    init_transform, init_transform_args : None, or "unbalanced" (``{"factor": c}``, default 10):
        every unit rescaled by a random c_h in [1/c, c] (the function is unchanged).
    device : "cpu" (the only one the loop runs on so far).
    record_epoch0 : also record every network at its initialization, as epoch 0 (committed with
        epoch 1; summaries may then pick epoch 0 as the early-stopped one).
    stop_when, patience : train each network to convergence, ``epochs`` being the cap: None (the
        default: every network trains every epoch), "zero-error" (training error 0) or
        "loss:TOL" (training loss at most TOL), held for ``patience`` consecutive epochs. A
        network that converged is frozen (lr 0; its weights and optimizer state no longer
        change; the others train bit for bit as without it); when every network of a
        repetition has converged, its training ends and the rows of its remaining epochs repeat
        the frozen networks' (see :mod:`.stopping`). The history gains the column
        ``converged_epoch``: the first epoch of the streak that reached ``patience``, -1 while
        not converged.
    run : the run record to keep in config.json (the command line's; default: this call's).
    init_std : passed to PackedMLP (default 1/sqrt(fan_in) per layer).
    init : a named initialization of PackedMLP instead of init_std: "he_normal", "he_uniform",
        "xavier_normal", "xavier_uniform" or "lecun_normal" (fans per layer and network: U has
        fan_in d, fan_out H; V fan_in H, fan_out k). Recorded in config.json as "init".
    dtype : the model's dtype, float32 or float64 (numpy dtype, name or torch dtype); default
        the dataset's. The data are converted once, before training.
    label_noise : fraction of training labels changed at random, drawn per repetition
        (see rep_dataset). resample_split : draw the training/validation split again per
        repetition (the test split is kept).
    out : directory for ``history.parquet``, ``config.json`` and checkpoints (see the module
        documentation for the files and the resume guarantee); None keeps it in memory.
    resume : continue the sweep saved in ``out`` (its configuration and data must match);
        with nothing saved there yet, start it.
    checkpoints : "resume" (default: keep only what resume needs), "final" (also each
        repetition's final weights), "all" (every checkpoint written).
    checkpoint_every : write the weights every K epochs (and after the last) instead of every
        epoch (default 1; on resume, the sweep's own). The history is still committed every
        epoch; a resume restores the last checkpoint and replays the epochs after it, checking
        each replayed row against the history (every column but ``train_seconds`` equal, NaN
        matching NaN; a mismatch, e.g. another build or device, refuses to continue). It saves
        most of a commit's cost (the weights are most of its bytes) for up to K - 1 epochs of
        retraining on resume.
    progress : a progress bar on a terminal, else a plain line at most every PROGRESS_INTERVAL
        seconds, on stderr; both show the best validation error.
    max_memory : bytes the sweep may use (default: the memory available; 0: no check); a sweep
        estimated to need more raises MemoryError before anything is allocated.
    on_epoch : called as on_epoch(repetition, epoch) after each committed epoch.
    executor : None (default) trains each repetition's grid as one packed model in this
        process, committing every epoch. Otherwise the grid is bin-packed into packs of networks
        of similar cost, trained as separate packed models and merged into the same history
        (bit-identical per network; see :mod:`pyireg.distributed`): "ray" (an embedded local Ray,
        or the cluster at $RAY_ADDRESS), "local" (the packs one after another in this process),
        or an executor object such as ``pyireg.distributed.RayExecutor(address=..., workers=...)``.
        A sweep in packs resumes pack by pack; ``max_memory`` then bounds each machine's packs.
    activation : "relu" (the paper's networks) or "linear" (the matrix-factorization model of
        Section 3: each network computes X U_n^T V_n).
    loss : "cross_entropy" (the paper's) or "squared": 1/2 the squared distance of the outputs to
        the one-hot code of the label, averaged over the batch (regression onto class codes, the
        usual loss of linear-network analyses). Errors are then those of the largest output.
    measures : complexity measures recorded for every network after every epoch, as columns of
        the history named like the measures: None (none beyond the norms always recorded),
        "all" (every measure of ``pyireg.measures.ALL``), or a list of names (see
        :mod:`pyireg.measures`; measures of data use the training set, ``dist_U``/``dist_V``
        the initialization). The perturbed ones (sharpness, PAC-Bayes) cost one to twenty
        epochs each and are refused here: compute them on the final model.

    Everything is checked before any file is written. Returns a SweepResult.
    """
    # ---- validate everything before any output
    ds = _as_dataset(dataset)
    # the configuration of the sweep being resumed, read once: its schedule and checkpoint_every
    # stand in for those not given
    saved_config = (store.read_config(Path(out) / "config.json")
                    if resume and out is not None and (Path(out) / "config.json").is_file() else None)
    if schedule is None and saved_config is not None:
        # resuming without naming a schedule: the one the sweep recorded (a preset by its fields,
        # any other by its values per epoch) is restored
        from ..schedule import schedule_from_json
        try:
            schedule = schedule_from_json(saved_config.get("schedule"))
        except ValueError:
            schedule = None          # a record of an older pyireg: the default, compared as before
    schedule = check_schedule(PaperSchedule() if schedule is None else schedule)
    optimizer, optimizer_args = check_optimizer(optimizer, optimizer_args)
    init_transform, init_transform_args = check_init_transform(init_transform, init_transform_args)
    device = check_device(device)
    from .stopping import parse_stop_when, rule_to_json
    stop_rule = parse_stop_when(stop_when, patience)
    widths = _int_list(widths, "widths", 1)
    if len(set(widths)) != len(widths):
        twice = next(w for i, w in enumerate(widths) if w in widths[:i])
        raise ValueError(f"widths: expected distinct widths, got {twice} twice (the summaries would take the two "
                         "networks for two repetitions; repetitions are seeds)")
    seeds = _int_list(seeds, "seeds", 0)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: expected distinct seeds (one repetition each), got {seeds}")
    weight_decays = _float_list(weight_decays, "weight_decays", positive=False)
    lr_scales = _float_list(lr_scales, "lr_scales", positive=True)
    epochs = _pos_int(epochs, "epochs")
    eval_batch = _pos_int(eval_batch, "eval_batch")
    batch_size = _pos_int(batch_size, "batch_size")
    if batch_size > len(ds.y_train):
        raise ValueError(f"batch_size: expected 1..{len(ds.y_train)} (the training set size), got {batch_size}")
    from .training import OPTIMIZERS
    if OPTIMIZERS[optimizer].full_batch and batch_size != len(ds.y_train):
        raise ValueError(f"batch_size: the optimizer {optimizer} takes the whole training set at each step; "
                         f"expected batch_size={len(ds.y_train)} (the training set size), got {batch_size}")
    if isinstance(label_noise, bool) or not isinstance(label_noise, numbers.Real) or not 0 <= label_noise < 1:
        raise ValueError(f"label_noise: expected a fraction in [0, 1), got {label_noise!r}")
    if checkpoints not in CHECKPOINT_POLICIES:
        raise ValueError(f"checkpoints: expected one of {', '.join(CHECKPOINT_POLICIES)}, got {checkpoints!r}")
    given_every = None if checkpoint_every is None else _pos_int(checkpoint_every, "checkpoint_every")
    if executor is not None and given_every not in (None, 1):
        raise ValueError(f"checkpoint_every: a sweep in packs commits whole packs and writes no checkpoints; "
                         f"expected 1 with an executor, got {given_every}")
    checkpoint_every = 1 if given_every is None else given_every
    if saved_config is not None:     # the sweep's own K
        saved_every = saved_config.get("checkpoint_every", 1)
        if isinstance(saved_every, bool) or not isinstance(saved_every, int) or saved_every < 1:
            raise SweepStateError(f"out: {Path(out) / 'config.json'} records checkpoint_every {saved_every!r}, not a "
                                  "positive integer; restore the sweep's own config.json, or start in another "
                                  "directory")
        if given_every is not None and given_every != saved_every:
            raise ValueError(f"checkpoint_every: the sweep in {out} writes a checkpoint every {saved_every} "
                             f"epoch(s), got {given_every}; resume without it, or start the sweep in another "
                             "directory")
        checkpoint_every = saved_every
    if max_memory is not None and (isinstance(max_memory, bool) or not isinstance(max_memory, numbers.Real)
                                   or not math.isfinite(max_memory) or max_memory < 0):
        raise ValueError(f"max_memory: expected None (the memory available), 0 (no check) or a number of bytes, "
                         f"got {max_memory!r}")
    if resume and out is None:
        raise ValueError("resume: needs out, the directory of the sweep to continue")
    if on_epoch is not None and not callable(on_epoch):
        raise TypeError(f"on_epoch: expected a callable, got {type(on_epoch).__name__}")
    if executor is not None and on_epoch is not None:
        raise ValueError("on_epoch: not available with an executor (packs commit all their epochs at once); "
                         "leave executor=None to be called after each epoch")
    ds = ds.astype(ds.dtype if dtype is None else D.as_dtype(dtype))
    from ..model import ACTIVATIONS, LOSSES
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {', '.join(LOSSES)}, got {loss!r}")
    measure_names = measure_names_for(measures, loss)
    schedule_json = schedule_to_json(schedule, epochs)
    grid = [(w, wd, ls) for wd in weight_decays for ls in lr_scales for w in widths]
    N = len(grid)
    init_json = _check_init_std(init_std, N)
    from ..model import check_init
    check_init(init)
    if init is not None and init_std is not None:
        raise ValueError(f"init: give a named init or init_std, not both (got init={init!r} and init_std)")
    if executor is None:           # with an executor, each pack is checked (pyireg.distributed)
        est = estimate_memory(widths, ds.num_features, ds.num_classes,
                              networks_per_width=len(weight_decays) * len(lr_scales), batch_size=batch_size,
                              eval_batch=eval_batch, dtype=ds.dtype)
        check_memory(est, max_memory)
    if out is not None:
        check_kind(out, "sweep")
        check_output(out, resume)
    from .. import __version__
    from .record import run_record
    config = {"format": FORMAT, "sweep_id": uuid.uuid4().hex, "written_by": f"pyireg {__version__}",
              "dataset": _jsonable(ds.info), "data_sha256": ds.fingerprint(), "num_features": ds.num_features,
              "num_classes": ds.num_classes, "widths": widths, "seeds": seeds, "weight_decays": weight_decays,
              "lr_scales": lr_scales, "num_networks": N, "grid_widths": [g[0] for g in grid],
              "epochs": epochs, "batch_size": batch_size, "drop_last": bool(drop_last),
              "schedule": schedule_json, "init_std": init_json,
              "init_std_pair": isinstance(init_std, tuple), "init": init, "dtype": ds.dtype,
              "label_noise": float(label_noise), "resample_split": bool(resample_split),
              "eval_batch": eval_batch, "measures": list(measure_names), "activation": activation, "loss": loss,
              "optimizer": optimizer, "optimizer_args": dict(optimizer_args), "init_transform": init_transform,
              "init_transform_args": dict(init_transform_args), "device": device,
              "record_epoch0": bool(record_epoch0), "stop_when": rule_to_json(stop_rule),
              "tag": str(tag), "run": run if run is not None else run_record()}
    if checkpoint_every != 1:          # absent means 1, so sweeps written before it compare equal
        config["checkpoint_every"] = checkpoint_every
    import pandas as pd  # the experiments extra, needed from here on

    spec = TrainSpec(grid_widths=tuple(g[0] for g in grid), grid_weight_decays=tuple(g[1] for g in grid),
                     grid_lr_scales=tuple(g[2] for g in grid), epochs=epochs, batch_size=batch_size,
                     drop_last=bool(drop_last), schedule=schedule, init_std=init_pair(init_std, init_json),
                     label_noise=float(label_noise), resample_split=bool(resample_split), eval_batch=eval_batch,
                     measures=measure_names, activation=activation, loss=loss, optimizer=optimizer,
                     optimizer_args=optimizer_args, init_transform=init_transform,
                     init_transform_args=init_transform_args, device=device, record_epoch0=bool(record_epoch0),
                     stop_rule=stop_rule, init=init)
    desc = tag or ds.info.get("name", "sweep")
    if executor is not None:
        from .packed import run_in_packs
        result = run_in_packs(ds, spec, config, out=out, resume=resume, checkpoints=checkpoints,
                              executor=executor, progress=progress, desc=desc, max_memory=max_memory)
        _warn_at_chance(result, ds, schedule, lr_scales)
        return result

    net_width = np.asarray(spec.grid_widths)
    sd = SweepDir(Path(out), config, checkpoints) if out is not None else None
    committer = EpochCommitter(sd) if sd is not None else None
    frames, done, hist = [], {}, None
    bar = Progress(len(seeds) * epochs, progress, f"{desc}: {N} networks x {len(seeds)} "
                    f"rep{'s' if len(seeds) > 1 else ''}")
    try:
        if sd is not None:
            sd.lock()
            config, hist, done = sd.open(resume)
            if hist is not None:
                frames.append(hist)
        for rep in seeds:
            start = done.get(rep, 0)
            bar.skip(start)
            if start >= epochs:
                continue
            # the last checkpoint written; the epochs after it up to start are replayed
            begin = store.resume_epoch(start, checkpoint_every)

            def restore(model, opt, rep=rep, begin=begin):
                path = sd.ckpt(rep, begin)
                sha = sd.checksums.get(path.name)
                if sha is None:
                    raise SweepStateError(f"out: history.parquet records no checksum for checkpoints/{path.name}; "
                                          "restore the sweep's own history, or start in another directory")
                arrays = store.load_checkpoint(path, spec.checkpoint_members(model), sha)
                restore_state(spec, arrays, model, opt, rep, begin, config["sweep_id"], path)

            def after_epoch(epoch, frame, model, opt, ev, rep=rep, start=start):
                nonlocal frames
                if 0 < start and epoch <= start:      # replayed: committed by an earlier run
                    check_replayed(hist, frame, rep, epoch, sd.history_path)   # the history as loaded
                    return                       # committed before: checked, not recorded again
                frames.append(frame)
                if epoch == 0:                   # the initialization: committed with epoch 1
                    return
                done[rep] = epoch
                if sd is not None:
                    history = pd.concat(frames, ignore_index=True)
                    frames = [history]
                    state = checkpoint_state(spec, model, opt, rep, epoch, config["sweep_id"])
                    # in the background while the next epoch trains (committer.py)
                    with _profile.section("commit (history + checkpoint files)"):
                        committer.commit(rep, epoch, state, history, done)
                bar.epoch(rep, seeds.index(rep), len(seeds), epoch, epochs, ev["val"][0], net_width)
                if on_epoch is not None:
                    if committer is not None:
                        committer.wait()         # on_epoch sees the epoch committed
                    on_epoch(int(rep), epoch)

            # the whole grid of the repetition is one pack
            train_networks(ds, spec, rep, range(N), start=begin, restore=restore if begin > 0 else None,
                           after_epoch=after_epoch)
            if committer is not None:
                with _profile.section("commit (history + checkpoint files)"):
                    committer.wait()
    except BaseException as e:
        if committer is not None:
            committer.close(error=e)         # a commit that fails too is noted on e
        raise
    finally:
        bar.close()
        if sd is not None:
            try:
                committer.close()
            finally:
                if not committer.busy():     # an interrupted wait: the process's exit frees the lock
                    sd.unlock()
    history = pd.concat(frames, ignore_index=True) if frames else empty_history()
    result = SweepResult(history, config, Path(out) if out is not None else None)
    _warn_at_chance(result, ds, schedule, lr_scales)
    return result




def measure_names_for(measures, loss: str | None = "cross_entropy") -> tuple:
    """The measures a sweep records every epoch, checked before anything runs (against the
    loss too, unless None: margins need class labels, so a squared-loss sweep cannot record
    them)."""
    if measures is None:
        return ()
    from .. import measures as M
    if isinstance(measures, str):
        if measures != "all":
            raise ValueError(f"measures: expected None, 'all' or a list of measure names, got {measures!r}")
        # norm_U, norm_V are always recorded; margins only where the loss has class labels
        return tuple(n for n in M.names_available(init=True, data=True)
                     if n not in COLUMNS and (loss is None or loss in M.losses(n)))
    names = list(measures)
    for name in names:
        if name in M.REGISTRY and M.REGISTRY[name].perturbed:
            raise ValueError(f"measures: {name!r} perturbs every network many times (one to twenty epochs of "
                             "work); compute it on the final model with pyireg.measures.compute")
        try:
            M.needs(name)
        except M.UnknownMeasureError:
            named = [n for n, m in M.REGISTRY.items() if m.group in M.NAMED_ONLY and not m.perturbed]
            raise ValueError(f"measures: unknown measure {name!r}; expected 'all' or names of "
                             f"{', '.join(M.names_available(True, True))}, path_l<p> (p > 0), or the named-only "
                             f"{', '.join(named)}, c2_<eps> (eps > 0)") from None
        except ValueError as e:                          # a known pattern with a parameter it cannot take
            raise ValueError(f"measures: {str(e).removeprefix('names: ')}") from None
        if name in COLUMNS:
            raise ValueError(f"measures: {name!r} is already a column of the history (always recorded)")
        if loss is not None and loss not in M.losses(name):
            raise ValueError(f"measures: {name!r} needs class labels (a margin), which the {loss} loss does not "
                             f"have; record it with loss='cross_entropy', or leave it out")
    if len(set(names)) != len(names):
        raise ValueError(f"measures: expected distinct names, got {names}")
    return tuple(names)



def check_replayed(history, frame, rep: int, epoch: int, path) -> None:
    """Check the rows of a replayed epoch (training from a checkpoint up to the epochs already
    committed) against the rows ``history`` records for them: every column but the timing
    equal (NaN where NaN); refuse to continue on any difference."""
    recorded = history[(history["repetition"] == rep) & (history["epoch"] == epoch)]
    recorded = recorded.sort_values("network", kind="stable")
    cols = [c for c in frame.columns if c != "train_seconds"]
    if len(recorded) != len(frame) or any(c not in recorded.columns for c in cols):
        raise SweepStateError(f"out: {path} does not hold the rows of epoch {epoch} of repetition {rep} that the "
                              "replay from the last checkpoint made; restore the sweep's own history, or start in "
                              "another directory")
    for c in cols:
        a, b = frame[c].to_numpy(), recorded[c].to_numpy()
        bad = a != b
        if a.dtype.kind == "f" and b.dtype.kind == "f":
            bad &= ~(np.isnan(a) & np.isnan(b))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SweepStateError(
                f"out: replaying epoch {epoch} of repetition {rep} from its last checkpoint gave other numbers than "
                f"{path.name} records (column {c}, network {int(frame['network'].iloc[i])}: {a[i]!r} against "
                f"{b[i]!r}): this build, device or library differs from the one that trained it. Resume with "
                "that one, or start the sweep in another directory")


def _chance_cause(ds, schedule, lr_scales, widths) -> str:
    rms = np.sqrt(np.mean(np.square(ds.X_train, dtype=np.float64), axis=0))
    if rms.max() > 10:
        return (f"the inputs are not standardized (feature scale up to {rms.max():.3g}, where standardized "
                "features have 1): use pyireg.data.from_arrays(X, y) with standardize=True (the default), or "
                "scale the features")
    if max(widths) <= 2:
        return ("every hidden unit of these narrow networks is inactive (a ReLU that outputs 0 on every "
                "sample); more repetitions or a smaller lr help")
    lr = getattr(schedule, "max_lr", getattr(schedule, "lr0", None))
    lr = schedule.lr(0) if lr is None else lr
    return (f"the step size may be too large (lr {lr:g} x lr scale up to {max(lr_scales):g}): the "
            "first steps pushed every hidden unit into its inactive region")


def _warn_at_chance(result: SweepResult, ds, schedule, lr_scales) -> None:
    """Warn about networks that ended at chance (with the likely cause) or diverged."""
    h = result.history
    if len(h) and h["diverged"].any():
        last = h[h["epoch"] == h.groupby("repetition")["epoch"].transform("max")]
        bad = last[last["diverged"]]
        if len(bad):
            widths = sorted(bad["width"].unique().tolist())
            shown = ", ".join(map(str, widths[:8])) + (", ..." if len(widths) > 8 else "")
            warnings.warn(f"{len(bad)} of {len(last)} networks (widths {shown}) diverged: a loss became NaN or inf "
                          "(column diverged); lower their learning rate (lr, lr_scales)", ChanceWarning, stacklevel=3)
    if len(h) == 0 or not h["at_chance"].any():
        return
    last = h[h["epoch"] == h.groupby("repetition")["epoch"].transform("max")]
    stuck = last[last["at_chance"]]
    if len(stuck) == 0:
        return
    widths = sorted(stuck["width"].unique().tolist())
    reps = stuck["repetition"].nunique()
    shown = ", ".join(map(str, widths[:8])) + (", ..." if len(widths) > 8 else "")
    warnings.warn(f"{len(stuck)} of {len(last)} networks (widths {shown}; {reps} repetition"
                  f"{'s' if reps > 1 else ''}) ended at chance: training loss ln {ds.num_classes} = "
                  f"{math.log(ds.num_classes):.4f}, constant outputs (column at_chance). Likely cause: "
                  f"{_chance_cause(ds, schedule, lr_scales, widths)}", ChanceWarning, stacklevel=3)

