"""THE training loop of every experiment: the run spec (what to train and how), the optimizer
and initialization registries it names, the one batch policy, and the epoch record (one row
per network per epoch, the history's schema).

The batch policy, one rule for every command: the mini-batches of epoch e of repetition r are
``numpy.random.default_rng([r, e]).permutation(n)`` cut into consecutive batches of
``batch_size``; the last, smaller batch is kept unless ``drop_last``. Network n of a grid of N
is initialized from ``SeedSequence(r).spawn(N)[n]``. Both depend on (r, e, n) only, so a
network's rows are the same trained alone, in a pack of others, or resumed after a kill.

A full-batch optimizer (conjugate gradient, ``--optimizer cg``) takes one step per epoch on the
whole training set, in its stored order, not permuted: the same array objects every epoch, so
that it can reuse the gradient its line search computed at the accepted point. The order of the
samples changes a full-batch mean only by rounding, and it is fixed, so the rule above still
makes each network's rows the same alone, in packs and after a resume.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import numpy as np

from .. import _profile
from .. import data as D
from ..model import PackedMLP
from . import stopping
from .history import COLUMNS

CHANCE_RTOL = 1e-4            # |train_loss - ln k| <= CHANCE_RTOL * ln k  ->  at chance
NOISE_SEED_OFFSET = 1000      # repetition r draws its label noise with seed NOISE_SEED_OFFSET + r
DEVICES = ("cpu", "cuda")


# ----------------------------------------------------------------------------- registries
@dataclasses.dataclass(frozen=True)
class CheckpointHook:
    """How a checkpoint holds an optimizer state that is not only per-weight arrays shaped like
    U or V in the model's dtype (conjugate gradient's float64 directions, per-network steps,
    a flag for "no previous gradient yet"): ``members(model) -> {name: (shape, dtype)}`` (fixed
    for a model, so that the store checks every member of a checkpoint before reading it),
    ``save(opt) -> {name: array}`` (exactly those members) and ``load(opt, arrays)``."""
    members: Callable
    save: Callable
    load: Callable


@dataclasses.dataclass(frozen=True)
class OptimizerEntry:
    """How the loop builds an optimizer: ``build(model, lr, momentum, weight_decay, **args)``;
    ``momentum``: whether it takes the schedule's momentum (else it gets none and the history
    records 0); ``state``: its per-weight arrays (attributes shaped like U or V) that a checkpoint
    holds besides ``diverged`` and ``steps``; ``args``: its own arguments and their defaults."""
    name: str
    build: Callable
    momentum: bool = True
    state: tuple = ("bufU", "bufV")
    args: tuple = ()           # ((name, default), ...)
    full_batch: bool = False   # each step takes the whole training set (batch_size = its size)
    net_state: tuple = ()      # per-network int64 arrays a checkpoint holds too (Adam's step counts t)
    check: Callable | None = None   # check(args dict) raises ValueError for out-of-range arguments
    checkpoint: CheckpointHook | None = None   # the rest of its state (see CheckpointHook)
    freeze: Callable | None = None  # freeze(opt, frozen, units) -> restore(): the rest of its state (stopping)


OPTIMIZERS: dict[str, OptimizerEntry] = {}


def register_optimizer(name: str, build: Callable, *, momentum: bool = True, state=("bufU", "bufV"),
                       args: dict | None = None, full_batch: bool = False, net_state=(), check=None,
                       checkpoint: CheckpointHook | None = None, freeze: Callable | None = None) -> None:
    """Make an optimizer available to every experiment (``optimizer=name``; ``--optimizer`` of
    pyireg sweep lists the registry). ``build(model, lr, momentum, weight_decay, **args)``
    returns an object with ``step(X, y)``, per-network ``lr`` (and ``momentum`` when it takes
    one), ``diverged``, ``steps`` and the per-weight arrays named by ``state``. A ``full_batch``
    optimizer (conjugate gradient, ...) takes the whole training set at each step: sweeps with
    it need batch_size = the training set's size (one step per epoch). ``net_state``: its
    per-network int64 arrays (step counts) a checkpoint holds; ``check(args)``: raises a
    ValueError naming the argument when one is out of range (run before anything is written);
    ``checkpoint``: a CheckpointHook for the rest of its state; ``freeze(opt, frozen, units)``:
    saves the rest of its state of the networks (units) marked in the masks and returns a
    function that writes it back (the stopping rule's freeze; see :mod:`.stopping`)."""
    OPTIMIZERS[name] = OptimizerEntry(name, build, bool(momentum), tuple(state), tuple((args or {}).items()),
                                      bool(full_batch), tuple(net_state), check, checkpoint, freeze)


def _check_adam(args):
    for k in ("beta1", "beta2"):
        if k in args and not 0.0 <= args[k] < 1.0:
            raise ValueError(f"optimizer_args: {k} expected a number in [0, 1), got {args[k]!r}")
    if "eps" in args and not args["eps"] > 0:
        raise ValueError(f"optimizer_args: eps expected a number > 0, got {args['eps']!r}")


def _check_cg(args):
    for k in ("max_ls", "restart"):
        if k in args and (args[k] != int(args[k]) or args[k] < 1):
            raise ValueError(f"optimizer_args: {k} expected an integer >= 1, got {args[k]!r}")
    if "c2" in args and not 1e-4 < args["c2"] < 1:
        raise ValueError(f"optimizer_args: c2 expected a number in (1e-4, 1), got {args['c2']!r}")


def _cg_members(model):
    S, d = model.U.shape
    k, N = model.V.shape[1], model.num_networks
    f8, i8 = np.dtype(np.float64), np.dtype(np.int64)
    out = {"cg_dU": ((S, d), f8), "cg_dV": ((S, k), f8), "cg_gU": ((S, d), f8), "cg_gV": ((S, k), f8),
           "cg_has_prev": ((), np.dtype(np.bool_)), "cg_failed": ((N,), np.dtype(np.bool_))}
    out.update({f"cg_{n}": ((N,), f8) for n in ("alpha", "slope", "gnorm2", "objective")})
    out.update({f"cg_{n}": ((N,), i8) for n in ("since_restart", "failures")})
    return out


def _cg_save(opt):
    st = opt.state_dict()
    has = bool(st["has_prev"])
    out = {"cg_has_prev": np.bool_(has),
           "cg_gU": st["gU_prev"] if has else np.zeros(opt.dU.shape), # zeros + the flag: fixed members
           "cg_gV": st["gV_prev"] if has else np.zeros(opt.dV.shape)}
    for n in ("dU", "dV", "alpha", "slope", "gnorm2", "objective"):
        out[f"cg_{n}"] = np.asarray(st[n], np.float64)
    for n in ("since_restart", "failures"):
        out[f"cg_{n}"] = np.asarray(st[n], np.int64)
    out["cg_failed"] = np.asarray(st["failed"], np.bool_)
    return out


def _cg_load(opt, arrays):
    st = {n: arrays[f"cg_{n}"] for n in ("dU", "dV", "alpha", "slope", "gnorm2", "objective", "since_restart",
                                         "failures", "failed")}
    st["has_prev"] = bool(arrays["cg_has_prev"])
    if st["has_prev"]:
        st["gU_prev"], st["gV_prev"] = arrays["cg_gU"], arrays["cg_gV"]
    diverged = opt.diverged.copy()
    opt.load_state_dict(st)          # the caller then restores diverged and steps
    opt.diverged[...] = diverged


CG_CHECKPOINT = CheckpointHook(_cg_members, _cg_save, _cg_load)


def _build_cg(m, lr, mom, wd, max_ls=20, restart=100, c2=0.1):
    from ..optim.cg import ConjugateGradient
    return ConjugateGradient(m, lr, weight_decay=wd, max_ls=int(max_ls), restart=int(restart), c2=c2)


def _builtin_optimizers():
    from ..optim import DDPSGD, Adam, AdamW, MomentumSGD, NesterovSGD, PathSGD
    register_optimizer("momentum_sgd", lambda m, lr, mom, wd: MomentumSGD(m, lr, mom, wd))
    register_optimizer("path_sgd", lambda m, lr, mom, wd: PathSGD(m, lr, mom, wd))
    register_optimizer("ddp_sgd", lambda m, lr, mom, wd, alpha=0.5: DDPSGD(m, lr, alpha=alpha, weight_decay=wd),
                       momentum=False, args={"alpha": 0.5})
    register_optimizer("nesterov_sgd", lambda m, lr, mom, wd: NesterovSGD(m, lr, mom, wd))
    # Adam's moments: bufU/bufV (first), sqU/sqV (second); t: each network's step count (the
    # bias corrections), so a resumed run continues the same corrections
    adam_args = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    for name, cls in (("adam", Adam), ("adamw", AdamW)):
        register_optimizer(name, lambda m, lr, mom, wd, beta1=0.9, beta2=0.999, eps=1e-8, cls=cls:
                           cls(m, lr, betas=(beta1, beta2), eps=eps, weight_decay=wd),
                           momentum=False, state=("bufU", "bufV", "sqU", "sqV"), net_state=("t",), args=adam_args,
                           check=_check_adam)


    # full-batch Polak-Ribiere+ conjugate gradient (paper, Section 2): the schedule's lr is each
    # network's first trial step of the line search; no momentum
    register_optimizer("cg", _build_cg, momentum=False, state=(), args={"max_ls": 20, "restart": 100, "c2": 0.1},
                       full_batch=True, check=_check_cg, checkpoint=CG_CHECKPOINT, freeze=stopping.cg_freeze)


_builtin_optimizers()


def check_optimizer(name, args=None) -> tuple:
    """(name, args as sorted pairs) checked against the registry: unknown names and arguments
    are refused here, before anything runs."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {', '.join(OPTIMIZERS)}, got {name!r}")
    known = dict(OPTIMIZERS[name].args)
    args = dict(args or {})
    for k, v in args.items():
        if k not in known:
            raise ValueError(f"optimizer_args: {name} takes {', '.join(known) or 'no arguments'}, got {k!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"optimizer_args: {k} expected a finite number, got {v!r}")
    if OPTIMIZERS[name].check is not None:
        OPTIMIZERS[name].check({k: float(v) for k, v in args.items()})
    return name, tuple(sorted((k, float(v)) for k, v in args.items()))


def _unbalanced(model, rep, networks, factor=10.0):
    """The thesis's unbalanced initialization: unit h of network n rescaled by u_h -> c_h u_h,
    v_h -> v_h / c_h, log c_h uniform in [-ln factor, ln factor], drawn from
    default_rng([rep, 7, n]). The function each network computes is unchanged."""
    c = np.ones(model.U.shape[0])
    for j, n in enumerate(networks):
        a, b = int(model.offsets[j]), int(model.offsets[j + 1])
        rng = np.random.default_rng([int(rep), 7, int(n)])
        c[a:b] = np.exp(rng.uniform(-math.log(factor), math.log(factor), b - a))
    model.U *= c[:, None].astype(model.dtype)
    model.V /= c[:, None].astype(model.dtype)


# name -> (transform(model, rep, networks, **args), {argument: default})
INIT_TRANSFORMS: dict[str, tuple] = {"unbalanced": (_unbalanced, {"factor": 10.0})}


def check_init_transform(name, args=None) -> tuple:
    if name is None:
        return None, ()
    if name not in INIT_TRANSFORMS:
        raise ValueError(f"init_transform: expected None or one of {', '.join(INIT_TRANSFORMS)}, got {name!r}")
    known = INIT_TRANSFORMS[name][1]
    args = dict(args or {})
    for k, v in args.items():
        if k not in known or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 1:
            raise ValueError(f"init_transform: {name} takes {', '.join(known)} (numbers >= 1), got {k}={v!r}")
    return name, tuple(sorted((k, float(v)) for k, v in args.items()))


def check_device(device) -> str:
    """'cpu', or 'cuda' where pyireg's CUDA engine is built and a GPU is present."""
    if device not in DEVICES:
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    if device == "cuda":
        try:
            from .. import cuda
            ok = bool(cuda.is_available())
        except ImportError:
            ok = False
        if not ok:
            raise ValueError("device: 'cuda' needs pyireg's CUDA engine and a GPU, and this build or machine has "
                             "none (pyireg.cuda.is_available() is False); use device='cpu'")
        raise ValueError("device: the sweep's training loop runs on 'cpu' only so far; use device='cpu'")
    return device


# ----------------------------------------------------------------------------- the run spec
@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """What training any networks of a sweep needs besides the data: the grid (network n has
    width ``grid_widths[n]``, ...) and the protocol. Small and picklable, so that it travels to
    the workers of a distributed sweep. ``schedule`` is any object with ``lr(epoch)`` and
    ``momentum(epoch)``."""
    grid_widths: tuple
    grid_weight_decays: tuple
    grid_lr_scales: tuple
    epochs: int
    batch_size: int
    drop_last: bool
    schedule: object
    init_std: object          # None, or a pair (std_u, std_v) of floats or lists of N floats (init_pair)
    label_noise: float
    resample_split: bool
    eval_batch: int
    measures: tuple = ()      # complexity measures recorded every epoch (pyireg.measures names)
    activation: str = "relu"
    loss: str = "cross_entropy"   # squared: onto the one-hot code of the label
    optimizer: str = "momentum_sgd"
    optimizer_args: tuple = ()    # ((name, value), ...), checked by check_optimizer
    init_transform: str | None = None
    init_transform_args: tuple = ()
    device: str = "cpu"
    # for runs that are not sweeps (the demonstrations): per-network generator seeds (pairing
    # networks that should start alike; default the spawn rule), per-network epoch budgets
    # (network n's lr is 0 after stop_epochs[n] epochs), and a record of epoch 0 (the
    # initialization) passed to after_epoch before training
    init_seeds: tuple | None = None
    stop_epochs: tuple | None = None
    record_epoch0: bool = False
    # the per-network stopping rule (criterion, tol, patience) of stopping.parse_stop_when, or None
    stop_rule: tuple | None = None
    init: str | None = None   # a named initialization of PackedMLP (he_normal, ...), or None: init_std

    @property
    def num_networks(self) -> int:
        return len(self.grid_widths)

    @property
    def extra_columns(self) -> list:
        """The history's columns after history.COLUMNS: the recorded measures, then the stopping
        rule's (when there is one)."""
        return list(self.measures) + (list(stopping.STOP_COLUMNS) if self.stop_rule is not None else [])

    def checkpoint_members(self, model) -> dict:
        """{name: (shape, dtype)} of a checkpoint of ``model`` under this spec."""
        S, d = model.U.shape
        k = model.V.shape[1]
        like = {"U": (S, d), "V": (S, k)}
        members = {"U": ((S, d), model.dtype), "V": ((S, k), model.dtype),
                   "diverged": ((model.num_networks,), np.bool_), "epoch": ((), np.int64),
                   "seed": ((), np.int64), "steps": ((), np.int64),
                   "offsets": ((model.num_networks + 1,), model.offsets.dtype), "sweep_id": ((), np.dtype("<U32"))}
        for name in OPTIMIZERS[self.optimizer].state:
            members[name] = (like["U" if name.endswith("U") else "V"], model.dtype)
        for name in OPTIMIZERS[self.optimizer].net_state:
            members[name] = ((model.num_networks,), np.int64)
        if OPTIMIZERS[self.optimizer].checkpoint is not None:
            members.update(OPTIMIZERS[self.optimizer].checkpoint.members(model))
        if self.stop_rule is not None:
            members.update(stopping.Stopper.members(model.num_networks))
        return members


def init_pair(init_std, init_json):
    """init_std as TrainSpec keeps it: None (the default per layer), or a pair (std_u, std_v) of
    floats or lists of N floats. (The JSON form of the config cannot tell a pair from two
    per-network values.)"""
    if init_std is None:
        return None
    return tuple(init_json) if isinstance(init_std, tuple) else (init_json, init_json)


def _subset_init_std(init_std, networks):
    if init_std is None:
        return None
    return tuple(v if isinstance(v, float) else np.asarray(v, dtype=np.float64)[networks] for v in init_std)


def rep_dataset(dataset, seed: int, *, label_noise: float = 0.0, resample_split: bool = False):
    """The data repetition ``seed`` of a sweep trains on: the training/validation split drawn
    again with ``seed`` when ``resample_split`` (see Dataset.resplit), then ``label_noise`` of
    the training labels changed with seed NOISE_SEED_OFFSET + seed (a different draw per
    repetition, the same in ``sweep`` and ``reproduce``)."""
    ds = dataset
    if resample_split:
        ds = ds.resplit(seed)
    if label_noise:
        ds = D.label_noise(ds, label_noise, seed=NOISE_SEED_OFFSET + int(seed))
    return ds


def batches(n: int, batch_size: int, rep: int, epoch: int, drop_last: bool = False):
    """The index arrays of the mini-batches of epoch ``epoch`` of repetition ``rep`` (the batch
    policy of the module documentation)."""
    perm = np.random.default_rng([int(rep), int(epoch)]).permutation(n)
    stop = n - batch_size + 1 if drop_last else n
    return [perm[i:i + batch_size] for i in range(0, stop, batch_size)]


def build(ds, spec: TrainSpec, rep: int, net):
    """The packed model of networks ``net`` of repetition ``rep`` and its optimizer, initialized
    as the whole grid seeded ``rep`` would be, with the init transform applied."""
    N = spec.num_networks
    width = np.asarray(spec.grid_widths, dtype=np.int64)[net]
    if spec.init_seeds is not None:
        seeds = [int(spec.init_seeds[i]) for i in net]
    else:
        children = np.random.SeedSequence(int(rep)).spawn(N)
        seeds = [children[i] for i in net]
    model = PackedMLP(width.tolist(), ds.num_features, ds.num_classes, dtype=ds.dtype,
                      init_std=_subset_init_std(spec.init_std, net), seed=seeds,
                      activation=spec.activation, loss=spec.loss, init=spec.init)
    if spec.init_transform is not None:
        fn, _ = INIT_TRANSFORMS[spec.init_transform]
        fn(model, rep, net, **dict(spec.init_transform_args))
    entry = OPTIMIZERS[spec.optimizer]
    ls = np.asarray(spec.grid_lr_scales, dtype=np.float64)[net]
    wd = np.asarray(spec.grid_weight_decays, dtype=np.float64)[net]
    opt = entry.build(model, spec.schedule.lr(0) * ls, spec.schedule.momentum(0) if entry.momentum else 0.0, wd,
                      **dict(spec.optimizer_args))
    return model, opt


def train_networks(ds, spec: TrainSpec, rep: int, networks, *, start: int = 0, restore=None, after_epoch=None):
    """Train networks ``networks`` (indices into the grid, ascending) of repetition ``rep`` as one
    packed model, from epoch ``start`` (``restore(model, opt)`` loads its state) to
    ``spec.epochs``, calling ``after_epoch(epoch, frame, model, opt, ev)`` after each epoch with
    its rows (one per network, in the order of ``networks``).

    This is the one training loop of every sweep: the local sweep runs it on the whole grid of a
    repetition, a distributed sweep on each pack. Initialization and batches follow the module's
    rule, and since a network's arithmetic never depends on its neighbours in the packed model,
    its rows are bit-identical however the grid is cut into packs."""
    net = np.asarray(networks, dtype=np.int64)
    N = spec.num_networks
    if net.ndim != 1 or len(net) == 0 or (np.diff(net) <= 0).any() or net[0] < 0 or net[-1] >= N:
        raise ValueError(f"networks: expected ascending distinct indices into the grid of {N} networks, got "
                         f"{net.tolist()[:8]}")
    rds = rep_dataset(ds, rep, label_noise=spec.label_noise, resample_split=spec.resample_split)
    width = np.asarray(spec.grid_widths, dtype=np.int64)[net]
    wd = np.asarray(spec.grid_weight_decays, dtype=np.float64)[net]
    ls = np.asarray(spec.grid_lr_scales, dtype=np.float64)[net]
    model, opt = build(ds, spec, rep, net)
    entry = OPTIMIZERS[spec.optimizer]
    takes_momentum = entry.momentum
    full_batch = entry.full_batch
    # the stopping rule's state travels with the optimizer, so that a checkpoint made from
    # (model, opt) holds it and a restore loads it
    stopper = None
    if spec.stop_rule is not None:
        stopper = opt.stopper = stopping.Stopper(spec.stop_rule, len(net))
    # the squared loss regresses onto the one-hot code of the label
    targets = (lambda y: y) if spec.loss == "cross_entropy" else (lambda y: np.eye(ds.num_classes, dtype=ds.dtype)[y])
    schedule = spec.schedule
    balance0 = model.unit_balance()                 # ||u_h||^2 - ||v_h||^2 at initialization
    scale0 = 2 * model.measures()["l2_penalty"]     # sum_h ||u_h||^2 + ||v_h||^2 per network
    init = measures_init(model, spec.measures)
    if restore is not None:
        restore(model, opt)
    X, y = rds.X_train, targets(rds.y_train)
    stop = None if spec.stop_epochs is None else np.asarray(spec.stop_epochs, dtype=np.int64)[net]

    def frame_of(epoch, train_s, trained=True):
        ev = {split: model.evaluate(Xs, targets(ys), batch_size=spec.eval_batch)
              for split, (Xs, ys) in rds.splits().items()}
        with _profile.section("per-epoch bookkeeping (norms, drift, rows)"):
            frame = epoch_frame(model, opt, ev, balance0, scale0, rep, epoch, width, wd, ls, ds.num_classes,
                                train_s, networks=net, chance=spec.loss == "cross_entropy")
        if spec.measures:
            from .. import measures as M
            vals = M.compute(model, list(spec.measures), X=rds.X_train, y=rds.y_train, init=init)
            for name in spec.measures:
                frame[name] = np.asarray(vals[name], np.float64)
        if stopper is not None:
            if trained and epoch > 0:     # the initialization (epoch 0) is not a trained epoch
                stopper.update(epoch, ev["train"][0], ev["train"][1])
            frame["converged_epoch"] = stopper.state.converged_epoch.copy()
        return frame, ev

    def record(epoch, train_s):
        frame, ev = frame_of(epoch, train_s)
        if after_epoch is not None:
            after_epoch(epoch, frame, model, opt, ev)

    def set_hyper(epoch):
        lr = schedule.lr(epoch) * ls
        opt.lr = lr if stop is None else np.where(epoch < stop, lr, 0.0)
        if stopper is not None:
            opt.lr = np.where(stopper.frozen, 0.0, opt.lr)
        if takes_momentum:
            opt.momentum = schedule.momentum(epoch)

    if spec.record_epoch0 and start == 0:
        opt.lr = schedule.lr(0) * ls
        record(0, 0.0)
    for epoch in range(start, spec.epochs):
        if stopper is not None and stopper.all_done():
            _fill_converged(spec, epoch, frame_of, set_hyper, model, opt, after_epoch)
            break
        t0 = time.perf_counter()
        k0 = _profile.seconds("native training step")
        set_hyper(epoch)
        restore_frozen = stopping.snapshot(model, opt, entry, stopper.frozen) if stopper is not None else None
        if full_batch:                    # the same arrays every epoch (see the module documentation)
            opt.step(X, y)
        else:
            for b in batches(len(y), spec.batch_size, rep, epoch, spec.drop_last):
                opt.step(X[b], y[b])
        if restore_frozen is not None:
            restore_frozen()
        train_s = time.perf_counter() - t0
        if _profile.enabled():
            _profile.add("training loop around the steps", train_s - (_profile.seconds("native training step") - k0))
        record(epoch + 1, train_s)


def _fill_converged(spec, epoch, frame_of, set_hyper, model, opt, after_epoch):
    """Every network has converged after ``epoch`` epochs: the run ends. The rows of epochs
    epoch+1..spec.epochs are what training frozen networks would record (the same weights, so
    the same evaluations; lr 0; the schedule's momentum; no training seconds), committed at once
    as the last epoch's, so that a history keeps one row per network per epoch up to the cap."""
    import pandas as pd
    set_hyper(epoch)
    base, ev = frame_of(epoch + 1, 0.0, trained=False)
    frames = []
    for e in range(epoch, spec.epochs):
        set_hyper(e)
        f = base.copy()
        f["epoch"] = np.int64(e + 1)
        f["lr"] = np.asarray(opt.lr, np.float64)
        f["momentum"] = np.asarray(opt.momentum, np.float64)
        frames.append(f)
    if after_epoch is not None:
        after_epoch(spec.epochs, pd.concat(frames, ignore_index=True), model, opt, ev)


def checkpoint_state(spec: TrainSpec, model, opt, rep: int, epoch: int, sweep_id: str) -> dict:
    """The arrays of a checkpoint after ``epoch`` (see TrainSpec.checkpoint_members)."""
    state = dict(U=model.U, V=model.V, diverged=opt.diverged, epoch=np.int64(epoch), seed=np.int64(rep),
                 offsets=model.offsets, steps=np.int64(opt.steps), sweep_id=np.str_(sweep_id))
    for name in OPTIMIZERS[spec.optimizer].state + OPTIMIZERS[spec.optimizer].net_state:
        state[name] = getattr(opt, name)
    if OPTIMIZERS[spec.optimizer].checkpoint is not None:
        state.update(OPTIMIZERS[spec.optimizer].checkpoint.save(opt))
    if spec.stop_rule is not None:
        state.update(opt.stopper.arrays())
    return state


def restore_state(spec: TrainSpec, arrays: dict, model, opt, rep: int, epoch: int, sweep_id: str, path) -> None:
    """Load checked checkpoint arrays into ``model`` and ``opt``."""
    from .refusals import SweepStateError

    def fail(why):
        return SweepStateError(f"out: checkpoint {path} {why}; restore it, or start the sweep in another directory")
    if str(arrays["sweep_id"]) != sweep_id:
        raise fail("belongs to another sweep (its sweep id differs from config.json's)")
    if int(arrays["seed"]) != rep or int(arrays["epoch"]) != epoch:
        raise fail(f"holds seed {int(arrays['seed'])} epoch {int(arrays['epoch'])}, expected seed {rep} epoch {epoch}")
    if not np.array_equal(arrays["offsets"], model.offsets):
        raise fail("was made for other widths (its network offsets differ)")
    model.U[...], model.V[...] = arrays["U"], arrays["V"]
    for name in OPTIMIZERS[spec.optimizer].state + OPTIMIZERS[spec.optimizer].net_state:
        getattr(opt, name)[...] = arrays[name]
    if OPTIMIZERS[spec.optimizer].checkpoint is not None:
        OPTIMIZERS[spec.optimizer].checkpoint.load(opt, arrays)
    if spec.stop_rule is not None:
        if getattr(opt, "stopper", None) is None:        # an optimizer built outside the loop (models_of)
            opt.stopper = stopping.Stopper(spec.stop_rule, model.num_networks)
        opt.stopper.load(arrays)
    opt.diverged[...] = arrays["diverged"]
    opt.steps = int(arrays["steps"])


# ----------------------------------------------------------------------------- the epoch record
def measures_init(model, names):
    """A copy of the initial weights when a recorded measure needs them (distance from
    initialization, the over-parametrization bound), else None."""
    from .. import measures as M
    if any("init" in M.needs(n) for n in names):
        return model.U.copy(), model.V.copy()
    return None


HISTORY_DTYPES = {**{c: "int64" for c in ("repetition", "network", "width", "epoch")},
                  **{c: "float64" for c in COLUMNS if c not in ("repetition", "network", "width", "epoch",
                                                                  "diverged", "at_chance")},
                  "diverged": "bool", "at_chance": "bool"}


def empty_history():
    import pandas as pd
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in HISTORY_DTYPES.items()})


