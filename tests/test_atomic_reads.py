"""Compound reads and compound writes of a model used from several threads: a copy, a pickle,
``network(i)`` and a multi-measure ``measures`` call taken while another thread trains each
equal some state of the serial trajectory (never a mix of two), and two threads stepping one
DDPSGD optimizer end where a serial order of the same steps ends."""
import hashlib
import pickle
import threading

import numpy as np
import pytest

import pyireg

from helpers import make_data

WIDTHS, D, K, STEPS = [20000, 5, 300, 1], 60, 6, 25


def _key(U, V) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(U).tobytes())
    h.update(np.ascontiguousarray(V).tobytes())
    return h.digest()


def _trajectory(make_opt, X, y, steps, extra=None):
    """The serial states' keys (and ``extra(model)`` of each state) of ``steps`` steps."""
    model = pyireg.PackedMLP(WIDTHS, D, K, seed=11)
    opt = make_opt(model)
    keys, extras = [_key(model.U, model.V)], [extra(model) if extra else None]
    for _ in range(steps):
        opt.step(X, y)
        keys.append(_key(model.U, model.V))
        if extra:
            extras.append(extra(model))
    return keys, extras


def _train_while(read, make_opt, X, y, steps, max_reads=30):
    """Steps ``steps`` times in a thread while the calling thread calls ``read(model)`` (at most
    ``max_reads`` times, at least once after the training started); returns the model and the
    reads."""
    model = pyireg.PackedMLP(WIDTHS, D, K, seed=11)
    opt = make_opt(model)
    started, done, errors = threading.Event(), threading.Event(), []

    def train():
        try:
            for i in range(steps):
                opt.step(X, y)
                started.set()
        except BaseException as e:  # noqa: BLE001  (reported to the test thread)
            errors.append(e)
        finally:
            started.set()
            done.set()

    t = threading.Thread(target=train)
    t.start()
    started.wait(60)
    reads = []
    while len(reads) < max_reads and (not done.is_set() or not reads):
        reads.append(read(model))
    t.join(120)
    assert not t.is_alive() and not errors, errors
    return model, reads


def _sgd(model):
    return pyireg.MomentumSGD(model, 0.02, 0.9)


@pytest.mark.parametrize("how", ["copy", "pickle", "network"])
def test_snapshots_taken_while_training_equal_a_serial_state(how):
    X, y = make_data(64, D, K, seed=12)
    keys, _ = _trajectory(_sgd, X, y, STEPS)
    known = set(keys)
    if how == "network":     # the widest network alone: its rows of every serial state
        s = slice(0, WIDTHS[0])
        model = pyireg.PackedMLP(WIDTHS, D, K, seed=11)
        opt = _sgd(model)
        net_keys = {_key(model.U[s], model.V[s])}
        for _ in range(STEPS):
            opt.step(X, y)
            net_keys.add(_key(model.U[s], model.V[s]))
        known = net_keys
        read = lambda m: _key(*m.network(0))          # noqa: E731
    elif how == "copy":
        read = lambda m: _key((c := m.copy()).U, c.V)  # noqa: E731
    else:
        read = lambda m: _key((c := pickle.loads(pickle.dumps(m))).U, c.V)  # noqa: E731
    model, reads = _train_while(read, _sgd, X, y, STEPS)
    assert _key(model.U, model.V) == keys[-1]
    torn = sum(r not in known for r in reads)
    assert torn == 0, f"{torn} of {len(reads)} {how} snapshots mixed two states"


def test_compound_measures_while_training_equal_a_serial_state():
    X, y = make_data(64, D, K, seed=13)
    names = ["l2_penalty", "norm_U", "norm_V", "fro_product", "margin"]

    def measures(m):
        out = m.measures(names, X, y)
        return b"".join(np.ascontiguousarray(out[n]).tobytes() for n in names)

    _, serial = _trajectory(_sgd, X, y, STEPS, extra=measures)
    _, reads = _train_while(measures, _sgd, X, y, STEPS, max_reads=20)
    torn = sum(r not in set(serial) for r in reads)
    assert torn == 0, f"{torn} of {len(reads)} measures calls mixed two states"


