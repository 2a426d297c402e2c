"""Loaders (embedded sets and user-directory formats written here), preprocessing, censoring,
label noise and the schedule."""
import gzip
import pickle

import numpy as np
import pytest
import torch

from pyireg import data as D
from pyireg.schedule import PaperSchedule


def test_mnist5k_is_real_mnist_downsampled_and_standardized():
    ds = D.load("mnist5k")
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (2000, 2000, 1000)
    assert ds.X_train.shape == (2000, 100) and ds.X_train.dtype == np.float32
    assert ds.num_classes == 10 and set(np.unique(ds.y_train)) == set(range(10))
    np.testing.assert_allclose(ds.X_train.mean(0), 0, atol=1e-5)
    stds = ds.X_train.std(0)
    assert np.all((np.abs(stds - 1) < 1e-4) | (stds < 1e-6))
    assert abs(ds.X_val.mean()) < 0.1        # val uses the training statistics, so only close to 0
    assert "mnist_5k" in ds.info["source"] and ds.info["split_seed"] == 0
    again = D.load("mnist5k")
    np.testing.assert_array_equal(again.X_test, ds.X_test)
    other = D.load("mnist5k", seed=1, n_train=100, n_val=50, n_test=50)
    assert len(other.y_train) == 100 and not np.array_equal(other.y_train[:50], ds.y_train[:50])


def test_small_sets():
    dg = D.load("digits")
    assert dg.num_features == 64 and dg.num_classes == 10
    m1 = D.load("mnist1d", n_train=500, n_val=200, n_test=100)
    assert m1.num_features == 40 and len(m1.y_test) == 100


def test_split_too_large_and_bad_name():
    with pytest.raises(ValueError, match="exceeds the 5000 samples"):
        D.load("mnist5k", n_train=4000, n_val=2000)
    with pytest.raises(ValueError, match="name: expected one of"):
        D.load("imagenet")
    with pytest.raises(ValueError, match="n_train: expected a positive integer"):
        D.load("mnist5k", n_train=0)


def test_downsample_matches_adaptive_avg_pool():
    imgs = np.random.default_rng(0).uniform(0, 255, (3, 28, 28))
    ours = D.downsample(imgs, 10)
    ref = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(imgs)[:, None], 10).reshape(3, 100).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    np.testing.assert_allclose(D.downsample(np.full((1, 32, 32), 7.0), 10), 7.0)
    with pytest.raises(ValueError, match="images: expected shape"):
        D.downsample(np.zeros((28, 28)))


def _write_idx(path, arr, gz):
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(header + arr.tobytes())


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_files_from_a_directory(tmp_path, gz):
    rng = np.random.default_rng(0)
    sfx = ".gz" if gz else ""
    tr, te = rng.integers(0, 256, (40, 28, 28)), rng.integers(0, 256, (12, 28, 28))
    _write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", tr, gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", np.arange(40) % 10, gz)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", te, gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", np.arange(12) % 10, gz)
    ds = D.load("mnist", data_dir=tmp_path, n_train=30, n_val=10, n_test=12)
    assert ds.X_train.shape == (30, 100) and len(ds.y_test) == 12
    # the test split comes from the t10k files: its pixels, downsampled and standardized
    raw = D.downsample(te, 10)
    trainraw = D.downsample(tr, 10)
    perm = np.random.default_rng(0).permutation(40)[:30]
    mean, std = trainraw[perm].mean(0), trainraw[perm].std(0)
    std[std < 1e-8] = 1
    got = np.sort(((raw - mean) / std).astype(np.float32).sum(1))
    np.testing.assert_allclose(np.sort(ds.X_test.sum(1)), got, rtol=1e-4, atol=1e-3)


