"""Commits you can trust: every committed history and checkpoint carries a checksum recorded in
the commit, verified on resume and by load_results; checkpoint members are checked by name and
declared size before anything is read; links among a sweep's files are refused; config.json is
read bounded; diverged comes from the state after the step. Each test is one finding of the
reliability review (H5, M2, L2, L3, L4, L6)."""
import importlib
import json
import os
import struct
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers import Killed, tiny_classes

from pyireg import _core
from pyireg import data as D
from pyireg.cli import main
from pyireg.experiments import SweepStateError, load_results, sweep
from pyireg.schedule import PaperSchedule

KW = dict(widths=[1, 3], seeds=[0, 1], epochs=2, batch_size=20, progress=False)


@pytest.fixture(autouse=True)
def _one_thread():
    _core.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    return tiny_classes()


def _cut(tiny, out):
    """A sweep stopped after its first commit (seed 0 at epoch 1 of 2)."""
    def stop(rep, epoch):
        raise Killed
    with pytest.raises(Killed):
        sweep(tiny, out=out, on_epoch=stop, **KW)


# ----------------------------------------------------------------------------- H5
def test_a_flipped_bit_in_a_checkpoint_stops_the_resume(tiny, tmp_path):
    out = tmp_path / "s"
    _cut(tiny, out)
    ck = out / "checkpoints" / "rep0-epoch1.npz"
    arrays = dict(np.load(ck))
    raw = bytearray(ck.read_bytes())
    with zipfile.ZipFile(ck) as z:
        info = z.getinfo("U.npy")
    # the U member's data: after its local header (30 bytes + name + extra) and the npy header
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + info.file_size - 2] ^= 0x01                 # one bit of the last value of U
    ck.write_bytes(bytes(raw))
    with pytest.raises(SweepStateError, match=r"checkpoint .*rep0-epoch1.npz was changed after it was committed"):
        sweep(tiny, out=out, resume=True, **KW)
    arrays["U"][0, 0] = np.nan                              # a NaN written through numpy
    np.savez(ck, **arrays)
    with pytest.raises(SweepStateError, match="was changed after it was committed"):
        sweep(tiny, out=out, resume=True, **KW)


def test_an_edited_history_value_stops_resume_and_load_results(tiny, tmp_path):
    out = tmp_path / "s"
    _cut(tiny, out)
    table = pq.read_table(out / "history.parquet")
    frame = table.to_pandas()
    frame.loc[0, "test_error"] = 0.0                        # a better number, metadata kept
    import pyarrow as pa
    edited = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(table.schema.metadata)
    pq.write_table(edited, out / "history.parquet")
    for call in (lambda: sweep(tiny, out=out, resume=True, **KW), lambda: load_results(out)):
        with pytest.raises(SweepStateError, match=r"history.parquet was changed after it was written .*restore it"):
            call()
    # rewritten by another program (pandas drops pyireg's metadata): no record of a sweep
    frame.to_parquet(out / "history.parquet")
    for call in (lambda: sweep(tiny, out=out, resume=True, **KW), lambda: load_results(out)):
        with pytest.raises(SweepStateError, match="has no record of a pyireg sweep"):
            call()


@pytest.mark.filterwarnings("ignore::pyireg.experiments.sweep.ChanceWarning")
def test_a_sweep_with_a_diverged_network_verifies_loads_and_resumes(tiny, tmp_path):
    """A diverged network's losses are the kernels' NaN (sign bit set), which Arrow reads back as
    numpy's positive NaN: the rows' checksum counts every NaN as one NaN, so the history loads
    and resumes; one whose checksum hashed the NaN by its bits (pyireg 0.2.0) still verifies; an
    edited value is still caught."""
    out = tmp_path / "s"
    kw = {**KW, "seeds": [0], "epochs": 3, "lr_scales": [1.0, 1e30]}

    def stop(rep, epoch):
        if epoch == 2:
            raise Killed
    with pytest.raises(Killed):
        sweep(tiny, out=out, on_epoch=stop, **kw)
    h = load_results(out).history
    assert h["diverged"].any() and h["train_loss"].isna().any()
    res = sweep(tiny, out=out, resume=True, **kw)
    assert res.complete and len(load_results(out).history) == 3 * 4
    H = importlib.import_module("pyireg.experiments.history")
    table = pq.read_table(out / "history.parquet")
    frame, meta = table.to_pandas(), json.loads(table.schema.metadata[b"pyireg"])
    for nan, ok in ((H._LEGACY_NAN, True), (0.5, False)):      # hashed by the old rule; a wrong record
        meta["rows_sha256"] = H.rows_sha256(frame, nan=nan)
        pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"pyireg": json.dumps(meta).encode()}),
                       out / "history.parquet")
        if ok:
            assert load_results(out).history["train_loss"].isna().any()
        else:
            with pytest.raises(SweepStateError, match="was changed after it was written"):
                load_results(out)


