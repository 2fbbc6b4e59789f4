"""Atomic file writes: temp file in the same directory, fsync, rename, fsync of the directory.

A reader never sees a half-written file under its final name, and a crash leaves at most a
``.tmp-*`` file that is safe to delete.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

WRITEBACK_STEP = 32 << 20  # start writeback of every 32 MiB written (see start_writeback)


@functools.cache
def _sync_file_range() -> Any:
    """libc's ``sync_file_range``, loaded on first use (ctypes is not worth a start-up cost for
    commands that never write large files); None where it does not exist."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        return fn
    except (OSError, AttributeError):
        return None


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Start writing a range of a file to disk now, without waiting (Linux
    ``sync_file_range(SYNC_FILE_RANGE_WRITE)``; a no-op elsewhere).

    Why: a long write that ends with fsync otherwise leaves the whole file dirty in the page
    cache, and the fsync then waits for all of it. Started as the bytes arrive, the disk works
    while the network still delivers and the final fsync waits for the tail only. It is not a
    durability guarantee: the fsync before the rename still is.
    """
    fn = _sync_file_range()
    if fn is not None:
        fn(fd, offset, nbytes, 2)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", durable: bool = True) -> Iterator[IO[Any]]:
    """Open a temp file next to ``path``; on success it replaces ``path`` atomically.
    ``durable=False`` skips the fsyncs: still all-or-nothing, but a crash of the machine may lose
    the new file (for records that are cheap to make again). A replaced file keeps its permission
    bits (a re-locked, tracked ``images.lock`` stays 0644); a new one is 0600, private until its
    writer says otherwise (tokens and keys go through here too)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.fchmod(fd, stat.S_IMODE(os.stat(path).st_mode))
        with os.fdopen(fd, mode) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, durable: bool = True) -> None:
    with atomic_open(path, "w", durable=durable) as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def link_or_copy(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """A hard link of ``src`` at ``dest``; a copy where they are on different file systems (no
    symbolic link: a chroot or container that sees ``dest`` could not follow it)."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
