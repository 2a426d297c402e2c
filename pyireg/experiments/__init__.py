"""Orchestration: width sweeps, the paper's figures, results tables."""
from .sweep import SweepResult, load_results, summarize, sweep

__all__ = ["sweep", "SweepResult", "summarize", "load_results"]