# ----------------------------------------------------------------------------- M2
def _zip(members):
    """A zip archive of (name, raw bytes, method, crc, uncompressed size), written by hand so that
    a member can declare a size its bytes only produce when inflated."""
    body, central = bytearray(), bytearray()
    for name, data, method, crc, usize in members:
        n = name.encode()
        off = len(body)
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc, len(data), usize, len(n), 0) + n
        body += data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, crc, len(data), usize,
                               len(n), 0, 0, 0, 0, 0, off) + n
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(body), 0)
    return bytes(body + central + end)


def _two_gib_of_zeros():
    """A raw deflate stream that inflates to 2 GiB of zeros (64 MiB blocks, each ending in a full
    flush, repeated): 9 MB, made in a fraction of a second."""
    z = zlib.compressobj(1, zlib.DEFLATED, -15)
    block = z.compress(bytes(64 << 20)) + z.flush(zlib.Z_FULL_FLUSH)
    final = zlib.compressobj(1, zlib.DEFLATED, -15)
    return block * 32 + final.flush()


@pytest.mark.parametrize("member", ["junk", "U"])
def test_a_2gib_checkpoint_member_is_refused_without_reading_it(tiny, tmp_path, member):
    out = tmp_path / "s"
    _cut(tiny, out)
    ck = out / "checkpoints" / "rep0-epoch1.npz"
    with zipfile.ZipFile(ck) as z:
        members = [(i.filename, z.read(i.filename), 0, i.CRC, i.file_size) for i in z.infolist()]
    huge = ("junk.npy" if member == "junk" else "U.npy", _two_gib_of_zeros(), 8, 0, 1 << 31)
    members = [m for m in members if m[0] != huge[0]] + [huge]
    ck.write_bytes(_zip(members))
    tracemalloc.start()
    t0 = time.perf_counter()
    why = "holds other members .*unexpected: junk.npy" if member == "junk" else \
        "declares a member U of 2,147,483,648 bytes"
    with pytest.raises(SweepStateError, match=why):
        sweep(tiny, out=out, resume=True, **KW)
    seconds, peak = time.perf_counter() - t0, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 << 20 and seconds < 20, (peak, seconds)      # 2 GiB would take both


