"""Sweeps beyond one process: the grid cut into packs of networks of similar cost, each trained
as one packed model by one task, the results merged into the history a local sweep writes.

    pyireg.sweep(ds, widths, seeds=range(5), out="results/big", executor="ray")
    pyireg.sweep(ds, widths, out="results/big", executor=RayExecutor(address="auto", workers=64))

Because a network's arithmetic never depends on its neighbours in a packed model, every
network's rows are bit-identical to those of the local sweep, however the grid is packed.
``executor="ray"`` (or :class:`RayExecutor`) runs the packs as Ray tasks, on an embedded local
Ray or a cluster; ``executor="local"`` (:class:`LocalExecutor`) runs them one after another in
this process. Ray is an optional extra (``pip install "pyireg[ray]"``), imported only when a
Ray executor starts. Files and the resume guarantee: :mod:`pyireg.experiments.packed`.
"""
from .executors import LocalExecutor, PackError
from .packs import Pack, default_pack_units, makespan, plan_packs
from .ray_executor import RayExecutor

__all__ = ["RayExecutor", "LocalExecutor", "PackError", "Pack", "plan_packs", "default_pack_units", "makespan"]