def test_mnist_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("PYIREG_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="train-images"):
        D.load("mnist", data_dir=tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x09\x03garbage")
    for n in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        _write_idx(tmp_path / n, np.zeros((2, 28, 28) if "images" in n else 2), False)
    with pytest.raises(ValueError, match="bad magic number"):
        D.load("mnist", data_dir=tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + b"".join(
        int(s).to_bytes(4, "big") for s in (5, 28, 28)) + b"\x00" * 100)
    with pytest.raises(ValueError, match="header says"):
        D.load("mnist", data_dir=tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))       # no cached copy there
    with pytest.raises(FileNotFoundError, match="data_dir: mnist has no data directory given and no cached copy"):
        D.load("mnist", data_dir=None)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        D.load("mnist", data_dir=tmp_path / "nope")


def _write_cifar(d, n=20):
    rng = np.random.default_rng(0)
    sub = d / "cifar-10-batches-py"
    sub.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        obj = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        with open(sub / name, "wb") as f:
            pickle.dump(obj, f)
    return sub


def test_cifar10_python_batches(tmp_path):
    _write_cifar(tmp_path)
    ds = D.load("cifar10", data_dir=tmp_path, n_train=60, n_val=30, n_test=20)
    assert ds.X_train.shape == (60, 100) and ds.num_classes <= 10
    assert "luminance" in ds.info["source"]
    # a pure-red image becomes a constant 0.299 * 255 luminance image
    red = np.zeros((1, 3072), np.uint8)
    red[0, :1024] = 255
    np.testing.assert_allclose(D.downsample(D.core._gray(red), 10), 0.299 * 255)


def test_cifar10_errors(tmp_path):
    sub = _write_cifar(tmp_path)
    (sub / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch not found"):
        D.load("cifar10", data_dir=tmp_path)
    with open(sub / "test_batch", "wb") as f:
        pickle.dump({b"nothing": 1}, f)
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        D.load("cifar10", data_dir=tmp_path)


def test_label_noise_changes_exactly_that_fraction_to_other_classes():
    ds = D.load("mnist5k")
    noisy = D.label_noise(ds, 0.05, seed=3)
    changed = noisy.y_train != ds.y_train
    assert changed.sum() == 100 and noisy.info["label_noise"]["changed"] == 100
    np.testing.assert_array_equal(noisy.y_val, ds.y_val)
    np.testing.assert_array_equal(noisy.y_test, ds.y_test)
    assert not np.array_equal(D.label_noise(ds, 0.05, seed=4).y_train, noisy.y_train)
    with pytest.raises(ValueError, match="fraction"):
        D.label_noise(ds, 1.5)


def test_paper_schedule():
    s = PaperSchedule()
    assert s.lr(0) == 0.1 and s.momentum(0) == 0.5
    assert s.lr(1) == pytest.approx(0.099) and s.momentum(1) == pytest.approx(0.52)
    assert s.lr(10) == pytest.approx(0.1 * 0.99 ** 10)
    assert s.momentum(20) == pytest.approx(0.9) and s.momentum(50) == 0.9
    assert PaperSchedule(lr0=0.05, momentum_max=0.6).momentum(10) == 0.6
    for bad in (dict(lr0=-1), dict(lr0=0), dict(momentum0=1.5), dict(momentum_max=1.0), dict(lr_decay=1.5),
                dict(lr_decay=0), dict(momentum_step=-0.1), dict(lr0=float("nan"))):
        (name,) = bad
        with pytest.raises(ValueError, match=f"{name}: expected a number in"):
            PaperSchedule(**bad)


# ----------------------------------------------------------------------------- corrupt input is refused
def test_mnist_label_outside_0_9_is_refused_naming_the_file(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 10
    labels[7] = 200                                             # one corrupt byte: used to make 201 classes
    _write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, (40, 28, 28)), False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labels, False)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (12, 28, 28)), False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(12) % 10, False)
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: label 200 at index 7.*classes 0\.\.9"):
        D.load("mnist", data_dir=tmp_path, n_train=20, n_val=10, n_test=12)
    # an images file where labels belong (1-d) is refused by its shape
    _write_idx(tmp_path / "train-labels-idx1-ubyte", rng.integers(0, 10, (40, 28, 28)), False)
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: expected labels \(n,\)"):
        D.load("mnist", data_dir=tmp_path, n_train=20, n_val=10, n_test=12)


def _cifar_batches(sub, mutate=None, protocol=pickle.HIGHEST_PROTOCOL):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        obj = {b"batch_label": b"x", b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
               b"labels": [int(v) for v in rng.integers(0, 10, 20)]}
        if mutate and name == "data_batch_3":
            mutate(obj)
        with open(sub / name, "wb") as f:
            pickle.dump(obj, f, protocol=protocol)