# ----------------------------------------------------------------------------- L6
def test_a_dangling_lock_link_is_refused_and_creates_nothing_outside(tiny, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    target = tmp_path / "elsewhere" / "victim"
    (tmp_path / "elsewhere").mkdir()
    os.symlink(target, out / ".lock")
    with pytest.raises(SweepStateError, match=r"\.lock is a symbolic link"):
        sweep(tiny, out=out, **KW)
    assert not target.exists() and not (out / "config.json").exists()


def test_a_checkpoints_link_is_refused_and_files_there_are_kept(tiny, tmp_path):
    out = tmp_path / "s"
    _cut(tiny, out)
    other = tmp_path / "other"
    os.rename(out / "checkpoints", other)
    (other / "rep0-epoch5.npz").write_bytes(b"someone else's")
    (other / "keep.tmp").write_bytes(b"someone else's")
    os.symlink(other, out / "checkpoints")
    with pytest.raises(SweepStateError, match=r"checkpoints is a symbolic link"):
        sweep(tiny, out=out, resume=True, **KW)
    assert sorted(p.name for p in other.iterdir()) == ["keep.tmp", "rep0-epoch1.npz", "rep0-epoch5.npz"]


# ----------------------------------------------------------------------------- L4
def test_diverged_is_set_from_the_weights_after_the_last_step(tiny):
    """One step per epoch (batch = the training set): its loss, taken before the step, is finite,
    but the step (lr 1e10 x weight decay 1e30) makes the weights infinite."""
    from pyireg.experiments.sweep import ChanceWarning
    with pytest.warns(ChanceWarning, match="diverged"):
        res = sweep(tiny, [2], epochs=1, batch_size=len(tiny.y_train), weight_decays=[1e30],
                    schedule=PaperSchedule(lr0=1e10), progress=False)
    h = res.history
    assert not np.isfinite(h.norm_U).all() and h.diverged.all()


@pytest.mark.filterwarnings("ignore::pyireg.experiments.sweep.ChanceWarning")
def test_a_network_whose_evaluated_loss_is_not_finite_is_marked_diverged():
    """The squared loss of outputs that overflow float32 is inf on an evaluation split while the
    training steps' losses were still finite: the row says diverged, as the column promises."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6))
    ds = D.from_arrays(X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5), n_val=20, n_test=20)
    h = sweep(ds, [1, 3, 8], batch_size=20, progress=False, epochs=4, lr_scales=[30], seeds=[0, 1],
              loss="squared").history
    losses = h[["train_loss", "val_loss", "test_loss"]].to_numpy()
    assert (~np.isfinite(losses)).any()                    # the scenario happens
    assert h.loc[~np.isfinite(losses).all(axis=1), "diverged"].all()


# ----------------------------------------------------------------------------- L2, L3
def test_deeply_nested_or_special_config_files_give_one_line(tiny, tmp_path, capsys):
    out = tmp_path / "s"
    _cut(tiny, out)
    cfg = out / "config.json"
    good = cfg.read_bytes()
    cfg.write_text("[" * 100000 + "]" * 100000)
    for call in (lambda: sweep(tiny, out=out, resume=True, **KW), lambda: load_results(out)):
        with pytest.raises(SweepStateError, match="config.json is .*corrupt \\(nested too deeply\\)"):
            call()
    cfg.unlink()
    os.mkfifo(cfg)                                           # a FIFO: never opened (it would block)
    for call in (lambda: sweep(tiny, out=out, resume=True, **KW), lambda: load_results(out)):
        with pytest.raises(SweepStateError, match=r"config.json is a FIFO \(named pipe\), not a regular file"):
            call()
    cfg.unlink()
    os.symlink("/dev/zero", cfg)                             # read without bound before
    with pytest.raises(SweepStateError, match="config.json is a device, not a regular file"):
        load_results(out)
    with pytest.raises(SweepStateError, match="config.json is a symbolic link"):
        sweep(tiny, out=out, resume=True, **KW)
    cfg.unlink()
    cfg.write_bytes(good)
    assert sweep(tiny, out=out, resume=True, **KW).complete


def test_random_bytes_as_a_checkpoint_get_an_accurate_message(tiny, tmp_path):
    out = tmp_path / "s"
    _cut(tiny, out)
    ck = out / "checkpoints" / "rep0-epoch1.npz"
    ck.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(SweepStateError, match="is not a checkpoint archive") as e:
        sweep(tiny, out=out, resume=True, **KW)
    assert "allow_pickle" not in str(e.value) and "\n" not in str(e.value)


def test_max_memory_beyond_any_number_is_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--widths", "2", "--epochs", "1", "--max-memory", "1e400", "--out", str(tmp_path / "x")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--max-memory" in err[-1] and "expected a non-negative size" in err[-1]
    assert "Traceback" not in "\n".join(err) and not (tmp_path / "x").exists()


def test_a_fifo_as_history_is_refused_without_blocking(tiny, tmp_path):
    out = tmp_path / "s"
    _cut(tiny, out)
    (out / "history.parquet").unlink()
    os.mkfifo(out / "history.parquet")
    for call in (lambda: sweep(tiny, out=out, resume=True, **KW), lambda: load_results(out)):
        with pytest.raises(SweepStateError, match="history.parquet is not a regular file"):
            call()


def test_a_sweep_of_the_previous_format_is_refused_with_the_reason(tiny, tmp_path):
    out = tmp_path / "s"
    _cut(tiny, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg["format"] = 1                                   # what the pyireg before checksummed commits wrote
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SweepStateError, match=r"format 1, expected 2\); resume it with the version that made it"):
        sweep(tiny, out=out, resume=True, **KW)


def test_results_of_the_previous_format_still_load(tiny, tmp_path):
    """A finished sweep of format 1 (no checksums) is read by load_results as it is; an edited
    history of format 2 that claims format 1 while keeping its checksum is still caught."""
    import pyarrow as pa
    out = tmp_path / "s"
    sweep(tiny, out=out, **KW)
    table = pq.read_table(out / "history.parquet")
    meta = json.loads(table.schema.metadata[b"pyireg"])
    old = {k: v for k, v in meta.items() if k not in ("rows_sha256", "checkpoints")}
    old["format"] = 1
    frame = table.to_pandas()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(
        {b"pyireg": json.dumps(old).encode()}), out / "history.parquet")
    pd.testing.assert_frame_equal(load_results(out).history, frame)
    with pytest.raises(SweepStateError, match="carries no checksum of its rows"):
        sweep(tiny, out=out, resume=True, **KW)            # never resumed: nothing vouches for it
    meta["format"] = 1
    frame.loc[0, "test_error"] = 0.0
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(
        {b"pyireg": json.dumps(meta).encode()}), out / "history.parquet")
    with pytest.raises(SweepStateError, match="was changed after it was written"):
        load_results(out)
