"""Following a local file that another program (gfal2, globus-url-copy) is writing.

Following gives three things without a second pass over the data: progress, the checksums of the
bytes as written (read back from the page cache while the copy runs), and early write-back
(``appliance.fsutil.start_writeback``), so the final fsync before the rename waits for the tail only.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

from appliance.fsutil import WRITEBACK_STEP, start_writeback
from appliance.transfer.base import Progress
from appliance.transfer.checksum import BLOCK, new_digester


class Follower(threading.Thread):
    """Follows ``path`` while it grows; ``stop()`` returns the checksums (empty if unsure)."""

    def __init__(self, path: Path, progress: Progress, algorithms: Iterable[str],
                 writeback: bool = True, interval: float = 0.05):
        super().__init__(daemon=True)
        self.path, self.progress, self.interval = path, progress, interval
        self.writeback = writeback
        self.digesters = {a: new_digester(a) for a in algorithms}
        self.seen = 0
        self.synced = 0
        self.valid = True  # False if the file ever shrank (gfal2 restarted it): hash again
        self.stopped = threading.Event()
        self._f = None
        self._view = memoryview(bytearray(BLOCK))  # reused: stays in the CPU cache

    def poll(self, final: bool = False) -> None:
        if self._f is None:
            try:
                self._f = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed in stop()
            except OSError:
                return
        size = os.fstat(self._f.fileno()).st_size
        if size < self.seen:
            self.valid = False
        if not self.digesters and self.valid and size > self.seen:  # progress only: no reading
            self.progress(size - self.seen)
            self.seen = size
        while self.valid and self.seen < size:
            n = self._f.readinto(self._view[:min(BLOCK, size - self.seen)])
            if not n:
                break
            for d in self.digesters.values():
                d.update(self._view[:n])
            self.seen += n
            self.progress(n)
        if self.writeback and not final and self.seen - self.synced >= WRITEBACK_STEP:
            start_writeback(self._f.fileno(), self.synced, self.seen - self.synced)
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
