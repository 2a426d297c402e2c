"""The run record every config.json carries: the exact command line or call, pyireg's version
and commit, the library versions, the native build's SIMD target and thread count, and the CPU.
It describes the process, so resume never compares it (store.NOT_COMPARED)."""
from __future__ import annotations

import functools
import os
import platform
import sys

_CALL: list = []      # the command line being run, set by pyireg.cli (else sys.argv)


def set_command(argv) -> None:
    """Record the command line of this process's run (the CLI calls this)."""
    _CALL[:] = ["pyireg", *[str(a) for a in argv]]


def git_commit() -> str:
    """The commit pyireg was built from (written into _build_info.py by the build from a git
    checkout), or "unknown"."""
    try:
        from .._build_info import GIT_COMMIT
    except ImportError:
        return "unknown"
    return str(GIT_COMMIT) or "unknown"


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:          # not installed, or broken metadata: the record says so
        return None


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_record(call: str | None = None) -> dict:
    """What ran and where: ``call`` (default: the recorded command line, else sys.argv)."""
    from .. import __version__, build_config, get_num_threads
    cfg = build_config()
    if call is None:
        call = " ".join(_CALL) if _CALL else " ".join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:]])
    return {"command": call, "pyireg": __version__, "git_commit": git_commit(),
            "python": platform.python_version(), "numpy": _version("numpy"), "torch": _version("torch"),
            "pyarrow": _version("pyarrow"), "pandas": _version("pandas"),
            "simd": cfg.get("simd_active"), "threads": int(get_num_threads()),
            "cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform()}
