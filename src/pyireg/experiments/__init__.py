"""Orchestration: width sweeps, the paper's figures, results tables."""
from .sweep import (ChanceWarning, SweepResult, SweepStateError, estimate_memory, load_results, summarize,
                    sweep)

__all__ = ["sweep", "SweepResult", "summarize", "load_results", "estimate_memory", "ChanceWarning",
           "SweepStateError"]