def epoch_frame(model, opt, ev, balance0, scale0, rep, epoch, net_width, net_wd, net_ls, k, train_s,
                networks=None, chance=True):
    """The rows of one epoch, one per network (``networks``: their indices in the grid, default
    0..N-1), built column-wise from per-network vectors: the norms come from the native measures
    and the drift from one per-unit vector, so no copy of the weights is made, whatever the
    width. ``diverged`` is also set from the state after the epoch's last step: a network whose
    weights became non-finite there (infinite norms), or whose evaluated loss on a split is NaN
    or inf (outputs that overflow), is marked in the optimizer and the row."""
    import pandas as pd
    N = model.num_networks
    drift = np.add.reduceat(np.abs(model.unit_balance() - balance0), model.offsets[:-1]) / scale0
    norms = model.measures()
    lnk = math.log(k)
    nU, nV = np.asarray(norms["norm_U"], np.float64), np.asarray(norms["norm_V"], np.float64)
    opt.diverged |= ~(np.isfinite(nU) & np.isfinite(nV))
    net = np.arange(N, dtype=np.int64) if networks is None else np.asarray(networks, dtype=np.int64)
    cols = {"repetition": np.full(N, rep, np.int64), "network": net,
            "width": net_width.astype(np.int64), "weight_decay": net_wd.astype(np.float64),
            "lr_scale": net_ls.astype(np.float64), "epoch": np.full(N, epoch, np.int64),
            "lr": np.asarray(opt.lr, np.float64), "momentum": np.asarray(opt.momentum, np.float64)}
    for s in ("train", "val", "test"):
        cols[f"{s}_error"] = np.asarray(ev[s][0], np.float64)
        cols[f"{s}_loss"] = np.asarray(ev[s][1], np.float64)
        opt.diverged |= ~np.isfinite(cols[f"{s}_loss"])
    cols.update(norm_U=nU, norm_V=nV, balance_drift=np.asarray(drift, np.float64), diverged=opt.diverged.copy(),
                at_chance=(np.abs(cols["train_loss"] - lnk) <= CHANCE_RTOL * lnk) if chance else np.zeros(N, bool),
                train_seconds=np.full(N, train_s, np.float64))
    return pd.DataFrame(cols, columns=COLUMNS)


