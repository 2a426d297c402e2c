"""The refusals every reader of a sweep directory shares: the error a sweep's files raise when
they are missing, corrupt or inconsistent, the refusal of symbolic links among them, and the
bounded read of a small file (config.json, packs.json) and of a JSON object. :mod:`.history` and :mod:`.store` both
build on it."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

CONFIG_MAX_BYTES = 1 << 28    # 256 MiB: far above any real config.json (per-network init_std included)


class SweepStateError(RuntimeError):
    """The files of a sweep directory are missing, corrupt or inconsistent: resuming would lose
    or overwrite finished work, so the sweep refuses and says why."""


def refuse_links(paths, what="out") -> None:
    """Refuse a symbolic link among a sweep's own files (L6): following one would read, write or
    delete outside the sweep's directory."""
    for p in paths:
        if os.path.islink(p):
            raise SweepStateError(f"{what}: {p} is a symbolic link; a sweep's files and its checkpoints/ must be "
                                  "real files and directories inside it: replace the link by the file itself")


def read_bounded(path: Path, what: str, limit: int = CONFIG_MAX_BYTES) -> bytes:
    """A small regular file's bytes: a FIFO, a device (/dev/zero) or a file over ``limit`` is
    refused with its name before it is read (L3)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise SweepStateError(f"{what}: cannot read {path} ({e.strerror or type(e).__name__})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a device" if
                stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a directory" if
                stat.S_ISDIR(st.st_mode) else "not a regular file")
        raise SweepStateError(f"{what}: {path} is {kind}, not a regular file; restore the sweep's own file")
    if st.st_size > limit:
        raise SweepStateError(f"{what}: {path} is {st.st_size:,} bytes, more than any file of a sweep "
                              f"({limit:,}); restore the sweep's own file")
    with open(path, "rb") as f:
        data = f.read(st.st_size + 1)       # (read(n) allocates n bytes first: ask for what is there)
    if len(data) > st.st_size:
        raise SweepStateError(f"{what}: {path} grew while being read; read it again when nothing writes it")
    return data


def read_json(path: Path, what: str) -> dict:
    """A JSON file of a run (config.json, figure.json), bounded and one line on any failure."""
    try:
        value = json.loads(read_bounded(path, what).decode())
    except (UnicodeDecodeError, ValueError, RecursionError, OverflowError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else f"{type(e).__name__}: {e}"
        raise SweepStateError(f"{what}: {path} is corrupt ({why})") from None
    if not isinstance(value, dict):
        raise SweepStateError(f"{what}: {path} is not a JSON object")
    return value