def test_cifar10_protocol2_batches_like_the_real_files(tmp_path):
    sub = tmp_path / "cifar-10-batches-py"
    sub.mkdir()
    _cifar_batches(sub, protocol=2)        # numpy arrays through _reconstruct and _codecs.encode, as in 2009
    ds = D.load("cifar10", data_dir=tmp_path, n_train=60, n_val=30, n_test=20)
    assert ds.num_classes == 10 and ds.X_train.shape == (60, 100)


@pytest.mark.parametrize("mutate,match", [
    (lambda o: o[b"labels"].__setitem__(4, 99), r"data_batch_3: label 99 at index 4"),
    (lambda o: o.__setitem__(b"data", o[b"data"].astype(np.float64)),
     r"data_batch_3: pixels are float64, expected a uint8"),
    (lambda o: o.__setitem__(b"labels", [0.5] * 20), r"data_batch_3: labels are float64"),
    (lambda o: o.__setitem__(b"data", o[b"data"][:, :100]), r"data_batch_3 holds data \(20, 100\)"),
])
def test_cifar10_corrupt_batches_are_refused_naming_the_file(tmp_path, mutate, match):
    sub = tmp_path / "cifar-10-batches-py"
    sub.mkdir()
    _cifar_batches(sub, mutate)
    with pytest.raises(ValueError, match=match):
        D.load("cifar10", data_dir=tmp_path, n_train=60, n_val=30, n_test=20)


