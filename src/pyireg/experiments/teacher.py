"""The censoring teacher of Figure 2, as an experiment step: an H0-unit network trained by the one
training loop (the batch policy and seeding of :mod:`pyireg.experiments.training`), whose
predictions replace every label. ``censor_entire`` does what the paper says: the teacher trains on
the entire data set (train + validation + test: every sample a built-in data set has, e.g. all
70,000 MNIST images) and then labels the subsets a figure uses. ``censor`` trains it on all the
samples one given Dataset holds (your own data, or the subsets themselves). With ``out`` the
teacher's training is a sweep directory of its own (history, config.json with the run record and
the data it saw, its final weights), which resumes like any sweep and which
``pyireg.load_results`` reads."""
from __future__ import annotations

import numbers
import warnings

import numpy as np

from .. import data as D
from ..schedule import PaperSchedule, check_schedule
from .training import TrainSpec, build, train_networks


def _all_splits(dataset):
    """The data set with every sample in its training split (the teacher trains on all of them)."""
    X = np.concatenate([dataset.X_train, dataset.X_val, dataset.X_test])
    y = np.concatenate([dataset.y_train, dataset.y_val, dataset.y_test])
    return X, y, dataset.replace(X_train=X, y_train=y, info={"teacher_data": "train + validation + test",
                                                             "n_train": len(y)})


