"""The censoring teacher of Figure 2 is an experiment step on the one training loop: its labels
are the predictions of a network trained on all three splits with the documented batch policy
(written out independently here); with an output directory its training is a sweep that
load_results reads and that resumes."""
import numpy as np
import pytest

import pyireg
from pyireg import data as D
from pyireg.experiments import load_results
from pyireg.experiments.teacher import censor
from pyireg.schedule import PaperSchedule


def test_censored_labels_are_a_trained_teachers_predictions(tmp_path):
    ds = D.load("mnist5k", n_train=500, n_val=300, n_test=250)    # 1,050 samples: a partial last batch
    cens, teacher = censor(ds, 4, epochs=5, seed=0, return_teacher=True)
    X = np.concatenate([ds.X_train, ds.X_val, ds.X_test])
    y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    new = np.concatenate([cens.y_train, cens.y_val, cens.y_test])
    # the documented protocol (pyireg.experiments.training's batch policy and seeding), written out
    net = pyireg.PackedMLP([4], X.shape[1], 10, seed=[np.random.SeedSequence(0).spawn(1)[0]])
    opt = pyireg.MomentumSGD(net, 0.1, 0.5)
    sched = PaperSchedule()
    for epoch in range(5):
        opt.lr, opt.momentum = sched.lr(epoch), sched.momentum(epoch)
        perm = np.random.default_rng([0, epoch]).permutation(len(X))
        for i in range(0, len(X), 100):
            opt.step(X[perm[i:i + 100]], y[perm[i:i + 100]])
    np.testing.assert_array_equal(net.forward(X)[0].argmax(1), new)
    np.testing.assert_array_equal(teacher.forward(X)[0].argmax(1), new)
    # and it was trained: its labels agree with the true ones far more than an untrained one's
    untrained = censor(ds, 4, epochs=0, seed=0)
    agree0 = np.mean(np.concatenate([untrained.y_train, untrained.y_val, untrained.y_test]) == y)
    assert np.mean(new == y) > 2 * max(agree0, 1 / 10)
    c = cens.info["censor"]
    assert c["h0"] == 4 and c["epochs"] == 5
    for split in ("train", "val", "test"):
        assert c["changed"][split] == int(np.sum(getattr(cens, "y_" + split) != getattr(ds, "y_" + split)))
    assert c["changed_total"] == int(np.sum(new != y))
    # as a sweep directory: the same labels, a history load_results reads, and a resume that trains nothing
    saved = censor(ds, 4, epochs=5, seed=0, out=tmp_path / "teacher")
    np.testing.assert_array_equal(saved.y_train, cens.y_train)
    res = load_results(tmp_path / "teacher")
    assert res.complete and res.config["grid_widths"] == [4] and res.config["run"]["pyireg"] == pyireg.__version__
    again = censor(ds, 4, epochs=5, seed=0, out=tmp_path / "teacher", resume=True)
    np.testing.assert_array_equal(again.y_test, cens.y_test)
    with pytest.raises(ValueError, match="h0"):
        censor(ds, 0)
    with pytest.raises(TypeError, match="dataset: expected a pyireg.data.Dataset"):
        censor((X, y), 4)
    assert not hasattr(D, "censor")            # a data function no longer: it trains