class _RunsCode:
    """A pickle payload that would create a file when unpickled by pickle.load."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_cifar10_batches_cannot_run_code(tmp_path):
    sub = tmp_path / "cifar-10-batches-py"
    sub.mkdir()
    target = tmp_path / "pwned"
    _cifar_batches(sub, lambda o: o.__setitem__(b"extra", _RunsCode(target)))
    pickle.loads(pickle.dumps(_RunsCode(tmp_path / "proof")))      # plain pickle would run it
    assert (tmp_path / "proof").exists()
    with pytest.raises(ValueError, match="data_batch_3: not read.*refusing to load pathlib"):
        D.load("cifar10", data_dir=tmp_path, n_train=60, n_val=30, n_test=20)
    assert not target.exists()
    with open(sub / "data_batch_3", "wb") as f:
        f.write(b"\x80\x04\x95")                                    # truncated
    with pytest.raises(ValueError, match="data_batch_3: not a readable pickle"):
        D.load("cifar10", data_dir=tmp_path, n_train=60, n_val=30, n_test=20)


# ----------------------------------------------------------------------------- your own data
def _blobs(n=200, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * 3 + 7
    y = (X[:, 0] > 7).astype(int) + 2 * (X[:, 1] > 7)
    return X, y


def test_from_arrays_takes_numpy_lists_pandas_and_torch_alike():
    import pandas as pd
    X, y = _blobs()
    ref = D.from_arrays(X, y, n_val=40, n_test=40, seed=3)
    assert ref.dtype == "float32" and ref.X_train.dtype == np.float32 and ref.y_train.dtype == np.int64
    assert (len(ref.y_train), len(ref.y_val), len(ref.y_test)) == (120, 40, 40) and ref.num_classes == 4
    same = [D.from_arrays(X.tolist(), y.tolist(), n_val=40, n_test=40, seed=3),
            D.from_arrays(pd.DataFrame(X, columns=list("abcde")), pd.Series(y), n_val=40, n_test=40, seed=3),
            D.from_arrays(torch.tensor(X, requires_grad=True), torch.tensor(y), n_val=40, n_test=40, seed=3),
            D.from_arrays(X.astype(np.float32), y.astype(np.float64), n_val=40, n_test=40, seed=3)]
    for ds in same[:3]:
        assert ds.fingerprint() == ref.fingerprint()
    np.testing.assert_allclose(same[3].X_train, ref.X_train, rtol=1e-5, atol=1e-5)
    # standardized with the training split's statistics
    np.testing.assert_allclose(ref.X_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(ref.X_train.std(0), 1, atol=1e-4)
    raw = D.from_arrays(X, y, n_val=40, n_test=40, seed=3, standardize=False)
    assert raw.X_train.mean() > 5 and raw.info["standardized"] is False
    for dt in (np.float64, "float64", "f8", np.dtype("float64"), torch.float64):
        assert D.from_arrays(X, y, dtype=dt).X_train.dtype == np.float64
    with pytest.raises(ValueError, match="dtype: expected float32 or float64"):
        D.from_arrays(X, y, dtype="int8")


def test_standardize_scales_a_feature_of_any_size_and_centres_constant_ones():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.standard_normal(100) * 1e-9, np.full(100, 3.0), np.full(100, 1e-20),
                         rng.standard_normal(100) * 1e9])
    ds = D.from_arrays(X, (X[:, 0] > 0).astype(int), n_val=10, n_test=10, dtype="float64")
    tr = ds.X_train
    np.testing.assert_allclose(tr[:, [0, 3]].std(0), 1.0, rtol=1e-9)       # both scaled to std 1
    assert np.abs(tr[:, [1, 2]]).max() < 1e-15          # constants: centred only (rounding), not scaled to 1


def test_from_arrays_label_rule():
    X, y = _blobs(60)
    names = np.array(["cat", "dog", "emu"])[y % 3]
    ds = D.from_arrays(X, names, n_val=10, n_test=10)
    assert ds.info["classes"] == ["cat", "dog", "emu"] and ds.num_classes == 3
    signed = D.from_arrays(X, np.where(y > 1, 1, -1), n_val=10, n_test=10)
    assert signed.info["classes"] == [-1, 1] and set(np.unique(signed.y_train)) <= {0, 1}
    signed_float = D.from_arrays(X, np.where(y > 1, 1.0, -1.0), n_val=10, n_test=10)     # the same as floats
    assert signed_float.info["classes"] == [-1.0, 1.0] and signed_float.fingerprint() == signed.fingerprint()
    ints = D.from_arrays(X, y + 1, n_val=10, n_test=10)              # non-negative integers: kept as they are
    assert "classes" not in ints.info and ints.num_classes == int(y.max()) + 2
    assert D.from_arrays(X, y.astype(float), n_val=10, n_test=10).fingerprint() == \
        D.from_arrays(X, y, n_val=10, n_test=10).fingerprint()
    with pytest.warns(RuntimeWarning, match=r"y_test: 1 class\(es\) occur only in the test labels \(fox\)"):
        both = D.from_arrays(X[:40], names[:40], X_test=X[40:], y_test=np.full(20, "fox"), n_val=10)
    with pytest.warns(RuntimeWarning, match=r"y_test: 3 class\(es\) occur only in the test labels \(5, 6, 7\)"):
        D.from_arrays(X[:40], y[:40] % 3, X_test=X[40:], y_test=5 + y[40:] % 3, n_val=10)
    assert both.info["classes"] == ["cat", "dog", "emu", "fox"] and set(both.y_test) == {3}


@pytest.mark.parametrize("X,y,kw,exc,match", [
    (np.zeros(10), np.zeros(10, int), {}, ValueError, r"X: expected a 2-d array .* X.reshape\(-1, 1\)"),
    (np.ones((10, 2)), np.eye(10, 3), {}, ValueError, r"y: expected a 1-d array .* y.argmax\(1\)"),
    (np.ones((10, 2)), np.arange(9) % 2, {}, ValueError, "y: expected 10 labels"),
    (np.ones((10, 2)), np.arange(10) % 2 + 0.5, {}, ValueError,
     r"y: expected integer class labels, got 0.5 at index 0"),
    (np.ones((10, 2)), np.full(10, 2 ** 63 + 1, np.uint64), {}, ValueError,      # wrapped to -2^63 before
     r"y: expected labels in \[0, 2\^53\), got 9.22337e\+18 at index 0"),
    (np.ones((10, 2)), np.r_[np.zeros(9), 1e300], {}, ValueError, r"y: expected labels in .*got 1e\+300 at index 9"),
    (np.array([[1.0, np.nan]] * 10), np.arange(10) % 2, {}, ValueError,
     r"X: contains NaN or inf \(first at index \(0, 1\)\)"),
    (np.array([["a", "b"]] * 10), np.arange(10) % 2, {}, TypeError, "X: expected numbers"),
    (np.ones((10, 2)), np.zeros(10, int), {}, ValueError, "y: expected at least 2 classes"),
    (np.ones((10, 2)), np.arange(10) % 2, dict(n_val=5, n_test=5), ValueError, "leave 0 for training"),
    (np.ones((10, 2)), np.arange(10) % 2, dict(n_val=0), ValueError, "n_val: expected a positive integer"),
    (np.ones((10, 2)), np.arange(10) % 2, dict(num_classes=1), ValueError, "num_classes: expected an integer >= 2"),
    (np.ones((10, 2)), np.arange(10) % 2, dict(X_test=np.ones((3, 3)), y_test=[0, 1, 0]), ValueError,
     "X_test: expected 2 features"),
    (np.ones((10, 2)), np.arange(10) % 2, dict(y_test=[0, 1]), ValueError, "y_test: given without X_test"),
])
def test_from_arrays_refuses_bad_input_naming_the_argument(X, y, kw, exc, match):
    with pytest.raises(exc, match=match):
        D.from_arrays(X, y, **kw)


def test_from_arrays_example_in_its_docstring_runs():
    import doctest
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(D.from_arrays, "from_arrays", globs={})
    assert tests and tests[0].examples
    for t in tests:
        runner.run(t)
    assert runner.failures == 0 and runner.tries >= 5


def test_dataset_validates_and_converts_its_fields():
    X, y = _blobs(30)
    ds = D.Dataset(X[:10], y[:10], X[10:20].tolist(), y[10:20], X[20:], y[20:], 4, {"name": "hand-made"})
    assert ds.X_val.dtype == np.float32 and ds.X_train.flags.c_contiguous
    assert "from_arrays" in D.Dataset.__doc__ and "X_train" in D.Dataset.__doc__
    with pytest.raises(ValueError, match=r"y_test: expected labels in \[0, 3\), got 3"):
        D.Dataset(X[:10], y[:10] % 3, X[10:20], y[10:20] % 3, X[20:], np.full(10, 3), 3)
    with pytest.raises(ValueError, match="X_val: expected 5 features"):
        D.Dataset(X[:10], y[:10], X[10:20, :4], y[10:20], X[20:], y[20:], 4)
    with pytest.raises(ValueError, match="num_classes"):
        D.Dataset(X[:10], y[:10], X[10:20], y[10:20], X[20:], y[20:], 1)
    assert ds.astype("float64").X_test.dtype == np.float64 and ds.astype(np.float32) is ds


def test_resplit_keeps_sizes_and_test_and_restandardizes():
    X, y = _blobs(300)
    ds = D.from_arrays(X, y, n_val=100, n_test=50, seed=0)
    other = ds.resplit(7)
    assert (len(other.y_train), len(other.y_val)) == (len(ds.y_train), len(ds.y_val))
    assert not np.array_equal(other.y_train, ds.y_train)
    np.testing.assert_array_equal(other.y_test, ds.y_test)
    np.testing.assert_allclose(other.X_train.mean(0), 0, atol=1e-5)
    # the same samples, split differently: the multiset of (features, label) rows is kept
    rows = lambda d: np.sort(np.round(np.c_[d.X_train, d.y_train], 3).tolist() + np.round(np.c_[d.X_val, d.y_val],
                                                                                          3).tolist(), axis=0)
    direct = D.from_arrays(X, y, n_val=100, n_test=50, seed=0)
    assert rows(other).shape == rows(direct).shape
    assert ds.resplit(7).fingerprint() == other.fingerprint()


def test_load_file_npz_csv_parquet(tmp_path):
    import pandas as pd
    X, y = _blobs(100)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.savez(tmp_path / "t.npz", X=X[:80], y=y[:80], X_test=X[80:], y_test=y[80:])
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)]).assign(kind=np.array(list("abcd"))[y])
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_parquet(tmp_path / "d.parquet")
    a = D.load_file(tmp_path / "d.npz", n_val=20, n_test=20)
    assert a.num_features == 5 and len(a.y_train) == 60 and a.info["name"] == "d"
    b = D.load_file(tmp_path / "t.npz", n_val=20)
    assert len(b.y_test) == 20 and len(b.y_train) == 60
    c = D.load_file(tmp_path / "d.csv", label_column="kind", n_val=20, n_test=20)
    p = D.load_file(tmp_path / "d.parquet", label_column="kind", n_val=20, n_test=20)
    assert c.info["classes"] == ["a", "b", "c", "d"] and c.fingerprint() == p.fingerprint()
    np.testing.assert_array_equal(c.y_train, a.y_train)               # same shuffle, labels a..d = 0..3


def _damaged_member(path):
    """A compressed .npz whose X member's deflate stream is damaged (zlib raises on reading)."""
    import zipfile
    np.savez_compressed(path, X=np.random.default_rng(0).standard_normal((200, 5)), y=np.arange(200) % 2)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("X.npy")
    at = info.header_offset                                 # the local header's own name and extra lengths
    start = at + 30 + int.from_bytes(raw[at + 26:at + 28], "little") + int.from_bytes(raw[at + 28:at + 30], "little")
    raw[start] = 0x07                  # the first deflate block: final, of the reserved type 3
    path.write_bytes(bytes(raw))