def _check_args(h0, epochs, batch_size, seed):
    if isinstance(h0, bool) or not isinstance(h0, numbers.Integral) or h0 < 1:
        raise ValueError(f"h0: expected a positive integer (the teacher's hidden units), got {h0!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
        raise ValueError(f"epochs: expected a non-negative integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")


def train_teacher(ds_all, h0: int, *, epochs: int, seed: int, schedule, batch_size: int, out=None,
                  resume: bool = False, progress: bool = False):
    """The teacher: a one-network model of ``h0`` units trained on the training split of
    ``ds_all`` (as repetition ``seed`` of a one-network sweep; saved to ``out`` when given)."""
    batch_size = min(int(batch_size), len(ds_all.y_train))
    if out is not None and epochs > 0:
        from .sweep import ChanceWarning, sweep
        from .training import models_of
        with warnings.catch_warnings():          # a teacher at chance is reported by its changed labels
            warnings.simplefilter("ignore", ChanceWarning)
            sweep(ds_all, [int(h0)], seeds=[int(seed)], epochs=int(epochs), batch_size=batch_size,
                  schedule=schedule, out=out, resume=resume, checkpoints="final", progress=progress,
                  tag=f"teacher H0={h0}")
        _, teacher = models_of(ds_all, out, int(seed))
        return teacher
    spec = TrainSpec(grid_widths=(int(h0),), grid_weight_decays=(0.0,), grid_lr_scales=(1.0,), epochs=int(epochs),
                     batch_size=batch_size, drop_last=False, schedule=schedule, init_std=None, label_noise=0.0,
                     resample_split=False, eval_batch=4096)
    if epochs == 0:
        return build(ds_all, spec, int(seed), np.arange(1))[0]
    kept = {}
    train_networks(ds_all, spec, int(seed), [0], after_epoch=lambda e, frame, model, opt, ev: kept.update(m=model))
    return kept["m"]


def predict(teacher, X) -> np.ndarray:
    """The teacher's class predictions for the rows of X (in blocks)."""
    return np.concatenate([teacher.forward(X[i:i + 4096])[0].argmax(1) for i in range(0, len(X), 4096)])


def _changed(new, old) -> dict:
    changed = {k: int(np.sum(getattr(new, "y_" + k) != getattr(old, "y_" + k))) for k in ("train", "val", "test")}
    return {"changed": changed, "changed_total": sum(changed.values())}


def censor_entire(name: str, h0: int, *, n_train=None, n_val=None, n_test=None, split_seed: int = 0, data_dir=None,
                  size: int = 10, dtype="float32", epochs: int = 100, seed: int = 0, schedule=None,
                  batch_size: int = 100, return_teacher: bool = False, out=None, resume: bool = False,
                  progress: bool = False):
    """Figure 2's censored data, as the paper builds them: an ``h0``-unit teacher trained on the
    entire built-in data set ``name`` (:func:`pyireg.data.load_entire`: every sample it has,
    standardized on all of them), then the split ``load(name, n_train=..., n_val=..., n_test=...,
    seed=split_seed, ...)`` with every label replaced by the teacher's prediction on that image.
    The splits hold exactly the images of the uncensored ``load`` with the same arguments.

    ``info['censor']`` records h0, the teacher's training (epochs, seed), the data it saw
    (``teacher_data``, ``teacher_samples``) and how many labels changed in each split; sweeps of
    the result keep it in their config.json, as the teacher's own sweep (``out``) keeps the
    entire data set's description. With ``return_teacher``: ``(dataset, teacher)``."""
    _check_args(h0, epochs, batch_size, seed)
    schedule = check_schedule(schedule or PaperSchedule())
    split = dict(n_train=n_train, n_val=n_val, n_test=n_test, seed=split_seed, data_dir=data_dir, size=size,
                 dtype=dtype)
    original = D.load(name, **split)
    need = len(original.y_train) + len(original.y_val) + len(original.y_test)
    entire = D.load_entire(name, data_dir=data_dir, size=size, dtype=dtype, min_samples=need)
    entire = entire.replace(info={"teacher_data": f"the entire {name} data set ({entire.info['parts']})"})
    teacher = train_teacher(entire, h0, epochs=epochs, seed=seed, schedule=schedule, batch_size=batch_size, out=out,
                            resume=resume, progress=progress)
    labels = predict(teacher, entire.X_train)
    result = D.load(name, labels=labels, **split)
    info = {"censor": {"h0": int(h0), "epochs": int(epochs), "seed": int(seed),
                       "teacher_data": entire.info["teacher_data"], "teacher_samples": len(entire.y_train),
                       **_changed(result, original)}}
    result = result.replace(info=info)
    return (result, teacher) if return_teacher else result


def censor(dataset, h0: int, *, epochs: int = 100, seed: int = 0, schedule=None, batch_size: int = 100,
           return_teacher: bool = False, out=None, resume: bool = False, progress: bool = False):
    """Replace every label (train, validation and test) by the prediction of an ``h0``-unit
    network (the teacher) trained on all three splits of ``dataset`` together (all the data it
    holds; for Figure 2's teacher on the entire data set see :func:`censor_entire`): ``epochs`` epochs of momentum
    SGD with ``schedule`` (default the paper's), mini-batches of ``batch_size`` (the last one
    smaller), as repetition ``seed`` of a one-network sweep (the training module's rules).

    The new data are exactly representable by a network of ``h0`` hidden units, so the
    approximation error is zero from that width on. ``info['censor']`` records h0, the teacher's
    training, and how many labels changed in each split. With ``return_teacher`` the trained
    teacher (a one-network PackedMLP) is returned too, as ``(dataset, teacher)``. With ``out``
    the teacher's training is saved there as a sweep (``resume`` continues it)."""
    if not isinstance(dataset, D.Dataset):
        raise TypeError(f"dataset: expected a pyireg.data.Dataset, got {type(dataset).__name__} "
                        "(make one with pyireg.data.from_arrays(X, y))")
    _check_args(h0, epochs, batch_size, seed)
    schedule = check_schedule(schedule or PaperSchedule())
    X, y, ds_all = _all_splits(dataset)
    teacher = train_teacher(ds_all, h0, epochs=epochs, seed=seed, schedule=schedule, batch_size=batch_size, out=out,
                            resume=resume, progress=progress)
    preds = predict(teacher, X)
    n1, n2 = len(dataset.y_train), len(dataset.y_train) + len(dataset.y_val)
    result = dataset.replace(y_train=preds[:n1], y_val=preds[n1:n2], y_test=preds[n2:])
    info = {"censor": {"h0": int(h0), "epochs": int(epochs), "seed": int(seed),
                       "teacher_data": "train + validation + test of the given data set",
                       "teacher_samples": len(y), **_changed(result, dataset)}}
    result = result.replace(info=info)
    return (result, teacher) if return_teacher else result
