"""Cutting a sweep's grid into packs: networks of one repetition trained together as one packed
model by one task.

A pack holds networks of one repetition only, because the networks of a packed model share its
mini-batches and the data order of an epoch depends on the repetition. Within a repetition any
subset may go together: a network's arithmetic never depends on its neighbours, so the packing
changes where a network is trained, never its numbers.

The cost of a pack is its hidden units x epochs (the work of a training step, of evaluation and
of the weight norms is proportional to the units). Each repetition's networks are cut into
ceil(units / pack_units) packs by longest-processing-time list scheduling: networks from the
widest down, each to the pack with the least cost so far. The packs then differ by at most the
cost of one network, and the largest is within 4/3 of the best possible (Graham's bound).
"""
from __future__ import annotations

import dataclasses
import heapq
import math
import numbers
from typing import Sequence

# Packs of fewer units are not made by default: a pack's fixed cost is small (5 ms measured on
# one machine, README), but each pack is also a task to schedule, a file to publish and check,
# and on a cluster a worker's first pack pays for its imports and its node's copy of the data;
# 2,048 is the widest network of the paper's grids, which no packing can cut anyway.
MIN_PACK_UNITS = 2048
PACKS_PER_WORKER = 4       # enough packs to even out the load, and to lose little when one is retried


@dataclasses.dataclass(frozen=True)
class Pack:
    """Networks ``networks`` (ascending indices into the sweep's grid) of repetition
    ``repetition``, trained as one packed model; ``units`` hidden units in all, ``cost`` =
    units x epochs."""
    id: int
    repetition: int
    networks: tuple
    units: int
    cost: int

    def describe(self, grid_widths: Sequence[int]) -> str:
        w = sorted({int(grid_widths[n]) for n in self.networks})
        shown = ", ".join(map(str, w[:6])) + (", ..." if len(w) > 6 else "")
        return (f"pack {self.id} (repetition {self.repetition}, {len(self.networks)} network"
                f"{'s' if len(self.networks) > 1 else ''} of widths {shown}; {self.units:,} units)")

    def to_json(self) -> dict:
        return {"id": self.id, "repetition": self.repetition, "networks": list(self.networks),
                "units": self.units, "cost": self.cost}


def _check_pack_units(pack_units):
    if isinstance(pack_units, bool) or not isinstance(pack_units, numbers.Integral) or pack_units < 1:
        raise ValueError(f"pack_units: expected a positive integer (hidden units per pack), got {pack_units!r}")
    return int(pack_units)


def default_pack_units(grid_widths: Sequence[int], repetitions: int, workers: int) -> int:
    """Units per pack for ``workers`` workers: about PACKS_PER_WORKER packs per worker, no fewer
    units than MIN_PACK_UNITS, and never fewer than the widest network (which cannot be cut)."""
    total = sum(int(w) for w in grid_widths) * int(repetitions)
    units = math.ceil(total / (PACKS_PER_WORKER * max(1, int(workers))))
    return max(units, MIN_PACK_UNITS, max(int(w) for w in grid_widths))


def plan_packs(grid_widths: Sequence[int], seeds: Sequence[int], epochs: int, pack_units: int) -> list[Pack]:
    """The packs of a sweep: for each repetition (in ``seeds`` order), its networks cut into
    ceil(units / pack_units) packs of similar cost (see the module documentation). Pack ids
    count from 0 over all repetitions; within a repetition, packs are ordered by their first
    network. Deterministic: the same arguments give the same plan."""
    pack_units = _check_pack_units(pack_units)
    widths = [int(w) for w in grid_widths]
    if not widths or min(widths) < 1:
        raise ValueError(f"grid_widths: expected positive widths, got {list(grid_widths)[:8]}")
    total = sum(widths)
    m = min(len(widths), max(1, math.ceil(total / pack_units)))
    # longest processing time first: the widest network goes to the lightest pack (ties: lowest index)
    order = sorted(range(len(widths)), key=lambda n: (-widths[n], n))
    heap = [(0, b) for b in range(m)]
    members = [[] for _ in range(m)]
    for n in order:
        load, b = heapq.heappop(heap)
        members[b].append(n)
        heapq.heappush(heap, (load + widths[n], b))
    groups = sorted((sorted(g) for g in members if g), key=lambda g: g[0])
    packs = []
    for rep in seeds:
        for g in groups:
            units = sum(widths[n] for n in g)
            packs.append(Pack(len(packs), int(rep), tuple(g), units, units * int(epochs)))
    return packs


def check_plan(packs: Sequence[Pack], num_networks: int, seeds: Sequence[int]) -> str | None:
    """Why ``packs`` is not a plan of this grid (each network of each repetition in exactly one
    pack, ids 0..P-1), or None when it is."""
    if [p.id for p in packs] != list(range(len(packs))):
        return "its pack ids are not 0, 1, 2, ..."
    seen = {int(s): [0] * num_networks for s in seeds}
    for p in packs:
        if p.repetition not in seen:
            return f"pack {p.id} is of repetition {p.repetition}, which this sweep (seeds {list(seeds)}) does not have"
        if not p.networks or list(p.networks) != sorted(set(p.networks)) or p.networks[0] < 0 \
                or p.networks[-1] >= num_networks:
            return f"pack {p.id} does not hold ascending networks of a grid of {num_networks}"
        for n in p.networks:
            seen[p.repetition][n] += 1
    for rep, counts in seen.items():
        if any(c != 1 for c in counts):
            n = next(i for i, c in enumerate(counts) if c != 1)
            return f"network {n} of repetition {rep} is in {counts[n]} packs, expected 1"
    return None


def makespan(costs: Sequence[float], workers: int) -> float:
    """The time ``workers`` workers take for tasks of these durations when each task, in the
    given order, starts on the first worker to become free (list scheduling, what the executor
    does with the packs ordered by cost). With the tasks in decreasing order it is within 4/3 of
    the best possible schedule."""
    if workers < 1:
        raise ValueError(f"workers: expected a positive integer, got {workers!r}")
    free = [0.0] * int(workers)
    for c in costs:
        heapq.heapreplace(free, free[0] + float(c))
    return max(free)
