"""A reader/writer lock for the Python side of a packed model: compound reads (a copy, a pickle,
``network(i)``, several measures) hold it shared across all their native calls, so what they
see is one state; the optimizers' writes hold it exclusively across theirs.

Single native reads (forward, backward, loss_and_grad, evaluate, unit_balance) hold it shared
too: the engine's own lock makes a native call atomic against native writes, but an assignment
to ``model.U`` or ``set_network`` is a numpy copy under this lock only (a forward once saw half
of an assignment).
This lock adds one acquire and release of a ``threading.Condition`` per write (about a
microsecond, against milliseconds for a training step) and makes a compound read wait for the
write in progress (and the write wait for the reads in progress).

Writers are preferred (a waiting writer stops new readers), so a stream of readers cannot starve
an optimizer. A thread that already holds the lock may take it again (shared inside shared or
exclusive, exclusive inside exclusive): a compound read may call another one.
"""
from __future__ import annotations

import contextlib
import threading


class RWLock:
    """Shared (``read``) / exclusive (``write``) lock, reentrant per thread, writer-preferring."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0          # shared holds by threads other than the writer
        self._writer = None        # ident of the thread holding it exclusively
        self._write_depth = 0
        self._waiting_writers = 0
        self._local = threading.local()

    def _depth(self) -> int:
        return getattr(self._local, "depth", 0)

    @contextlib.contextmanager
    def read(self):
        me = threading.get_ident()
        if self._writer == me or self._depth() > 0:       # nested: already protected
            self._local.depth = self._depth() + 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        with self._cond:
            while self._writer is not None or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self):
        me = threading.get_ident()
        if self._writer == me:
            self._write_depth += 1
            try:
                yield
            finally:
                self._write_depth -= 1
            return
        if self._depth() > 0:
            raise RuntimeError("a thread holding a model's read lock tried to write the model (would deadlock)")
        with self._cond:
            self._waiting_writers += 1
            try:
                while self._writer is not None or self._readers:
                    self._cond.wait()
            finally:
                self._waiting_writers -= 1
            self._writer, self._write_depth = me, 1
        try:
            yield
        finally:
            with self._cond:
                self._writer, self._write_depth = None, 0
                self._cond.notify_all()
