"""Orchestration: width sweeps, the paper's figures, results tables. The parts: store (the
sweep directory), training (the run spec and the training loop), results (reading them),
resources (memory and progress), sweep (checks and orchestration)."""
from .resources import estimate_memory
from .results import SweepResult, load_results, summarize
from .refusals import SweepStateError
from .sweep import ChanceWarning, sweep

__all__ = ["sweep", "SweepResult", "summarize", "load_results", "estimate_memory", "ChanceWarning",
           "SweepStateError"]
