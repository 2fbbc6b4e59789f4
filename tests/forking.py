"""Fork while another thread holds a lock: what a worker forked from a threaded process meets."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable


def fork_while_held(lock: threading.Lock, child: Callable[[], int], timeout: float, hung: str) -> int:
    """Fork while a second thread holds ``lock``; run ``child`` in the child (its return value is
    the child's exit status, 1 if it raises; the child never returns into pytest); release the lock
    in the parent and wait up to ``timeout`` seconds. A child still running then is killed and the
    test fails with ``hung``. Returns the child's exit code."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = child()
        finally:
            os._exit(code)
    release.set()
    t.join()
    deadline = time.monotonic() + timeout
    while (r := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    if r == (0, 0):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(hung)
    return os.waitstatus_to_exitcode(r[1])
