"""The checkpoint writer (pyireg/experiments/npzfile.py): an .npz written straight from the
arrays' memory must be what numpy.load and zipfile read (ZIP64 included), hold the same member
bytes as np.savez, carry the SHA-256 of its bytes in the commit, and a sweep whose checkpoints
were written by np.savez (pyireg before this writer) must still resume to the same numbers."""
import hashlib
import io
import zipfile

import numpy as np
import pandas as pd
import pytest
from helpers import Killed, tiny_classes

from pyireg import _core
from pyireg.experiments import load_results, sweep
from pyireg.experiments import store as S
from pyireg.experiments.history import parquet_bytes, read_history
from pyireg.experiments.npzfile import write_npz

KW = dict(widths=[1, 3], seeds=[0, 1], epochs=2, batch_size=20, progress=False)


@pytest.fixture(autouse=True)
def _one_thread():
    _core.set_num_threads(1)


def _arrays(rng, big=False):
    n = 300_000 if big else 7                       # big: members past the helper threads' threshold
    return {"U": rng.standard_normal((n, 3), dtype=np.float32), "F": np.asfortranarray(rng.standard_normal((3, 5))),
            "empty": np.zeros((0, 4)), "id": np.str_("ab" * 16), "epoch": np.int64(5),
            "flags": np.array([True, False, True]), "strided": np.arange(20)[::3], "w1": np.ones(1, np.float32)}


@pytest.mark.parametrize("zip64", [False, True])
@pytest.mark.parametrize("big", [False, True])
def test_write_npz_is_read_by_numpy_and_zipfile(zip64, big):
    arrays = _arrays(np.random.default_rng(1), big)
    f = io.BytesIO()
    n = write_npz(f, arrays, force_zip64=zip64)
    raw = f.getvalue()
    assert n == len(raw)
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        assert z.testzip() is None                                   # every CRC-32 right
        assert [i.filename for i in z.infolist()] == [k + ".npy" for k in arrays]
        ref = io.BytesIO()
        np.savez(ref, **arrays)
        with zipfile.ZipFile(ref) as r:
            for k, v in arrays.items():
                if k != "F":                                         # savez keeps Fortran order, we write C
                    assert z.read(k + ".npy") == r.read(k + ".npy"), k
    with np.load(io.BytesIO(raw)) as got:
        for k, v in arrays.items():
            v = np.asarray(v)
            assert got[k].shape == v.shape and got[k].dtype == v.dtype and np.array_equal(got[k], v), k


def test_write_npz_refuses_objects():
    with pytest.raises(ValueError, match="'o' holds Python objects"):
        write_npz(io.BytesIO(), {"o": np.array([{}], dtype=object)})


def test_a_commit_records_the_sha256_of_the_file_it_wrote(tmp_path):
    """Large members are hashed on a helper thread while they are written: the hash recorded
    must still be the file's."""
    rng = np.random.default_rng(2)
    arrays = _arrays(rng, big=True)
    sha = S.Disk().write(tmp_path / "c.npz", lambda f: S.save_checkpoint(f, arrays))
    assert sha == hashlib.sha256((tmp_path / "c.npz").read_bytes()).hexdigest()
    expected = {k: (np.shape(v), np.asarray(v).dtype) for k, v in arrays.items() if k != "F"}
    got = S.load_checkpoint(tmp_path / "c.npz", {**expected, "F": ((3, 5), np.float64)}, sha)
    assert all(np.array_equal(got[k], v) for k, v in arrays.items())


def test_a_sweep_with_checkpoints_of_np_savez_resumes_exactly(tmp_path):
    """Sweep directories written before this writer (np.savez checkpoints) resume to the
    uninterrupted numbers."""
    tiny = tiny_classes()
    ref = sweep(tiny, **KW).history.drop(columns="train_seconds")
    out = tmp_path / "s"

    def stop(rep, epoch):
        raise Killed
    with pytest.raises(Killed):
        sweep(tiny, out=out, on_epoch=stop, **KW)
    ck = out / "checkpoints" / "rep0-epoch1.npz"
    with np.load(ck) as z:
        arrays = dict(z)
    np.savez(ck, **arrays)                                   # what the previous pyireg wrote
    hist, meta = read_history(out / "history.parquet")
    meta["checkpoints"][ck.name] = hashlib.sha256(ck.read_bytes()).hexdigest()
    del meta["rows_sha256"]
    (out / "history.parquet").write_bytes(bytes(parquet_bytes(hist, meta)))
    res = sweep(tiny, out=out, resume=True, **KW)
    pd.testing.assert_frame_equal(res.history.drop(columns="train_seconds"), ref)
    pd.testing.assert_frame_equal(load_results(out).history.drop(columns="train_seconds"), ref)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_its_own_helper_threads(tmp_path):
    """A process that committed, then forked: the child's commits must not wait on the parent's
    helper threads (which do not exist in the child)."""
    import os
    from pyireg.experiments import npzfile
    arrays = _arrays(np.random.default_rng(3), big=True)
    S.Disk().write(tmp_path / "parent.npz", lambda f: S.save_checkpoint(f, arrays))
    pid = os.fork()
    if pid == 0:                                             # the child: commit, exit with the verdict
        code = 1
        try:
            sha = S.Disk().write(tmp_path / "child.npz", lambda f: S.save_checkpoint(f, arrays))
            code = 0 if sha == hashlib.sha256((tmp_path / "child.npz").read_bytes()).hexdigest() else 2
        finally:
            os._exit(code)
    import time
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child's commit hung on the parent's helper threads")
    assert os.waitstatus_to_exitcode(status) == 0
    assert npzfile._POOL_PID == os.getpid()
