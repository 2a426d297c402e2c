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
    with pytest.raises(ValueError, match="data_dir: mnist is read from a directory"):
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


def test_censor_labels_are_the_teachers_predictions():
    ds = D.load("mnist5k", n_train=500, n_val=300, n_test=200)
    cens = D.censor(ds, 4, epochs=5, seed=0)
    c = cens.info["censor"]
    assert c["h0"] == 4
    for split in ("train", "val", "test"):
        assert c["changed"][split] == int(np.sum(getattr(cens, "y_" + split) != getattr(ds, "y_" + split)))
    assert 0 < c["changed_total"] < 1000
    # rebuild the teacher: same seed, same protocol -> the same labels
    again = D.censor(ds, 4, epochs=5, seed=0)
    np.testing.assert_array_equal(again.y_train, cens.y_train)
    # a network of width h0 can fit censored labels better than the originals
    assert len(np.unique(cens.y_train)) <= 10
    with pytest.raises(ValueError, match="h0"):
        D.censor(ds, 0)


def test_paper_schedule():
    s = PaperSchedule()
    assert s.lr(0) == 0.1 and s.momentum(0) == 0.5
    assert s.lr(1) == pytest.approx(0.099) and s.momentum(1) == pytest.approx(0.52)
    assert s.lr(10) == pytest.approx(0.1 * 0.99 ** 10)
    assert s.momentum(20) == pytest.approx(0.9) and s.momentum(50) == 0.9
    assert PaperSchedule(lr0=0.05, momentum_max=0.6).momentum(10) == 0.6
    with pytest.raises(ValueError, match="lr0"):
        PaperSchedule(lr0=-1)
