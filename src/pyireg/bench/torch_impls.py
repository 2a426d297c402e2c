"""The PyTorch formulations a width sweep is timed against (a loop over widths, width buckets,
packed GEMM + index_add / embedding_bag, optionally compiled) and the bucket tuner."""

import time

import numpy as np

from ..model import PackedMLP
from .common import (
    BATCH,
    BUCKET_COUNTS,
    BUCKET_LAYOUTS,
    LR,
    MOMENTUM,
    TUNE_STEPS,
    WEIGHT_DECAY,
    bucket_plans,
)


class ForeachSGD:
    """torch.optim.SGD(momentum, dampening=0, weight_decay, nesterov=False) in foreach form, with
    per-network hyper-parameters: each parameter carries tensors of one value per row (unit),
    broadcast over the row. g = grad + wd * w; buf = g on the first step, else momentum * buf + g;
    w = w - lr * buf."""

    def __init__(self, params, lr, momentum, weight_decay):
        import torch
        self.params = list(params)
        self.neg_lr = [-t for t in lr]
        self.momentum = list(momentum)
        self.weight_decay = list(weight_decay)
        self.any_wd = any(bool(torch.any(t != 0)) for t in self.weight_decay)
        self.bufs = None

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    def step(self):
        import torch
        with torch.no_grad():
            grads = [p.grad for p in self.params]
            if self.any_wd:
                torch._foreach_addcmul_(grads, self.params, self.weight_decay)
            if self.bufs is None:
                self.bufs = [g.clone() for g in grads]
            else:
                torch._foreach_mul_(self.bufs, self.momentum)
                torch._foreach_add_(self.bufs, grads)
            torch._foreach_addcmul_(self.params, self.bufs, self.neg_lr)


def _per_network(value, n):
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).astype(np.float32)


class _TorchTrainer:
    """A PyTorch formulation of the sweep: ``step(xb, yb)`` does one momentum-SGD step of every
    network (one backward over the summed mean losses) and returns the losses before it, in the
    model's network order."""
    opt = None

    def losses(self, xb, yb):
        raise NotImplementedError

    def step(self, xb, yb):
        self.opt.zero_grad(set_to_none=True)
        losses = self.losses(xb, yb)
        losses.sum().backward()
        self.opt.step()
        return losses.detach()


class TorchLoop(_TorchTrainer):
    """One nn.Sequential per width, one backward over the summed losses, one foreach
    torch.optim.SGD over all parameters (one parameter group: the scalar hyper-parameters of
    the benchmark; per-network ones would need a group per network)."""

    def __init__(self, model: PackedMLP, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY):
        import torch
        self.mods = model.to_torch()
        self.opt = torch.optim.SGD([p for m in self.mods for p in m.parameters()], lr=lr, momentum=momentum,
                                   weight_decay=weight_decay, foreach=True)

    def losses(self, xb, yb):
        import torch
        ce = torch.nn.functional.cross_entropy
        return torch.stack([ce(m(xb), yb) for m in self.mods])


