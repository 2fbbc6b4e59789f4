"""The clock seam: real time (optionally sped up) or a simulated discrete-event clock.

Why: tape operations take minutes (a mount is ~60 s). The engine asks the clock for ``now()``
and waits with ``wait_until()``; with :class:`SimClock` tests and benchmarks jump straight to the
next event, with :class:`RealClock` (``speed`` > 1) a demo runs a migrate/evict/stage cycle in
seconds, and with ``speed`` = 1 the same code runs for real.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Protocol

from appliance.fsutil import atomic_write_json

log = logging.getLogger(__name__)


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch in archive time."""

    def wait_until(self, when: float, wake: threading.Event) -> None:
        """Block until archive time ``when`` or until ``wake`` is set (whichever comes first)."""


class RealClock:
    """Wall-clock time running ``speed`` times faster than real time from the moment of creation.

    Monotonic across restarts when given a ``state`` file: with ``speed`` > 1 archive time runs
    ahead of the wall clock, and restarting from the wall clock put a recall's ``finishedAt``
    before its request's ``createdAt``. The clock starts from max(wall clock, the persisted
    mark). The mark is a lease: it is written ``LEASE`` wall seconds ahead of the time handed
    out (one fsynced write per 10 s), so even after kill -9 no time already handed out is
    handed out again; a clean :meth:`save` writes the exact time, so a restart continues
    without a jump. Only the process that owns the archive writes (``persist``); others read.
    """

    LEASE = 10.0  # wall seconds

    def __init__(self, speed: float = 1.0, state: Path | None = None, persist: bool = True):
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self._t0 = time.time()
        self._m0 = time.monotonic()
        self.resumed_from = read_mark(state) if state else 0.0
        self._t0 = max(self._t0, self.resumed_from)
        self._state = state if persist else None
        self._lease = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        t = self._t0 + (time.monotonic() - self._m0) * self.speed
        if self._state is not None and t >= self._lease:
            with self._lock:
                if t >= self._lease:
                    lease = t + self.LEASE * self.speed
                    if self._write(lease):
                        self._lease = lease
        return t

    def save(self) -> None:
        """Persist the exact current time (clean shutdown)."""
        if self._state is None:
            return
        with self._lock:
            t = self._t0 + (time.monotonic() - self._m0) * self.speed
            if self._write(t):
                self._lease = t  # a later now() extends the lease again

    def _write(self, mark: float) -> bool:
        assert self._state is not None
        try:
            atomic_write_json(self._state, {"archive_time": mark, "speed": self.speed})
        except OSError as err:
            log.warning("%s: cannot persist archive time: %s", self._state, err)
            return False
        return True

    def wait_until(self, when: float, wake: threading.Event) -> None:
        delay = (when - self.now()) / self.speed
        if delay > 0:
            wake.wait(min(delay, 3600.0))


def read_mark(state: Path) -> float:
    """The persisted archive time of ``state`` (0 when there is none yet or it is unreadable)."""
    try:
        return float(json.loads(Path(state).read_text())["archive_time"])
    except FileNotFoundError:
        return 0.0
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("%s: unreadable archive time, starting from the wall clock: %s", state, err)
        return 0.0


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