def test_ddp_sgd_steps_from_two_threads_equal_a_serial_run():
    """A DDPSGD step is a scaling pass and an update; two threads stepping one optimizer on the
    same batch must end where 2n serial steps end (identical steps: every order is the same)."""
    X, y = make_data(48, D, K, seed=14)
    n = 12
    ref = pyireg.PackedMLP(WIDTHS, D, K, seed=15)
    ropt = pyireg.DDPSGD(ref, 0.05, alpha=0.5)
    for _ in range(2 * n):
        ropt.step(X, y)
    for _ in range(3):
        model = pyireg.PackedMLP(WIDTHS, D, K, seed=15)
        opt = pyireg.DDPSGD(model, 0.05, alpha=0.5)
        errors = []

        def run():
            try:
                for _ in range(n):
                    opt.step(X, y)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        ts = [threading.Thread(target=run) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        assert not errors, errors
        np.testing.assert_array_equal(model.U, ref.U)
        np.testing.assert_array_equal(model.V, ref.V)
        np.testing.assert_array_equal(opt.kU, ropt.kU)


def test_a_writer_inside_a_compound_read_is_refused_not_deadlocked():
    from pyireg._rwlock import RWLock
    lock = RWLock()
    with lock.read():
        with lock.read():            # nested reads are fine
            pass
        with pytest.raises(RuntimeError, match="read lock"):
            with lock.write():
                pass
    with lock.write():
        with lock.read():            # a writer may read
            with lock.write():       # and write again
                pass


def test_thread_stress_mixed_snapshots_and_writers():
    """A short stress: one thread trains while four others take copies, pickles, network(0)
    and measures at once, and a fifth rescales with balance() between steps of a second model;
    every snapshot is a serial state and nothing hangs or crashes."""
    X, y = make_data(64, D, K, seed=16)
    keys, _ = _trajectory(_sgd, X, y, STEPS)
    known = set(keys)
    model = pyireg.PackedMLP(WIDTHS, D, K, seed=11)
    opt = _sgd(model)
    other = pyireg.PackedMLP([3, 9, 27], 5, 2, seed=1)
    done, errors, torn = threading.Event(), [], []

    def guard(f):
        def run():
            try:
                f()
            except BaseException as e:  # noqa: BLE001  (reported to the test thread)
                errors.append(e)
        return run

    def train():
        for _ in range(STEPS):
            opt.step(X, y)
        done.set()

    def reader(snap):
        def run():
            while not done.is_set():
                if _key(*snap()) not in known:
                    torn.append(snap.__name__)
        return run

    def copy_():
        c = model.copy()
        return c.U, c.V

    def pickle_():
        c = pickle.loads(pickle.dumps(model))
        return c.U, c.V

    def balance():
        Xo = np.ones((4, 5), np.float32)
        while not done.is_set():
            before = other.forward(Xo)
            other.balance()
            np.testing.assert_allclose(other.forward(Xo), before, rtol=1e-4, atol=1e-6)

    s0 = slice(0, WIDTHS[0])
    net_known = set()
    ref = pyireg.PackedMLP(WIDTHS, D, K, seed=11)
    ropt = _sgd(ref)
    net_known.add(_key(ref.U[s0], ref.V[s0]))
    for _ in range(STEPS):
        ropt.step(X, y)
        net_known.add(_key(ref.U[s0], ref.V[s0]))

    def network():
        while not done.is_set():
            if _key(*model.network(0)) not in net_known:
                torn.append("network")

    threads = [threading.Thread(target=guard(f)) for f in
               (train, reader(copy_), reader(pickle_), network, balance)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    assert not torn, f"{len(torn)} snapshots mixed two states"
    assert _key(model.U, model.V) == keys[-1]