class TorchBuckets(_TorchTrainer):
    """Width buckets: each bucket of n networks padded to its largest width W and trained as one
    batched ensemble. The padded units have zero weights and a zero learning rate: their
    activations are relu(0) = 0, so they add exactly zero to the logits, and they stay zero
    (``padding_is_zero`` checks it).

    layout "GEMM per bucket": each bucket's U (n W x d) and V (n W x k) are separate tensors and
    its first layer is one GEMM; "one GEMM": all buckets' units in one U and one V, the first
    layer one GEMM over all of them, split into buckets for the second layer."""

    def __init__(self, model: PackedMLP, groups, layout="GEMM per bucket", lr=LR, momentum=MOMENTUM,
                 weight_decay=WEIGHT_DECAY):
        import torch
        if layout not in BUCKET_LAYOUTS:
            raise ValueError(f"layout: expected one of {BUCKET_LAYOUTS}, got {layout!r}")
        N, d, k = model.num_networks, model.in_features, model.out_features
        widths = np.asarray(model.widths)
        self.layout, self.k = layout, k
        self.shapes = [(len(g), int(widths[g].max())) for g in groups]
        self.rows = [n * W for n, W in self.shapes]
        order = np.concatenate(groups)
        if sorted(order.tolist()) != list(range(N)):
            raise ValueError("groups: expected every network exactly once")
        self.inverse = torch.from_numpy(np.argsort(order))
        # row of every network's first unit in the padded layout, then of every unit
        slot = np.concatenate([np.repeat([W], n) for n, W in self.shapes])
        first_row = np.concatenate([[0], np.cumsum(slot)[:-1]])
        net_first = np.empty(N, np.int64)
        net_first[order] = first_row
        unit_net = model.network_of_unit()
        dest = torch.from_numpy(net_first[unit_net] + np.arange(model.num_units) - model.offsets[unit_net])
        R = int(sum(self.rows))
        U, V = torch.zeros(R, d), torch.zeros(R, k)
        U[dest] = torch.from_numpy(model.U)
        V[dest] = torch.from_numpy(model.V)
        hyper = []
        for value in (lr, momentum, weight_decay):
            t = torch.zeros(R, 1)                    # padding rows: zero learning rate
            t[dest, 0] = torch.from_numpy(_per_network(value, N)[unit_net])
            hyper.append(t)
        self.real = torch.zeros(R, dtype=torch.bool)
        self.real[dest] = True
        if layout == "one GEMM":
            self.U, self.V = [U.requires_grad_(True)], [V.requires_grad_(True)]
            hyper = [[t] for t in hyper]
        else:
            self.U = [u.clone().requires_grad_(True) for u in U.split(self.rows)]
            self.V = [v.clone().requires_grad_(True) for v in V.split(self.rows)]
            hyper = [list(t.split(self.rows)) for t in hyper]
        self.opt = ForeachSGD(self.U + self.V, *(h + h for h in hyper))
        self.padding = R / float(model.num_units) - 1.0

    def losses(self, xb, yb):
        import torch
        B, k, xT = len(xb), self.k, xb.T
        if self.layout == "one GEMM":
            A = torch.relu(self.U[0] @ xT).split(self.rows)        # units x batch, per bucket
            Vs = self.V[0].split(self.rows)
        else:
            A = [torch.relu(u @ xT) for u in self.U]
            Vs = self.V
        logits = torch.cat([torch.bmm(a.view(n, W, B).transpose(1, 2), v.view(n, W, k))
                            for a, v, (n, W) in zip(A, Vs, self.shapes)])          # N x B x k, bucket order
        losses = torch.nn.functional.cross_entropy(
            logits.view(-1, k), yb.repeat(len(self.inverse)), reduction="none").view(-1, B).mean(1)
        return losses[self.inverse]

    def padding_is_zero(self) -> bool:
        import torch
        with torch.no_grad():
            U, V = torch.cat([u.detach() for u in self.U]), torch.cat([v.detach() for v in self.V])
            return bool((U[~self.real] == 0).all() and (V[~self.real] == 0).all())


def _packed_index_add(U, V, net, N: int, xb, yb):
    """The packed formulation: one GEMM, then logits[n] = sum over n's units of a_h v_h^T."""
    import torch
    At = torch.relu(U @ xb.T)                                        # S x B
    contrib = At.unsqueeze(2) * V.unsqueeze(1)                       # S x B x k
    logits = torch.zeros(N, len(xb), V.shape[1], dtype=U.dtype).index_add(0, net, contrib)
    return torch.nn.functional.cross_entropy(
        logits.view(-1, V.shape[1]), yb.repeat(N), reduction="none").view(N, -1).mean(1)


_COMPILED = {}


def _compiled_index_add():
    import torch
    if "index_add" not in _COMPILED:
        _COMPILED["index_add"] = torch.compile(_packed_index_add, dynamic=False)
    return _COMPILED["index_add"]


