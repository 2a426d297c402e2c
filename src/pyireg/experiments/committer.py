"""Epoch commits off the training thread: :class:`EpochCommitter` hands each epoch's commit
(:func:`.store.commit_epoch`: checkpoint, history, checksums, fsyncs, renames) to one helper
thread, from a copy of the checkpoint's arrays, while the next epoch trains.

Why: on a 2-core Xeon an 18 MB commit of Figure 2 took 75-86 ms against an epoch of 300 ms,
mostly waits (the checkpoint's hash threads 12 ms, fsyncs 11 ms, writes 10 ms, deleting the
previous checkpoint 4.5 ms; docs/performance.md), which the next epoch's compute can hide.

What stays as it was: the commits run one at a time, in epoch order, each exactly as in the
foreground (the same files and bytes); the sweep directory is therefore always the state after
some committed epoch, and a kill at any instant resumes to the uninterrupted numbers. A commit's
error (a full disk, a kill in the tests) is raised in the training thread at the next commit,
at the end of the repetition, or when the sweep stops; nothing else is written after it.

The copy doubles the checkpoint's memory for one epoch, so a checkpoint above
``BACKGROUND_BYTES`` (256 MiB: 700,000 units at d = 100, k = 10 with momentum) is committed in
the foreground, where its epoch is long enough that the commit is a small share of it."""
from __future__ import annotations

import concurrent.futures

import numpy as np

from . import store

BACKGROUND_BYTES = 256 * 2 ** 20


def _nbytes(arrays: dict) -> int:
    return sum(int(np.asarray(v).nbytes) for v in arrays.values())


class EpochCommitter:
    """Commits the epochs of one sweep directory, in the background when they are small enough.
    Not for use from several threads: the sweep's training thread owns it."""

    def __init__(self, d: store.SweepDir, background_bytes: int | None = None):
        self.d = d
        self.background_bytes = BACKGROUND_BYTES if background_bytes is None else int(background_bytes)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: concurrent.futures.Future | None = None

    def commit(self, seed: int, epoch: int, arrays: dict, history, done: dict) -> None:
        """Commit epoch ``epoch`` of repetition ``seed`` (after the previous commit finished,
        raising its error if it failed). ``history`` must not be changed afterwards (the sweep
        makes a new table every epoch); ``arrays`` and ``done`` are copied when the commit runs
        in the background."""
        self.wait()
        if _nbytes(arrays) > self.background_bytes:
            store.commit_epoch(self.d, seed, epoch, arrays, history, done)
            return
        snapshot = {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in arrays.items()}
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pyireg-commit")
        # (an interrupt between the submit and this assignment leaves the commit untracked; the
        # pool's shutdown in close() still waits for it)
        self._pending = self._pool.submit(store.commit_epoch, self.d, seed, epoch, snapshot, history, dict(done))

    def wait(self) -> None:
        """Wait for the commit in flight, if any; raise its error."""
        pending = self._pending
        if pending is None:
            return
        try:
            pending.result()
        except BaseException:
            if pending.done():          # its own error; an interrupt of this wait leaves it running
                self._pending = None
            raise
        self._pending = None

    def busy(self) -> bool:
        """Whether a commit is still running (after an interrupted wait)."""
        return self._pending is not None and not self._pending.done()

    def close(self, error: BaseException | None = None) -> None:
        """Wait for the commit in flight and stop the helper thread. ``error``: the exception the
        caller is propagating; a failed commit's error is then added to it as a note instead of
        being raised over it."""
        try:
            self.wait()
        except BaseException as e:
            if error is None:
                raise
            error.add_note(f"the epoch commit in the background also failed: {e!r}")
        finally:
            if self._pool is not None and not self.busy():
                self._pool.shutdown(wait=True)
                self._pool = None
