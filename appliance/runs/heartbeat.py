"""A heartbeat for long silent runs: after ``interval`` seconds without a log line, one line
with the elapsed time and the container's CPU time and memory, so a user can tell a slow
analysis from a stuck one. The sample comes from the runtime's optional ``usage(run_id)``
(Docker: the engine's stats; Charliecloud: /proc of the process tree); a runtime without it
still gets the elapsed time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def format_beat(run_id: str, elapsed: float, usage: dict[str, float] | None) -> str:
    m, s = divmod(int(elapsed), 60)
    text = f"appliance: heartbeat {run_id}: {m}m{s:02d}s elapsed, no output for a while"
    if usage:
        text += (f"; container cpu {usage.get('cpu_seconds', 0.0):.1f} s, "
                 f"memory {usage.get('memory_bytes', 0.0) / 2**20:.0f} MiB")
    return text


class Heartbeat:
    def __init__(self, run_id: str, interval: float, emit: Callable[[str], None],
                 sample: Callable[[str], dict[str, float] | None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.run_id, self.interval, self.emit, self.sample, self.clock = run_id, interval, emit, sample, clock
        self.started = self.last = clock()
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id}", daemon=True)

    def seen(self) -> None:
        """A log line arrived: the run is not silent."""
        self.last = self.clock()

    def _loop(self) -> None:
        while not self._stop.wait(min(self.interval, 1.0)):
            now = self.clock()
            if now - self.last < self.interval:
                continue
            try:
                usage = self.sample(self.run_id) if self.sample else None
            except Exception:  # noqa: BLE001 - a failed sample must not stop the run
                usage = None
            if self._stop.is_set():
                return
            self.emit(format_beat(self.run_id, now - self.started, usage))
            self.beats += 1
            self.last = now

    def __enter__(self) -> Heartbeat:
        if self.interval > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