class TorchPacked(_TorchTrainer):
    """The packed model in PyTorch: U (S x d) and V (S x k) as in pyireg, no padding, one GEMM
    for the first layer; the block-diagonal second layer as a segmented sum, by ``index_add``
    (eager or under torch.compile) or by ``embedding_bag``. Per-network hyper-parameters as
    per-unit tensors in a foreach momentum SGD."""

    def __init__(self, model: PackedMLP, second="index_add", compiled=False, lr=LR, momentum=MOMENTUM,
                 weight_decay=WEIGHT_DECAY):
        import torch
        if second not in ("index_add", "embedding_bag"):
            raise ValueError(f"second: expected 'index_add' or 'embedding_bag', got {second!r}")
        if compiled and second != "index_add":
            raise ValueError("compiled: only the index_add formulation")
        self.second, self.N, self.S = second, model.num_networks, model.num_units
        self.U = torch.from_numpy(model.U.copy()).requires_grad_(True)
        self.V = torch.from_numpy(model.V.copy()).requires_grad_(True)
        unit_net = model.network_of_unit()
        self.net = torch.from_numpy(unit_net)
        self.unit_start = torch.from_numpy(model.offsets[:-1].astype(np.int32))
        self.fn = _compiled_index_add() if compiled else _packed_index_add
        self._bags = {}
        hyper = [torch.from_numpy(_per_network(v, self.N)[unit_net]).unsqueeze(1) for v in (lr, momentum, weight_decay)]
        self.opt = ForeachSGD([self.U, self.V], *([h, h] for h in hyper))

    def _bag(self, B):
        """embedding_bag's indices (every unit, for every sample) and offsets (one bag per
        sample and network), int32, made once per batch size."""
        import torch
        if B not in self._bags:
            idx = torch.arange(self.S, dtype=torch.int32).repeat(B)
            offs = (torch.arange(B, dtype=torch.int32).unsqueeze(1) * self.S + self.unit_start).reshape(-1)
            self._bags[B] = (idx, offs)
        return self._bags[B]

    def losses(self, xb, yb):
        import torch
        if self.second == "index_add":
            return self.fn(self.U, self.V, self.net, self.N, xb, yb)
        B = len(xb)
        A = torch.relu(xb @ self.U.T)                                  # B x S
        idx, offs = self._bag(B)
        logits = torch.nn.functional.embedding_bag(idx, self.V, offs, mode="sum",
                                                   per_sample_weights=A.reshape(-1))   # (B N) x k
        return torch.nn.functional.cross_entropy(
            logits, yb.repeat_interleave(self.N), reduction="none").view(B, self.N).mean(0)


# --------------------------------------------------------------------------- tuning, compiling
def tune_buckets(model: PackedMLP, X, y, counts=BUCKET_COUNTS, layouts=BUCKET_LAYOUTS, steps=TUNE_STEPS,
                 log=None) -> dict:
    """Time every bucket count and layout on the first ``steps`` steps (after one warm-up step;
    the best step counts) and keep the fastest. Returns its config with the trials."""
    import torch
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y).long()
    plans = bucket_plans(model.widths, counts)
    t0 = time.perf_counter()
    trials, seen = [], set()
    for c in counts:
        key = tuple(len(g) for g in plans[c])
        if key in seen:             # a count past the number of distinct widths gives the same plan
            continue
        seen.add(key)
        for layout in layouts:
            tr = TorchBuckets(model, plans[c], layout)
            best = float("inf")
            for i in range(steps + 1):
                b = i % max(1, len(X) // BATCH)
                t = time.perf_counter()
                tr.step(Xt[b * BATCH:(b + 1) * BATCH], yt[b * BATCH:(b + 1) * BATCH])
                if i:
                    best = min(best, time.perf_counter() - t)
            trials.append(dict(count=len(plans[c]), layout=layout, padding=tr.padding, step_seconds=best))
            if log:
                log(f"    buckets {len(plans[c]):4d}, {layout:15s}: padding {100 * tr.padding:5.2f}%, "
                    f"{best * 1e3:8.1f} ms per step")
            del tr
    best = min(trials, key=lambda t: t["step_seconds"])
    return dict(count=best["count"], layout=best["layout"], padding=best["padding"],
                requested_counts=list(counts), tune_steps=steps, tune_seconds=time.perf_counter() - t0,
                trials=trials)

