"""One run record: every sweep's config.json (and each demo's NAME.json) says what ran and where:
the command line or call, pyireg's version and the commit of its build, the library versions,
the SIMD target and thread count, the CPU; resume does not compare it."""
import json
import re

import numpy as np

import pyireg
from pyireg import _core
from pyireg import data as D
from pyireg.cli import main
from pyireg.experiments import sweep

KEYS = {"command", "pyireg", "git_commit", "python", "numpy", "torch", "pyarrow", "simd", "threads", "cpu",
        "cpu_count"}


def test_config_records_the_command_and_the_environment(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(int))
    argv = ["sweep", "--data", str(tmp_path / "d.npz"), "--widths", "2", "--epochs", "1", "--batch-size", "12",
            "--out", str(tmp_path / "s"), "--quiet", "--threads", "1"]
    assert main(argv) == 0
    run = json.loads((tmp_path / "s" / "config.json").read_text())["run"]
    assert KEYS <= set(run)
    assert run["command"] == "pyireg " + " ".join(argv)
    assert run["pyireg"] == pyireg.__version__ and run["numpy"] == np.__version__
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", run["git_commit"]), run["git_commit"]
    assert run["simd"] == _core.build_config()["simd_active"] and run["threads"] == 1
    assert isinstance(run["cpu"], str) and run["cpu_count"] >= 1
    # a resume from another command line (another thread count) is not refused, and the record
    # of the run that made the sweep stays (config.json is never rewritten)
    raw = (tmp_path / "s" / "config.json").read_bytes()
    assert main([*argv[:-1], "2", "--resume"]) == 0
    assert (tmp_path / "s" / "config.json").read_bytes() == raw


def test_a_call_from_python_is_recorded_too(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    res = sweep(D.from_arrays(X, (X[:, 0] > 0).astype(int)), [2], epochs=1, batch_size=12, progress=False,
                out=tmp_path / "p", run={"command": "my notebook, cell 3"})
    assert res.config["run"] == {"command": "my notebook, cell 3"}
    res = sweep(D.from_arrays(X, (X[:, 0] > 0).astype(int)), [2], epochs=1, batch_size=12, progress=False)
    assert KEYS <= set(res.config["run"])