# ----------------------------------------------------------------------------- models of a saved run
def spec_from_config(config: dict) -> TrainSpec:
    """The TrainSpec a sweep's config.json describes (its schedule restored from the record)."""
    from ..schedule import schedule_from_json
    init_std = config.get("init_std")
    if init_std is not None:
        init_std = tuple(init_std) if config.get("init_std_pair") else (init_std, init_std)
    n = config["num_networks"]
    wds = [wd for wd in config["weight_decays"] for _ in config["lr_scales"] for _ in config["widths"]]
    lss = [ls for _ in config["weight_decays"] for ls in config["lr_scales"] for _ in config["widths"]]
    if len(wds) != n or len(config["grid_widths"]) != n:
        from .refusals import SweepStateError
        raise SweepStateError(f"out: config.json describes {n} networks but a grid of {len(wds)}; restore the "
                              "sweep's own config.json")
    return TrainSpec(grid_widths=tuple(config["grid_widths"]), grid_weight_decays=tuple(wds), grid_lr_scales=tuple(lss),
                     epochs=config["epochs"], batch_size=config["batch_size"], drop_last=config["drop_last"],
                     schedule=schedule_from_json(config["schedule"]), init_std=init_std,
                     label_noise=config["label_noise"], resample_split=config["resample_split"],
                     eval_batch=config["eval_batch"], measures=tuple(config.get("measures", ())),
                     activation=config.get("activation", "relu"), loss=config.get("loss", "cross_entropy"),
                     optimizer=config.get("optimizer", "momentum_sgd"),
                     optimizer_args=tuple(sorted(config.get("optimizer_args", {}).items())),
                     init_transform=config.get("init_transform"),
                     init_transform_args=tuple(sorted(config.get("init_transform_args", {}).items())),
                     record_epoch0=bool(config.get("record_epoch0", False)),
                     stop_rule=stopping.rule_from_json(config.get("stop_when")), init=config.get("init"))


