"""Following a local file that another program (gfal2, globus-url-copy) is writing.

Following gives three things without a second pass over the data: progress, the checksums of the
bytes as written (read back from the page cache while the copy runs), and early write-back
(``sync_file_range``), so the final fsync before the rename waits for the tail only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from appliance.transfer.base import Progress
from appliance.transfer.checksum import BLOCK, new_digester


class Follower(threading.Thread):
    """Follows ``path`` while it grows; ``stop()`` returns the checksums (empty if unsure)."""

    def __init__(self, path: Path, progress: Progress, algorithms: Iterable[str],
                 interval: float = 0.05):
        super().__init__(daemon=True)
        self.path, self.progress, self.interval = path, progress, interval
        self.digesters = {a: new_digester(a) for a in algorithms}
        self.seen = 0
        self.synced = 0
        self.valid = True  # False if the file ever shrank (gfal2 restarted it): hash again
        self.stopped = threading.Event()
        self._f = None

    def poll(self, final: bool = False) -> None:
        if self._f is None:
            try:
                self._f = open(self.path, "rb")  # noqa: SIM115 - closed in stop()
            except OSError:
                return
        size = os.fstat(self._f.fileno()).st_size
        if size < self.seen:
            self.valid = False
        while self.valid and self.seen < size:
            chunk = self._f.read(min(BLOCK * 8, size - self.seen))
            if not chunk:
                break
            for d in self.digesters.values():
                d.update(chunk)
            self.seen += len(chunk)
            self.progress(len(chunk))
        if sync_file_range and (final is False) and self.seen - self.synced >= SYNC_STEP:
            sync_file_range(self._f.fileno(), self.synced, self.seen - self.synced, 2)
            self.synced = self.seen

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.poll()

    def stop(self) -> dict[str, str]:
        self.stopped.set()
        self.join()
        self.poll(final=True)
        if self._f is not None:
            self._f.close()
        ok = self.valid and self.path.exists() and self.seen == self.path.stat().st_size
        return {a: d.hexdigest() for a, d in self.digesters.items()} if ok else {}


def _load_sync_file_range():
    """``sync_file_range(2)`` from libc (Linux); None elsewhere (then fsync does it all)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        return fn
    except (OSError, AttributeError):
        return None


sync_file_range = _load_sync_file_range()
SYNC_STEP = 32 << 20
