"""The per-network stopping rule."""
import numpy as np
import pytest

from pyireg import convergence as C


def test_zero_error_with_patience():
    s = C.start(3)
    errs = [[0.1, 0.0, 0.2], [0.0, 0.0, 0.1], [0.0, 0.01, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    for e, err in enumerate(errs, 1):
        s = C.update(s, e, err, patience=2)
    # net 0: zero from epoch 2 on -> converged at 2 (reached patience at 3)
    # net 1: zero at 1, 2 -> converged at 1 (stays converged though epoch 3 had an error)
    # net 2: zero from epoch 3 -> converged at 3
    assert s.converged_epoch.tolist() == [2, 1, 3]
    assert s.done.all() and C.should_stop(s, 5, 60)


def test_loss_tolerance_and_cap():
    s = C.start(2)
    s = C.update(s, 1, [0.1, 0.1], [0.5, 1e-4], loss_tol=1e-3)
    assert s.converged_epoch.tolist() == [-1, 1]
    assert not C.should_stop(s, 1, 3) and C.should_stop(s, 3, 3)
    with pytest.raises(ValueError, match="train_loss"):
        C.update(s, 2, [0.1, 0.1], loss_tol=1e-3)


def test_state_round_trip_and_bad_input():
    s = C.update(C.start(2), 1, [0.0, 0.5], patience=3)
    r = C.StopState.from_dict(s.as_dict())
    np.testing.assert_array_equal(r.streak, [1, 0])
    with pytest.raises(ValueError, match="patience"):
        C.update(s, 2, [0.0, 0.0], patience=0)
    with pytest.raises(ValueError, match="one per network"):
        C.update(s, 2, [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="num_networks"):
        C.start(0)
