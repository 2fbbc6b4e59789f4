"""The clock seam: real time (optionally sped up) or a simulated discrete-event clock.

Why: tape operations take minutes (a mount is ~60 s). The engine asks the clock for ``now()``
and waits with ``wait_until()``; with :class:`SimClock` tests and benchmarks jump straight to the
next event, with :class:`RealClock` (``speed`` > 1) a demo runs a migrate/evict/stage cycle in
seconds, and with ``speed`` = 1 the same code runs for real.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch in archive time."""

    def wait_until(self, when: float, wake: threading.Event) -> None:
        """Block until archive time ``when`` or until ``wake`` is set (whichever comes first)."""


class RealClock:
    """Wall-clock time running ``speed`` times faster than real time from the moment of creation."""

    def __init__(self, speed: float = 1.0):
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self._t0 = time.time()
        self._m0 = time.monotonic()

    def now(self) -> float:
        return self._t0 + (time.monotonic() - self._m0) * self.speed

    def wait_until(self, when: float, wake: threading.Event) -> None:
        delay = (when - self.now()) / self.speed
        if delay > 0:
            wake.wait(min(delay, 3600.0))


class SimClock:
    """Discrete-event time: it only moves when someone calls :meth:`advance` or :meth:`set`."""

    def __init__(self, start: float = 1_700_000_000.0):
        self._t = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._t

    def set(self, when: float) -> None:
        with self._lock:
            self._t = max(self._t, float(when))

    def advance(self, seconds: float) -> None:
        self.set(self._t + seconds)

    def wait_until(self, when: float, wake: threading.Event) -> None:
        # Nobody else moves simulated time: a background waiter just naps briefly.
        wake.wait(0.05)
