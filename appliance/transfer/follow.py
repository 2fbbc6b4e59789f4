"""Following a local file that another program (gfal2, globus-url-copy) is writing.

Following gives three things without a second pass over the data: progress, the checksums of the
bytes as written (read back from the page cache while the copy runs), and early write-back
(``appliance.fsutil.start_writeback``), so the final fsync before the rename waits for the tail only.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from appliance.fsutil import WRITEBACK_STEP, start_writeback
from appliance.transfer.base import Progress
from appliance.transfer.checksum import new_digester

WINDOW = 64 << 20  # bytes mapped at a time
SLICE = 4 << 20  # bytes per checksum update and progress step


class Follower(threading.Thread):
    """Follows ``path`` while it grows; ``stop()`` returns the checksums (empty if unsure)."""

    def __init__(self, path: Path, progress: Progress, algorithms: Iterable[str],
                 writeback: bool = True, resumed_from: int = 0, interval: float = 0.05):
        """``resumed_from``: bytes that were there before this copy (a resume): hashed like the
        rest, but not reported as progress again."""
        super().__init__(daemon=True)
        self.path, self.progress, self.interval = path, progress, interval
        self.writeback = writeback
        self.resumed_from = resumed_from
        self.digesters = {a: new_digester(a) for a in algorithms}
        self.seen = 0
        self.synced = 0
        self.valid = True  # False if the file ever shrank: the caller then hashes it again
        self.stopped = threading.Event()
        self._f = None

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
            self._report(self.seen, size)
            self.seen = size
        while self.valid and self.seen < size:
            end = min(size, self.seen + WINDOW)
            self._digest(self.seen, end)
            self.seen = end
        if self.writeback and not final and self.seen - self.synced >= WRITEBACK_STEP:
            start_writeback(self._f.fileno(), self.synced, self.seen - self.synced)
            self.synced = self.seen

    def _digest(self, start: int, end: int) -> None:
        """Fold bytes [start, end) into the checksums through a read-only memory map.

        Why a map: the bytes are in the page cache already (the copier just wrote them), and
        read() copied them once more: on the development machine reading back a cached GiB
        cost ~0.7 s of kernel time, mapping it ~0.1 s, on a 2-core machine where the copier
        and the server need that CPU. Safe here because the file only grows while we follow it:
        the copier creates it (the engine removes an old ``.part`` first), and both copiers
        (globus-url-copy, gfal2's streamed copy) open it once and append, never truncate, so no
        mapped page can vanish under us.
        """
        assert self._f is not None
        base = start - start % mmap.ALLOCATIONGRANULARITY
        with mmap.mmap(self._f.fileno(), end - base, access=mmap.ACCESS_READ, offset=base) as m:
            view = memoryview(m)
            try:
                for pos in range(start - base, end - base, SLICE):
                    piece = view[pos:min(pos + SLICE, end - base)]
                    for d in self.digesters.values():
                        d.update(piece)
                    self._report(base + pos, base + pos + len(piece))
                    piece.release()
            finally:
                view.release()

    def _report(self, start: int, end: int) -> None:
        new = end - max(start, self.resumed_from)
        if new > 0:
            self.progress(new)

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
