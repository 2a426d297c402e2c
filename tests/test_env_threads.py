"""The OpenMP environment pyireg starts with: OMP_NUM_THREADS outside [1, 4 x processors]
(or not a number) is clamped with one warning instead of a libgomp failure, a crash or a
MemoryError, also when OpenMP was loaded before pyireg; the wait defaults to a short spin
(GOMP_SPINCOUNT) unless the user chose one. Each case runs in a fresh interpreter."""
import os
import subprocess
import sys

import pytest

SCRIPT = """
import ctypes, os, sys, warnings
if sys.argv[1] == "preload":                  # OpenMP loaded, with the user's values, before pyireg
    ctypes.CDLL("libgomp.so.1").omp_get_max_threads()
warnings.simplefilter("always")
import numpy as np
import pyireg
m = pyireg.PackedMLP([300] * 40, 50, 10, seed=0)
X = np.random.default_rng(0).standard_normal((300, 50)).astype(np.float32)
y = np.arange(300) % 10
pyireg.MomentumSGD(m, 0.01, 0.9).step(X, y)
print(pyireg.get_num_threads(), pyireg.max_num_threads(),
      os.environ.get("OMP_WAIT_POLICY", "-") + "/" + os.environ.get("GOMP_SPINCOUNT", "-"),
      float(m.forward(X).sum()))
"""


def _run(env_updates, mode="plain"):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_updates)
    r = subprocess.run([sys.executable, "-c", SCRIPT, mode], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-2000:]}"
    threads, hi, policy, _ = r.stdout.split()
    warned = [line for line in r.stderr.splitlines() if "pyireg: OMP_NUM_THREADS" in line]
    return int(threads), int(hi), policy, warned


@pytest.mark.parametrize("value", ["1000", "100000", "0", "-3"])
def test_out_of_range_thread_counts_are_clamped_with_one_warning(value):
    threads, hi, _, warned = _run({"OMP_NUM_THREADS": value})
    assert threads == (1 if int(value) < 1 else hi)
    assert len(warned) == 1 and "clamped" in warned[0], warned


def test_a_thread_count_that_is_not_a_number_is_ignored_with_one_warning():
    threads, hi, _, warned = _run({"OMP_NUM_THREADS": "many"})
    assert 1 <= threads <= hi
    assert len(warned) == 1 and "ignored" in warned[0], warned


def test_values_in_range_and_nested_lists_are_kept_silently():
    threads, _, _, warned = _run({"OMP_NUM_THREADS": "1,1"})
    assert threads == 1 and warned == []


def test_clamped_even_when_openmp_was_loaded_first():
    """libgomp already parsed OMP_NUM_THREADS=100000 before pyireg could change it: the native
    module clamps its starting count itself."""
    threads, hi, _, _ = _run({"OMP_NUM_THREADS": "100000"}, mode="preload")
    assert threads == hi


def test_wait_defaults_to_a_short_spin_and_a_users_choice_is_kept():
    from pyireg import _env
    assert _run({})[2] == f"-/{_env.PYIREG_SPINCOUNT}"
    assert _run({"OMP_WAIT_POLICY": "active"})[2] == "active/-"
    assert _run({"OMP_WAIT_POLICY": "passive"})[2] == "passive/-"
    assert _run({"GOMP_SPINCOUNT": "7"})[2] == "-/7"
