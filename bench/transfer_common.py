"""Shared set-up for the transfer benchmarks: test PKI, timing helpers (not a benchmark itself)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATACLIENT = str(Path(sys.executable).with_name("dataclient"))


def settle() -> None:
    """Write out what earlier runs left dirty in the page cache (a global sync), so that no run
    pays for the writeback of the one before it."""
    os.sync()
    time.sleep(0.5)


def timed(cmd: list[str], env: dict[str, str], fsync: Path | None = None) -> float:
    """Wall time of ``cmd``; with ``fsync``, of ``cmd`` and then an fsync of that file (a
    baseline given the durability dataclient gives by default)."""
    settle()
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode == 0 and fsync is not None:
        fd = os.open(fsync, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return elapsed


def disk_floor(path: Path, size: int) -> float:
    """Seconds to write ``size`` bytes from memory and fsync them: no network, no checksum. No
    durable download can beat it, so ``baseline / floor`` is the best durable ratio possible
    against a baseline that leaves its bytes in the page cache."""
    settle()
    block = memoryview(os.urandom(1 << 20))
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(size >> 20):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - start
    os.unlink(path)
    return elapsed


def ratios(base: list[float], base_fsync: list[float], ours: list[float], nosync: list[float],
           floor: list[float], tool: str, goal: float) -> str:
    """The two like-for-like ratios (throughput, medians): durable against durable, page cache
    against page cache; then the raw one, with the best any durable client could reach."""
    med = statistics.median
    return (f"disk floor (write + fsync from memory) median {med(floor):.2f} s: no durable copy "
            f"can exceed {med(base) / med(floor):.2f}x {tool}\n"
            + f"ratio dataclient get / {tool} + fsync (both durable): {med(base_fsync) / med(ours):.2f}x\n"
            f"ratio dataclient get --no-fsync / {tool} (page cache only): {med(base) / med(nosync):.2f}x\n"
            f"ratio dataclient get (fsync) / {tool} (no fsync): {med(base) / med(ours):.2f}x"
            f"   (goal >= {goal})")


def make_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(size >> 20):
            f.write(block[:-8] + i.to_bytes(8, "little"))  # every MiB different
    os.chmod(path, 0o644)


def summary(name: str, times: list[float], size: int) -> str:
    med = statistics.median(times)
    return (f"{name:<28} median {med:6.2f} s  ({size / med / 2**20:7.1f} MiB/s)  runs: "
            + ", ".join(f"{t:.2f}" for t in times))


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