def models_of(ds, out, rep: int, epoch: int | None = None):
    """(initial model, model after ``epoch``) of repetition ``rep`` of the sweep saved in ``out``
    (default: its last epoch); the weights come from its checkpoint (kept with
    checkpoints="final" or "all"; with checkpoint_every=K, "all" keeps every K-th epoch's and
    the last), verified against the checksum its history records."""
    from pathlib import Path

    from .store import SweepDir, load_checkpoint, read_config
    out = Path(out)
    config = read_config(out / "config.json")
    d = SweepDir(out, config, "all")
    _, done = d.read_own_history()
    epoch = done.get(int(rep), 0) if epoch is None else int(epoch)
    path = d.ckpt(rep, epoch)
    spec = spec_from_config(config)
    net = np.arange(spec.num_networks)
    init, _ = build(ds, spec, rep, net)
    model, opt = build(ds, spec, rep, net)
    if path.name not in d.checksums:
        every = int(config.get("checkpoint_every", 1))
        raise FileNotFoundError(f"out: no committed checkpoint {path.name} in {out / 'checkpoints'}; keep the "
                                "final weights with checkpoints='final'"
                                + (f" (this sweep writes the weights every {every} epochs and after the last: "
                                   "checkpoints='all' keeps those)" if every != 1 else ""))
    arrays = load_checkpoint(path, spec.checkpoint_members(model), d.checksums[path.name])
    restore_state(spec, arrays, model, opt, rep, epoch, config["sweep_id"], path)
    return init, model
