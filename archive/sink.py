"""Where uploaded bytes go: a temp file plus adler32 and sha256, computed as the bytes pass.

Why threads: on a small machine one Python thread cannot receive, hash twice and write at disk
speed. ``hashlib`` and ``os.write`` release the GIL on large buffers, so sha256 and the file
write run in two worker threads while the caller receives the next chunk and folds it into
adler32. Small uploads (known length under ``THREAD_MIN``) skip the threads.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import zlib
from collections.abc import Callable

THREAD_MIN = 8 << 20
WRITEBACK_EVERY = 32 << 20
_DONE = object()


def _sync_file_range() -> Callable[[int, int, int], None] | None:
    """Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``: start writeback of a range now, so the
    final fsync finds little left to do (the disk works while the network still delivers)."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
        fn.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    except (OSError, AttributeError):
        return None

    def start(fd: int, offset: int, nbytes: int) -> None:
        fn(fd, offset, nbytes, 2)  # SYNC_FILE_RANGE_WRITE: asynchronous

    return start


_START_WRITEBACK = _sync_file_range()


class Sink:
    def __init__(self, fd: int, threaded: bool):
        self.fd = fd
        self.sha = hashlib.sha256()
        self.adler = 1
        self.size = 0
        self._written = 0
        self._flushed = 0
        self._errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._queues: list[queue.Queue] = []
        if threaded:
            for target in (self._sha_worker, self._write_worker):
                q: queue.Queue = queue.Queue(maxsize=16)
                t = threading.Thread(target=self._run, args=(target, q), daemon=True)
                t.start()
                self._queues.append(q)
                self._threads.append(t)

    @property
    def adler32(self) -> str:
        return f"{self.adler & 0xFFFFFFFF:08x}"

    def _run(self, fn: Callable[[bytes], None], q: queue.Queue) -> None:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if self._errors:
                continue  # drain so the producer never blocks
            try:
                fn(item)
            except BaseException as err:  # noqa: BLE001 - re-raised in close()
                self._errors.append(err)

    def _sha_worker(self, chunk: bytes) -> None:
        self.sha.update(chunk)

    def _write_worker(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self._written += len(chunk)
        if _START_WRITEBACK and self._written - self._flushed >= WRITEBACK_EVERY:
            _START_WRITEBACK(self.fd, self._flushed, self._written - self._flushed)
            self._flushed = self._written

    def feed(self, chunk: bytes) -> None:
        if self._errors:
            raise self._errors[0]
        self.adler = zlib.adler32(chunk, self.adler)
        self.size += len(chunk)
        if self._queues:
            for q in self._queues:
                q.put(chunk)
        else:
            self.sha.update(chunk)
            self._write_worker(chunk)

    def close(self) -> None:
        """Wait for the workers; raise the first error any of them met."""
        for q in self._queues:
            q.put(_DONE)
        for t in self._threads:
            t.join()
        self._queues, self._threads = [], []
        if self._errors:
            raise self._errors[0]
