"""Executors: what runs a sweep's packs (one after another in this process, or as Ray tasks),
and the error naming the packs that failed. They run jobs, callables job(ds, pack), and know
nothing of what a job trains (pyireg.experiments.packed makes the jobs)."""
from __future__ import annotations


class PackError(RuntimeError):
    """Some packs of a sweep failed; the others are kept. ``failures`` lists (Pack, exception)."""

    def __init__(self, message, failures):
        super().__init__(message)
        self.failures = failures


class LocalExecutor:
    """Runs the packs one after another in this process: the sweep resumes pack by pack, and a
    grid too large for memory as one model runs in packs of ``pack_units`` units. ``threads``:
    native threads of each pack (default: the process's setting)."""

    def __init__(self, pack_units: int | None = None, threads: int | None = None):
        from .packs import _check_pack_units
        self.pack_units = None if pack_units is None else _check_pack_units(pack_units)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads: expected a positive integer, got {threads!r}")
        self.threads = threads

    def start(self) -> dict:
        from .. import get_num_threads
        return {"workers": 1, "threads": self.threads, "per_machine": 1,
                "where": f"in this process, one pack at a time on {self.threads or get_num_threads()} thread(s)"}

    def run(self, job, ds, packs):
        for pack in packs:
            try:
                outcome = job(ds, pack)
            except Exception as e:                   # a failed pack; the others go on
                outcome = e
            yield pack, outcome

    def stop(self) -> None:
        pass

    def __repr__(self):
        return f"LocalExecutor(pack_units={self.pack_units}, threads={self.threads})"


def as_executor(executor):
    if isinstance(executor, str):
        if executor == "local":
            return LocalExecutor()
        if executor == "ray":
            from .ray_executor import RayExecutor
            return RayExecutor()
    elif all(callable(getattr(executor, m, None)) for m in ("start", "run", "stop")):
        return executor
    raise TypeError(f"executor: expected None, 'local', 'ray' or an executor such as "
                    f"pyireg.distributed.RayExecutor(...), got {executor!r}")
