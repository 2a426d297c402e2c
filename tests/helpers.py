"""Shared test helpers (the tests directory is on pythonpath, see pyproject.toml)."""
import numpy as np

from pyireg import _core


def make_data(B, d, k, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((B, d)).astype(dtype)
    y = rng.integers(0, k, B)
    return X, y


def simd_targets():
    return [s for s in ("generic", "avx2", "avx512") if _core.simd_available(s)]


class Killed(BaseException):
    """Stands for SIGKILL in a sweep stopped in-process: not an Exception, so the sweep's error
    clean-up does not run, as after a real kill (only the lock is released, as the system would)."""


def tiny_classes(n=80, seed=0):
    """A small 3-class data set of 6 features (20 validation, 20 test samples)."""
    from pyireg import data as D
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    return D.from_arrays(X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5), n_val=20, n_test=20)


def tiny_npz(path, seed=7):
    """A small 2-class data file for command-line tests (80 samples of 6 features, X and y)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(80, 6))
    np.savez(path, X=X, y=(X[:, 0] > 0).astype(int))
    return path


def kill_after_ops(p, target, signum, delay=0.0):
    """Read the child's "op ..." lines (one per file operation of its sweep) until the
    ``target``-th, wait ``delay`` seconds and send ``signum`` (target None: let it finish).
    Returns (killed, exit status, stderr)."""
    import time
    seen, killed = 0, False
    while target is not None and seen < target:
        line = p.stdout.readline()
        if not line:
            break
        seen += line.startswith("op ")
    if target is not None and seen == target:
        time.sleep(delay)
        if p.poll() is None:
            p.send_signal(signum)
            killed = True
    p.stdout.read()
    rc = p.wait(timeout=120)
    err = p.stderr.read()
    p.stdout.close()
    p.stderr.close()
    return killed, rc, err
