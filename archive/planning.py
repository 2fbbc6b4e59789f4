"""Pure decisions of the tape loop and the namespace: when migration is due, what each pool
writes, which drive takes a write, and a file's WLCG locality.

No I/O, no clock, no catalog: the callers pass what they read and do what these return
(``archive.tapeloop``, ``archive.namespace``), like ``scheduler`` for recalls and ``cache`` for
eviction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from archive.config import MigrationConfig


class Waiting(Protocol):
    """A file waiting for tape (``catalog.FileEntry``)."""

    size: int
    modified: float


class LogRecord(Protocol):
    """A namespace record waiting for tape (``catalog.LogRecord``)."""

    seq: int
    at: float


class HasTape(Protocol):
    tape: str | None


W = TypeVar("W", bound=Waiting)
R = TypeVar("R", bound=LogRecord)
D = TypeVar("D", bound=HasTape)


def migration_due_at(cands: Sequence[tuple[Waiting, Iterable[int]]], logs: Sequence[LogRecord],
                     policy: MigrationConfig, now: float, force: bool = False) -> float | None:
    """When the next migration must start: None if nothing waits; now if forced (``archive
    migrate``) or a batch is full (files or bytes); else when the oldest waiting item reaches
    the maximum age."""
    if not cands and not logs:
        return None
    if force:
        return now
    if len(cands) >= policy.batch_files or sum(f.size for f, _ in cands) >= policy.batch_bytes:
        return now
    oldest = min([f.modified for f, _ in cands] + [r.at for r in logs])
    return oldest + policy.max_age_seconds


def pool_work(cands: Sequence[tuple[W, Iterable[int]]], logs: Sequence[R], copy_no: int,
              pool: str, log_pools: Mapping[int, Iterable[str]]
              ) -> tuple[list[tuple[W, int]], list[R]]:
    """What pool ``pool`` (copy number ``copy_no``) has to write: the waiting files that lack
    that copy, and the namespace records that pool does not hold yet."""
    files = [(f, copy_no) for f, held in cands if copy_no not in held]
    pool_logs = [r for r in logs if pool not in log_pools.get(r.seq, ())]
    return files, pool_logs


def write_drive(idle: Sequence[D], tape: str) -> D:
    """The idle drive for a write to ``tape``: one that has it mounted, else an empty one,
    else the first (``idle`` must not be empty)."""
    return next((x for x in idle if x.tape == tape), None) or next(
        (x for x in idle if x.tape is None), idle[0])


def locality_of(on_disk: bool, tape_copies: int, lost: bool, drives_available: bool) -> str:
    """WLCG Tape REST locality of an existing file: DISK, TAPE, DISK_AND_TAPE, LOST or
    UNAVAILABLE (tape only and every drive failed). ``lost``: its recall found no good copy."""
    if on_disk and tape_copies:
        return "DISK_AND_TAPE"
    if on_disk:
        return "DISK"
    if not tape_copies or lost:
        return "LOST"
    if not drives_available:
        return "UNAVAILABLE"
    return "TAPE"