def _crafted(path, descr, shape):
    """A .npz whose X header declares ``descr`` and ``shape`` (numpy would not write them)."""
    import io
    import struct
    import zipfile
    head = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin1")
    head += b" " * ((64 - (10 + len(head) + 1) % 64) % 64) + b"\n"
    buf = io.BytesIO()
    np.save(buf, np.arange(4) % 2)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("X.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head + b"\0" * 96)
        zf.writestr("y.npy", buf.getvalue())


def test_a_bzip2_npz_is_read(tmp_path):
    """The size check of compressed members assumes deflate's 1032-fold limit only for deflate:
    a bzip2 member of zeros (far more compressed) loads."""
    import zipfile
    X, y = np.zeros((3000, 40)), np.arange(3000) % 2
    path = tmp_path / "z.npz"
    import io
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as zf:
        for name, a in (("X", X), ("y", y)):
            buf = io.BytesIO()
            np.save(buf, a)
            zf.writestr(name + ".npy", buf.getvalue())
    assert zf.getinfo("X.npy").file_size > 1032 * zf.getinfo("X.npy").compress_size
    ds = D.load_file(path, n_val=300, n_test=300, standardize=False)
    assert ds.X_train.shape == (2400, 40)


@pytest.mark.parametrize("write,kw,match", [
    (lambda p: np.savez(p.with_suffix(".npz"), features=np.ones((4, 2))), {}, "expected arrays named X and y"),
    (lambda p: np.savez(p.with_suffix(".npz"), X=np.ones((4, 2)), y=np.array([{}, {}, {}, {}], dtype=object)), {},
     "holds Python objects"),
    (lambda p: np.savez(p.with_suffix(".npz"), X=np.arange(8).astype("m8[s]").reshape(4, 2), y=np.arange(4) % 2),
     {}, r"X holds timedelta64\[s\] values, expected numbers"),
    (lambda p: np.savez(p.with_suffix(".npz"), X=np.ones((4, 2)), y=np.ones(4, complex)), {},
     "y holds complex128 values, expected labels"),
    (lambda p: p.with_suffix(".csv").write_text("a,b\n1,2\n"), {}, r"no label column 'label' \(columns: a, b\)"),
    (lambda p: p.with_suffix(".csv").write_text("a,b,label\n1,x,0\n2,y,1\n"), {}, "feature column.*b are not numeric"),
    (lambda p: p.with_suffix(".csv").write_text("a,label\n1,0\n,1\n"), {}, "feature column 'a' has missing values"),
    (lambda p: p.with_suffix(".csv").write_text("a,label\n1,0\n2,\n"), {}, "missing labels"),
    (lambda p: p.with_suffix(".csv").write_text("a,b,label\n"), {}, r"holds no rows of data \(only a header\)"),
    (lambda p: p.with_suffix(".txt").write_text("1 2"), {}, "expected a .npz, .csv or .parquet file"),
    (lambda p: p.with_suffix(".npz").write_bytes(b"junk"), {}, "not a readable .npz file"),
    (lambda p: _damaged_member(p.with_suffix(".npz")), {}, r"not a readable .npz file \(error: "),
    (lambda p: _crafted(p.with_suffix(".npz"), ("<f8", (3,)), (4, 1)), {}, "member X: not a readable .npy header"),
    (lambda p: _crafted(p.with_suffix(".npz"), "<f8", (-2, -2)), {}, "member X: not a readable .npy header"),
])
def test_load_file_errors_name_the_file(tmp_path, write, kw, match):
    base = tmp_path / "data"
    write(base)
    path = next(tmp_path.iterdir())
    with pytest.raises((ValueError, TypeError), match=match) as info:
        D.load_file(path, **kw)
    assert str(path) in str(info.value)
